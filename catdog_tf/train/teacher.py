"""Knowledge distillation's teacher: a finished run, checked before training and loaded for it.

A teacher must never have trained on the images its student is scored on, so
:func:`read_teacher` compares the images the teacher held out (its ``predictions.npz``) with
the student's validation and test splits, by file name and label, in order: the same
``--data`` and ``seed`` give the same split wherever the folder was copied. The teacher's
``model.keras`` is fingerprinted into the student's plan, so a student resumes only under the
teacher it started with.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import keras
import numpy as np

from catdog_tf import data, rundir
from catdog_tf.build import in_precision, load_model_file
from catdog_tf.config import Config
from catdog_tf.errors import ConfigError
from catdog_tf.train.report import item_names
from catdog_tf.utils import is_number, sha256

HELD_OUT = ("validation", "test")


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A checked teacher run.

    Attributes:
      run_dir: Its run directory.
      training_flops: Its own ``training_flops`` (which, for a distilled teacher, include its
        teacher's).
      fingerprint: The start of its ``model.keras``'s sha256: retraining the teacher in
        place changes it.
      config: Its config (which model it is, and at which size).
      saved: Its ``model.keras``, as saved (loaded before the student writes anything, so a
        damaged file is refused first).
    """

    run_dir: str
    training_flops: float
    fingerprint: str
    config: Config
    saved: keras.Model = dataclasses.field(compare=False, repr=False)


def read_teacher(run_dir: str, splits: dict[str, data.Examples]) -> Teacher:
    """The teacher at ``run_dir``, once it is shown to hold out ``splits``' scored images.

    Raises:
      ConfigError: ``run_dir`` is not a finished run, its compute is unknown, it trained
        on an image of the validation or test split, or its ``model.keras`` changed while
        it was read.
      RunFilesError: Its ``result.json`` or ``model.keras`` does not read.
      WorkdirConfigError: Its ``config.json`` does not read.
    """
    where = f"teacher={run_dir!r}"
    if not rundir.is_finished(run_dir):
        raise ConfigError(f"{where} is not a finished run (it has no result.json and model.keras)")
    config, _ = rundir.read_config(run_dir)
    flops = rundir.read_result(run_dir).get("training_flops")
    if not is_number(flops) or not flops > 0:
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
    # Hashed before and after loading: a file replaced in between (a teacher retrained as
    # its student starts) would otherwise pair one model with another's fingerprint.
    before = fingerprint(run_dir)
    saved_model = load_model_file(rundir.path(run_dir, rundir.MODEL), run_dir, compile=False)
    if fingerprint(run_dir) != before:
        raise ConfigError(
            f"{where}: its {rundir.MODEL} changed while it was read (is it still training?); "
            "start this run again once the teacher is finished"
        )
    return Teacher(run_dir, float(flops), before, config, saved_model)


def fingerprint(run_dir: str) -> str:
    """The start of the sha256 of ``run_dir``'s ``model.keras``: retraining it changes it."""
    return sha256(rundir.path(run_dir, rundir.MODEL))[:24]


def _same_images(saved: dict[str, np.ndarray], split: str, examples: data.Examples) -> bool:
    """Whether ``saved`` (a run's predictions) lists ``examples``: names and labels, in order."""
    names, labels = saved.get(f"{split}_paths"), saved.get(f"{split}_labels")
    if names is None or labels is None or len(names) != len(examples):
        return False
    ours = [os.path.basename(name) for name in item_names(examples)]
    theirs = [os.path.basename(str(name)) for name in names]
    return ours == theirs and np.array_equal(labels, examples.labels)


def frozen_model(teacher: Teacher, precision: str) -> keras.Model:
    """The teacher's model in ``precision``, frozen: it is only evaluated.

    A teacher trained in another precision runs in the student's: a bfloat16 teacher on a
    CPU without native bfloat16 would be emulated, slowly.
    """
    model = in_precision(teacher.saved, teacher.config, precision)
    model.trainable = False
    return model
