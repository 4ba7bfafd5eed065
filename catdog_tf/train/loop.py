"""The training loop: ``train_and_evaluate(config, workdir)``, resumable and self-describing.

A run is three stages, read top to bottom in :func:`_train_and_evaluate`:
:func:`catdog_tf.train.prepare.prepare` (workdir, splits, plan), :func:`fit` (the epochs,
checkpoints, early stopping, TensorBoard) and :func:`catdog_tf.train.finish.finish` (every
output of the finished run). The run directory's layout is :mod:`catdog_tf.rundir`'s.
Every open setting is resolved once, by :func:`catdog_tf.plan.resolve`, and saved with the
run; a run resumes only under the same decisions. Killing a run and running the same command
again resumes after the last finished epoch; with a seed and deterministic ops the final
weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from catdog_tf import models, rundir
from catdog_tf.config import Config
from catdog_tf.errors import (
    ConfigError,
    NonFiniteLossError,
    RunFilesError,
    WorkdirConfigError,
    first_line,
)
from catdog_tf.train import distributed, metrics
from catdog_tf.train.finish import finish
from catdog_tf.train.prepare import Prepared, prepare
from catdog_tf.train.steps import Steps
from catdog_tf.train.trainee import TRAINEES, Trainee
from catdog_tf.utils import atomic_write_json

__all__ = ["NonFiniteLossError", "WorkdirConfigError", "check_workdir", "train_and_evaluate"]

check_workdir = rundir.check_workdir


class _State:
    """Everything a resumed run needs, in one ``tf.train.Checkpoint``.

    Saved into ``workdir``; restored from ``read_dir`` (the chief's run directory, which a
    worker that is not the chief reads but never writes).
    """

    def __init__(self, steps: Steps, workdir: str, read_dir: str):
        self.workdir = workdir
        self.read_dir = read_dir
        self.epoch = tf.Variable(0, dtype=tf.int64)
        self.best_val_loss = tf.Variable(math.inf, dtype=tf.float64)
        self.bad_epochs = tf.Variable(0, dtype=tf.int64)
        self.history = tf.Variable("[]", dtype=tf.string)
        self.checkpoint = tf.train.Checkpoint(
            model=steps.model,
            # Keras 3 keeps dropout's RNG state in SeedGenerator variables that tracking
            # through the model misses; without them a resumed run draws other dropout masks.
            non_trainable=list(steps.model.non_trainable_variables),
            optimizer=steps.optimizer,
            **({"shift_optimizer": steps.shift_optimizer} if steps.shift_optimizer else {}),
            **({"average": steps.average.variables} if steps.average else {}),
            epoch=self.epoch,
            best_val_loss=self.best_val_loss,
            bad_epochs=self.bad_epochs,
            history=self.history,
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, rundir.path(workdir, rundir.CHECKPOINTS), max_to_keep=2
        )
        self.best = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=steps.model),
            rundir.path(workdir, rundir.BEST),
            max_to_keep=1,
        )

    def restore(self) -> int:
        """Restores the newest checkpoint that reads; returns the first epoch still to run.

        Checkpoints are found by their files, not only through the ``checkpoint`` state file,
        so a garbled state file, or a truncated newest checkpoint, falls back to the previous
        one instead of starting over (and overwriting the good checkpoints).

        Raises:
          RunFilesError: There are checkpoints and none of them restores.
        """
        numbered = {}
        folder = rundir.path(self.read_dir, rundir.CHECKPOINTS)
        for index in glob.glob(os.path.join(folder, "ckpt-*.index")):
            match = re.search(r"ckpt-(\d+)\.index$", index)
            if match:
                numbered[int(match.group(1))] = index
        found = [numbered[n] for n in sorted(numbered, reverse=True)]
        failures = []
        for index in found:
            prefix = index.removesuffix(".index")
            try:
                self.checkpoint.restore(prefix).assert_consumed()
            except Exception as e:  # OpError, IndexError, AssertionError...: it does not read.
                first = first_line(e)
                failures.append(f"{os.path.basename(prefix)}: {first}")
                logging.warning("checkpoint %s does not restore (%s)", prefix, first)
                continue
            if failures:
                logging.warning("resumed from the older %s instead", prefix)
            logging.info("resumed from %s after epoch %d", prefix, int(self.epoch))
            return int(self.epoch)
        if failures:
            raise RunFilesError(
                f"no checkpoint in {folder} restores ({'; '.join(failures)}); "
                "use --overwrite to start the run again"
            )
        return 0

    def get_history(self) -> list[dict[str, Any]]:
        return json.loads(self.history.numpy().decode())


def _train_epoch(
    steps: Steps,
    dataset,
    num_steps: int,
    bar: bool,
    image_size: tuple[int, int] | None,
    sharpness_aware: bool,
) -> dict[str, float]:
    progbar = keras.utils.Progbar(
        num_steps, stateful_metrics=["loss", "img/s"], verbose=1 if bar else 0
    )
    loss_sum, correct, seen = 0.0, 0.0, 0
    start = time.perf_counter()
    for step, (images, labels) in enumerate(dataset, start=1):
        batch_loss, batch_correct = steps.train_step(images, labels, image_size, sharpness_aware)
        # Accumulate as tensors: no device sync per step; read only for the progress bar.
        loss_sum += batch_loss
        correct += batch_correct
        seen += steps.config.batch_size
        if step % 20 == 0 or step == num_steps:
            rate = seen / (time.perf_counter() - start)
            progbar.update(step, [("loss", float(loss_sum) / seen), ("img/s", rate)])
    seconds = time.perf_counter() - start
    if seen == 0:
        raise ConfigError("the training split gave no full batch")
    return {
        "train_loss": float(loss_sum) / seen,
        "train_accuracy": float(correct) / seen,
        "seconds": seconds,
        "images": seen,
        "images_per_second": seen / seconds,
    }


def _evaluate(steps: Steps, dataset, threshold: float | None = None) -> dict[str, Any]:
    logits, labels = steps.predict(dataset)
    return metrics.evaluate_predictions(logits, labels, threshold)


# Keras's TensorBoard callback layout: one run folder per split, "epoch_" tags, so the train
# and validation curves of one tag overlay.
_TRAIN_TAGS = {
    "train_loss": "loss",
    "train_accuracy": "accuracy",
    "learning_rate": "learning_rate",
    "images_per_second": "images_per_second",
}


def _summaries(writers: dict[str, Any], entry: dict[str, Any], epoch: int) -> None:
    scalars = {
        "train": {tag: entry[key] for key, tag in _TRAIN_TAGS.items()},
        "validation": {
            "loss": entry["val_loss"],
            "accuracy": entry["val_accuracy_at_0.5"],
            **{
                key.removeprefix("val_"): value
                for key, value in entry.items()
                if key.startswith("val_") and key not in ("val_loss", "val_accuracy_at_0.5")
            },
        },
    }
    for split, values in scalars.items():
        with writers[split].as_default(step=epoch):
            for tag, value in values.items():
                if isinstance(value, (int, float)):
                    tf.summary.scalar(f"epoch_{tag}", value)
        writers[split].flush()


def train_and_evaluate(
    config: Config,
    workdir: str,
    *,
    overwrite: bool = False,
    verbose: bool = True,
    progress_bar: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    on_finished: Callable[[keras.Model, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Trains ``config.model`` on ``config.data`` and evaluates it; resumes if interrupted.

    Under ``strategy=multi_worker`` every worker runs this with the same arguments (and its
    own ``TF_CONFIG``): the chief writes ``workdir``, which every worker reads to resume (a
    filesystem they all see); the other workers write into temporary directories they remove
    (:mod:`catdog_tf.train.distributed`).

    Args:
      config: The run's config (validated here).
      workdir: Run directory (created; see the module docstring for its contents).
      overwrite: Delete the run in ``workdir`` (only its own files) and train from the
        start; without it, a run of the same config and plan resumes and another is refused.
      verbose: Print a line per epoch.
      progress_bar: Also a ``keras.utils.Progbar`` per epoch; None: only when stdout is a
        terminal, so a log piped to a file holds plain lines, no carriage returns.
      on_epoch_end: Called with (epoch, history entry) after each epoch's checkpoint.
      on_finished: Called with the best model and the result once the run is evaluated
        (on a worker that is not the chief, before its files are removed).

    Returns:
      The contents of ``result.json``: config, model description, validation metrics (with
      the threshold chosen on validation), test metrics at that threshold, and timings.

    Raises:
      ConfigError: Invalid config, or ``workdir`` holds a different config.
      DataSourceError: The data cannot be loaded or split.
      NonFiniteLossError: The loss became NaN/Inf (the last good checkpoint is kept).
      WorkdirBusyError: Another process is writing to ``workdir``.
      RunFilesError: The run's checkpoints exist but none of them restores.
    """
    config.validate()
    bar = verbose and (sys.stdout.isatty() if progress_bar is None else progress_bar)
    hooks = (on_epoch_end, on_finished)
    me = distributed.role(config.strategy)
    if me.chief:
        with rundir.locked(workdir, config.data):
            return _train_and_evaluate(config, workdir, workdir, overwrite, verbose, bar, hooks)
    with tempfile.TemporaryDirectory(prefix=f"catdog-{me.task.replace(':', '')}-") as scratch:
        return _train_and_evaluate(config, scratch, workdir, False, verbose, bar, hooks)


