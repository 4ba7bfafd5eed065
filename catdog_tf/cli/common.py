"""Flags shared by the commands, and what every command does around its ``main``.

A command module defines its flags at import and imports the library (and so TensorFlow)
only inside ``main``: ``--help``, ``--helpshort`` and ``--version`` answer without TensorFlow.
:func:`run` then keeps the output to the package's own lines (:mod:`catdog_tf.cli.logs`) and
every failure to one line (:func:`error_line`).
"""

from __future__ import annotations

import functools
import logging as std_logging
import os
import re
import sys
from collections.abc import Callable

from absl import app, flags, logging

from catdog_tf import __version__
from catdog_tf.cli import ONEDNN_DECISION
from catdog_tf.cli import logs as logs_lib
from catdog_tf.config import MODELS, PRESETS, Config, field_docs, get_preset, parse_override
from catdog_tf.errors import CatdogError, ConfigError, first_line

__all__ = [
    "FLAGS",
    "ONEDNN_DECISION",
    "ConfigError",
    "config_from_flags",
    "define_config_flags",
    "run",
]

FLAGS = flags.FLAGS
_VERSION = flags.DEFINE_bool("version", False, "Print the package's version and exit.")


def define_config_flags(default_preset: str = "full") -> None:
    """Flags that build a :class:`Config`: a preset plus common and generic overrides."""
    flags.DEFINE_enum("preset", default_preset, list(PRESETS), "Config preset to start from.")
    flags.DEFINE_string("data", None, "Folder, tfds:cats_vs_dogs or synthetic.")
    flags.DEFINE_string("model", None, "Model name (see catdog_tf.models.available_models).")
    flags.DEFINE_string("loss", None, "mse or cross_entropy.")
    flags.DEFINE_integer("epochs", None, "Maximum epochs.")
    flags.DEFINE_integer("batch_size", None, "Batch size.")
    flags.DEFINE_float("learning_rate", None, "Peak learning rate (0: the model's default).")
    flags.DEFINE_string("precision", None, "auto, float32, mixed_bfloat16 or mixed_float16.")
    flags.DEFINE_string("jit_compile", None, "XLA: auto, on or off.")
    flags.DEFINE_integer("seed", None, "Seed of split, shuffling, augmentation and init.")
    flags.DEFINE_multi_string("set", [], "Any config field: --set=field=value (repeatable).")
    flags.DEFINE_enum(
        "progress",
        "auto",
        ["auto", "bar", "lines", "none"],
        "Per-epoch output: a progress bar and a line per epoch (bar), the lines only (lines), "
        "nothing (none); auto: bar on a terminal, lines when piped to a file.",
    )


def define_trained_run_flags() -> None:
    """``--workdir`` (a finished run) or ``--weights`` (a shipped model), for the users of one."""
    flags.DEFINE_string("workdir", None, "A finished run directory (or give --weights).")
    flags.DEFINE_string(
        "weights",
        None,
        "A trained model shipped with catdog_tf, by name (see catdog_tf/weights/README.md), "
        "instead of --workdir.",
    )


def define_float32_flag() -> flags.FlagHolder[bool]:
    """``--float32``: a mixed-precision model computing in float32, as its exports do."""
    return flags.DEFINE_bool(
        "float32",
        False,
        "Compute in float32 even if the model trained in mixed precision, as its exports do "
        "(default: its training precision, the one its metrics were measured in).",
    )


def trained_run_from_flags() -> str:
    """The run directory ``--workdir`` or ``--weights`` names (exactly one must be given)."""
    from catdog_tf import shipped

    if (FLAGS.workdir is None) == (FLAGS.weights is None):
        known = ", ".join(shipped.available()) or "none"
        raise ConfigError(
            f"give --workdir=RUN_DIR (a finished run) or --weights=NAME (shipped: {known}), "
            "exactly one"
        )
    return FLAGS.workdir if FLAGS.weights is None else shipped.path(FLAGS.weights)


def progress_args() -> dict[str, bool | None]:
    """``verbose`` and ``progress_bar`` arguments of the training functions from --progress."""
    value = FLAGS.progress
    return {"verbose": value != "none", "progress_bar": {"bar": True, "lines": False}.get(value)}


def config_help() -> str:
    """Help text: every ``--set`` field with the first sentence of its doc, and the models."""
    lines = ["", "config fields (--set=field=value; the named flags set the same fields):"]
    for field, text in field_docs().items():
        first = re.split(r"(?<=[.)])\s", text, maxsplit=1)[0]
        lines.append(f"  {field}: {first}")
    lines += ["", f"models: {', '.join(MODELS)}", ""]
    return "\n".join(lines)


def config_from_flags(model: str | None = None) -> Config:
    """The config the flags describe (the preset, then named flags, then ``--set``)."""
    config = get_preset(FLAGS.preset, model or FLAGS.model)
    for name in (
        "data",
        "model",
        "loss",
        "epochs",
        "batch_size",
        "learning_rate",
        "precision",
        "jit_compile",
        "seed",
    ):
        value = getattr(FLAGS, name)
        if value is not None and not (name == "model" and model):
            config = config.replace(**{name: value})
    for assignment in FLAGS.set:
        config = parse_override(config, assignment)
    return config.validate()


