"""A finished run's serving model in the formats people deploy, each checked without TensorFlow.

Every format is written from ``serving.keras`` by Keras itself, so each keeps the any-size
0..255 input, the resizing and scaling inside, and P(dog) out:

- ``saved_model``, ``onnx``, ``litert``: Keras's ``model.export`` (ONNX through ``tf2onnx``,
  LiteRT through the TFLite converter, which Keras drives).
- ``litert_int8``: the same LiteRT export with post-training integer quantization
  (``tf.lite.Optimize.DEFAULT`` and a representative dataset): weights and activations in
  int8, calibrated on images the run trained or chose on; the input and output stay float.
- ``hf``: Keras's own folder layout (``keras.saving.save_model(..., zipped=False)``) with the
  model card as ``README.md``: the layout ``keras.saving.load_model("hf://OWNER/NAME")``
  downloads and a hub upload takes as it is.

:func:`check_exports` runs each ONNX and LiteRT file in a process that imports neither
TensorFlow nor catdog_tf (:mod:`catdog_tf.portable`) on the labelled images the run never
saw, and compares each P(dog) with the run's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from typing import Any

import keras
import numpy as np

from catdog_tf import card, rundir
from catdog_tf.build import load_model_file
from catdog_tf.config import Config
from catdog_tf.errors import ConfigError, RunFilesError
from catdog_tf.evaluate import check_run, images_unseen_and_seen, predict_files
from catdog_tf.portable import load_image
from catdog_tf.train import metrics
from catdog_tf.utils import (
    atomic_write_json,
    atomic_write_text,
    captured_stderr,
    sha256,
)

# --format name -> the file or folder it writes in --output.
FORMATS = {
    "saved_model": "saved_model",
    "onnx": "model.onnx",
    "litert": "model.tflite",
    "litert_int8": "model_int8.tflite",
    "hf": "hf",
}
# Keras's name of each format that ``model.export`` writes.
_KERAS_FORMAT = {
    "saved_model": "tf_saved_model",
    "onnx": "onnx",
    "litert": "litert",
    "litert_int8": "litert",
}
# Formats that run without TensorFlow, which check_exports runs.
PORTABLE = ("onnx", "litert", "litert_int8")
# What check_exports writes beside the exports.
REPORT = "export.json"
# How many images calibrate the int8 activation ranges (the converter's own examples use
# a few hundred; more change the ranges little and cost converter time).
CALIBRATION_IMAGES = 200
# The most an exported float model's P(dog) may differ from serving.keras's on the same pixels.
FLOAT_TOLERANCE = 0.01
# Images per call of serving.keras in check_exports.
_BATCH = 64
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "portable.py")


def export_run(
    run_dir: str, formats: list[str], output: str, data_spec: str | None = None
) -> dict[str, str]:
    """Writes a finished run's serving model in each of ``formats`` into folder ``output``.

    Args:
      run_dir: A finished run or a shipped model (its checksums are checked first).
      formats: Names of :data:`FORMATS`.
      output: A folder; created when missing. Files already there are never replaced.
      data_spec: A labelled folder holding images the run trained on: ``litert_int8``
        calibrates on them (and needs it); :func:`check_exports` tests on the others.

    Returns:
      Format -> the path written.

    Raises:
      ConfigError: An unknown format, a file already in ``output``, ``litert_int8`` without
        images the run trained on, or the ``export`` extra missing.
      RunFilesError: ``serving.keras`` cannot be loaded, or a shipped model's file is not
        the one shipped.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ConfigError(f"--format: {', '.join(unknown) or 'none'}; known: {', '.join(FORMATS)}")
    config = check_run(run_dir)
    output = rundir.check_output(output, "--output", folder=True)
    targets = {name: os.path.join(output, FORMATS[name]) for name in formats}
    taken = [p for p in [*targets.values(), os.path.join(output, REPORT)] if os.path.lexists(p)]
    if taken:
        raise ConfigError(f"{taken[0]} exists and is never replaced; give another --output")
    calibration = None
    if "litert_int8" in formats:
        calibration = calibration_images(run_dir, config, data_spec)
    model = load_model_file(rundir.path(run_dir, rundir.SERVING), run_dir)
    model(np.zeros((1, *config.image_size, 3), np.float32))  # ONNX exports a traced model.
    for name, path in targets.items():
        # Written in a fresh staging folder beside it, under its own name (Keras checks the
        # suffix), then moved: no file of the user's is touched, none is left half-written.
        staging = tempfile.mkdtemp(prefix=".catdog-export-", dir=output)
        staged = os.path.join(staging, os.path.basename(path))
        try:
            _write(model, name, staged, run_dir, calibration)
            os.replace(staged, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return targets


def _write(
    model: keras.Model, name: str, path: str, run_dir: str, calibration: list[str] | None
) -> None:
    """Writes ``model`` in format ``name`` at ``path``."""
    if name == "hf":
        keras.saving.save_model(model, path, zipped=False)
        atomic_write_text(os.path.join(path, "README.md"), card.model_card(run_dir))
        return
    options: dict[str, Any] = {}
    if name == "litert_int8":
        import tensorflow as tf

        options = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": lambda: ([load_image(f)] for f in calibration or []),
        }
    try:
        # The converters print their progress from C++; the error, if any, is the exception.
        with warnings.catch_warnings(), captured_stderr():
            # tf2onnx's own use of a deprecated NumPy alias; nothing the user can act on.
            warnings.simplefilter("ignore", FutureWarning)
            model.export(path, format=_KERAS_FORMAT[name], verbose=False, **options)
    except ImportError as e:
        raise ConfigError(
            f"--format={name} needs the export extra ({e.name} is missing): "
            'pip install "catdog_tf[export]"'
        ) from e