def _train_and_evaluate(
    config: Config,
    workdir: str,
    read_dir: str,
    overwrite: bool,
    verbose: bool,
    bar: bool,
    hooks: tuple[Any, Any],
) -> dict[str, Any]:
    """The run's three stages, top to bottom: prepare, fit, finish."""
    on_epoch_end, on_finished = hooks
    prepared = prepare(config, workdir, overwrite)
    plan = prepared.plan
    trainee = TRAINEES[plan.mode](prepared, workdir)
    description = models.describe(trainee.model)
    logging.info(
        "%s; %s, XLA %s, %d replica(s)",
        description["summary"],
        plan.precision,
        "on" if plan.jit_compile else "off",
        trainee.steps.strategy.num_replicas_in_sync,
    )
    progress = _Progress(verbose, bar, on_epoch_end)
    history = fit(prepared, trainee, workdir, read_dir, progress)
    result = finish(prepared, trainee, description, history, workdir)
    if on_finished:
        on_finished(trainee.model, result)
    return result


@dataclasses.dataclass(frozen=True)
class _Progress:
    """What a run reports per epoch: lines, a progress bar, and the caller's hook."""

    verbose: bool
    bar: bool
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None


def fit(
    prepared: Prepared, trainee: Trainee, workdir: str, read_dir: str, progress: _Progress
) -> list[dict[str, Any]]:
    """Stage two: the epochs, from the last checkpoint on; leaves the best weights loaded.

    Each epoch trains, validates, keeps the best weights, checkpoints, logs to TensorBoard
    and decides early stopping on the validation loss (the same decision on every worker).

    Returns:
      Every epoch's history entry, the resumed ones included.
    """
    config, steps = prepared.config, trainee.steps
    state = _State(steps, workdir, read_dir)
    first_epoch = state.restore()
    history = state.get_history()
    writers = {
        split: tf.summary.create_file_writer(
            os.path.join(rundir.path(workdir, rundir.TENSORBOARD), split)
        )
        for split in ("train", "validation")
    }
    patience = config.early_stopping_patience
    flops = _epoch_flops(config, steps)
    for epoch in range(first_epoch, config.epochs):
        if patience and int(state.bad_epochs) >= patience:
            break  # A resumed run that had already stopped early.
        entry = _run_epoch(prepared, trainee, epoch, state, progress, flops)
        history.append(entry)
        state.epoch.assign(epoch + 1)
        state.history.assign(json.dumps(history))
        state.manager.save(checkpoint_number=epoch + 1)
        atomic_write_json(rundir.path(workdir, rundir.HISTORY), history)
        _summaries(writers, entry, epoch + 1)
        if progress.on_epoch_end:
            progress.on_epoch_end(epoch + 1, entry)
        if patience and int(state.bad_epochs) >= patience:
            logging.info(
                "early stopping after epoch %d (no improvement for %d epochs)", epoch + 1, patience
            )
            break
    distributed.agree(steps.strategy, 0.0)  # Every worker's saves are done.
    # The chief's best checkpoint: a resumed worker may have saved its own best before it
    # was killed, in a directory since removed.
    best = tf.train.latest_checkpoint(rundir.path(read_dir, rundir.BEST))
    if best:
        state.best.checkpoint.restore(best).expect_partial()
    return history


