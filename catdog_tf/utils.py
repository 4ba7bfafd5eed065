"""Small file helpers shared by training, evaluation and comparison."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str, payload: bytes) -> None:
    """Writes ``payload`` to ``path`` via a temporary file and a rename.

    A reader (or a run resumed after a crash) sees the old file or the new one, never half
    of one. Errors such as a full disk or a read-only folder propagate, the old file intact.
    The file gets the permissions of any new file (0666 less the umask), not ``mkstemp``'s
    private 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` (UTF-8) atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def is_number(value: Any, *, integer: bool = False) -> bool:
    """Whether ``value`` is a real ``int`` (or, unless ``integer``, a ``float``).

    ``bool`` is a subclass of ``int``, so ``isinstance(True, int)`` holds; a JSON ``true`` where
    a count or a threshold belongs is a mistake, not the number 1.
    """
    kinds = int if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON's ``null``).

    JSON has no NaN: Python would write a bare ``NaN`` that strict readers reject, and a
    reader that accepts it takes an undefined metric for a number.
    """
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, numbers.Integral)
        and not math.isfinite(float(value))
    ):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str, value: Any) -> None:
    """Writes ``value`` as indented, strict JSON (NaN becomes null), atomically."""
    text = json.dumps(json_safe(value), indent=2, sort_keys=True, default=float, allow_nan=False)
    atomic_write_text(path, text + "\n")


def sha256(path: str) -> str:
    """The sha256 of the file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str) -> Any:
    """Reads a JSON file."""
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Captures file descriptor 2 in the block: what C and C++ code print goes there too.

    Yields a list that holds, after the block, the captured text (one string). Captured to a
    file, never a pipe, so a long output cannot block the writer.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    text: list[str] = []
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text.append(capture.read().decode("utf-8", errors="replace"))