def calibration_images(run_dir: str, config: Config, data_spec: str | None) -> list[str]:
    """Up to :data:`CALIBRATION_IMAGES` files of ``data_spec`` that the run trained or chose on.

    Never a test image: int8 ranges fitted on the images the accuracy is measured on would
    flatter the int8 model.

    Args:
      run_dir: A finished run or a shipped model.
      config: Its config (:func:`catdog_tf.evaluate.check_run`); its seed picks the images.
      data_spec: A labelled folder holding images the run trained on.

    Raises:
      ConfigError: No ``data_spec``, or it holds no image the run saw.
    """
    hint = "give --data=the folder it trained on"
    if not data_spec:
        raise ConfigError(f"--format=litert_int8 calibrates on images the run trained on: {hint}")
    _, seen_images, _ = images_unseen_and_seen(run_dir, config, data_spec)
    if not len(seen_images) or seen_images.encoded:
        raise ConfigError(
            f"--format=litert_int8 calibrates on images the run trained on, and {data_spec} "
            f"holds none as files: {hint}"
        )
    rng = np.random.default_rng(config.seed)
    picked = rng.permutation(len(seen_images))[:CALIBRATION_IMAGES]
    return [str(seen_images.items[i]) for i in sorted(picked)]


def check_exports(run_dir: str, written: dict[str, str], data_spec: str) -> dict[str, Any]:
    """Runs each ONNX and LiteRT export without TensorFlow on the images the run never saw.

    Each file runs in its own ``python -I`` process of :mod:`catdog_tf.portable` (which
    fails the check if TensorFlow or catdog_tf was imported) on every labelled image of
    ``data_spec`` the run did not train or choose on. :data:`REPORT`, in the exports'
    folder, records per format its accuracy at the run's validation threshold and its
    largest P(dog) difference from ``serving.keras`` given the same pixels (what the export
    changed) and from :func:`catdog_tf.evaluate.predict_files` (what a deployment sees: the
    decoder differs too).

    Args:
      run_dir: The run ``written`` was exported from.
      written: Format -> path, as :func:`export_run` returns.
      data_spec: A labelled folder.

    Returns:
      The report.

    Raises:
      ConfigError: ``data_spec`` is not a folder of image files.
      RunFilesError: A float export differs from ``serving.keras`` by more than
        :data:`FLOAT_TOLERANCE` on an image (the report is written first), or the runtime
        fails on it.
    """
    config = check_run(run_dir)
    threshold = rundir.read_result(run_dir)["validation"]["best_threshold"]
    test, seen_images, skipped = images_unseen_and_seen(run_dir, config, data_spec)
    if test.encoded:
        raise ConfigError(f"--data={data_spec}: the check runs on image files; give a folder")
    files = [str(item) for item in test.items]
    predicted = np.array([p for _, p in predict_files(run_dir, files)], np.float64)
    served = served_probabilities(rundir.path(run_dir, rundir.SERVING), run_dir, files)
    report: dict[str, Any] = {
        "data": data_spec,
        "threshold": threshold,
        "left_out_seen": len(seen_images),
        "skipped_files": len(skipped),
        "n": len(test),
        **test.counts(),
        "catdog_tf": {"accuracy": metrics.accuracy_at(predicted, test.labels, threshold)},
        "serving_keras": {"accuracy": metrics.accuracy_at(served, test.labels, threshold)},
        "formats": {},
    }
    for name, path in written.items():
        if name in PORTABLE:
            checked = _check_one(path, files, test.labels, threshold, served, predicted)
            report["formats"][name] = checked
    if "litert_int8" in report["formats"]:
        report["formats"]["litert_int8"]["calibration"] = (
            f"{CALIBRATION_IMAGES} images the run trained or chose on"
        )
    atomic_write_json(os.path.join(os.path.dirname(next(iter(written.values()))), REPORT), report)
    _check_float_formats(report, written)
    return report


