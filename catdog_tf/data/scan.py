"""Finds files that will not decode, before training, so no epoch dies on one bad file.

A cheap Python look at each file's header (its first bytes, and PIL's reading of its size
and EXIF orientation) sorts out empty, unreadable, non-image and oversized files with a
precise reason, and records each image's orientation for the pipeline; the rest are decoded
once by TensorFlow itself (the same decoder the pipeline uses, in parallel through tf.data)
and any that fail, typically truncated or corrupt JPEGs, are reported as such.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import warnings

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from catdog_tf.data import pipeline
from catdog_tf.data.sources import Examples, item_tensor_values

# Magic numbers of the formats tf.io.decode_image reads.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF")
_EXIF_ORIENTATION = 0x0112


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


@dataclasses.dataclass(frozen=True)
class Header:
    """What an image's first bytes say, read without decoding it.

    Attributes:
      problem: Why the file cannot be used (empty, unreadable, not an image, too large), or
        None if it may decode.
      orientation: EXIF orientation, 1-8 (1 when absent or unreadable).
    """

    problem: str | None
    orientation: int = 1


def read_header(item: str | bytes, encoded: bool = False) -> Header:
    """Reads the size, format and EXIF orientation of an image file (or encoded bytes).

    PIL reads only the header. An image of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels
    (PIL's own decompression-bomb limit) is refused: decoding one can take gigabytes. A file
    PIL cannot parse is left for TensorFlow's decoder to judge.
    """
    try:
        if encoded:
            head = bytes(item[:12])
            if not head:
                return Header("empty file")
        else:
            if os.path.getsize(item) == 0:
                return Header("empty file")
            with open(item, "rb") as f:
                head = f.read(12)
    except OSError as e:
        return Header(f"unreadable ({e.strerror or type(e).__name__})")
    if not head.startswith(_MAGIC) or (head.startswith(b"RIFF") and head[8:12] != b"WEBP"):
        return Header("not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(item)) if encoded else item) as image:
                width, height = image.size
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Image.DecompressionBombError:
        return Header(f"too large (over {Image.MAX_IMAGE_PIXELS:,} pixels)")
    except Exception:  # PIL raises many types on odd files; TensorFlow's decode decides.
        return Header(None)
    if width * height > Image.MAX_IMAGE_PIXELS:
        return Header(f"too large ({width}x{height} pixels; at most {Image.MAX_IMAGE_PIXELS:,})")
    return Header(None, orientation if orientation in range(1, 9) else 1)


def read_orientations(examples: Examples) -> np.ndarray:
    """int32 EXIF orientation of every example (1 where there is none)."""
    return np.array(
        [read_header(item, examples.encoded).orientation for item in examples.items], np.int32
    )


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
        mask = _decodes(examples.items[candidates], examples.encoded, num_parallel_calls)
        for i in candidates[~mask]:
            reasons[int(i)] = "corrupt or truncated image data"
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
