r"""Inference speed of a shipped model's serving form in Keras, ONNX Runtime and LiteRT.

Exports ``serving.keras`` with Keras's own ``model.export`` (``onnx``, ``litert``) into a
temporary folder, then times, on this CPU, the latency of one 200x260 image (median of
``--repeats`` calls after warm-up) and the throughput of batches of 64, for each runtime.
Needs the ``export`` extra. Usage::

    python benchmarks/inference.py --weights=conv5_bn-full_progressive

Prints one Markdown table; the CPU line names the machine. Keras runs with oneDNN as the
``catdog-*`` commands set it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
from absl import app, flags

# What the catdog-* commands do before TensorFlow is imported (oneDNN on for AVX2 CPUs), so
# Keras is timed as a user of the package gets it.
from catdog_tf.cli import ONEDNN_DECISION

_WEIGHTS = flags.DEFINE_string("weights", "conv5_bn-full_progressive", "A shipped model.")
_REPEATS = flags.DEFINE_integer("repeats", 30, "Timed calls per runtime and batch size.")

SIZE = (200, 260)  # The 200x200-copy Kaggle images are about this size; any size works.


def timed(call: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int) -> float:
    """Median seconds of ``call(batch)`` over ``repeats`` calls, after three warm-up calls."""
    for _ in range(3):
        call(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def runtimes(model_path: str, folder: str) -> dict[str, Callable[[np.ndarray], object]]:
    """Name -> predict function, for Keras and the two exports of its model."""
    import keras
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    model = keras.saving.load_model(model_path)
    model(np.zeros((1, *SIZE, 3), np.float32))  # The ONNX export needs a traced model.
    model.export(os.path.join(folder, "m.onnx"), format="onnx", verbose=False)
    model.export(os.path.join(folder, "m.tflite"), format="litert", verbose=False)
    onnx = onnxruntime.InferenceSession(
        os.path.join(folder, "m.onnx"), providers=["CPUExecutionProvider"]
    )
    name = onnx.get_inputs()[0].name
    lite = Interpreter(model_path=os.path.join(folder, "m.tflite"), num_threads=os.cpu_count())
    given = lite.get_input_details()[0]["index"]

    def run_lite(batch: np.ndarray) -> np.ndarray:
        if tuple(lite.get_input_details()[0]["shape"]) != batch.shape:
            lite.resize_tensor_input(given, batch.shape)
            lite.allocate_tensors()
        lite.set_tensor(given, batch)
        lite.invoke()
        return lite.get_tensor(lite.get_output_details()[0]["index"])

    return {
        "Keras (`model.predict_on_batch`)": model.predict_on_batch,
        "ONNX Runtime (CPU)": lambda batch: onnx.run(None, {name: batch}),
        "LiteRT (float32, XNNPACK)": run_lite,
    }


def main(argv):
    del argv
    from catdog_tf import machine, rundir, shipped

    model_path = rundir.path(shipped.path(_WEIGHTS.value), rundir.SERVING)
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, *SIZE, 3)).astype(np.float32)
    many = rng.uniform(0, 255, (64, *SIZE, 3)).astype(np.float32)
    print(f"{_WEIGHTS.value}, {SIZE[0]}x{SIZE[1]} inputs; {machine.probe().describe()}")
    print(f"oneDNN: {ONEDNN_DECISION}\n")
    print("| runtime | batch 1 latency (ms, median) | batch 64 (img/s, median) |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name, call in runtimes(model_path, folder).items():
            latency = timed(call, one, _REPEATS.value)
            throughput = 64 / timed(call, many, max(3, _REPEATS.value // 5))
            print(f"| {name} | {latency * 1e3:.1f} | {throughput:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
