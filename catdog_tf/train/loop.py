"""The training loop: ``train_and_evaluate(config, workdir)``, resumable and self-describing.

A workdir holds everything about one run::

    config.json         the Config (a different config refuses to resume here)
    checkpoints/        tf.train.CheckpointManager: model, optimizer, epoch, early-stopping
                        state and history, saved after every epoch
    best/               the weights with the lowest validation loss so far
    model.keras         the best model, exported at the end
    history.json        one entry per epoch (also inside the checkpoint, so never out of step)
    result.json         validation and test metrics of the best model, sizes and timings
    tensorboard/        tf.summary scalars per epoch

Killing a run and running the same command again resumes after the last finished epoch;
with a seed and deterministic ops the final weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import collections
import json
import math
import os
import shutil
import statistics
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from catdog_tf import data, models
from catdog_tf.config import Config, ConfigError
from catdog_tf.models import pretrained
from catdog_tf.train import features, metrics
from catdog_tf.train.steps import (
    Steps,
    build_configured_model,
    make_strategy,
    precision_policy,
    resolve_precision,
)
from catdog_tf.utils import atomic_write_json, read_json


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class WorkdirConfigError(ConfigError):
    """The workdir holds a run with a different config."""


def check_workdir(workdir: str, config: Config, overwrite: bool = False) -> None:
    """Creates ``workdir`` and writes ``config.json``, or checks the one already there.

    Raises:
      WorkdirConfigError: ``workdir`` belongs to a different config and ``overwrite`` is
        False. With ``overwrite``, the old run is deleted.
    """
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        old = read_json(path)
        if old != json.loads(config.to_json()):
            if not overwrite:
                diff = {k: (old.get(k), v) for k, v in config.to_dict().items() if old.get(k) != v}
                raise WorkdirConfigError(
                    f"{workdir} holds a run with a different config (old, new): {diff}; use "
                    "another --workdir, or --overwrite to delete the old run"
                )
            shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(path):
        atomic_write_json(path, config.to_dict())


def _cache_arg(cache: str, workdir: str, split: str) -> str:
    if cache in ("", "memory"):
        return cache
    folder = cache if os.path.isabs(cache) else os.path.join(workdir, cache)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, split)


class _State:
    """Everything a resumed run needs, in one ``tf.train.Checkpoint``."""

    def __init__(self, steps: Steps, workdir: str):
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
            epoch=self.epoch,
            best_val_loss=self.best_val_loss,
            bad_epochs=self.bad_epochs,
            history=self.history,
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(workdir, "checkpoints"), max_to_keep=2
        )
        self.best = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=steps.model), os.path.join(workdir, "best"), max_to_keep=1
        )

    def restore(self) -> int:
        """Restores the latest checkpoint, if any; returns the first epoch still to run."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()
            logging.info(
                "resumed from %s after epoch %d", self.manager.latest_checkpoint, int(self.epoch)
            )
        return int(self.epoch)

    def get_history(self) -> list[dict[str, Any]]:
        return json.loads(self.history.numpy().decode())


class _DataAndModel:
    """The model to train and its datasets: images, or cached features for a bottleneck model.

    Attributes:
      steps: The compiled steps; for a bottleneck model they train only the head.
      model: The whole model (exported as ``model.keras``).
      description: ``catdog_tf.models.describe`` of ``model``.
      eval_ds: Validation (and test) batches, in order.
      features_info: For a bottleneck model, whether its features were reused, and their
        size and extraction time; else None.
    """

    def __init__(self, config: Config, splits, workdir: str, num_steps: int):
        bottleneck = models.get_spec(config.model).mode == "bottleneck"
        decoded = {
            # A bottleneck model reads each image once, to extract its features: no cache.
            name: data.decoded_dataset(
                ex,
                config.image_size,
                cache="" if bottleneck else _cache_arg(config.cache, workdir, name),
            )
            for name, ex in splits.items()
        }
        self.features_info = None
        if bottleneck:
            strategy = make_strategy(config.strategy)
            with precision_policy(resolve_precision(config)), strategy.scope():
                self.model = build_configured_model(config)
            arrays, self.features_info = features.cached_features(
                self.model, decoded, splits, config, workdir
            )
            if config.augment:
                logging.info("augment=True does not apply to cached bottleneck features")
            self.steps = Steps(config, num_steps, strategy, model=pretrained.head(self.model))
            self._train = lambda epoch: features.train_batches(
                arrays["train"], config.batch_size, epoch, config.seed
            )
            self.eval_ds = {
                name: features.eval_batches(arrays[name], config.batch_size)
                for name in ("validation", "test")
                if name in arrays
            }
        else:
            self.steps = Steps(config, num_steps)
            self.model = self.steps.model
            augment = data.AugmentConfig() if config.augment else None
            self._train = lambda epoch: data.train_batches(
                decoded["train"],
                len(splits["train"]),
                config.batch_size,
                epoch,
                config.seed,
                augment,
            )
            self.eval_ds = {
                name: data.eval_batches(decoded[name], config.batch_size)
                for name in ("validation", "test")
                if len(splits[name])
            }
        self.description = models.describe(self.model)
        logging.info(
            "%s; precision %s, XLA %s, %d replica(s)",
            self.description["summary"],
            self.steps.precision,
            self.steps.jit_compile,
            self.steps.strategy.num_replicas_in_sync,
        )

    def train_batches(self, epoch: int) -> tf.data.Dataset:
        """The training batches of one epoch (seeded by the config's seed and ``epoch``)."""
        return self._train(epoch)


