"""Small file helpers shared by training, evaluation and comparison."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` via a temporary file and a rename.

    A reader (or a run resumed after a crash) sees the old file or the new one, never half
    of one. Errors such as a full disk or a read-only folder propagate, the old file intact.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, value: Any) -> None:
    """Writes ``value`` as indented JSON, atomically (see :func:`atomic_write_text`)."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=float) + "\n")


def read_json(path: str) -> Any:
    """Reads a JSON file."""
    with open(path) as f:
        return json.load(f)
