r"""Input-pipeline throughput: catdog_tf.data vs Keras's loader vs the article's PIL loop.

Measures images per second, on the same files at the same size (94x125) in one run:

* ``decode_only``: ``tf.io.decode_jpeg`` (INTEGER_FAST) in a parallel tf.data map, nothing
  else, with the same tf.data options as ours: the ceiling for any pipeline that decodes
  every JPEG at full size.
* ``decode + resize only``: the same plus the resize to 94x125 (``catdog_tf.data.resize``):
  the ceiling for any pipeline that must hand out 94x125 images. Resizing costs ~40% of the
  decode's CPU time here (about 85-100 of every 300 microseconds per image).
* ``catdog_tf decode epoch``: the package's pipeline on its first epoch (read, decode,
  resize, cache fill, batch; uint8 batches, scaled to [0, 1] inside the train/eval step).
* ``catdog_tf cached epoch``: the same dataset's second epoch, served from the cache.
* ``keras image_dataset_from_directory``: one epoch, same size, bilinear.
* ``PIL loop``: the article's loop: ``Image.open``, ``resize``, ``np.array``, one at a time.

Files are read once beforehand so every contender finds them in the page cache. Each
measurement is repeated and the median is reported.

Usage::

    python benchmarks/input_pipeline.py --data=dogs-vs-cats/train \
        [--repeats=3] [--pil_images=2000] [--json=out.json]
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

import keras
import numpy as np
import tensorflow as tf
from absl import flags
from PIL import Image

from catdog_tf import data

_DATA = flags.DEFINE_string("data", "dogs-vs-cats/train", "Kaggle flat folder.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats of each measurement (median reported).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_PIL_IMAGES = flags.DEFINE_integer("pil_images", 2000, "Images for the (slow) PIL loop.")
_JSON = flags.DEFINE_string("json", "", "Also write the results here.")


def _rate(iterable, count_fn) -> float:
    start = time.perf_counter()
    n = sum(count_fn(x) for x in iterable)
    return n / (time.perf_counter() - start)


def _batch_size(batch) -> int:
    return int(tf.shape(batch[0])[0])


def decode_only(paths: np.ndarray, batch_size: int, resize: bool = False) -> float:
    def load(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, dct_method="INTEGER_FAST")
        # Without resize, keep one pixel so that batching costs nothing.
        return data.resize(image) if resize else image[:1, :1]

    ds = (
        tf.data.Dataset.from_tensor_slices(paths.astype(str))
        .map(load, num_parallel_calls=data.PARALLELISM)
        .batch(batch_size)
        .prefetch(2)
    )
    # The same settings as catdog_tf's pipeline (autotune off), which made it faster here.
    ds = ds.with_options(data.pipeline_options())
    return _rate(ds, lambda b: int(tf.shape(b)[0]))


def ours(examples: data.Examples, batch_size: int) -> tuple[float, float]:
    decoded = data.decoded_dataset(examples)  # A fresh, empty in-memory cache.
    first = _rate(data.eval_batches(decoded, batch_size), _batch_size)
    cached = _rate(data.eval_batches(decoded, batch_size), _batch_size)
    return first, cached


def keras_loader(class_dir: str, batch_size: int) -> float:
    ds = keras.utils.image_dataset_from_directory(
        class_dir,
        image_size=data.IMAGE_SIZE,
        batch_size=batch_size,
        shuffle=False,
        interpolation="bilinear",
        verbose=False,
    )
    return _rate(ds.prefetch(tf.data.AUTOTUNE), _batch_size)


def pil_loop(paths: np.ndarray) -> float:
    height, width = data.IMAGE_SIZE

    def load(path):
        with Image.open(path) as im:
            np.array(im.convert("RGB").resize((width, height)), dtype=np.float32)
        return 1

    return _rate(paths, load)


def main(argv):
    del argv
    examples = data.list_folder(_DATA.value)
    paths = examples.items
    for p in paths:  # Warm the page cache so disk reads favour no one.
        with open(p, "rb") as f:
            f.read()
    with tempfile.TemporaryDirectory() as tmp:
        # Keras's loader needs class subfolders: symlink the flat folder's files into them.
        for label, name in ((data.CAT, "cats"), (data.DOG, "dogs")):
            os.makedirs(os.path.join(tmp, name))
            for p in paths[examples.labels == label]:
                os.symlink(os.path.abspath(p), os.path.join(tmp, name, os.path.basename(p)))
        runs: dict[str, list[float]] = {
            k: []
            for k in (
                "decode_only",
                "decode + resize only",
                "catdog_tf decode epoch",
                "catdog_tf cached epoch",
                "keras image_dataset_from_directory",
                "PIL loop (article)",
            )
        }
        for _ in range(_REPEATS.value):
            runs["decode_only"].append(decode_only(paths, _BATCH.value))
            runs["decode + resize only"].append(decode_only(paths, _BATCH.value, resize=True))
            first, cached = ours(examples, _BATCH.value)
            runs["catdog_tf decode epoch"].append(first)
            runs["catdog_tf cached epoch"].append(cached)
            runs["keras image_dataset_from_directory"].append(keras_loader(tmp, _BATCH.value))
            runs["PIL loop (article)"].append(pil_loop(paths[: _PIL_IMAGES.value]))
    result = {k: statistics.median(v) for k, v in runs.items()}
    first = result["catdog_tf decode epoch"]
    ratios = {
        "decode epoch / keras": first / result["keras image_dataset_from_directory"],
        "decode epoch / PIL loop": first / result["PIL loop (article)"],
        "decode epoch / decode_only ceiling": first / result["decode_only"],
        "decode epoch / decode + resize ceiling": first / result["decode + resize only"],
        "cached epoch / decode epoch": result["catdog_tf cached epoch"] / first,
    }
    print(
        f"{len(paths)} images from {_DATA.value}, {data.IMAGE_SIZE[0]}x{data.IMAGE_SIZE[1]}, "
        f"batch {_BATCH.value}, {os.cpu_count()} CPUs, median of {_REPEATS.value}"
    )
    print("| pipeline | images/s |\n|---|---:|")
    for name, value in result.items():
        print(f"| {name} | {value:,.0f} |")
    print("\n| ratio | value |\n|---|---:|")
    for name, value in ratios.items():
        print(f"| {name} | {value:.2f}x |")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"images_per_second": result, "ratios": ratios, "runs": runs}, f, indent=2)


if __name__ == "__main__":
    script.run(main)
