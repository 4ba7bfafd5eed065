"""The run directory: its file names, its layout, and the one check before a run writes to it.

Every module that reads or writes a run asks this one for paths. A run directory holds::

    config.json         {"config": the Config, "plan": the resolved Plan,
                        "catdog_tf_version": the version that wrote it}
    checkpoints/        tf.train.CheckpointManager: model, optimizer, epoch, early-stopping
                        state and history, saved after every epoch
    best/               the weights with the lowest validation loss so far
    model.keras         the best model, exported at the end (training form: [0, 1] images of
                        the run's size in, a logit out)
    serving.keras       the same weights for use (catdog_tf.export): any-size 0..255 images
                        in, P(dog) out, float32, plain Keras layers only
    history.json        one entry per epoch (also inside the checkpoint, so never out of step)
    result.json         validation and test metrics of the best model, plan, sizes, timings
    predictions.npz     logits, labels and paths of the best model on validation and test
    predictions-SPLIT.csv  one row per image: path, label, p_dog, predicted, correct
    mistakes-SPLIT.png  the split's most confident mistakes
    features/           cached backbone features (bottleneck models only)
    tensorboard/        train/ and validation/ event files, Keras's "epoch_" tags
    .lock               held (``flock``) by the one process writing the run (:func:`locked`)

A trained model shipped with the package (:mod:`catdog_tf.shipped`) is a run directory of
:data:`SHIPPED_FILES` only, plus ``shipped.json`` (what made it); it is read-only: no run
writes into a folder that has ``shipped.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

from catdog_tf import __version__
from catdog_tf.config import PLANNED_FIELDS, Config
from catdog_tf.errors import (
    CatdogError,
    OutputPathError,
    RunFilesError,
    WorkdirBusyError,
    WorkdirConfigError,
)
from catdog_tf.utils import atomic_write_json, is_number, read_json

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
BEST = "best"
MODEL = "model.keras"
SERVING = "serving.keras"
HISTORY = "history.json"
RESULT = "result.json"
PREDICTIONS = "predictions.npz"
SEEN = "seen.npz"  # The images the run trained or chose on (catdog_tf.data.seen).
FEATURES = "features"
TENSORBOARD = "tensorboard"
LOCK = ".lock"
# What a run writes besides config.json: any of them without a config.json is an orphan.
RUN_FILES = (CHECKPOINTS, BEST, MODEL, SERVING, HISTORY, RESULT, PREDICTIONS, SEEN, FEATURES)


# A finished run as shipped: what catdog-predict and catdog-eval read (the config with its
# plan, the validation threshold in result.json, both exported models).
SHIPPED_FILES = (CONFIG, RESULT, MODEL, SERVING, SEEN)
SHIPPED_MARK = "shipped.json"
# A shipped model's card, generated from its files (catdog_tf.card).
MODEL_CARD = "MODEL_CARD.md"
# A shipped model's sha256 of each of its files, in the format of coreutils' sha256sum.
CHECKSUMS = "SHA256SUMS"

SPLIT_OUTPUTS = ("predictions-{split}.csv", "mistakes-{split}.png")

# What catdog-compare writes into its folder beside the runs (catdog_tf.compare).
COMPARISON_RESULTS = "results.json"
TABLE_MD = "table.md"
TABLE_CSV = "table.csv"
PLOTS = "plots"
COMPARISON_FILES = (COMPARISON_RESULTS, TABLE_MD, TABLE_CSV, PLOTS)

# The installed package's own folder: its code and shipped models, never an output.
PACKAGE_FOLDER = os.path.dirname(os.path.abspath(__file__))


def split_outputs(workdir: str, split: str) -> tuple[str, str]:
    """(predictions CSV, mistakes PNG) paths of one evaluated split."""
    return tuple(path(workdir, name.format(split=split)) for name in SPLIT_OUTPUTS)


def _own_names() -> set[str]:
    """Every name a run or a comparison writes into its folder."""
    names = {CONFIG, LOCK, SHIPPED_MARK, TENSORBOARD, *RUN_FILES, *COMPARISON_FILES}
    return names | {n.format(split=s) for s in ("validation", "test") for n in SPLIT_OUTPUTS}


def _holds_run(folder: str) -> bool:
    """Whether ``folder`` is a run directory, a shipped model or a comparison of ours."""
    if any(os.path.lexists(os.path.join(folder, name)) for name in (SHIPPED_MARK, CHECKPOINTS)):
        return True
    if is_comparison(folder):
        return True
    try:
        return "config" in read_json(os.path.join(folder, CONFIG))
    except (OSError, ValueError, TypeError):
        return False  # No config.json, or not a run's: a folder of the user's own.


def check_output(target: str, flag: str, *, folder: bool = False) -> str:
    """Checks a file (or, with ``folder``, a folder) a command was asked to write.

    The one check of every output path a user names (``--output``, ``--submission``): it
    never lands on a run's own files (a finished run would be unusable after), inside a
    shipped model or the installed package, or, for a file, on a folder. The folder that
    will hold the output is created when missing.

    Args:
      target: The path given.
      flag: The flag that gave it, for the message (``--output``).
      folder: ``target`` is a folder to write files into.

    Returns:
      ``target`` as an absolute path.

    Raises:
      OutputPathError: ``target`` is one of those places.
    """
    full = os.path.realpath(os.path.abspath(target))
    if not folder and os.path.isdir(full):
        raise OutputPathError(f"{flag}={target} is a folder; give a file name in it")
    check_run_folder(full, flag)
    parent = full if folder else os.path.dirname(full)
    while parent != os.path.dirname(parent):
        inside = os.path.relpath(full, parent).split(os.sep)[0]
        if inside != os.curdir and inside in _own_names() and _holds_run(parent):
            raise OutputPathError(
                f"{flag}={target} would write over {os.path.join(parent, inside)}, which "
                f"belongs to the run or comparison in {parent}; write it somewhere else"
            )
        if os.path.exists(os.path.join(parent, SHIPPED_MARK)):
            raise OutputPathError(
                f"{flag}={target} is inside the shipped model {parent}, which is read-only; "
                "write it somewhere else"
            )
        parent = os.path.dirname(parent)
    make_folder(full if folder else os.path.dirname(full), flag)
    return full


def check_run_folder(workdir: str, flag: str = "--workdir") -> None:
    """Refuses a folder to write into inside the installed package (its code and models).

    Raises:
      OutputPathError: ``workdir`` is the package folder or inside it.
    """
    full = os.path.realpath(os.path.abspath(workdir))
    if full == PACKAGE_FOLDER or full.startswith(PACKAGE_FOLDER + os.sep):
        raise OutputPathError(
            f"{flag}={workdir} is inside the installed catdog_tf package ({PACKAGE_FOLDER}), "
            "whose files are its code and shipped models; use a folder of your own"
        )


def path(workdir: str, name: str) -> str:
    """``workdir/name`` for one of this module's names."""
    return os.path.join(workdir, name)


