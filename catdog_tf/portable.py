"""Runs an exported model the way a deployment does: without TensorFlow and without catdog_tf.

ONNX files run on ``onnxruntime``, ``.tflite`` files on ``ai_edge_litert.interpreter``; each
takes one RGB image of any size, pixel values 0..255, and gives P(dog). This file imports
only NumPy, Pillow and the runtime, so it also works copied on its own beside a model::

    python portable.py model.onnx files.json probabilities.json

reads a JSON list of image paths and writes their P(dog), the runtime's
version and the names of any TensorFlow or catdog_tf module loaded (none, or the check that
:mod:`catdog_tf.deploy` makes of every export fails). Run it with ``python -I`` so that no
module beside it can be imported by accident.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from importlib import metadata

import numpy as np
from PIL import Image, ImageOps

# Modules whose presence would mean the check ran on TensorFlow after all.
FORBIDDEN = ("tensorflow", "keras", "catdog_tf", "tf_keras")


def load_image(path: str) -> np.ndarray:
    """The image at ``path`` as a (1, height, width, 3) float32 batch of 0..255 pixels.

    EXIF orientation is applied, as catdog_tf's own pipeline does.
    """
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), np.float32)[None]


def open_model(
    path: str, threads: int | None = None
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A function from an image batch to its P(dog) per image, and the runtime's name and version.

    Args:
      path: An ``.onnx`` or ``.tflite`` file.
      threads: LiteRT's thread count (its own default when None); ONNX Runtime uses every core.
    """
    if path.endswith(".onnx"):
        import onnxruntime

        onnx = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = onnx.get_inputs()[0].name
        runtime = f"onnxruntime {onnxruntime.__version__}"
        return lambda images: onnx.run(None, {name: images})[0].reshape(-1), runtime
    if path.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter

        lite = Interpreter(model_path=path, num_threads=threads)
        given = lite.get_input_details()[0]["index"]
        answer = lite.get_output_details()[0]["index"]

        def run(images: np.ndarray) -> np.ndarray:
            # The input takes any size; the interpreter is resized only when it changes.
            if tuple(lite.get_input_details()[0]["shape"]) != images.shape:
                lite.resize_tensor_input(given, images.shape)
                lite.allocate_tensors()
            lite.set_tensor(given, images)
            lite.invoke()
            return lite.get_tensor(answer).reshape(-1)

        return run, f"ai-edge-litert {metadata.version('ai-edge-litert')}"
    raise ValueError(f"{path}: not an .onnx or .tflite file")


def main(argv: list[str]) -> int:
    """Writes the P(dog) of each listed image; returns the exit status."""
    if len(argv) != 4:
        print("usage: portable.py MODEL FILES_JSON OUTPUT_JSON", file=sys.stderr)
        return 2
    model, files, output = argv[1:]
    predict, runtime = open_model(model)
    with open(files, encoding="utf-8") as f:
        paths = json.load(f)
    probabilities = [float(predict(load_image(path))[0]) for path in paths]
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(FORBIDDEN))
    with open(output, "w", encoding="utf-8") as f:
        json.dump({"p_dog": probabilities, "runtime": runtime, "loaded": loaded}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