def _epoch_flops(config: Config, steps: Steps) -> dict[tuple[int, int] | None, dict[str, Any]]:
    """The FLOPs each epoch's history entry records, by its image size (None: full size).

    A shrunk epoch records its model's forward FLOPs per image; with a teacher, every epoch
    records the teacher's at its size; with an optimizer whose step computes (Muon), every
    epoch records that step's FLOPs shared over a batch's images
    (:func:`catdog_tf.train.finish.training_flops`).
    """
    records: dict[tuple[int, int] | None, dict[str, Any]] = {}
    update = steps.update_flops() / config.batch_size
    for size in (None, *config.shrunk_sizes):
        record = {"flops_per_image": models.count_flops(steps.train_models[size])} if size else {}
        if update:
            record["update_flops_per_image"] = update
        if steps.teachers:
            teacher = steps.teachers[size or config.image_size]
            record["teacher_flops_per_image"] = models.count_flops(teacher)
        records[size] = record
    return records


def _compute_record(
    config: Config, flops: dict[tuple[int, int] | None, dict[str, Any]], epoch: int
) -> dict[str, Any]:
    """What epoch ``epoch``'s history entry records of its compute.

    Its image size when shrunk, its FLOPs (:func:`_epoch_flops`), and its passes per step
    when sharpness-aware.
    """
    size = config.epoch_image_size(epoch)
    record: dict[str, Any] = {"image_size": list(size)} if size else {}
    record.update(flops[size])
    if config.sharpness_aware(epoch):
        record["train_passes"] = config.train_passes(epoch)
    return record