def _train_epoch(steps: Steps, dataset, num_steps: int, verbose: bool) -> dict[str, float]:
    progbar = keras.utils.Progbar(
        num_steps, stateful_metrics=["loss", "img/s"], verbose=1 if verbose else 0
    )
    loss_sum, correct, seen = 0.0, 0.0, 0
    start = time.perf_counter()
    for step, (images, labels) in enumerate(steps.distribute(dataset), start=1):
        batch_loss, batch_correct = steps.train_step(images, labels)
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
        "images_per_second": seen / seconds,
    }


def _evaluate(steps: Steps, dataset, threshold: float | None = None) -> dict[str, Any]:
    logits, labels = steps.predict(dataset)
    return metrics.evaluate_predictions(logits, labels, threshold)


def _summaries(writer, entry: dict[str, Any], epoch: int) -> None:
    with writer.as_default(step=epoch):
        for key, value in entry.items():
            if isinstance(value, (int, float)) and key != "epoch":
                tf.summary.scalar(key, value)
    writer.flush()


def train_and_evaluate(
    config: Config, workdir: str, *, overwrite: bool = False, verbose: bool = True
) -> dict[str, Any]:
    """Trains ``config.model`` on ``config.data`` and evaluates it; resumes if interrupted.

    Args:
      config: The run's config (validated here).
      workdir: Run directory (created; see the module docstring for its contents).
      overwrite: Delete a run with a different config in ``workdir`` instead of refusing.
      verbose: Show a progress bar per epoch.

    Returns:
      The contents of ``result.json``: config, model description, validation metrics (with
      the threshold chosen on validation), test metrics at that threshold, and timings.

    Raises:
      ConfigError: Invalid config, or ``workdir`` holds a different config.
      DataSourceError: The data cannot be loaded or split.
      NonFiniteLossError: The loss became NaN/Inf (the last good checkpoint is kept).
    """
    config.validate()
    check_workdir(workdir, config, overwrite)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)

    splits, skipped = data.prepare_splits(
        config.data,
        (config.train_size, config.val_size, config.test_size),
        config.seed,
        config.synthetic_size,
        config.skip_bad_files,
    )
    n_train = len(splits["train"])
    if config.batch_size > n_train:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than the {n_train} training images"
        )
    if len(splits["validation"]) == 0:
        raise ConfigError("the validation split is empty; set val_size > 0")
    num_steps = n_train // config.batch_size
    if config.steps_per_epoch:
        num_steps = min(num_steps, config.steps_per_epoch)
    logging.info("data:\n%s", data.describe(splits))

    data_and_model = _DataAndModel(config, splits, workdir, num_steps)
    steps = data_and_model.steps
    state = _State(steps, workdir)
    first_epoch = state.restore()
    history = state.get_history()
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
    patience = config.early_stopping_patience
    for epoch in range(first_epoch, config.epochs):
        if patience and int(state.bad_epochs) >= patience:
            break  # A resumed run that had already stopped early.
        if verbose:
            print(f"epoch {epoch + 1}/{config.epochs} ({config.model}, {config.loss})")
        train_ds = data_and_model.train_batches(epoch).take(num_steps)
        entry: dict[str, Any] = {"epoch": epoch + 1}
        entry.update(_train_epoch(steps, train_ds, num_steps, verbose))
        val = _evaluate(steps, data_and_model.eval_ds["validation"])
        val_loss = val["mse"] if config.loss == "mse" else val["cross_entropy"]
        if not (math.isfinite(entry["train_loss"]) and math.isfinite(val_loss)):
            raise NonFiniteLossError(
                f"epoch {epoch + 1}: loss is {entry['train_loss']} (validation {val_loss}); "
                f"stopped, the last good checkpoint (epoch {epoch}) is kept in {workdir}. "
                "Try a lower learning rate or float32 precision."
            )
        entry.update(
            {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float)) and k != "n"}
        )
        entry["val_loss"] = val_loss
        history.append(entry)
        if val_loss < float(state.best_val_loss):
            state.best_val_loss.assign(val_loss)
            state.bad_epochs.assign(0)
            state.best.save(checkpoint_number=epoch + 1)
        else:
            state.bad_epochs.assign_add(1)
        state.epoch.assign(epoch + 1)
        state.history.assign(json.dumps(history))
        state.manager.save(checkpoint_number=epoch + 1)
        atomic_write_json(os.path.join(workdir, "history.json"), history)
        _summaries(writer, entry, epoch + 1)
        if verbose:
            print(
                f"  train loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.3f} | "
                f"val loss {val_loss:.4f} acc@0.5 {val['accuracy_at_0.5']:.3f} "
                f"pearson {val['pearson']:.3f} | {entry['images_per_second']:.0f} img/s"
            )
        if patience and int(state.bad_epochs) >= patience:
            logging.info(
                "early stopping after epoch %d (no improvement for %d epochs)", epoch + 1, patience
            )
            break

    if state.best.latest_checkpoint:
        state.best.checkpoint.restore(state.best.latest_checkpoint).expect_partial()
    _export(data_and_model.model, workdir)
    result = _result(config, steps, data_and_model, history, skipped, splits, workdir)
    atomic_write_json(os.path.join(workdir, "result.json"), result)
    return result


