"""catdog-export: a finished run's or a shipped model's serving model as SavedModel, ONNX, LiteRT.

Example::

    catdog-export --weights=conv5_bn-full_progressive --format=onnx,litert --output=exported

writes ``exported/model.onnx`` (for onnxruntime) and ``exported/model.tflite`` (for
``ai_edge_litert.interpreter``), each taking 0..255 images of any size and giving P(dog).
"""

from absl import flags

from catdog_tf.cli import common

common.define_trained_run_flags()
_FORMAT = flags.DEFINE_list(
    "format", ["saved_model", "onnx", "litert"], "Formats to write: saved_model, onnx, litert."
)
_OUTPUT = flags.DEFINE_string("output", None, "Folder to write them into (created if missing).")


def main(argv: list[str]) -> None:
    """Prints one 'format<TAB>path' line per file written."""
    from catdog_tf.deploy import export_run

    if len(argv) > 1:
        raise common.ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _OUTPUT.value:
        raise common.ConfigError("give --output=FOLDER to write the exported models into")
    written = export_run(common.trained_run_from_flags(), _FORMAT.value, _OUTPUT.value)
    for name, path in written.items():
        print(f"{name}\t{path}")


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