def is_comparison(folder: str) -> bool:
    """Whether ``folder`` holds a comparison's table (:mod:`catdog_tf.compare`)."""
    return all(os.path.exists(os.path.join(folder, n)) for n in (COMPARISON_RESULTS, TABLE_MD))


def is_shipped(workdir: str) -> bool:
    """Whether ``workdir`` is a shipped trained model (read-only; :mod:`catdog_tf.shipped`)."""
    return os.path.exists(path(workdir, SHIPPED_MARK))


def outputs_folder(workdir: str) -> str:
    """Where a command that uses a finished run writes by default (catdog-eval, -inspect).

    The run directory itself; for a shipped model, which is read-only, ``NAME-outputs`` in
    the current directory.
    """
    if is_shipped(workdir):
        return os.path.abspath(f"{os.path.basename(os.path.normpath(workdir))}-outputs")
    return workdir


def read_config(workdir: str) -> tuple[Config, dict[str, Any] | None]:
    """(validated config, saved plan dict or None) of a run.

    Raises:
      WorkdirConfigError: ``config.json`` is not valid JSON, not a valid config, or of the
        flat layout of early 0.1.0 runs (the message names the file; nothing is deleted).
    """
    file = path(workdir, CONFIG)
    try:
        saved = read_json(file)
        if not isinstance(saved, dict):
            raise ValueError(f"a JSON object was expected, not {type(saved).__name__}")
        if "config" not in saved:
            raise WorkdirConfigError(
                f"{file} is the flat config of an early 0.1.0 run, a layout catdog_tf "
                f"{__version__} does not read: train it again in a new --workdir"
            )
        plan = saved.get("plan")
        if plan is not None and not isinstance(plan, dict):
            raise ValueError("its plan is not a JSON object")
        return Config.from_dict(saved["config"]).validate(), plan
    except WorkdirConfigError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, CatdogError) as e:
        detail = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise WorkdirConfigError(f"{file} is not a valid catdog_tf config ({detail})") from e


