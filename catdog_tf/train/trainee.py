"""What a run trains, and on what: the model, its compiled steps and its input pipelines.

A :class:`Trainee` is built by one of :data:`TRAINEES`, by the plan's mode: from-scratch and
fine-tuned models train on decoded image batches; a bottleneck model trains its head on
features its frozen backbone extracted once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from catdog_tf import data, models, rundir
from catdog_tf.build import build_configured_model, check_memory, precision_policy
from catdog_tf.config import Config
from catdog_tf.models import pretrained, whitening
from catdog_tf.train import features, teacher
from catdog_tf.train.prepare import Prepared
from catdog_tf.train.steps import Steps

# Locks of the file caches this process writes, held until it exits (see cache_arg).
_CACHE_LOCKS: dict[str, int] = {}


def cache_arg(
    config: Config,
    examples: data.Examples,
    workdir: str,
    split: str,
    shrunk_to: tuple[int, int] | None = None,
) -> str:
    """The ``cache`` argument of one split's decoded (or, with ``shrunk_to``, shrunk) dataset.

    A file cache is named by the split's fingerprint, the image size, the JPEG decoder's DCT
    and the shrunk size, so a cache of other images, or of other pixels, is never read as
    this one. The process that gets the cache's ``flock`` owns it: a tf.data lockfile found
    then was left by a killed run (tf.data would refuse to write the cache forever) and is
    removed.
    """
    if config.cache in ("", "memory"):
        return config.cache
    folder = config.cache if os.path.isabs(config.cache) else rundir.path(workdir, config.cache)
    os.makedirs(folder, exist_ok=True)
    name = f"{split}-{examples.fingerprint()}-{config.image_height}x{config.image_width}"
    if config.dct_method != data.DCT_METHOD:  # The default's caches keep their names.
        name += f"-{config.dct_method.lower()}"
    if shrunk_to is not None:
        name += f"-shrunk-{shrunk_to[0]}x{shrunk_to[1]}"
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
        # tf.data names its files PREFIX_N.lockfile and PREFIX.index/.data-*; a shrunk cache
        # (PREFIX-shrunk-...) has an owner of its own.
        ours = file.startswith(name) and file[len(name) : len(name) + 1] in ("_", ".")
        if ours and (file.endswith(".lockfile") or ".tempstate" in file):
            os.remove(os.path.join(folder, file))
    return prefix


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


def _image_steps(prepared: Prepared) -> Steps:
    """The run's :class:`Steps`, with its teacher, its memory checked, its whitening set."""
    config, plan, splits = prepared.config, prepared.plan, prepared.splits
    with prepared.strategy.scope():
        teacher_model = (
            teacher.frozen_model(prepared.teacher, plan.precision) if prepared.teacher else None
        )
    steps = Steps(config, plan, prepared.strategy, teacher=teacher_model)
    check_memory(steps.model, config, splits, teacher=teacher_model)
    if models.whitening_layer(steps.model) is not None and not config.init_from:
        # Set before the first step; a resumed run's checkpoint restores the same kernel,
        # and a run that starts from another (init_from) keeps that run's.
        sample = data.first_images(
            splits["train"], config.image_size, whitening.SAMPLE_IMAGES, config.dct_method
        )
        models.init_whitening(steps.model, sample)
    return steps


def image_trainee(prepared: Prepared, workdir: str) -> Trainee:
    """The model trains on decoded (cached, optionally augmented) image batches.

    The epochs of :meth:`catdog_tf.config.Config.epoch_image_size` train on the images shrunk
    once (:func:`catdog_tf.data.shrunk_dataset`), augmented at that size. A teacher, if the
    config names one, labels every training batch as it trains.
    """
    config, splits = prepared.config, prepared.splits
    decoded = {
        name: data.decoded_dataset(
            ex,
            config.image_size,
            cache=cache_arg(config, ex, workdir, name),
            dct_method=config.dct_method,
        )
        for name, ex in splits.items()
    }
    steps = _image_steps(prepared)
    augment = (
        data.AUGMENTATIONS[config.augment_ops](
            flip=not config.alternating_flip, cutout=config.cutout
        )
        if config.augment
        else None
    )
    # Config.validate refuses mix without augment: the rule is checked there, once.
    mix = data.MixConfig(config.mix, config.mix_alpha) if config.mix != "none" else None
    # The shrunk epochs' images, shrunk once, cached where the decoded images are.
    shrunk = {
        size: data.shrunk_dataset(
            decoded["train"], size, cache=cache_arg(config, splits["train"], workdir, "train", size)
        )
        for size in config.shrunk_sizes
    }
    return Trainee(
        steps=steps,
        model=steps.model,
        train_batches=lambda epoch, batch, shards, index: data.train_batches(
            shrunk.get(config.epoch_image_size(epoch), decoded["train"]),
            len(splits["train"]),
            batch,
            epoch,
            config.seed,
            augment,
            num_shards=shards,
            shard_index=index,
            alternate_flip=config.alternating_flip,
            mix=mix,
        ),
        eval_ds={
            name: data.eval_batches(decoded[name], config.batch_size)
            for name in ("validation", "test")
            if len(splits[name])
        },
    )


def bottleneck_trainee(prepared: Prepared, workdir: str) -> Trainee:
    """A frozen backbone runs once per split (features cached); only the head trains."""
    config, plan, splits = prepared.config, prepared.plan, prepared.splits
    strategy = prepared.strategy
    # Each image is read once, to extract its features: no image cache.
    decoded = {
        name: data.decoded_dataset(ex, config.image_size, cache="", dct_method=config.dct_method)
        for name, ex in splits.items()
    }
    with precision_policy(plan.precision), strategy.scope():
        model = build_configured_model(config, plan)
    check_memory(model, config, splits)
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


TRAINEES: dict[str, Callable[[Prepared, str], Trainee]] = {
    "scratch": image_trainee,
    "finetune": image_trainee,
    "bottleneck": bottleneck_trainee,
}
