"""Figures written to files: one backend choice and one atomic save for every plot."""

from __future__ import annotations

import io
from types import ModuleType
from typing import Any

from catdog_tf.utils import atomic_write_bytes


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend (no display is needed or opened).

    Imported on first use: plotting is the last thing a run does, and matplotlib's import
    costs most of a second.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str, dpi: int = 80) -> str:
    """Lays ``fig`` out, writes it to ``path`` as a PNG atomically, closes it; returns path."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
