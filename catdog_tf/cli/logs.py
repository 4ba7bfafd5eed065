"""What a command prints besides its results: the package's own lines, and nothing of TensorFlow's.

TensorFlow writes C++ log lines to stderr as it starts (its banner, "Could not find cuda
drivers", cpu_feature_guard's "rebuild TensorFlow" advice) and while it runs ("failed call to
cuInit" on a machine without a GPU, oneDNN's data-type notes). A user reads them as errors.
The start-up lines are written before TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` (absl's C++
logging prints everything until it is initialized), so a quiet command imports TensorFlow with
stderr captured (:func:`tensorflow_imported`) and passes on only what is not such a line;
``TF_CPP_MIN_LOG_LEVEL=3`` silences the rest.

A user who asks for them gets them all: ``--verbosity=1`` (absl's flag), or
``TF_CPP_MIN_LOG_LEVEL`` set below 3 before the command (:func:`native_logs_wanted`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator

from catdog_tf.utils import captured_stderr

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# A line of absl's or TensorFlow's C++ logging: severity and date, time, thread, file:line].
NATIVE_LINE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\] )"
)
# The second line of cpu_feature_guard's two-line record (its only multi-line record at start-up).
NATIVE_CONTINUATION = re.compile(r"^To enable the following instructions: ")


def native_logs_wanted(verbosity: int, environ: dict[str, str] | None = None) -> bool:
    """Whether the user asked for TensorFlow's own log lines.

    Args:
      verbosity: absl's ``--verbosity`` (0 by default; 1 or more asks for debug output).
      environ: The environment (default ``os.environ``); ``TF_CPP_MIN_LOG_LEVEL`` set to
        0, 1 or 2 asks for TensorFlow's lines of that level and above.
    """
    level = (os.environ if environ is None else environ).get(LOG_LEVEL_ENV, "").strip()
    return verbosity >= 1 or level in ("0", "1", "2")


def strip_native_lines(text: str) -> str:
    """``text`` without TensorFlow's C++ log records (and their continuation lines)."""
    kept, after_native = [], False
    for line in text.splitlines(keepends=True):
        if NATIVE_LINE.match(line) or (after_native and NATIVE_CONTINUATION.match(line)):
            after_native = True
            continue
        after_native = False
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def stderr_filtered() -> Iterator[None]:
    """Captures file descriptor 2 in the block, then writes what is not a C++ log line.

    Captured to a file, not dropped: anything else written there (a Python warning, a
    library's own message) still reaches the user, after the block.
    """
    captured: list[str] = []
    try:
        with captured_stderr() as captured:
            yield
    finally:
        rest = strip_native_lines("".join(captured))
        if rest:
            sys.stderr.write(rest)
            sys.stderr.flush()


@contextlib.contextmanager
def pyplot_deferred() -> Iterator[None]:
    """Keeps ``matplotlib.pyplot`` from being imported in the block.

    Importing TensorFlow imports Keras, which imports pyplot (most of a second) only for
    ``keras.visualization.plot_image_gallery``, a helper no command calls; without pyplot
    Keras leaves that helper out. Modules that plot (:mod:`catdog_tf.visualize`) import
    pyplot themselves later, as usual.
    """
    blocked = "matplotlib.pyplot" not in sys.modules
    if blocked:
        sys.modules["matplotlib.pyplot"] = None  # An import of it raises ImportError.
    try:
        yield
    finally:
        if blocked and sys.modules.get("matplotlib.pyplot", 0) is None:
            del sys.modules["matplotlib.pyplot"]


def tensorflow_imported(quiet: bool) -> None:
    """Imports TensorFlow (and with it Keras) for a command, without pyplot.

    ``quiet`` hides its start-up log, and sets ``TF_CPP_MIN_LOG_LEVEL=3`` (before the import,
    when TensorFlow reads it) so that its later C++ lines stay hidden too; worker processes
    inherit it.
    """
    if "tensorflow" in sys.modules:
        return
    if quiet:
        os.environ[LOG_LEVEL_ENV] = "3"
    with pyplot_deferred(), stderr_filtered() if quiet else contextlib.nullcontext():
        import tensorflow  # noqa: F401


class PackageFormatter(logging.Formatter):
    """Formats a log record as a command's own line: ``PROG: message``.

    Warnings read ``PROG: warning: message``; errors ``PROG: error: message``, as the one
    line a failed command prints.
    """

    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        """The record's message behind the command's name (and its severity, if not INFO).

        Each further line of a message of several lines is indented behind the name too.
        """
        first, *rest = record.getMessage().splitlines() or [""]
        if record.levelno >= logging.ERROR:
            first = f"error: {first}"
        elif record.levelno >= logging.WARNING:
            first = f"warning: {first}"
        return "\n".join([f"{self.prog}: {first}", *(f"{self.prog}:   {line}" for line in rest)])