def _check_one(
    path: str,
    files: list[str],
    labels: np.ndarray,
    threshold: float,
    served: np.ndarray,
    predicted: np.ndarray,
) -> dict[str, Any]:
    """One export's accuracy and P(dog) differences, from a process without TensorFlow."""
    p_dog, runtime = run_portable(path, files)
    worst = int(np.argmax(np.abs(p_dog - served)))
    return {
        "file": os.path.basename(path),
        "sha256": sha256(path),
        "runtime": runtime,
        "accuracy": metrics.accuracy_at(p_dog, labels, threshold),
        "max_difference": float(abs(p_dog[worst] - served[worst])),
        "most_different_image": os.path.basename(files[worst]),
        "max_difference_from_predict": float(np.max(np.abs(p_dog - predicted))),
        "p99_difference_from_predict": float(np.quantile(np.abs(p_dog - predicted), 0.99)),
    }


def served_probabilities(serving: str, run_dir: str, files: list[str]) -> np.ndarray:
    """P(dog) of ``serving.keras`` on ``files`` decoded as :mod:`catdog_tf.portable` does.

    Images of one shape go through the model together, up to :data:`_BATCH` at a time;
    each file is decoded once.
    """
    model = load_model_file(serving, run_dir)
    probabilities = np.zeros(len(files))
    pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}

    def run(batch: list[tuple[int, np.ndarray]]) -> None:
        indices = [i for i, _ in batch]
        images = np.concatenate([image for _, image in batch])
        probabilities[indices] = np.asarray(model(images, training=False)).reshape(-1)
        batch.clear()

    for i, file in enumerate(files):
        image = load_image(file)
        batch = pending.setdefault(image.shape, [])
        batch.append((i, image))
        if len(batch) == _BATCH:
            run(batch)
    for batch in pending.values():
        if batch:
            run(batch)
    return probabilities


def _check_float_formats(report: dict[str, Any], written: dict[str, str]) -> None:
    for name, checked in report["formats"].items():
        if name != "litert_int8" and checked["max_difference"] > FLOAT_TOLERANCE:
            raise RunFilesError(
                f"{written[name]} gives a P(dog) {checked['max_difference']:.3g} away from "
                f"serving.keras's on the pixels of {checked['most_different_image']} (more than "
                f"{FLOAT_TOLERANCE}): the export is not the run's model"
            )


def run_portable(path: str, files: list[str]) -> tuple[np.ndarray, str]:
    """P(dog) of exported ``path`` on ``files`` from a process without TensorFlow or catdog_tf.

    Returns:
      The probabilities and the runtime's name and version.

    Raises:
      RunFilesError: The runtime failed, or TensorFlow or catdog_tf was imported after all.
    """
    with tempfile.TemporaryDirectory() as scratch:
        listing, answer = os.path.join(scratch, "files.json"), os.path.join(scratch, "p.json")
        atomic_write_json(listing, files)
        done = subprocess.run(
            [sys.executable, "-I", _SCRIPT, path, listing, answer],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            lines = done.stderr.strip().splitlines() or ["no message"]
            raise RunFilesError(f"{path} does not run without TensorFlow: {lines[-1]}")
        with open(answer, encoding="utf-8") as f:
            ran = json.load(f)
    if ran["loaded"]:
        raise RunFilesError(f"checking {path} imported {', '.join(ran['loaded'])}")
    return np.array(ran["p_dog"], np.float64), ran["runtime"]
