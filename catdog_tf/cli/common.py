"""Flags shared by the commands, and the error handling that keeps failures to one line."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags, logging

from catdog_tf.cli import ONEDNN_DECISION
from catdog_tf.config import PRESETS, Config, ConfigError, get_preset, parse_override
from catdog_tf.data import DataSourceError

__all__ = [
    "FLAGS",
    "ONEDNN_DECISION",
    "ConfigError",
    "config_from_flags",
    "define_config_flags",
    "run",
]

FLAGS = flags.FLAGS


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


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``, turning expected errors into one line on stderr and exit 2."""

    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        # OSError covers a missing file, a full disk and a read-only workdir: files are
        # written atomically, so none is left half-written.
        except (ConfigError, DataSourceError, OSError) as e:
            logging.debug("error", exc_info=True)
            prog = sys.argv[0].rsplit("/", 1)[-1]
            print(f"{prog}: error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)
