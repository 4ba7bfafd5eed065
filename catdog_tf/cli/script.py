"""Start-up of a script built on the package (the benchmarks), as quiet as a catdog-* command.

Import this module before anything that imports TensorFlow::

    from catdog_tf.cli import script  # isort: skip

    import tensorflow as tf  # noqa: E402
    ...

    if __name__ == "__main__":
        script.run(main)

The import decides oneDNN for the CPU as the commands do (:mod:`catdog_tf.cli`), then imports
TensorFlow without its C++ start-up lines unless the command line (``--verbosity=1``, ``-v 1``)
or ``TF_CPP_MIN_LOG_LEVEL`` asks for them (:func:`catdog_tf.cli.logs.native_logs_wanted`).
:func:`run` runs ``main`` as a command does: the package's own INFO lines only, ``--version``,
and every error as one line (:func:`catdog_tf.cli.common.run`).
"""

from __future__ import annotations

import sys

from catdog_tf.cli import ONEDNN_DECISION, common, logs

__all__ = ["ONEDNN_DECISION", "run", "verbosity_in"]

run = common.run


def verbosity_in(args: list[str]) -> int:
    """The ``--verbosity`` (alias ``-v``) given in ``args``; 0 if absent or not a number.

    Read before absl parses the flags, because TensorFlow is imported before ``main`` runs.
    The last occurrence wins, as in absl.
    """
    level = "0"
    args = args[: args.index("--")] if "--" in args else args
    for i, arg in enumerate(args):
        name, equals, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name not in ("verbosity", "v"):
            continue
        level = value if equals else (args[i + 1] if i + 1 < len(args) else "")
    try:
        return int(level)
    except ValueError:
        return 0


logs.tensorflow_imported(quiet=not logs.native_logs_wanted(verbosity_in(sys.argv[1:])))
