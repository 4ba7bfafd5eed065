"""Stage one of a run: the workdir checked, the process set up, the splits made, the plan resolved.

Everything here happens before the run's model is built, so a bad config, workdir or data
folder is refused before any training work; :func:`prepare` ends by writing the run's
``config.json``.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import tensorflow as tf
from absl import logging

from catdog_tf import data, rundir
from catdog_tf import machine as machine_lib
from catdog_tf import plan as plan_lib
from catdog_tf.build import build_configured_model, check_memory, precision_policy
from catdog_tf.config import Config
from catdog_tf.errors import ConfigError
from catdog_tf.plan import Plan
from catdog_tf.train import distributed
from catdog_tf.train.steps import Steps, measure_train_speeds
from catdog_tf.train.teacher import Teacher, read_teacher


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A run ready to build its model: what :func:`prepare` decided.

    Attributes:
      config: The run's config.
      plan: Its resolved plan (saved in ``config.json``).
      splits: ``{"train", "validation", "test"}`` examples.
      skipped: ``(path, reason)`` of every file that does not decode.
      strategy: The ``tf.distribute`` strategy the run trains under.
      teacher: With ``config.teacher``, the checked teacher run; else None.
    """

    config: Config
    plan: Plan
    splits: dict[str, data.Examples]
    skipped: list[tuple[str, str]]
    strategy: tf.distribute.Strategy
    teacher: Teacher | None = None


def prepare(config: Config, workdir: str, overwrite: bool) -> Prepared:
    """Checks ``workdir``, sets the process up, splits the data and resolves the plan.

    With ``overwrite``, the run in ``workdir`` is deleted once all of that succeeded, and
    this run starts from its first epoch.

    Raises:
      ConfigError: The workdir holds another run, or the batch does not fit the data or the
        replicas; the plan refuses a resume (see :func:`catdog_tf.plan.check_resume`); the
        teacher is not a finished run that held out this run's validation and test images;
        with ``overwrite``, the model or its steps cannot be built from this config, or the
        run would not fit in memory.
      RunFilesError: The teacher's ``result.json`` or ``model.keras`` does not read.
      DataSourceError: The data cannot be loaded or split.
    """
    found = rundir.check_workdir(workdir, config, overwrite)
    strategy = _process_set_up(config)
    splits, skipped, fingerprint = data.prepare_splits(
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
    logging.info("data:\n%s", data.describe(splits))
    teacher = read_teacher(config.teacher, splits) if config.teacher else None
    plan = plan_lib.resolve(
        config,
        n_train,
        measure=measure_train_speeds,
        data_fingerprint=fingerprint,
        teacher_fingerprint=teacher.fingerprint if teacher else "",
    )
    plan_lib.check_resume(found.saved_plan, plan, workdir)
    if found.replace:
        # Deleted only now: a bad config, data folder, teacher or model, or a run too large
        # for the memory, refused above loses nothing.
        _check_startable(config, plan, splits, teacher)
        rundir.remove_run(workdir)
    # Calibration and the check above build models, drawing from the random generators:
    # seeded again, the run's model starts from its seed alone, whatever was built first.
    keras.utils.set_random_seed(config.seed)
    os.makedirs(workdir, exist_ok=True)
    rundir.write_config(workdir, config, plan.to_dict())
    for name, reason in plan.why.items():
        logging.info("plan: %s = %s (%s)", name, getattr(plan, name), reason)
    return Prepared(config, plan, splits, skipped, strategy, teacher)


def _check_startable(
    config: Config, plan: Plan, splits: dict[str, data.Examples], teacher: Teacher | None
) -> None:
    """Builds what the run will train once, so what refuses to build or fit is refused now.

    A model's builder checks the values of its ``model_kwargs``; :class:`Steps` checks that
    the model has batch norms for ``bn_bias_lr_scale`` and can shrink for progressive
    resizing; :func:`~catdog_tf.build.check_memory` checks the run fits in memory. With the
    precision set, no calibration has built them yet. A bottleneck run's steps train a head
    built from features, so only its model is built here. Built on one replica: under
    ``multi_worker`` only the chief replaces a run, and variables made under that strategy
    would wait for the other workers.

    Raises:
      ConfigError: The model or its steps cannot be built from this config, or the run
        would not fit in the memory this machine has free.
    """
    alone = dataclasses.replace(plan, strategy="default")
    if plan.mode == "bottleneck":
        with precision_policy(plan.precision):
            model = build_configured_model(config, alone)
    else:
        model = Steps(config, alone).model
    check_memory(model, config, splits, teacher=teacher.saved if teacher else None)


def _process_set_up(config: Config) -> tf.distribute.Strategy:
    """Threads, the strategy, determinism and seeds, before any other TensorFlow work.

    ``multi_worker`` configures collective ops at start-up, so the strategy comes first.
    """
    machine_lib.configure_threads(machine_lib.usable_cores())
    strategy = distributed.make_strategy(config.strategy)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"batch_size={config.batch_size} does not split evenly over "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    return strategy
