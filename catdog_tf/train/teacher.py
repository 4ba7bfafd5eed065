"""Knowledge distillation's teacher: a finished run, checked before training and loaded for it.

A teacher must never have trained on the images its student is scored on, so
:func:`read_teacher` compares the images the teacher held out (its ``predictions.npz``) with
the student's validation and test splits, by file name and label, in order: the same
``--data`` and ``seed`` give the same split wherever the folder was copied.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import keras
import numpy as np

from catdog_tf import data, rundir
from catdog_tf.errors import ConfigError, first_line
from catdog_tf.train.report import item_names
from catdog_tf.utils import read_json

HELD_OUT = ("validation", "test")


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A checked teacher run.

    Attributes:
      run_dir: Its run directory.
      training_flops: Its own ``training_flops`` (which, for a distilled teacher, include its
        teacher's).
    """

    run_dir: str
    training_flops: float


def read_teacher(run_dir: str, splits: dict[str, data.Examples]) -> Teacher:
    """The teacher at ``run_dir``, once it is shown to hold out ``splits``' scored images.

    Raises:
      ConfigError: ``run_dir`` is not a finished run, its compute is unknown, or it trained
        on an image of the validation or test split.
    """
    where = f"teacher={run_dir!r}"
    if not rundir.is_finished(run_dir):
        raise ConfigError(f"{where} is not a finished run (it has no result.json and model.keras)")
    try:
        flops = read_json(rundir.path(run_dir, rundir.RESULT)).get("training_flops")
    except (OSError, ValueError, AttributeError) as e:  # Unreadable, not JSON, not an object.
        raise ConfigError(f"{where}: its {rundir.RESULT} does not read ({e})") from None
    if isinstance(flops, bool) or not isinstance(flops, (int, float)) or not flops > 0:
        raise ConfigError(f"{where}: its {rundir.RESULT} does not say its training compute")
    predictions = rundir.path(run_dir, rundir.PREDICTIONS)
    if not os.path.exists(predictions):
        raise ConfigError(
            f"{where} has no {rundir.PREDICTIONS}, so the images it held out are unknown"
        )
    try:
        saved = dict(np.load(predictions))
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{where}: its {rundir.PREDICTIONS} does not read ({e})") from None
    for split in HELD_OUT:
        if not _same_images(saved, split, splits[split]):
            raise ConfigError(
                f"{where} did not hold out this run's {split} images (it would have trained on "
                "images this run is scored on): give a run of the same data and seed"
            )
    return Teacher(run_dir, float(flops))


def _same_images(saved: dict[str, np.ndarray], split: str, examples: data.Examples) -> bool:
    """Whether ``saved`` (a run's predictions) lists ``examples``: names and labels, in order."""
    names, labels = saved.get(f"{split}_paths"), saved.get(f"{split}_labels")
    if names is None or labels is None or len(names) != len(examples):
        return False
    ours = [os.path.basename(name) for name in item_names(examples)]
    theirs = [os.path.basename(str(name)) for name in names]
    return ours == theirs and np.array_equal(labels, examples.labels)


def load_model(teacher: Teacher) -> keras.Model:
    """The teacher's model (its ``model.keras``), frozen: it is only ever evaluated.

    Raises:
      ConfigError: The file does not load (truncated or damaged).
    """
    try:
        model = keras.saving.load_model(rundir.path(teacher.run_dir, rundir.MODEL), compile=False)
    except Exception as e:  # zipfile, h5py, JSON and Keras errors: the file is damaged.
        raise ConfigError(
            f"teacher={teacher.run_dir!r}: its {rundir.MODEL} does not load "
            f"({type(e).__name__}: {first_line(e)})"
        ) from None
    model.trainable = False
    return model
