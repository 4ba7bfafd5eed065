r"""Train-step throughput: every precision/XLA setting, what ``auto`` picks, and ``model.fit``.

For every model, in one run: the same model, the same batches (real images, decoded and
cached beforehand, so the input pipeline costs almost nothing) and the same batch size,
with XLA on and off and float32 vs mixed_bfloat16. Each cell is images per second over an
epoch of ``--steps`` steps after a warm-up epoch (tracing and compilation excluded), the median
of ``--repeats`` epochs timed with the cells of a model taking turns. A second
table puts the setting ``auto`` resolves to on this machine (:func:`catdog_tf.plan.resolve`,
calibrating afresh in a temporary cache unless ``--fresh_calibration=false``) beside the best
explicit setting, both read from the first table.

Usage::

    python benchmarks/train_step.py --data=dogs-vs-cats/train \
        [--models=mlp,conv1,conv2,conv2_wide,conv3] [--steps=32] [--fit=false] [--json=out.json]
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import json
import os
import statistics
import tempfile
import time
import warnings

import keras
import tensorflow as tf
from absl import flags

from catdog_tf import (
    calibration,
    data,
    machine,
    models,
)
from catdog_tf import plan as plan_lib
from catdog_tf.config import Config
from catdog_tf.train.steps import Steps, measure_train_speeds

_DATA = flags.DEFINE_string("data", "dogs-vs-cats/train", "Image folder.")
_MODELS = flags.DEFINE_list(
    "models", ["mlp", "conv1", "conv2", "conv2_wide", "conv3"], "Models to measure."
)
_STEPS = flags.DEFINE_integer("steps", 32, "Timed steps per cell.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_PRECISIONS = flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Precisions.")
_JIT = flags.DEFINE_list("jit", ["off", "on"], "XLA settings.")
_JSON = flags.DEFINE_string("json", "", "Also write the results here.")
_FIT = flags.DEFINE_bool("fit", True, "Also time Keras model.fit.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 3, "Timed epochs per cell, the cells of a model taking turns; the median counts."
)
_FRESH = flags.DEFINE_bool(
    "fresh_calibration", True, "Calibrate auto in a temporary cache (as a new user would)."
)


def _batches(batch_size: int, steps: int) -> tf.data.Dataset:
    examples = data.list_folder(_DATA.value)
    examples = data.split(examples, (batch_size * steps, 0, 0), seed=0)["train"]
    decoded = data.decoded_dataset(examples)
    ds = data.train_batches(decoded, len(examples), batch_size, epoch=0).cache()
    for _ in ds:  # Fill the cache: the timed epochs only read memory.
        pass
    return ds


def bench_config(model_name: str, precision: str = "auto", jit: str = "auto") -> Config:
    return Config(
        model=model_name,
        precision=precision,
        jit_compile=jit,
        batch_size=_BATCH.value,
        loss="cross_entropy",
        learning_rate=1e-5,
        weights="none",  # Speed does not depend on the weights: no ImageNet download.
    )


def _epoch_seconds(steps: Steps, ds: tf.data.Dataset) -> float:
    start = time.perf_counter()
    for images, labels in ds:
        loss, _ = steps.train_step(images, labels)
    float(loss)  # Wait for the last step.
    return time.perf_counter() - start


def custom_loop(
    model_name: str, cells: list[tuple[str, str]], ds: tf.data.Dataset, n_images: int
) -> dict[tuple[str, str], list[float]]:
    """Images/s of each (precision, XLA) cell per repeat, the cells taking turns.

    Every cell is built and warmed up (one epoch: tracing and compilation) first; then each
    repeat times one epoch of every cell in turn, so a drifting machine load hits all cells
    of a model alike.
    """
    steps = {}
    for precision, jit in cells:
        config = bench_config(model_name, precision, jit)
        steps[(precision, jit)] = Steps(config, plan_lib.resolve(config, train_images=n_images))
        _epoch_seconds(steps[(precision, jit)], ds)
    speeds: dict[tuple[str, str], list[float]] = {cell: [] for cell in cells}
    for _ in range(_REPEATS.value):
        for cell, cell_steps in steps.items():
            speeds[cell].append(n_images / _epoch_seconds(cell_steps, ds))
    return speeds


def keras_fit(
    model_name: str, precision: str, jit: str, ds: tf.data.Dataset, n_images: int
) -> float:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        pretrained = models.get_spec(model_name).pretrained
        model = models.build_model(model_name, **({"weights": "none"} if pretrained else {}))
        # The pipeline ships uint8 batches and our steps scale them; give fit the same work.
        inputs = keras.Input(model.input_shape[1:], dtype="uint8")
        scaled = keras.layers.Rescaling(1 / 255, dtype="float32")(inputs)
        model = keras.Model(inputs, model(scaled))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-5),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        jit_compile=jit == "on",
    )
    model.fit(ds, epochs=1, verbose=0)  # Warm-up epoch.
    start = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    return n_images / (time.perf_counter() - start)


def main(argv):
    del argv
    # fit warns that a finite dataset "ran out of data" at its end; that is the intent here.
    warnings.filterwarnings("ignore", category=UserWarning)
    if _FRESH.value:
        os.environ[calibration.CACHE_ENV] = tempfile.mkdtemp(prefix="catdog-calibration-")
    ds = _batches(_BATCH.value, _STEPS.value)
    n_images = _BATCH.value * _STEPS.value
    rows = []
    print(f"machine: {machine.probe().describe()}; oneDNN: {script.ONEDNN_DECISION}")
    print(f"{n_images} images/cell, batch {_BATCH.value}, Keras {keras.__version__}")
    print(
        "| model | precision | XLA | custom loop img/s (median) | range | model.fit img/s | "
        "custom / fit |"
    )
    print("|---|---|---|---:|---|---:|---:|")
    for model_name in _MODELS.value:
        cells = [(p, j) for p in _PRECISIONS.value for j in _JIT.value]
        speeds = custom_loop(model_name, cells, ds, n_images)
        for (precision, jit), values in speeds.items():
            ours = statistics.median(values)
            fit = keras_fit(model_name, precision, jit, ds, n_images) if _FIT.value else ours
            rows.append(
                {
                    "model": model_name,
                    "precision": precision,
                    "xla": jit,
                    "custom": ours,
                    "custom_repeats": values,
                    "fit": fit,
                }
            )
            print(
                f"| {model_name} | {precision} | {jit} | {ours:,.0f} | "
                f"{min(values):,.0f}-{max(values):,.0f} | {fit:,.0f} | {ours / fit:.2f} |",
                flush=True,
            )
    autos = []
    print("\n| model | auto picks | its img/s | best explicit | best img/s | auto / best |")
    print("|---|---|---:|---|---:|---:|")
    for model_name in _MODELS.value:
        plan = plan_lib.resolve(
            bench_config(model_name), train_images=n_images, measure=measure_train_speeds
        )
        cells = {(r["precision"], r["xla"]): r["custom"] for r in rows if r["model"] == model_name}
        best = max(cells, key=cells.get)
        chosen = (plan.precision, "on" if plan.jit_compile else "off")
        speed = cells.get(chosen)
        ratio = f"{speed / cells[best]:.2f}" if speed else "not in the table"
        autos.append({"model": model_name, "auto": chosen, "best": best, "why": plan.why})
        print(
            f"| {model_name} | {chosen[0]}, XLA {chosen[1]} | "
            f"{speed if speed is None else f'{speed:,.0f}'} | {best[0]}, XLA {best[1]} | "
            f"{cells[best]:,.0f} | {ratio} |",
            flush=True,
        )
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"cells": rows, "auto": autos}, f, indent=2)


if __name__ == "__main__":
    script.run(main)
