"""A finished run's serving model in the formats people deploy: SavedModel, ONNX, LiteRT.

Each format is Keras's own ``model.export`` of ``serving.keras`` (:mod:`catdog_tf.export`),
so it keeps the any-size 0..255 input, the resizing and scaling inside, and P(dog) out. ONNX
needs the ``export`` extra (``tf2onnx``); ``onnxruntime`` and ``ai_edge_litert`` run the
files without TensorFlow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings

import numpy as np

from catdog_tf import rundir
from catdog_tf.errors import ConfigError
from catdog_tf.evaluate import check_run, load_model_file

# --format name -> (file or folder written in --output, Keras's export format).
FORMATS = {
    "saved_model": ("saved_model", "tf_saved_model"),
    "onnx": ("model.onnx", "onnx"),
    "litert": ("model.tflite", "litert"),
}


def export_run(run_dir: str, formats: list[str], output: str) -> dict[str, str]:
    """Writes a finished run's serving model in each of ``formats`` into folder ``output``.

    Each is Keras's own ``model.export`` of ``serving.keras``: any-size 0..255 images in,
    P(dog) out, with the resizing and scaling inside.

    Args:
      run_dir: A finished run or a shipped model (its checksums are checked first).
      formats: Names of :data:`FORMATS`.
      output: A folder; created when missing. Files already there are never replaced.

    Returns:
      Format -> the path written.

    Raises:
      ConfigError: An unknown format, a file already in ``output``, or the ``export``
        extra missing for ONNX.
      RunFilesError: ``serving.keras`` cannot be loaded, or a shipped model's file is not
        the one shipped.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ConfigError(f"--format: {', '.join(unknown) or 'none'}; known: {', '.join(FORMATS)}")
    config = check_run(run_dir)
    output = rundir.check_output(output, "--output", folder=True)
    targets = {name: os.path.join(output, FORMATS[name][0]) for name in formats}
    taken = [path for path in targets.values() if os.path.lexists(path)]
    if taken:
        raise ConfigError(f"{taken[0]} exists and is never replaced; give another --output")
    model = load_model_file(rundir.path(run_dir, rundir.SERVING), run_dir)
    model(np.zeros((1, *config.image_size, 3), np.float32))  # ONNX exports a traced model.
    for name, path in targets.items():
        # Written in a fresh staging folder beside it, under its own name (Keras checks the
        # suffix), then moved: no file of the user's is touched, none is left half-written.
        staging = tempfile.mkdtemp(prefix=".catdog-export-", dir=output)
        staged = os.path.join(staging, os.path.basename(path))
        try:
            with warnings.catch_warnings():
                # tf2onnx's own use of a deprecated NumPy alias; nothing the user can act on.
                warnings.simplefilter("ignore", FutureWarning)
                model.export(staged, format=FORMATS[name][1], verbose=False)
            os.replace(staged, path)
        except ImportError as e:
            raise ConfigError(
                f"--format={name} needs the export extra ({e.name} is missing): "
                'pip install "catdog_tf[export]"'
            ) from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return targets
