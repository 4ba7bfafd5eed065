"""The training loop: ``train_and_evaluate(config, workdir)``, resumable and self-describing.

The run directory's layout is :mod:`catdog_tf.rundir`'s. Every open setting is resolved once,
by :func:`catdog_tf.plan.resolve`, and saved with the run; a run resumes only under the same
decisions. Killing a run and running the same command again resumes after the last finished
epoch; with a seed and deterministic ops the final weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import functools
import glob
import io
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from catdog_tf import data, export, models, rundir
from catdog_tf import machine as machine_lib
from catdog_tf import plan as plan_lib
from catdog_tf.build import build_configured_model, precision_policy
from catdog_tf.config import Config
from catdog_tf.errors import (
    ConfigError,
    NonFiniteLossError,
    RunFilesError,
    WorkdirConfigError,
    first_line,
)
from catdog_tf.models import pretrained, whitening
from catdog_tf.plan import Plan
from catdog_tf.train import distributed, features, metrics, report
from catdog_tf.train.steps import Steps, measure_train_speeds
from catdog_tf.utils import atomic_write_bytes, atomic_write_json

__all__ = ["NonFiniteLossError", "WorkdirConfigError", "check_workdir", "train_and_evaluate"]

check_workdir = rundir.check_workdir


# Locks of the file caches this process writes, held until it exits (see _cache_arg).
_CACHE_LOCKS: dict[str, int] = {}


def _cache_arg(config: Config, examples: data.Examples, workdir: str, split: str) -> str:
    """The ``cache`` argument of one split's decoded dataset.

    A file cache is named by the split's fingerprint and the image size, so a cache of other
    images, or of another size, is never read as this one. The process that gets the cache's
    ``flock`` owns it: a tf.data lockfile found then was left by a killed run (tf.data would
    refuse to write the cache forever) and is removed.
    """
    if config.cache in ("", "memory"):
        return config.cache
    folder = config.cache if os.path.isabs(config.cache) else rundir.path(workdir, config.cache)
    os.makedirs(folder, exist_ok=True)
    name = f"{split}-{examples.fingerprint()}-{config.image_height}x{config.image_width}"
    prefix = os.path.join(folder, name)
    if prefix not in _CACHE_LOCKS:
        fd = os.open(prefix + ".owner", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # Another live run is writing it; tf.data's own lockfile guards.
            return prefix
        _CACHE_LOCKS[prefix] = fd
    for file in os.listdir(folder):
        if file.startswith(name) and (file.endswith(".lockfile") or ".tempstate" in file):
            os.remove(os.path.join(folder, file))
    return prefix


class _State:
    """Everything a resumed run needs, in one ``tf.train.Checkpoint``.

    Saved into ``workdir``; restored from ``read_dir`` (the chief's run directory, which a
    worker that is not the chief reads but never writes).
    """

    def __init__(self, steps: Steps, workdir: str, read_dir: str):
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


@dataclasses.dataclass
class Trainee:
    """What a run trains and on what: built by one of the :data:`TRAINEES` variants.

    Attributes:
      steps: The compiled steps; for a bottleneck model they train only the head.
      model: The whole model (exported as ``model.keras``).
      train_batches: ``(epoch, batch_size, num_shards, shard_index) -> dataset`` of that
        epoch's training batches of one input pipeline (seeded by the config's seed and the
        epoch; see :func:`catdog_tf.data.train_batches`).
      eval_ds: Validation (and test) batches, in order.
      features_info: For a bottleneck model, whether its features were reused, and their
        size and extraction time; else None.
    """

    steps: Steps
    model: keras.Model
    train_batches: Callable[[int, int, int, int], tf.data.Dataset]
    eval_ds: dict[str, tf.data.Dataset]
    features_info: dict[str, Any] | None = None


def low_res_size(config: Config, epoch: int) -> tuple[int, int] | None:
    """(height, width) of epoch ``epoch``'s (0-based) shrunk training images; None if full size.

    Progressive resizing: the first ``config.low_res_epochs`` epochs are the shrunk ones.
    """
    return config.low_res_size if epoch < config.low_res_epochs else None


def image_trainee(config: Config, plan: Plan, splits, workdir: str, strategy) -> Trainee:
    """The model trains on decoded (cached, optionally augmented) image batches.

    In the epochs of :func:`low_res_size` the pipeline shrinks its batches.
    """
    decoded = {
        name: data.decoded_dataset(
            ex, config.image_size, cache=_cache_arg(config, ex, workdir, name)
        )
        for name, ex in splits.items()
    }
    steps = Steps(config, plan, strategy)
    if models.whitening_layer(steps.model) is not None and not config.init_from:
        # Set before the first step; a resumed run's checkpoint restores the same kernel,
        # and a run that starts from another (init_from) keeps that run's.
        sample = data.first_images(splits["train"], config.image_size, whitening.SAMPLE_IMAGES)
        models.init_whitening(steps.model, sample)
    augment = data.AUGMENTATIONS[config.augment_ops]() if config.augment else None
    return Trainee(
        steps=steps,
        model=steps.model,
        train_batches=lambda epoch, batch, shards, index: data.train_batches(
            decoded["train"],
            len(splits["train"]),
            batch,
            epoch,
            config.seed,
            augment,
            num_shards=shards,
            shard_index=index,
            image_size=low_res_size(config, epoch),
        ),
        eval_ds={
            name: data.eval_batches(decoded[name], config.batch_size)
            for name in ("validation", "test")
            if len(splits[name])
        },
    )


def bottleneck_trainee(config: Config, plan: Plan, splits, workdir: str, strategy) -> Trainee:
    """A frozen backbone runs once per split (features cached); only the head trains."""
    # Each image is read once, to extract its features: no image cache.
    decoded = {
        name: data.decoded_dataset(ex, config.image_size, cache="") for name, ex in splits.items()
    }
    with precision_policy(plan.precision), strategy.scope():
        model = build_configured_model(config, plan)
    arrays, info = features.cached_features(model, decoded, splits, config, workdir)
    if config.augment:
        logging.info("augment=True does not apply to cached bottleneck features")
    return Trainee(
        steps=Steps(config, plan, strategy, model=pretrained.head(model)),
        model=model,
        train_batches=lambda epoch, batch, shards, index: features.train_batches(
            arrays["train"], batch, epoch, config.seed, num_shards=shards, shard_index=index
        ),
        eval_ds={
            name: features.eval_batches(arrays[name], config.batch_size)
            for name in ("validation", "test")
            if name in arrays
        },
        features_info=info,
    )


TRAINEES: dict[str, Callable[[Config, Plan, Any, str, Any], Trainee]] = {
    "scratch": image_trainee,
    "finetune": image_trainee,
    "bottleneck": bottleneck_trainee,
}


def _train_epoch(
    steps: Steps, dataset, num_steps: int, bar: bool, image_size: tuple[int, int] | None
) -> dict[str, float]:
    progbar = keras.utils.Progbar(
        num_steps, stateful_metrics=["loss", "img/s"], verbose=1 if bar else 0
    )
    loss_sum, correct, seen = 0.0, 0.0, 0
    start = time.perf_counter()
    for step, (images, labels) in enumerate(dataset, start=1):
        batch_loss, batch_correct = steps.train_step(images, labels, image_size)
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
      overwrite: Delete a run with a different config in ``workdir`` instead of refusing.
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
        with rundir.locked(workdir):
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
    on_epoch_end, on_finished = hooks
    saved_plan = rundir.check_workdir(workdir, config, overwrite)
    machine_lib.configure_threads(machine_lib.usable_cores())
    # Before any other TensorFlow work: multi_worker configures collective ops at start-up.
    strategy = distributed.make_strategy(config.strategy)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"batch_size={config.batch_size} does not split evenly over "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)

    # data.prepare_splits, with the listing's fingerprint taken on the way: listed once.
    loaded = data.load(config.data, seed=config.seed, synthetic_size=config.synthetic_size)
    fingerprint = data.fingerprint(loaded)
    loaded, skipped = data.drop_unusable(loaded, config.data, config.skip_bad_files)
    sizes = (config.train_size, config.val_size, config.test_size)
    splits = data.make_splits(loaded, sizes, config.seed)
    n_train = len(splits["train"])
    if config.batch_size > n_train:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than the {n_train} training images"
        )
    if len(splits["validation"]) == 0:
        raise ConfigError("the validation split is empty; set val_size > 0")
    logging.info("data:\n%s", data.describe(splits))
    for name, examples in splits.items():
        counts = examples.counts()
        if len(examples) and min(counts.values()) == 0:
            raise data.DataSourceError(
                f"the {name} split has only one class ({counts['cat']} cats, {counts['dog']} "
                "dogs) after unreadable files were skipped; its accuracy and correlation "
                "would mean nothing"
            )
    plan = plan_lib.resolve(
        config, n_train, measure=measure_train_speeds, data_fingerprint=fingerprint
    )
    plan_lib.check_resume(saved_plan, plan, workdir)
    os.makedirs(workdir, exist_ok=True)
    rundir.write_config(workdir, config, plan.to_dict())
    for name, reason in plan.why.items():
        logging.info("plan: %s = %s (%s)", name, getattr(plan, name), reason)
    num_steps = plan.steps_per_epoch

    data_and_model = TRAINEES[plan.mode](config, plan, splits, workdir, strategy)
    description = models.describe(data_and_model.model)
    logging.info(
        "%s; %s, XLA %s, %d replica(s)",
        description["summary"],
        plan.precision,
        "on" if plan.jit_compile else "off",
        data_and_model.steps.strategy.num_replicas_in_sync,
    )
    steps = data_and_model.steps
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
    low_res_flops = (
        models.count_flops(steps.train_models[config.low_res_size])
        if config.low_res_epochs
        else None
    )
    for epoch in range(first_epoch, config.epochs):
        if patience and int(state.bad_epochs) >= patience:
            break  # A resumed run that had already stopped early.
        if verbose:
            print(f"epoch {epoch + 1}/{config.epochs} ({config.model}, {config.loss})")
        train_ds = steps.train_input(functools.partial(data_and_model.train_batches, epoch))
        entry: dict[str, Any] = {"epoch": epoch + 1}
        size = low_res_size(config, epoch)
        entry.update(_train_epoch(steps, train_ds, num_steps, bar, size))
        if size:
            entry["image_size"] = list(size)
            entry["flops_per_image"] = low_res_flops
        # convert_to_numpy reads a plain or a distributed (mirrored) variable alike.
        entry["learning_rate"] = float(keras.ops.convert_to_numpy(steps.optimizer.learning_rate))
        # With ema_decay the moving average is what is validated, kept as best and exported.
        with steps.averaged():
            val = _evaluate(steps, data_and_model.eval_ds["validation"])
            val_loss = val["mse"] if config.loss == "mse" else val["cross_entropy"]
            val_loss = distributed.agree(steps.strategy, val_loss)  # One decision everywhere.
            finite = math.isfinite(entry["train_loss"]) and math.isfinite(val_loss)
            improved = finite and val_loss < float(state.best_val_loss)
            if improved:
                state.best.save(checkpoint_number=epoch + 1)
        if not finite:
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
        if improved:
            state.best_val_loss.assign(val_loss)
            state.bad_epochs.assign(0)
        else:
            state.bad_epochs.assign_add(1)
        state.epoch.assign(epoch + 1)
        state.history.assign(json.dumps(history))
        state.manager.save(checkpoint_number=epoch + 1)
        atomic_write_json(rundir.path(workdir, rundir.HISTORY), history)
        _summaries(writers, entry, epoch + 1)
        if on_epoch_end:
            on_epoch_end(epoch + 1, entry)
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

    distributed.agree(steps.strategy, 0.0)  # Every worker's saves are done.
    # The chief's best checkpoint: a resumed worker may have saved its own best before it
    # was killed, in a directory since removed.
    best = tf.train.latest_checkpoint(rundir.path(read_dir, rundir.BEST))
    if best:
        state.best.checkpoint.restore(best).expect_partial()
    _export(data_and_model.model, config, workdir)
    result = _result(config, plan, data_and_model, description, history, skipped, splits, workdir)
    atomic_write_json(rundir.path(workdir, rundir.RESULT), result)
    if on_finished:
        on_finished(data_and_model.model, result)
    return result


def _export(model: keras.Model, config: Config, workdir: str) -> None:
    """Writes ``model.keras`` and its serving form ``serving.keras``, each atomically."""
    for name, exported in (
        (rundir.MODEL, model),
        (rundir.SERVING, export.serving_model(model, config)),
    ):
        tmp = os.path.join(workdir, f".tmp.{name}")  # Keras wants the .keras suffix.
        exported.save(tmp)
        os.replace(tmp, rundir.path(workdir, name))


def _result(
    config, plan, data_and_model, description, history, skipped, splits, workdir
) -> dict[str, Any]:
    steps = data_and_model.steps
    predictions = {name: steps.predict(ds) for name, ds in data_and_model.eval_ds.items()}
    val, test = metrics.validation_and_test(predictions)
    # Flip TTA is reported beside, never instead of, the plain numbers; its threshold is
    # chosen on the flip-averaged validation logits.
    tta = (
        {name: steps.predict(ds, tta=True) for name, ds in data_and_model.eval_ds.items()}
        if config.tta
        else {}
    )
    val_tta, test_tta = metrics.validation_and_test(tta) if tta else (None, None)
    # Logits, labels and paths of the best model, for sweep plots and later analysis.
    buffer = io.BytesIO()
    arrays = {}
    for name, (logits, labels) in predictions.items():
        arrays.update({f"{name}_logits": logits, f"{name}_labels": labels})
        if name in tta:
            arrays[f"{name}_tta_logits"] = tta[name][0]
        arrays[f"{name}_paths"] = np.array(report.item_names(splits[name]), dtype=str)
        report.write_split_outputs(
            *rundir.split_outputs(workdir, name),
            splits[name],
            logits,
            val["best_threshold"],
            title=f"{config.model} {name}",
        )
    np.savez(buffer, **arrays)
    atomic_write_bytes(rundir.path(workdir, rundir.PREDICTIONS), buffer.getvalue())

    def steady(key: str) -> float | None:
        # Median over the full-size epochs after the first, which also decodes images and
        # traces steps; the shrunk epochs of progressive resizing are cheaper, not steady.
        full = [h for h in history if "image_size" not in h]
        values = [h[key] for h in full if h is not history[0]] or [h[key] for h in full]
        return statistics.median(values) if values else None

    return {
        "config": config.to_dict(),
        "plan": plan.to_dict(),
        "model": description,
        "bottleneck_features": data_and_model.features_info,
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
        "training_flops": training_flops(description, history),
        "validation": val,
        "test": test,
        "validation_tta": val_tta,
        "test_tta": test_tta,
    }


def epoch_images(record: dict[str, Any]) -> int | None:
    """Images one epoch of ``history.json`` trained on; None if the record cannot say.

    Runs written before the count was recorded still hold ``images_per_second`` and
    ``seconds``, which the same loop computed as images / seconds: their product gives the
    count back (rounded, to undo the float division), so old runs keep their compute.
    """
    if "images" in record:
        return int(record["images"])
    if record.get("images_per_second") and record.get("seconds"):
        return round(record["images_per_second"] * record["seconds"])
    return None


def training_flops(description: dict[str, Any], history: list[dict[str, Any]]) -> float | None:
    """Training compute of a run: images trained on x 3 x forward FLOPs per image.

    A training step costs about three forward passes (the forward, and a backward pass of
    twice its cost), the usual estimate (Kaplan et al. 2020). Machine-independent, so runs on
    different CPUs compare. An epoch at another image size (progressive resizing) records its
    own ``flops_per_image``. None when the FLOPs are unknown, the history is empty, or an
    epoch's image count cannot be recovered (:func:`epoch_images`).
    """
    flops = description.get("flops")
    images = [epoch_images(h) for h in history]
    per_image = [h.get("flops_per_image", flops) for h in history]
    if not flops or not images or None in images or None in per_image:
        return None
    return 3.0 * sum(f * n for f, n in zip(per_image, images, strict=True))