def read_result(workdir: str) -> dict[str, Any]:
    """A finished run's ``result.json``, once it is shown to hold a validation threshold.

    Raises:
      RunFilesError: The file does not read, is not a JSON object, or has no numeric
        ``best_threshold`` under ``validation`` (nor under ``validation_tta``, if the run
        trained with TTA); the message names the file and how to write it again.
    """
    file = path(workdir, RESULT)
    try:
        result = read_json(file)
        if not isinstance(result, dict):
            raise TypeError(f"a JSON object was expected, not {type(result).__name__}")
        for key in ("validation", "validation_tta"):
            # validation_tta is None (or absent) for a run trained without TTA.
            if key == "validation" or result.get(key) is not None:
                threshold = result[key]["best_threshold"]
                if not is_number(threshold):
                    raise TypeError(f"{key} best_threshold is {threshold!r}")
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        detail = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise RunFilesError(
            f"{file} is not a valid result ({detail}); run catdog-train again on {workdir} "
            "to rewrite it"
        ) from e
    return result


def write_config(workdir: str, config: Config, plan: dict[str, Any]) -> None:
    """Writes ``config.json`` with the config and its resolved plan."""
    atomic_write_json(
        path(workdir, CONFIG),
        {"config": config.to_dict(), "plan": plan, "catdog_tf_version": __version__},
    )


# Fields a resumed run may change: more epochs train a run longer. Whether that changes what
# the earlier epochs computed (a cosine decay's length) is the plan's to say (decay_steps).
RESUMABLE_FIELDS = ("epochs",)


