"""catdog-predict: probability of dog for image files or folders.

Example (Kaggle test1/ folder of <id>.jpg files, writing a submission)::

    catdog-predict --workdir=runs/conv3 --submission=submission.csv path/to/test1
"""

from absl import flags

from catdog_tf.cli import common
from catdog_tf.data.sources import display
from catdog_tf.train import predict_files

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished run directory.", required=True)
_SUBMISSION = flags.DEFINE_string("submission", None, "Write a Kaggle id,label CSV here.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Prediction batch size.", lower_bound=1)


def main(argv: list[str]) -> None:
    """Prints one 'path<TAB>probability' line per image."""
    if len(argv) < 2:
        raise common.ConfigError("give at least one image file or folder")
    for path, prob in predict_files(_WORKDIR.value, argv[1:], _BATCH.value, _SUBMISSION.value):
        print(f"{display(path)}\t{'unreadable' if prob is None else f'{prob:.4f}'}")


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
