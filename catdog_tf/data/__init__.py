"""Cats-vs-Dogs data: sources, splits, bad-file scan and the tf.data pipeline.

Typical use::

    from catdog_tf import data
    splits, skipped, _ = data.prepare_splits("dogs-vs-cats/train",
                                             sizes=(4096, 1024, 2048), seed=0)
    decoded = data.decoded_dataset(splits["train"])
    for images, labels in data.train_batches(decoded, len(splits["train"]), 32, epoch=0):
        x = data.normalize(images)  # uint8 batches; the train step scales them to [0, 1].
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import NamedTuple

from absl import logging

from catdog_tf.data.header import Header, read_header, read_orientations
from catdog_tf.data.pipeline import (
    AUGMENTATIONS,
    DCT_METHOD,
    EAGER_LIMIT,
    IMAGE_SIZE,
    MIXES,
    PARALLELISM,
    PREFETCH_BATCHES,
    AugmentConfig,
    FlipShiftConfig,
    MixConfig,
    augment,
    beta_shares,
    cutmix,
    cutout,
    decode,
    decoded_dataset,
    decoded_images,
    downscale,
    epoch_seed,
    eval_batches,
    first_images,
    flip_shift,
    load_image,
    mixup,
    normalize,
    orient,
    pipeline_options,
    read,
    rectangles,
    resize,
    shrunk_dataset,
    train_batches,
)
from catdog_tf.data.scan import ScanReport, scan
from catdog_tf.data.sources import (
    CAT,
    DOG,
    DataSourceError,
    Examples,
    describe,
    list_class_folders,
    list_folder,
    list_kaggle_folder,
    load,
    load_tfds,
    synthetic,
)
from catdog_tf.data.splits import SPLITS, make_splits, split

__all__ = [
    "AUGMENTATIONS",
    "EAGER_LIMIT",
    "CAT",
    "DOG",
    "DCT_METHOD",
    "IMAGE_SIZE",
    "MIXES",
    "SPLITS",
    "AugmentConfig",
    "DataSourceError",
    "FlipShiftConfig",
    "MixConfig",
    "Examples",
    "ScanReport",
    "augment",
    "beta_shares",
    "cutmix",
    "cutout",
    "decode",
    "decoded_dataset",
    "decoded_images",
    "describe",
    "downscale",
    "epoch_seed",
    "eval_batches",
    "first_images",
    "flip_shift",
    "drop_unusable",
    "fingerprint",
    "source_fingerprint",
    "list_class_folders",
    "list_folder",
    "list_kaggle_folder",
    "load",
    "load_image",
    "load_tfds",
    "load_usable",
    "make_splits",
    "mixup",
    "normalize",
    "orient",
    "shrunk_dataset",
    "read_header",
    "read_orientations",
    "Header",
    "PARALLELISM",
    "PREFETCH_BATCHES",
    "pipeline_options",
    "PreparedSplits",
    "prepare_splits",
    "read",
    "rectangles",
    "resize",
    "scan",
    "split",
    "synthetic",
    "train_batches",
]


def fingerprint(loaded: Mapping[str, Examples]) -> str:
    """One hash of every part of a loaded spec (:meth:`Examples.fingerprint`), by name.

    Taken on what :func:`load` listed, before the scan, so it costs a stat per file, not a
    decode: a resumed run, and ``catdog-compare``'s skip of finished runs, check it to notice
    a data folder whose files were added, removed or replaced.
    """
    return hashlib.blake2b(
        "|".join(f"{name}:{ex.fingerprint()}" for name, ex in sorted(loaded.items())).encode(),
        digest_size=12,
    ).hexdigest()


def source_fingerprint(spec: str, seed: int = 0, synthetic_size: int = 512) -> str:
    """:func:`fingerprint` of what a ``--data`` spec lists now."""
    return fingerprint(load(spec, seed=seed, synthetic_size=synthetic_size))


def drop_unusable(
    loaded: dict[str, Examples], spec: str, skip_bad_files: bool = True
) -> tuple[dict[str, Examples], list[tuple[str, str]]]:
    """Drops the files of a loaded spec that do not decode (:func:`scan`), part by part.

    Args:
      loaded: Output of :func:`load`.
      spec: The ``--data`` spec it came from (for messages).
      skip_bad_files: Scan; when False, ``loaded`` is returned as it is.

    Returns:
      (loaded, skipped): the usable examples per part, and the ``(path, reason)`` of every
      skipped file.

    Raises:
      DataSourceError: A part has no image, or one class only, left.
    """
    loaded = dict(loaded)
    skipped: list[tuple[str, str]] = []
    if skip_bad_files:
        for name, examples in loaded.items():
            report = scan(examples)
            loaded[name] = report.kept
            skipped.extend(report.skipped)
            if report.skipped:
                logging.warning("%s: %s", name, report.summary())
            counts = report.kept.counts()
            if len(report.kept) == 0:
                raise DataSourceError(f"{spec} ({name}): no image decodes: {report.summary()}")
            if min(counts.values()) == 0:
                raise DataSourceError(
                    f"{spec} ({name}): only one class is left after skipping files that do "
                    f"not decode ({counts['cat']} cats, {counts['dog']} dogs): "
                    f"{report.summary()}"
                )
    return loaded, skipped


def load_usable(
    spec: str, seed: int = 0, synthetic_size: int = 512, skip_bad_files: bool = True
) -> tuple[dict[str, Examples], list[tuple[str, str]]]:
    """Loads a ``--data`` spec (see :func:`load`) and drops the files that do not decode.

    Returns:
      (loaded, skipped): the usable examples per split name (``all`` or predefined splits),
      and the ``(path, reason)`` of every skipped file.
    """
    loaded = load(spec, seed=seed, synthetic_size=synthetic_size)
    return drop_unusable(loaded, spec, skip_bad_files)


class PreparedSplits(NamedTuple):
    """What :func:`prepare_splits` gives.

    Attributes:
      splits: ``{"train", "validation", "test"}`` examples.
      skipped: ``(path, reason)`` of every file that does not decode.
      fingerprint: :func:`fingerprint` of the listing, taken before any file was dropped.
    """

    splits: dict[str, Examples]
    skipped: list[tuple[str, str]]
    fingerprint: str


def prepare_splits(
    spec: str,
    sizes: tuple[float, float, float],
    seed: int = 0,
    synthetic_size: int = 512,
    skip_bad_files: bool = True,
) -> PreparedSplits:
    """Loads a ``--data`` spec, drops undecodable files, and splits it; lists the spec once.

    Bad files are removed before splitting so that split sizes count usable images.

    Args:
      spec: Folder path, ``tfds:cats_vs_dogs`` or ``synthetic``.
      sizes: (train, validation, test) counts or fractions; ignored for predefined splits.
      seed: Split seed.
      synthetic_size: Number of images of the synthetic source.
      skip_bad_files: Run :func:`scan` first.

    Raises:
      DataSourceError: A non-empty split holds one class only: its accuracy and correlation
        would mean nothing.
    """
    loaded = load(spec, seed=seed, synthetic_size=synthetic_size)
    listed = fingerprint(loaded)
    loaded, skipped = drop_unusable(loaded, spec, skip_bad_files)
    splits = make_splits(loaded, sizes, seed)
    for name, examples in splits.items():
        counts = examples.counts()
        if len(examples) and min(counts.values()) == 0:
            raise DataSourceError(
                f"the {name} split has only one class ({counts['cat']} cats, {counts['dog']} "
                "dogs) after unreadable files were skipped; its accuracy and correlation "
                "would mean nothing"
            )
    return PreparedSplits(splits, skipped, listed)