def config_differences(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """``{field: (old, new)}`` for fields that differ, except those the plan compares.

    Fields such as ``precision`` may change from ``auto`` to the value ``auto`` chose (to pin
    a saved decision), and ``epochs`` may grow (:data:`RESUMABLE_FIELDS`); the resolved plan,
    not the raw field, decides whether the run matches.
    """
    old_values, new_values = old.to_dict(), new.to_dict()
    return {
        name: (old_values[name], value)
        for name, value in new_values.items()
        if name not in PLANNED_FIELDS and name not in RESUMABLE_FIELDS and old_values[name] != value
    }


def _check_apart_from_data(workdir: str, data_spec: str) -> None:
    """A run never writes into its data: the next listing would find the run's files."""
    if not data_spec or not os.path.isdir(data_spec):  # tfds:NAME, synthetic: no folder.
        return
    data_folder, run = os.path.realpath(data_spec), os.path.realpath(workdir)
    if run == data_folder or run.startswith(data_folder.rstrip(os.sep) + os.sep):
        where = "the data folder" if run == data_folder else f"inside the data folder {data_spec}"
        raise WorkdirConfigError(
            f"--workdir={workdir} is {where}: the run's files would become part of the data; "
            "train into another folder"
        )


@dataclasses.dataclass(frozen=True)
class WorkdirState:
    """What :func:`check_workdir` found in a run directory.

    Attributes:
      saved_plan: The plan of a run of the same config, to resume; None to start afresh.
      replace: A run of ours is there to be deleted (:func:`remove_run`) once the new run is
        known to start: ``--overwrite`` was given, or a run of another config left only its
        ``config.json`` (it failed before it trained, so nothing would be lost).
    """

    saved_plan: dict[str, Any] | None = None
    replace: bool = False


def check_workdir(workdir: str, config: Config, overwrite: bool = False) -> WorkdirState:
    """Checks that ``workdir`` is free, holds a run of ``config``, or a run to replace.

    Writes and deletes nothing: the caller deletes a run to replace and writes
    ``config.json`` (:func:`write_config`) once the plan is resolved, so a run that fails
    before (bad data) leaves the workdir as it was.

    Raises:
      WorkdirConfigError: ``workdir`` holds a run with a different config and ``overwrite``
        is False, or a ``config.json`` that is not ours, or run files without a
        ``config.json`` (neither is ever deleted), or a run trained longer than
        ``config.epochs`` (a run is never shortened).
    """
    if not os.path.exists(path(workdir, CONFIG)):
        orphans = [name for name in RUN_FILES if os.path.lexists(path(workdir, name))]
        if orphans:
            # Not provably a run of ours (config.json comes first), so never deleted.
            raise WorkdirConfigError(
                f"{workdir} holds run files ({', '.join(orphans)}) but no {CONFIG}: their "
                "config is unknown and resuming them could mix two configs; use another "
                "--workdir, or delete them yourself"
            )
        return WorkdirState()
    # An unreadable config.json is not provably a run of ours: never deleted, even with
    # --overwrite (read_config raises WorkdirConfigError).
    old, saved_plan = read_config(workdir)
    if overwrite:
        return WorkdirState(replace=True)
    diff = config_differences(old, config)
    trained = _epochs_trained(workdir)
    if not diff and trained > config.epochs:
        raise WorkdirConfigError(
            f"{workdir} has trained {trained} epochs already, more than epochs="
            f"{config.epochs}: a run is never shortened; give epochs={trained} or more, "
            "another --workdir, or --overwrite to train it again"
        )
    if not diff:
        return WorkdirState(saved_plan=saved_plan)
    if not any(os.path.lexists(path(workdir, name)) for name in RUN_FILES):
        return WorkdirState(replace=True)
    raise WorkdirConfigError(
        f"{workdir} holds a run with a different config (old, new): {diff}; use "
        "another --workdir, or --overwrite to delete the old run"
    )


def _epochs_trained(workdir: str) -> int:
    """Epochs in the run's ``history.json`` (0 without a readable one)."""
    try:
        history = read_json(path(workdir, HISTORY))
    except (OSError, ValueError):
        return 0
    return len(history) if isinstance(history, list) else 0


def remove_run(workdir: str) -> None:
    """Deletes what a run wrote into ``workdir`` (the names above) and nothing else."""
    for name in (CONFIG, *RUN_FILES):
        target = path(workdir, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)
    for split in ("validation", "test"):
        for target in split_outputs(workdir, split):
            if os.path.lexists(target):
                os.remove(target)
    # TensorBoard events are appended to, not replaced: the old run's curves would mix in.
    if os.path.isdir(path(workdir, TENSORBOARD)):
        shutil.rmtree(path(workdir, TENSORBOARD))


def is_finished(workdir: str) -> bool:
    """Whether the run wrote its result (it trained to the end and was evaluated)."""
    return os.path.exists(path(workdir, RESULT)) and os.path.exists(path(workdir, MODEL))


def make_folder(workdir: str, flag: str = "--workdir") -> str | None:
    """Creates ``workdir`` (a run's, a comparison's or an output's) and its parents, if missing.

    Returns:
      The outermost folder created (``workdir`` or a parent), None if ``workdir`` existed.

    Raises:
      WorkdirConfigError: ``workdir`` or one of its parents is a file.
    """
    created, parent = None, workdir
    while parent and not os.path.exists(parent):
        created, parent = parent, os.path.dirname(parent.rstrip(os.sep))
    if parent and not os.path.isdir(parent):
        where = "" if parent == workdir else f" (its parent {parent})"
        raise WorkdirConfigError(f"{flag} {workdir}{where} is a file, not a folder")
    os.makedirs(workdir, exist_ok=True)
    return created


@contextlib.contextmanager
def locked(workdir: str, data_spec: str = "") -> Iterator[None]:
    """Holds ``workdir``'s lock for the block: one process writes a run at a time.

    The lock is an advisory ``flock`` on ``workdir/.lock``, released by the kernel when the
    process dies, so a killed run never leaves a stale lock behind. Creates ``workdir``,
    after checking it is a place a run may be written; a folder created here that holds
    nothing but the lock when the block ends (the run failed before writing) is removed.

    Args:
      workdir: The run directory.
      data_spec: The run's ``--data``: ``workdir`` may not be that folder or inside it.

    Raises:
      WorkdirBusyError: Another process holds the lock.
      WorkdirConfigError: ``workdir`` is a shipped model, a comparison's folder, or inside
        the run's data folder.
      OutputPathError: ``workdir`` is inside the installed package.
    """
    _check_apart_from_data(workdir, data_spec)
    if is_shipped(workdir):
        raise WorkdirConfigError(
            f"{workdir} is a shipped trained model (it has {SHIPPED_MARK}), read-only: "
            "train into another --workdir (init_from can start from it)"
        )
    if is_comparison(workdir):
        raise WorkdirConfigError(
            f"{workdir} holds a comparison of catdog-compare ({COMPARISON_RESULTS}), whose "
            "runs live in its subfolders; train into a new --workdir"
        )
    check_run_folder(workdir)
    created = make_folder(workdir)
    fd = os.open(path(workdir, LOCK), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise WorkdirBusyError(
                f"{workdir} is in use by {owner}; wait for it to finish or use another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # Closing releases the flock.
        if created:
            _remove_unused(workdir, created)


def _remove_unused(workdir: str, created: str) -> None:
    """Removes ``workdir`` and its parents up to ``created`` if they hold only the lock."""
    if os.listdir(workdir) != [LOCK]:
        return
    os.remove(path(workdir, LOCK))
    folder = workdir
    while True:
        try:
            os.rmdir(folder)  # Only an empty folder: anything written since stays.
        except OSError:
            return
        if os.path.abspath(folder) == os.path.abspath(created):
            return
        folder = os.path.dirname(folder.rstrip(os.sep))
