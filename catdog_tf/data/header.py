"""What an image file's first bytes say, read without TensorFlow and without decoding it.

A cheap Python look at each file's header (its magic number, and PIL's reading of its size and
EXIF orientation) sorts out empty, unreadable, non-image and oversized files with a precise
reason, and gives the orientation the pipeline turns each image upright by.
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings

import numpy as np
from PIL import Image

from catdog_tf.data.sources import Examples

# Magic numbers of the formats tf.io.decode_image reads.
_JPEG = b"\xff\xd8\xff"
_MAGIC = (_JPEG, b"\x89PNG", b"GIF8", b"BM", b"RIFF")
# Images PIL reads but TensorFlow's decoder does not: named, never called corrupt.
_TIFF = (b"II*\x00", b"MM\x00*")
CONVERT = "a format TensorFlow does not decode correctly; convert it to PNG or JPEG"
# BMPs whose pixels are palette indices: TensorFlow refuses 1-bit ones and reads the indices of
# 4- and 8-bit colour ones as grey levels (wrong pixels, no error).
_BMP_MODES = {"1": "1-bit", "P": "palette"}
# A JPEG ends with its end-of-image marker (some writers pad a few bytes after it); one cut
# short decodes with grey where its data ran out, so it is refused.
_JPEG_END, _JPEG_TAIL = b"\xff\xd9", 1024
_EXIF_ORIENTATION = 0x0112


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
        head, tail = _ends(item, encoded)
    except OSError as e:
        return Header(f"unreadable ({e.strerror or type(e).__name__})")
    if not head:
        return Header("empty file")
    if head.startswith(_TIFF):
        return Header(f"TIFF image, {CONVERT}")
    if not head.startswith(_MAGIC) or (head.startswith(b"RIFF") and head[8:12] != b"WEBP"):
        return Header("not an image")
    if head.startswith(_JPEG) and _JPEG_END not in tail:
        return Header("truncated JPEG (its data ends before the end-of-image marker)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(item)) if encoded else item) as image:
                width, height = image.size
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
                if image.format == "BMP" and image.mode in _BMP_MODES:
                    return Header(f"{_BMP_MODES[image.mode]} BMP image, {CONVERT}")
    except Image.DecompressionBombError:
        return Header(f"too large (over {Image.MAX_IMAGE_PIXELS:,} pixels)")
    except Exception:  # PIL raises many types on odd files; TensorFlow's decode decides.
        return Header(None)
    if width * height > Image.MAX_IMAGE_PIXELS:
        return Header(f"too large ({width}x{height} pixels; at most {Image.MAX_IMAGE_PIXELS:,})")
    return Header(None, orientation if orientation in range(1, 9) else 1)


def _ends(item: str | bytes, encoded: bool) -> tuple[bytes, bytes]:
    """The first 12 and the last :data:`_JPEG_TAIL` bytes of a file (or encoded bytes)."""
    if encoded:
        return bytes(item[:12]), bytes(item[-_JPEG_TAIL:])
    with open(item, "rb") as f:
        head = f.read(12)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _JPEG_TAIL))
        return head, f.read()


def read_orientations(examples: Examples) -> np.ndarray:
    """int32 EXIF orientation of every example (1 where there is none)."""
    return np.array(
        [read_header(item, examples.encoded).orientation for item in examples.items], np.int32
    )