def _own_info_only(record: std_logging.LogRecord) -> bool:
    """Keeps warnings and errors from anywhere, and INFO lines from this package only."""
    return record.levelno >= std_logging.WARNING or f"{os.sep}catdog_tf{os.sep}" in record.pathname


def error_line(error: BaseException) -> tuple[str, int]:
    """The one line (and exit status) a command prints for ``error``.

    Expected errors (:class:`~catdog_tf.errors.CatdogError`, ``OSError`` such as a missing
    file, a full disk or a read-only workdir, and TensorFlow's own ``OpError`` such as a
    checkpoint write that ran out of space) say what is wrong; anything else is reported as
    an internal error with the way to see its traceback. Files are written atomically, so
    none is left half-written by any of them.
    """
    if isinstance(error, KeyboardInterrupt):
        return "interrupted; run the same command again to resume after the last epoch", 130
    if isinstance(error, MemoryError):
        return "out of memory: try a smaller --batch_size or image size", 2
    message = first_line(error, limit=None)
    if isinstance(error, (CatdogError, OSError)):
        return message, 2
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, tf.errors.OpError):
        return f"TensorFlow: {message}", 2
    return (
        f"internal error ({type(error).__name__}: {message}); please report it with the "
        "traceback that --verbosity=1 prints",
        3,
    )


def prog_name(main: Callable[[list[str]], None]) -> str:
    """The command's name (``catdog-predict``), for its own lines.

    The console script's name; under ``python -m catdog_tf.cli.MODULE``, the name its
    module's docstring starts with; for a script run by its path (a benchmark), the script's
    name without ``.py``.
    """
    name = os.path.basename(sys.argv[0])
    if name.startswith("catdog-"):
        return name
    module = sys.modules[main.__module__]
    if getattr(module, "__spec__", None) is None:  # A script, not a module run with -m.
        return name.removesuffix(".py")
    doc = module.__doc__ or ""
    return doc.split(":", 1)[0].strip() or name


def version_asked(args: list[str]) -> bool:
    """Whether ``args`` hold ``--version`` (or ``--version=true``) before any ``--``."""
    args = args[: args.index("--")] if "--" in args else args
    return any(a in ("--version", "-version", "--version=true", "--version=1") for a in args)


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``: quiet, ``--version``, and every error as one line on stderr.

    Unless the user asks for TensorFlow's log (:func:`catdog_tf.cli.logs.native_logs_wanted`),
    the package's log lines read ``PROG: message`` and TensorFlow is imported without its
    start-up lines, before ``main``.
    """
    if version_asked(sys.argv[1:]):
        # Before absl parses the flags: a command's required flags would fail the parse.
        print(f"{prog_name(main)} {__version__}")
        sys.exit(0)
    _show_help_of(main)

    def guarded(argv: list[str]) -> None:
        prog = prog_name(main)
        quiet = not logs_lib.native_logs_wanted(logging.get_verbosity())
        if logging.get_verbosity() < logging.DEBUG:
            # TensorFlow's own INFO lines ("Sharding callback duration", through absl or its
            # "tensorflow" logger) are noise to a user; this package's INFO lines stay.
            std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
            logging.get_absl_handler().addFilter(_own_info_only)
        if quiet:
            logging.get_absl_handler().setFormatter(logs_lib.PackageFormatter(prog))
        try:
            logs_lib.tensorflow_imported(quiet)
            main(argv)
        except (Exception, KeyboardInterrupt) as e:
            logging.debug("error", exc_info=True)
            line, status = error_line(e)
            print(f"{prog}: error: {line}", file=sys.stderr)
            sys.exit(status)

    app.run(guarded, flags_parser=functools.partial(parse_flags, prog_name(main)))


def parse_flags(prog: str, argv: list[str]) -> list[str]:
    """Parses the flags as absl does; a flag it cannot parse is one line, exit status 2.

    absl's own parser prints two lines (``FATAL Flags parsing error: ...`` and a pointer to
    ``--helpshort``) where every other error of a command is one ``PROG: error: ...`` line.
    """
    try:
        return FLAGS(argv)
    except flags.Error as e:
        line = f"{first_line(e, limit=None)} (--helpshort lists the flags)"
        print(f"{prog}: error: {line}", file=sys.stderr)
        sys.exit(2)


def _show_help_of(main: Callable[[list[str]], None]) -> None:
    """Makes --help show ``main``'s module docstring and flags, as for a ``__main__`` module.

    absl prints the ``__main__`` module's docstring and key flags; a console script's
    ``__main__`` is a generated wrapper with neither.
    """
    module = sys.modules[main.__module__]
    doc = module.__doc__ or ""
    if "set" in FLAGS:  # The command takes a config (define_config_flags).
        doc += config_help()
    sys.modules["__main__"].__doc__ = doc
    for name in (module.__name__, __name__):
        for flag in FLAGS.get_flags_for_module(name):
            FLAGS.register_key_flag_for_module(sys.argv[0], flag)
