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
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF")
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
