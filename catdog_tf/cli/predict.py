"""catdog-predict: probability of dog for image files or folders.

Example (Kaggle test1/ folder of <id>.jpg files, writing a submission)::

    catdog-predict --workdir=runs/conv3 --submission=submission.csv path/to/test1

or, with a model shipped with the package, no training at all::

    catdog-predict --weights=conv5_bn-fast --tta photo.jpg
"""

from absl import flags

from catdog_tf.cli import common

common.define_trained_run_flags()
_SUBMISSION = flags.DEFINE_string("submission", None, "Write a Kaggle id,label CSV here.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Prediction batch size.", lower_bound=1)
_TTA = flags.DEFINE_bool(
    "tta", False, "Flip test-time augmentation: average the image's and its mirror's logits."
)
_FLOAT32 = common.define_float32_flag()


def main(argv: list[str]) -> None:
    """Prints one 'path<TAB>probability' line per image."""
    from catdog_tf.data.sources import display
    from catdog_tf.evaluate import predict_files

    if len(argv) < 2:
        raise common.ConfigError("give at least one image file or folder")
    run_dir = common.trained_run_from_flags()
    results = predict_files(
        run_dir, argv[1:], _BATCH.value, _SUBMISSION.value, tta=_TTA.value, float32=_FLOAT32.value
    )
    for path, prob in results:
        print(f"{display(path)}\t{'unreadable' if prob is None else f'{prob:.4f}'}")


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