def _run_epoch(
    prepared: Prepared,
    trainee: Trainee,
    epoch: int,
    state: _State,
    progress: _Progress,
    flops: dict[tuple[int, int] | None, dict[str, Any]],
) -> dict[str, Any]:
    """Trains and validates epoch ``epoch`` (0-based); saves the best weights; its entry."""
    config, steps = prepared.config, trainee.steps
    if progress.verbose:
        print(f"epoch {epoch + 1}/{config.epochs} ({config.model}, {config.loss})")
    train_ds = steps.train_input(functools.partial(trainee.train_batches, epoch))
    entry: dict[str, Any] = {"epoch": epoch + 1}
    size, sam = config.epoch_image_size(epoch), config.sharpness_aware(epoch)
    entry.update(
        _train_epoch(steps, train_ds, prepared.plan.steps_per_epoch, progress.bar, size, sam)
    )
    entry.update(_compute_record(config, flops, epoch))
    # convert_to_numpy reads a plain or a distributed (mirrored) variable alike.
    entry["learning_rate"] = float(keras.ops.convert_to_numpy(steps.optimizer.learning_rate))
    # With ema_decay the moving average is what is validated, kept as best and exported.
    with steps.averaged():
        val = _evaluate(steps, trainee.eval_ds["validation"])
        val_loss = val["mse"] if config.loss == "mse" else val["cross_entropy"]
        val_loss = distributed.agree(steps.strategy, val_loss)  # One decision everywhere.
        finite = math.isfinite(entry["train_loss"]) and math.isfinite(val_loss)
        improved = finite and val_loss < float(state.best_val_loss)
        if improved:
            state.best.save(checkpoint_number=epoch + 1)
    if not finite:
        raise NonFiniteLossError(
            f"epoch {epoch + 1}: loss is {entry['train_loss']} (validation {val_loss}); "
            f"stopped, the last good checkpoint (epoch {epoch}) is kept in {state.workdir}. "
            "Try a lower learning rate or float32 precision."
        )
    entry.update(
        {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float)) and k != "n"}
    )
    entry["val_loss"] = val_loss
    if improved:
        state.best_val_loss.assign(val_loss)
        state.bad_epochs.assign(0)
    else:
        state.bad_epochs.assign_add(1)
    if progress.verbose:
        print(
            f"  train loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.3f} | "
            f"val loss {val_loss:.4f} acc@0.5 {val['accuracy_at_0.5']:.3f} "
            f"pearson {val['pearson']:.3f} | {entry['images_per_second']:.0f} img/s"
        )
    return entry
