"""Which images a run trained or chose on, so that no evaluation reports them as a test set.

A finished run records its training and validation images (:func:`record`); evaluating it on
any other data leaves out the images found there (:func:`seen_mask`). An image counts as
seen when its bytes are those of a recorded image (a copy anywhere, under any name), or when
its name is a Kaggle Dogs-vs-Cats id (``cat.123.jpg``) the run trained on: Kaggle's ids name
the same photograph in every copy of the data set, resized or not.
"""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np

from catdog_tf.data.sources import Examples

# Kaggle's file names: the class and the photograph's id, whatever the folder or extension.
_KAGGLE_NAME = re.compile(r"^(cat|dog)\.(\d+)\.[A-Za-z]+$")


def kaggle_id(item: str) -> str:
    """``"cat.123"`` for a Kaggle-named file, else ``""``."""
    match = _KAGGLE_NAME.match(os.path.basename(item))
    return f"{match[1]}.{int(match[2])}" if match else ""


def content_hash(item: str | bytes, encoded: bool) -> int:
    """A 64-bit hash of an image's bytes (read from the file unless ``encoded``)."""
    if not encoded:
        with open(item, "rb") as f:
            item = f.read()
    return int.from_bytes(hashlib.blake2b(bytes(item), digest_size=8).digest(), "little")


def _hashes(examples: Examples) -> np.ndarray:
    return np.array(
        [content_hash(item, examples.encoded) for item in examples.items], dtype=np.uint64
    )


def _kaggle_ids(examples: Examples) -> np.ndarray:
    if examples.encoded:
        return np.array([], dtype=str)
    return np.array([i for i in map(kaggle_id, examples.items) if i], dtype=str)


def record(*splits: Examples) -> dict[str, np.ndarray]:
    """What identifies the images of ``splits``: sorted content hashes and Kaggle ids."""
    hashes = [_hashes(s) for s in splits if not s.synthetic]
    ids = [_kaggle_ids(s) for s in splits if not s.synthetic]
    return {
        "hashes": np.unique(np.concatenate(hashes)) if hashes else np.array([], np.uint64),
        "kaggle_ids": np.unique(np.concatenate(ids)) if ids else np.array([], str),
    }


def seen_mask(examples: Examples, seen: dict[str, np.ndarray]) -> np.ndarray:
    """Which of ``examples`` are among the ``seen`` images (a :func:`record`)."""
    if examples.synthetic or not len(examples):
        return np.zeros(len(examples), bool)
    mask = np.isin(_hashes(examples), seen["hashes"])
    if not examples.encoded and len(seen["kaggle_ids"]):
        ids = np.array([kaggle_id(item) for item in examples.items], dtype=str)
        mask |= np.isin(ids, seen["kaggle_ids"]) & (ids != "")
    return mask
