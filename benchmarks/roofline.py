r"""How close each model's train and eval step comes to what this CPU can compute.

First the ceiling, measured here: the sustained FLOP/s of a large float32 matmul and of a
large 3x3 convolution in TensorFlow (bfloat16 too where the CPU computes it natively). Then,
for each preset's model, its train step (full size, and shrunk where the preset trains some
epochs at low resolution) and its eval step, as images per second, as achieved FLOP/s (a
train step counted as 3 forward passes, as ``training_flops`` counts it) and as a fraction
of the best ceiling of the step's precision. Each train step is timed as training runs
it (batch norm fused, :func:`catdog_tf.models.training_twin`) and through Keras's own
batch norm (``--keras_batch_norm=false`` leaves that out), and once per ``--also_with``
config override (a variant of the model, the batch size or the precision, each timed with
its own batches, model FLOPs and plan). Batches are random uint8 images
already in memory, so the input pipeline costs nothing; each figure is the median of
``--repeats`` timings, the cells taking turns. Usage::

    python benchmarks/roofline.py [--presets=fast_progressive_wh,full_progressive,full] \
        [--steps=20] [--repeats=3] [--also_with='model_kwargs={"pool_first": true}']

Prints two Markdown tables; the first line names the CPU.
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import logging
import statistics
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import flags

from catdog_tf import machine, models
from catdog_tf import plan as plan_lib
from catdog_tf.config import Config, get_preset, parse_override
from catdog_tf.train.steps import Steps, measure_train_speeds

_PRESETS = flags.DEFINE_list(
    "presets", ["fast_progressive_wh", "full_progressive", "full"], "Presets (their models)."
)
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timing.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timings per cell, taking turns; the median counts.")
_MATMUL = flags.DEFINE_integer("matmul", 4096, "Side of the square matmul.")
_KERAS_BN = flags.DEFINE_bool(
    "keras_batch_norm", True, "Also time each train step through Keras's unfused batch norm."
)
_ALSO_WITH = flags.DEFINE_multi_string(
    "also_with",
    [],
    "A config override (field=value, as catdog-train's --set) whose train step is timed too, "
    "beside each preset's own, e.g. 'model_kwargs={\"pool_first\": true}'; repeatable.",
)


def seconds(run: Callable[[], object]) -> float:
    """Wall seconds of one call of ``run``."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``run`` after one warm-up call."""
    run()
    return statistics.median(seconds(run) for _ in range(repeats))


def ceilings(dtypes: list[tf.DType]) -> dict[str, float]:
    """Sustained FLOP/s of a square matmul and a 3x3 convolution per dtype, medians."""
    found = {}
    n = _MATMUL.value
    # 3x3, 128 -> 128 channels, 64x64, batch 32: the shape of a mid conv5 block, large.
    batch, side, channels = 32, 64, 128
    conv_flops = 2 * batch * side * side * channels * channels * 9
    for dtype in dtypes:
        a = tf.random.uniform((n, n), dtype=tf.float32)
        a = tf.cast(a, dtype)
        images = tf.cast(tf.random.uniform((batch, side, side, channels)), dtype)
        kernel = tf.cast(tf.random.uniform((3, 3, channels, channels)), dtype)
        # Each returns a float: waiting for it waits for the work.
        matmul = _reduced(tf.function(lambda a=a: tf.matmul(a, a)))
        conv = _reduced(tf.function(lambda x=images, k=kernel: tf.nn.conv2d(x, k, 1, "SAME")))
        repeats = 2 * _REPEATS.value
        found[f"matmul {n}x{n}, {dtype.name}"] = 2 * n**3 / median_seconds(matmul, repeats)
        found[f"conv 3x3 {channels}->{channels}, {batch}x{side}x{side}, {dtype.name}"] = (
            conv_flops / median_seconds(conv, repeats)
        )
    return found


def _reduced(fn: Callable[[], tf.Tensor]) -> Callable[[], float]:
    return lambda: float(tf.reduce_sum(tf.cast(fn(), tf.float32)))


def planned(config: Config, steps: int) -> plan_lib.Plan:
    """``config``'s plan as a training run resolves it, calibrating where flags do not decide."""
    return plan_lib.resolve(
        config, train_images=config.batch_size * steps, measure=measure_train_speeds
    )


