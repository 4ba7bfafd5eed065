r"""What the training augmentation costs: the input pipeline alone, and inside training.

The same cached, decoded images feed, per variant (none, each of ``data.AUGMENTATIONS``):

* ``pipeline img/s``: one epoch of ``data.train_batches`` (shuffle, batch, augment,
  prefetch) with nothing consuming it: what the augmentation alone can deliver.
* ``training img/s``: one epoch of the real train step (``catdog_tf.train.steps.Steps``)
  fed by that pipeline: augmentation and train step share the machine's cores, as in
  ``catdog-train``.

Every variant is warmed up first (tracing); then each repeat times one epoch of every variant
in turn, so a drifting machine load hits all alike, and the median is reported.

Usage::

    python benchmarks/augmentation_cost.py --data=dogs-vs-cats/train \
        [--model=conv5_bn] [--images=2048] [--repeats=3] [--precision=float32] [--jit=off]
"""

from __future__ import annotations

import statistics
import time

# As the catdog-* commands do before TensorFlow is imported (oneDNN on for AVX2 CPUs).
from catdog_tf.cli import ONEDNN_DECISION  # isort: skip

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from catdog_tf import data, machine
from catdog_tf import plan as plan_lib
from catdog_tf.config import Config
from catdog_tf.train.steps import Steps

_DATA = flags.DEFINE_string("data", "dogs-vs-cats/train", "Image folder.")
_MODEL = flags.DEFINE_string("model", "conv5_bn", "Model trained in the training column.")
_IMAGES = flags.DEFINE_integer("images", 2048, "Images per epoch.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed epochs per variant; the median counts.")
_PRECISION = flags.DEFINE_string(
    "precision",
    "float32",
    "Training precision (not auto: no calibration run inside the benchmark).",
)
_JIT = flags.DEFINE_enum("jit", "off", ["on", "off"], "XLA for the train step.")


def _seconds(batches, consume) -> float:
    start = time.perf_counter()
    last = None
    for images, labels in batches:
        last = consume(images, labels)
    if last is not None:
        float(last)  # Wait for the last step.
    return time.perf_counter() - start


def main(argv):
    del argv
    examples = data.list_folder(_DATA.value)
    examples = data.split(examples, (_IMAGES.value, 0, 0), seed=0)["train"]
    decoded = data.decoded_dataset(examples)
    for _ in decoded:  # Fill the cache: timed epochs read decoded images from memory.
        pass
    variants = {"none": None} | {name: make() for name, make in data.AUGMENTATIONS.items()}

    def epoch(variant, index):
        return data.train_batches(decoded, len(examples), _BATCH.value, index, 0, variants[variant])

    config = Config(
        model=_MODEL.value,
        batch_size=_BATCH.value,
        precision=_PRECISION.value,
        jit_compile=_JIT.value,
        learning_rate=1e-3,
        weights="none",
    )
    steps = Steps(config, plan_lib.resolve(config, train_images=len(examples)))

    def train(images, labels):
        return steps.train_step(images, labels)[0]

    for name in variants:  # Warm-up: tracing, first-call allocations.
        _seconds(epoch(name, 0), lambda *_: None)
        _seconds(epoch(name, 0), train)
    pipeline = {name: [] for name in variants}
    training = {name: [] for name in variants}
    for repeat in range(1, _REPEATS.value + 1):
        for name in variants:
            pipeline[name].append(len(examples) / _seconds(epoch(name, repeat), lambda *_: None))
            training[name].append(len(examples) / _seconds(epoch(name, repeat), train))
    print(machine.probe().describe(), "|", ONEDNN_DECISION)
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
    app.run(main)
