"""catdog-eval: evaluate a trained run on a whole folder, as a test split.

The threshold is the one the run chose on its validation split. Examples::

    catdog-eval --workdir=runs/conv3 --data=path/to/other/folder
    catdog-eval --weights=conv5_bn-fast --tta --data=path/to/other/folder
"""

import json

from absl import flags

from catdog_tf.cli import common
from catdog_tf.train import evaluate_workdir

common.define_trained_run_flags()
_DATA = flags.DEFINE_string("data", None, "Folder, tfds:cats_vs_dogs or synthetic.", required=True)
_BATCH = flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.", lower_bound=1)
_OUTPUT = flags.DEFINE_string("output", None, "Metrics JSON (default: in the workdir).")
_TTA = flags.DEFINE_bool(
    "tta", False, "Flip test-time augmentation (the run must have been trained with tta=true)."
)


def main(argv: list[str]) -> None:
    """Evaluates and prints the metrics JSON."""
    del argv
    report = evaluate_workdir(
        common.trained_run_from_flags(), _DATA.value, _BATCH.value, _OUTPUT.value, tta=_TTA.value
    )
    print(json.dumps(report, indent=2))


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
