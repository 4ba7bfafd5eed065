"""catdog-eval: evaluate a trained run on a whole folder, as a test split.

The threshold is the one the run chose on its validation split. ``--add_tta`` instead gives
a run trained without flip TTA its TTA threshold and metrics, on its own validation and test
splits (``--data`` only if its images have moved). Examples::

    catdog-eval --workdir=runs/conv3 --data=path/to/other/folder
    catdog-eval --weights=conv5_bn-fast --tta --data=path/to/other/folder
    catdog-eval --workdir=runs/conv3 --add_tta

``--float32`` runs a model trained in mixed precision in float32, as its exports do.
"""

import json

from absl import flags

from catdog_tf.cli import common
from catdog_tf.errors import ConfigError

common.define_trained_run_flags()
_DATA = flags.DEFINE_string(
    "data", None, "Folder, tfds:cats_vs_dogs or synthetic (with --add_tta: the run's images)."
)
_BATCH = flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.", lower_bound=1)
_OUTPUT = flags.DEFINE_string("output", None, "Metrics JSON (default: in the workdir).")
_TTA = flags.DEFINE_bool(
    "tta", False, "Flip test-time augmentation (the run must have TTA metrics: see --add_tta)."
)
_ADD_TTA = flags.DEFINE_bool(
    "add_tta",
    False,
    "Choose the run's flip-TTA threshold on its own validation split and add the TTA "
    "metrics to its result.json (for runs trained without tta).",
)
_FLOAT32 = common.define_float32_flag()


def main(argv: list[str]) -> None:
    """Evaluates (or adds TTA metrics) and prints the metrics JSON."""
    from catdog_tf.evaluate import add_tta, evaluate_workdir

    del argv
    run_dir = common.trained_run_from_flags()
    if _ADD_TTA.value:
        if _TTA.value or _OUTPUT.value or _FLOAT32.value:
            raise ConfigError(
                "--add_tta writes into the run's result.json, in its training precision: "
                "drop --tta/--output/--float32"
            )
        report = add_tta(run_dir, _DATA.value, _BATCH.value)
    elif _DATA.value is None:
        raise ConfigError("give --data=FOLDER to evaluate on (or --add_tta)")
    else:
        report = evaluate_workdir(
            run_dir, _DATA.value, _BATCH.value, _OUTPUT.value, _TTA.value, _FLOAT32.value
        )
    print(json.dumps(report, indent=2))


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
