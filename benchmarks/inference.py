r"""Inference speed of a shipped model's serving form in Keras, ONNX Runtime and LiteRT.

Exports ``serving.keras`` with :func:`catdog_tf.deploy.export_run` (``onnx``, ``litert`` and,
given ``--data``, ``litert_int8`` calibrated on that folder's images the model trained on)
into a temporary folder, then times, on this CPU, the latency of one 200x260 image (median of
``--repeats`` calls after warm-up) and the throughput of batches of 64, for each runtime.
Needs the ``export`` extra. Usage::

    python benchmarks/inference.py --weights=conv5_bn-full_progressive --data=dogs-vs-cats/train

Prints one Markdown table; the CPU line names the machine. Keras runs with oneDNN as the
``catdog-*`` commands set it.
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
from absl import flags

_WEIGHTS = flags.DEFINE_string("weights", "conv5_bn-full_progressive", "A shipped model.")
_DATA = flags.DEFINE_string("data", None, "The model's training folder: adds LiteRT int8.")
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


def runtimes(run_dir: str, folder: str) -> dict[str, Callable[[np.ndarray], object]]:
    """Name -> predict function, for Keras and the exports of its serving model."""
    import keras

    from catdog_tf import deploy, rundir
    from catdog_tf.portable import open_model

    formats = ["onnx", "litert"] + (["litert_int8"] if _DATA.value else [])
    written = deploy.export_run(run_dir, formats, folder, _DATA.value)
    serving = keras.saving.load_model(rundir.path(run_dir, rundir.SERVING))
    calls = {
        "Keras (`model.predict_on_batch`)": serving.predict_on_batch,
        "ONNX Runtime (CPU)": open_model(written["onnx"])[0],
        "LiteRT (float32, XNNPACK)": open_model(written["litert"], os.cpu_count())[0],
    }
    if "litert_int8" in written:
        calls["LiteRT (int8, XNNPACK)"] = open_model(written["litert_int8"], os.cpu_count())[0]
    return calls


def main(argv):
    del argv
    from catdog_tf import machine, shipped

    run_dir = shipped.path(_WEIGHTS.value)
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, *SIZE, 3)).astype(np.float32)
    many = rng.uniform(0, 255, (64, *SIZE, 3)).astype(np.float32)
    print(f"{_WEIGHTS.value}, {SIZE[0]}x{SIZE[1]} inputs; {machine.probe().describe()}")
    print(f"oneDNN: {script.ONEDNN_DECISION}\n")
    print("| runtime | batch 1 latency (ms, median) | batch 64 (img/s, median) |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name, call in runtimes(run_dir, folder).items():
            latency = timed(call, one, _REPEATS.value)
            throughput = 64 / timed(call, many, max(3, _REPEATS.value // 5))
            print(f"| {name} | {latency * 1e3:.1f} | {throughput:.0f} |", flush=True)


if __name__ == "__main__":
    script.run(main)
