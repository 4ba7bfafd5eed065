r"""What the training augmentation costs: the input pipeline alone, and inside training.

The same cached, decoded images feed, per variant (none, each of ``data.AUGMENTATIONS``):

* ``pipeline img/s``: one epoch of ``data.train_batches`` (shuffle, batch, augment,
  prefetch) with nothing consuming it: what the augmentation alone can deliver.
* ``training img/s``: one epoch of the real train step (``catdog_tf.train.steps.Steps``)
  fed by that pipeline: augmentation and train step share the machine's cores, as in
  ``catdog-train``.

With ``--shrink=SCALE``, two variants of a progressive-resizing epoch at that scale follow:
``flip_shift`` on the full-size images then each batch shrunk (``data.downscale``), and
``flip_shift`` on the images shrunk once (``data.shrunk_dataset``, what ``catdog-train``
does), each feeding the train step at the shrunk size.

Every variant is warmed up first (tracing); then each repeat times one epoch of every variant
in turn, so a drifting machine load hits all alike, and the median is reported.

Usage::

    python benchmarks/augmentation_cost.py --data=dogs-vs-cats/train \
        [--model=conv5_bn] [--images=2048] [--repeats=3] [--precision=float32] [--jit=off] \
        [--shrink=0.5]
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import statistics
import time
from collections.abc import Callable

import tensorflow as tf
from absl import flags

from catdog_tf import data, machine
from catdog_tf import plan as plan_lib
from catdog_tf.config import Config
from catdog_tf.train.steps import Steps

_DATA = flags.DEFINE_string("data", "dogs-vs-cats/train", "Image folder.")
_MODEL = flags.DEFINE_string("model", "conv5_bn", "Model trained in the training column.")
_IMAGES = flags.DEFINE_integer("images", 2048, "Images per epoch.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed epochs per variant; the median counts.")
_PRECISION = flags.DEFINE_enum(
    "precision",
    "float32",
    ["float32", "mixed_bfloat16", "mixed_float16"],
    "Training precision (not auto: no calibration run inside the benchmark).",
)
_JIT = flags.DEFINE_enum("jit", "off", ["on", "off"], "XLA for the train step.")
_SHRINK = flags.DEFINE_float(
    "shrink",
    0.0,
    "Also time shrunk epochs at this scale of the image side, the config's low_res_scale "
    "(0: none).",
)


def _seconds(batches, consume) -> float:
    start = time.perf_counter()
    last = None
    for images, labels in batches:
        last = consume(images, labels)
    if last is not None:
        float(last)  # Wait for the last step.
    return time.perf_counter() - start


def _config() -> Config:
    """The benchmark's run config; with ``--shrink``, one epoch of two is shrunk."""
    config = Config(
        model=_MODEL.value,
        batch_size=_BATCH.value,
        precision=_PRECISION.value,
        jit_compile=_JIT.value,
        learning_rate=1e-3,
        weights="none",
        epochs=2,
        low_res_epochs=1 if _SHRINK.value else 0,
        low_res_scale=_SHRINK.value or 0.5,
    )
    # A refused value is one line naming the config field at fault (--shrink sets
    # low_res_scale), as the commands print it.
    return config.validate()


def _variants(examples, decoded, small) -> dict[str, tuple[Callable, tuple[int, int] | None]]:
    """Each variant's name -> (epoch index -> its batches, the size the train step gets)."""

    def batches(images, augmentation):
        return lambda index: data.train_batches(
            images, len(examples), _BATCH.value, index, 0, augmentation
        )

    variants = {"none": (batches(decoded, None), None)} | {
        name: (batches(decoded, make()), None) for name, make in data.AUGMENTATIONS.items()
    }
    if small:
        shrunk = data.shrunk_dataset(decoded, small)
        for _ in shrunk:  # Fill its cache, as the first shrunk epoch of a run does.
            pass
        per_batch = batches(decoded, data.FlipShiftConfig())
        variants[f"flip_shift, each batch shrunk to {small[0]}x{small[1]}"] = (
            lambda index: per_batch(index).map(lambda x, y: (data.downscale(x, small), y)),
            small,
        )
        variants[f"flip_shift on images shrunk once to {small[0]}x{small[1]}"] = (
            batches(shrunk, data.FlipShiftConfig()),
            small,
        )
    return variants


def _rates(variants, steps: Steps, images: int) -> tuple[dict, dict]:
    """Img/s of each variant's pipeline alone and feeding the train step, per repeat."""

    def trainer(size):
        return lambda x, y: steps.train_step(x, y, size)[0]

    for make, size in variants.values():  # Warm-up: tracing, first-call allocations.
        _seconds(make(0), lambda *_: None)
        _seconds(make(0), trainer(size))
    pipeline = {name: [] for name in variants}
    training = {name: [] for name in variants}
    for repeat in range(1, _REPEATS.value + 1):
        for name, (make, size) in variants.items():
            pipeline[name].append(images / _seconds(make(repeat), lambda *_: None))
            training[name].append(images / _seconds(make(repeat), trainer(size)))
    return pipeline, training


def main(argv):
    del argv
    config = _config()
    examples = data.list_folder(_DATA.value)
    examples = data.split(examples, (_IMAGES.value, 0, 0), seed=0)["train"]
    decoded = data.decoded_dataset(examples)
    for _ in decoded:  # Fill the cache: timed epochs read decoded images from memory.
        pass
    small = config.low_res_size if _SHRINK.value else None
    variants = _variants(examples, decoded, small)
    steps = Steps(config, plan_lib.resolve(config, train_images=len(examples)))
    pipeline, training = _rates(variants, steps, len(examples))
    print(machine.probe().describe(), "|", script.ONEDNN_DECISION)
    print(
        f"{_MODEL.value}, {len(examples)} images, batch {_BATCH.value}, {_PRECISION.value}, "
        f"XLA {_JIT.value}, tf {tf.__version__}, median of {_REPEATS.value}"
    )
    print("| augmentation | pipeline img/s | training img/s | training, all repeats |")
    print("|---|---:|---:|---|")
    for name in variants:
        runs = ", ".join(f"{v:.0f}" for v in training[name])
        print(
            f"| {name} | {statistics.median(pipeline[name]):.0f} | "
            f"{statistics.median(training[name]):.0f} | {runs} |"
        )


if __name__ == "__main__":
    script.run(main)