def _export(model: keras.Model, workdir: str) -> None:
    tmp = os.path.join(workdir, ".model.tmp.keras")
    model.save(tmp)
    os.replace(tmp, os.path.join(workdir, "model.keras"))


def _result(config, steps, data_and_model, history, skipped, splits, workdir) -> dict[str, Any]:
    predictions = {name: steps.predict(ds) for name, ds in data_and_model.eval_ds.items()}
    val = metrics.evaluate_predictions(*predictions["validation"])
    test = (
        metrics.evaluate_predictions(*predictions["test"], threshold=val["best_threshold"])
        if "test" in predictions
        else None
    )
    # Logits and labels of the best model, for sweep plots and later analysis.
    np.savez(
        os.path.join(workdir, "predictions.npz"),
        **{
            f"{name}_{kind}": array
            for name, (logits, labels) in predictions.items()
            for kind, array in (("logits", logits), ("labels", labels))
        },
    )

    def steady(key: str) -> float | None:
        # Median over epochs after the first, which also decodes images and traces steps.
        values = [h[key] for h in history[1:]] or [h[key] for h in history]
        return statistics.median(values) if values else None

    return {
        "config": config.to_dict(),
        "model": data_and_model.description,
        "bottleneck_features": data_and_model.features_info,
        "precision": steps.precision,
        "jit_compile": steps.jit_compile,
        "replicas": steps.strategy.num_replicas_in_sync,
        "data": {
            name: {"n": len(ex), **ex.counts(), "origin": ex.origin, "synthetic": ex.synthetic}
            for name, ex in splits.items()
        },
        "skipped_files": {
            "count": len(skipped),
            "reasons": dict(collections.Counter(reason for _, reason in skipped)),
            "paths": [p for p, _ in skipped],
        },
        "epochs_run": len(history),
        "best_epoch": int(np.argmin([h["val_loss"] for h in history])) + 1 if history else 0,
        "seconds_per_epoch": steady("seconds"),
        "train_images_per_second": steady("images_per_second"),
        "total_train_seconds": sum(h["seconds"] for h in history),
        "validation": val,
        "test": test,
    }
