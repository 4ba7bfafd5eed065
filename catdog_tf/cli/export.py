r"""catdog-export: a finished run's or a shipped model's serving model in the formats people deploy.

Example::

    catdog-export --weights=conv5_bn-full_progressive --format=onnx,litert,litert_int8 \
        --data=dogs-vs-cats/train --output=exported

writes ``exported/model.onnx`` (for onnxruntime), ``exported/model.tflite`` and
``exported/model_int8.tflite`` (for ``ai_edge_litert.interpreter``), each taking 0..255
images of any size and giving P(dog). With ``--data``, the int8 model is calibrated on the
images of that folder the run trained on, every ONNX and LiteRT file is run without
TensorFlow on the images it never saw, and ``exported/export.json`` records each one's
accuracy and largest difference from the run's own P(dog).
"""

from absl import flags

from catdog_tf.cli import common

common.define_trained_run_flags()
_FORMAT = flags.DEFINE_list(
    "format",
    ["saved_model", "onnx", "litert"],
    "Formats to write: saved_model, onnx, litert, litert_int8 (needs --data), hf (a folder "
    "keras.saving.load_model and a model hub take, with the model card as README.md).",
)
_OUTPUT = flags.DEFINE_string("output", None, "Folder to write them into (created if missing).")
_DATA = flags.DEFINE_string(
    "data",
    None,
    "A labelled folder holding images the run trained on and others: litert_int8 calibrates "
    "on the first, every ONNX and LiteRT file is checked without TensorFlow on the others.",
)


def main(argv: list[str]) -> None:
    """Prints one 'format<TAB>path' line per file written, and each check with --data."""
    from catdog_tf import deploy

    if len(argv) > 1:
        raise common.ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _OUTPUT.value:
        raise common.ConfigError("give --output=FOLDER to write the exported models into")
    run_dir = common.trained_run_from_flags()
    written = deploy.export_run(run_dir, _FORMAT.value, _OUTPUT.value, _DATA.value)
    for name, path in written.items():
        print(f"{name}\t{path}")
    if _DATA.value and set(written) & set(deploy.PORTABLE):
        report = deploy.check_exports(run_dir, written, _DATA.value)
        print(f"checked without TensorFlow on {report['n']:,} images the run never saw:")
        print(f"  catdog-predict\taccuracy {report['catdog_tf']['accuracy']:.4f}")
        print(f"  serving.keras\taccuracy {report['serving_keras']['accuracy']:.4f} (PIL decoder)")
        for name, checked in report["formats"].items():
            print(
                f"  {name}\taccuracy {checked['accuracy']:.4f}\tlargest P(dog) difference "
                f"{checked['max_difference']:.2g} from serving.keras, "
                f"{checked['max_difference_from_predict']:.2g} from catdog-predict (99% of "
                f"images within {checked['p99_difference_from_predict']:.2g})"
            )


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