def step_cells(
    config: Config, also_with: list[str], steps: int, keras_batch_norm: bool = True
) -> dict[str, tuple[Callable[[], object], int, float, str]]:
    """Name -> (run ``steps`` steps, images they see, FLOPs per image, precision).

    Every train step of ``config`` (one per image size it trains at), each also through
    Keras's batch norm (with ``keras_batch_norm``) and with each ``also_with`` override, and
    its eval step. Each variant runs with its own plan (precision and XLA as ``auto``
    decides them for it), on batches of its own size and shapes, and counts the FLOPs of
    its own model: an override of any of them changes what is timed and counted.
    """
    plan = planned(config, steps)
    variants = [("", config, Steps(config, plan))]
    if keras_batch_norm:
        unfused = Steps(config, plan, fuse_batch_norm=False)
        variants.append((", Keras batch norm", config, unfused))
    for assignment in also_with:
        changed = parse_override(config, assignment).validate()
        variants.append((f", {assignment}", changed, Steps(changed, planned(changed, steps))))
    rng = np.random.default_rng(0)
    cells = {}
    sizes = dict.fromkeys(size for *_, v in variants for size in v.train_models)
    for size in sizes:  # Grouped by image size, the preset's own sizes first.
        for suffix, variant_config, variant in variants:
            if size in variant.train_models:
                cells[f"train {size[0]}x{size[1]}{suffix}"] = _train_cell(
                    variant_config, variant, size, steps, rng
                )
    n = config.batch_size
    full = tf.constant(rng.integers(0, 256, (n, *config.image_size, 3), np.uint8))
    labels = tf.constant(rng.integers(0, 2, n), tf.int32)
    own = variants[0][2]
    cells[f"eval {config.image_height}x{config.image_width}"] = (
        _loop(lambda: own.eval_step(full, labels)[0], steps),
        n * steps,
        float(models.count_flops(own.model)),
        own.plan.precision,
    )
    return cells


def _train_cell(config: Config, steps_of: Steps, size: tuple[int, int], steps: int, rng):
    """(run, images, FLOPs per image, precision) of ``steps_of``'s train step at ``size``."""
    n = config.batch_size
    batch = tf.constant(rng.integers(0, 256, (n, *size, 3), np.uint8))
    labels = tf.constant(rng.integers(0, 2, n), tf.int32)
    return (
        _loop(lambda: steps_of.train_step(batch, labels, size)[0], steps),
        n * steps,
        3.0 * models.count_flops(steps_of.train_models[size]),
        steps_of.plan.precision,
    )


def _loop(step: Callable[[], tf.Tensor], steps: int) -> Callable[[], object]:
    def run() -> float:
        for _ in range(steps):
            out = step()
        return float(tf.reduce_sum(out))  # Wait for the last step.

    return run


def check_flags() -> None:
    """Fails on an unknown preset or ``--also_with`` before seconds go to the ceilings."""
    for preset in _PRESETS.value:
        config = get_preset(preset)
        for assignment in _ALSO_WITH.value:
            parse_override(config, assignment).validate()


def main(argv):
    del argv
    check_flags()
    # Each variant and image size traces the same step code anew, on purpose: TensorFlow's
    # warning about that retracing is not news to the reader of these tables.
    logging.getLogger("tensorflow").addFilter(
        lambda record: "triggered tf.function retracing" not in record.getMessage()
    )
    probe = machine.probe()
    print(f"{probe.describe()}; oneDNN: {script.ONEDNN_DECISION}\n")
    dtypes = [tf.float32] + ([tf.bfloat16] if probe.native_bf16 else [])
    found = ceilings(dtypes)
    print("| ceiling | GFLOP/s (median) |\n|---|---:|")
    for name, rate in found.items():
        print(f"| {name} | {rate / 1e9:,.0f} |", flush=True)
    best = {d.name: max(r for n, r in found.items() if n.endswith(d.name)) for d in dtypes}
    print(
        "\n| preset (model) | step | precision | img/s (median) | achieved GFLOP/s "
        "| of the ceiling |\n|---|---|---|---:|---:|---:|"
    )
    for preset in _PRESETS.value:
        cells = step_cells(get_preset(preset), _ALSO_WITH.value, _STEPS.value, _KERAS_BN.value)
        times = {name: [] for name in cells}
        for run, *_ in cells.values():
            run()  # Trace and warm up every cell before any is timed.
        for _ in range(_REPEATS.value):
            for name, (run, *_) in cells.items():
                times[name].append(seconds(run))
        model = get_preset(preset).model
        for name, (_, images, flops, precision) in cells.items():
            rate = images / statistics.median(times[name])
            ceiling = best["bfloat16" if "bfloat16" in precision else "float32"]
            print(
                f"| `{preset}` ({model}) | {name} | {precision} | {rate:,.0f} | "
                f"{rate * flops / 1e9:,.1f} | {rate * flops / ceiling:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    script.run(main)
