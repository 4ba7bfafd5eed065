"""Bottleneck features: a frozen backbone runs once per split; the head trains on its output.

The features live in ``workdir/features/<split>.npz`` with a ``meta.json`` fingerprint (model,
weights, image size, seed and the exact files of each split). A resumed or repeated run with
the same fingerprint loads them instead of running the backbone again, which is nearly all of
a bottleneck run's cost on a CPU.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from catdog_tf import data, rundir
from catdog_tf.config import Config
from catdog_tf.models import pretrained
from catdog_tf.train.steps import model_outputs
from catdog_tf.utils import atomic_write_json, read_json

Arrays = tuple[np.ndarray, np.ndarray]


def fingerprint(config: Config, splits: dict[str, data.Examples]) -> dict[str, Any]:
    """What the cached features depend on; a different value means extracting again."""
    digest = {}
    for name, examples in splits.items():
        h = hashlib.sha256()
        for item, label in zip(examples.items, examples.labels, strict=True):
            h.update(item if isinstance(item, bytes) else str(item).encode())
            h.update(bytes([int(label)]))
        digest[name] = h.hexdigest()
    return {
        "model": config.model,
        "model_kwargs": config.model_kwargs,
        "weights": config.weights,
        "image_size": list(config.image_size),
        "dct_method": config.dct_method,
        # Random ("none") weights depend on the seed.
        "seed": config.seed,
        "splits": digest,
    }


def cached_features(
    model: keras.Model,
    decoded: dict[str, tf.data.Dataset],
    splits: dict[str, data.Examples],
    config: Config,
    workdir: str,
) -> tuple[dict[str, Arrays], dict[str, Any]]:
    """The backbone features of every non-empty split, extracted once and cached.

    Args:
      model: A :func:`catdog_tf.models.pretrained.pretrained` model.
      decoded: Output of :func:`catdog_tf.data.decoded_dataset` per split.
      splits: The examples of each split (for the fingerprint).
      config: The run's config.
      workdir: The run directory; features go to ``workdir/features``.

    Returns:
      ``({split: (features, labels)}, info)`` where ``info`` says whether the cache was
      reused, the feature size and the extraction time.
    """
    folder = rundir.path(workdir, rundir.FEATURES)
    meta_path = os.path.join(folder, "meta.json")
    names = [name for name, ex in splits.items() if len(ex)]
    key = fingerprint(config, splits)
    paths = {name: os.path.join(folder, f"{name}.npz") for name in names}
    if (
        os.path.exists(meta_path)
        and read_json(meta_path) == key
        and all(map(os.path.exists, paths.values()))
    ):
        out = {}
        for name, path in paths.items():
            with np.load(path) as arrays:
                out[name] = (arrays["features"], arrays["labels"])
        logging.info("bottleneck features reused from %s", folder)
        return out, {"reused": True, "dim": int(out[names[0]][0].shape[1]), "seconds": 0.0}

    os.makedirs(folder, exist_ok=True)
    extractor = pretrained.feature_extractor(model)
    out, start = {}, time.perf_counter()
    for name in names:
        # float32 on disk whatever the compute precision (bfloat16 has no portable .npy form).
        out[name] = model_outputs(extractor, data.eval_batches(decoded[name], config.batch_size))
        tmp = paths[name] + ".tmp.npz"
        np.savez(tmp, features=out[name][0], labels=out[name][1])
        os.replace(tmp, paths[name])
    seconds = time.perf_counter() - start
    atomic_write_json(meta_path, key)  # Last: a killed extraction is never taken as done.
    logging.info("bottleneck features of %s extracted in %.0f s", ", ".join(names), seconds)
    return out, {"reused": False, "dim": int(out[names[0]][0].shape[1]), "seconds": seconds}


def train_batches(
    arrays: Arrays,
    batch_size: int,
    epoch: int,
    seed: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
) -> tf.data.Dataset:
    """One epoch of shuffled feature batches, seeded and sharded like the image pipeline.

    See :func:`catdog_tf.data.train_batches` for ``batch_size`` (per pipeline) and sharding.
    """
    features, labels = arrays
    ds = tf.data.Dataset.from_tensor_slices((features, labels))
    ds = ds.shuffle(len(labels), seed=data.epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    return ds.batch(batch_size, drop_remainder=True).prefetch(data.PREFETCH_BATCHES)


def eval_batches(arrays: Arrays, batch_size: int) -> tf.data.Dataset:
    """Feature batches in order, every example."""
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)
