"""Finds files that will not decode, before training, so no epoch dies on one bad file.

A cheap Python look at each file's header (:func:`catdog_tf.data.header.read_header`) sorts
out empty, unreadable, non-image and oversized files with a precise reason, and records each
image's orientation for the pipeline; the rest are decoded once by TensorFlow itself (the
same decoder the pipeline uses; a few eagerly, many in parallel through tf.data), and any
that fail, typically truncated or corrupt JPEGs, are reported as such.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from catdog_tf.data import pipeline
from catdog_tf.data.header import read_header
from catdog_tf.data.sources import Examples, item_tensor_values
from catdog_tf.utils import captured_stderr


@dataclasses.dataclass
class ScanReport:
    """What :func:`scan` kept and skipped.

    Attributes:
      kept: The examples that decode.
      skipped: ``(path, reason)`` for each dropped file.
    """

    kept: Examples
    skipped: list[tuple[str, str]]

    def summary(self) -> str:
        """One line: how many files were kept and how many were skipped for which reason."""
        reasons = collections.Counter(reason for _, reason in self.skipped)
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none"
        return f"{len(self.kept)} images usable, {len(self.skipped)} skipped ({detail})"


def _decodes(items: np.ndarray, encoded: bool, num_parallel_calls: int) -> np.ndarray:
    """Boolean mask: which items TensorFlow's decoder accepts.

    A few items are decoded eagerly, one by one; more through tf.data in parallel.
    """
    if len(items) <= pipeline.EAGER_LIMIT:
        return np.array([_decodes_one(v, encoded) for v in item_tensor_values(items, encoded)])
    index = tf.data.Dataset.range(len(items))
    source = tf.data.Dataset.from_tensor_slices(item_tensor_values(items, encoded))

    @tf.autograph.experimental.do_not_convert  # TensorFlow's own control flow only.
    def check(i, item):
        contents = item if encoded else pipeline.read(item)
        # A tiny 8x8 DCT-scaled decode still entropy-decodes the whole file (so it finds
        # truncation) but skips most of the work of a full decode.
        image = pipeline.decode(contents, ratio=8)
        return i, tf.shape(image)[0]

    ok = (
        tf.data.Dataset.zip(index, source)
        .map(check, num_parallel_calls=num_parallel_calls)
        .ignore_errors()
        .map(lambda i, _: i)
        .batch(4096)
        .with_options(pipeline.pipeline_options())
    )
    mask = np.zeros(len(items), bool)
    for batch in ok:
        mask[batch.numpy()] = True
    return mask


def _decodes_one(item: bytes, encoded: bool) -> bool:
    """Whether TensorFlow's decoder accepts one item (the check of :func:`_decodes`)."""
    try:
        contents = tf.constant(item) if encoded else pipeline.read(tf.constant(item))
        pipeline.decode(contents, ratio=8)
    except tf.errors.OpError:
        return False
    return True


# What libjpeg prints, and TensorFlow's decoder otherwise ignores, when a JPEG's data ends
# before its image does (an end-of-image marker follows too early): the rest decodes grey.
_CUT_SHORT = "premature end of data segment"


def _pass_on(text: str) -> None:
    """Writes back what the decode printed, but libjpeg's anonymous JPEG complaints."""
    kept = [line for line in text.splitlines(keepends=True) if "JPEG" not in line]
    if kept:
        os.write(2, "".join(kept).encode())


def _cut_short(item: str | bytes, encoded: bool) -> bool:
    """Whether decoding this one item makes libjpeg say its data ended early."""
    with captured_stderr() as said:
        _decodes_one(bytes(item) if encoded else os.fsencode(item), encoded)
    return _CUT_SHORT in said[0]


def scan(examples: Examples, num_parallel_calls: int = pipeline.PARALLELISM) -> ScanReport:
    """Checks every example and drops the ones that cannot be decoded.

    Args:
      examples: Examples to check (paths or encoded bytes).
      num_parallel_calls: Parallelism of the decode check.

    Returns:
      A :class:`ScanReport`; the skipped paths and reasons are also logged.
    """
    reasons: dict[int, str] = {}
    orientations = np.ones(len(examples), np.int32)
    for i, item in enumerate(examples.items):
        header = read_header(item, examples.encoded)
        orientations[i] = header.orientation
        if header.problem:
            reasons[i] = header.problem
    examples = dataclasses.replace(examples, orientations=orientations)
    candidates = np.array([i for i in range(len(examples)) if i not in reasons], dtype=np.int64)
    if len(candidates):
        with captured_stderr() as said:
            mask = _decodes(examples.items[candidates], examples.encoded, num_parallel_calls)
        for i in candidates[~mask]:
            reasons[int(i)] = "corrupt or truncated image data"
        _pass_on(said[0])
        if _CUT_SHORT in said[0]:
            for i in candidates[mask]:
                if _cut_short(examples.items[i], examples.encoded):
                    reasons[int(i)] = "truncated JPEG (its data ends early, the rest would be grey)"
    keep = np.array([i for i in range(len(examples)) if i not in reasons], dtype=np.int64)
    names = (
        examples.items
        if not examples.encoded
        else [f"<encoded #{i}>" for i in range(len(examples))]
    )
    report = ScanReport(
        kept=examples.subset(keep), skipped=[(str(names[i]), r) for i, r in sorted(reasons.items())]
    )
    for path, reason in report.skipped:
        logging.warning("skipping %s: %s", path, reason)
    logging.info("scan of %s: %s", examples.origin, report.summary())
    return report
