"""Past one device: the run's ``tf.distribute`` strategy, each worker's role, sharded input.

Three strategies, all driving the same ``GradientTape`` step (:mod:`catdog_tf.train.steps`),
as TensorFlow's custom-training-loop guide sets them up:

* ``default``: one device.
* ``mirrored``: every local device (several GPUs, or logical CPUs) is a replica; one input
  pipeline whose global batches are split across them.
* ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` across the processes that
  ``TF_CONFIG`` lists. Each worker runs its own input pipeline over a disjoint shard of every
  epoch (:func:`catdog_tf.data.train_batches`), never "every worker reads everything".

In every case the loss is summed and divided by the global batch, batch norm is synchronized
across replicas (:func:`synchronize_batch_norm`), and decisions taken from validation metrics
are made on all-reduced values (:func:`agree`) so that the workers never diverge. Every worker
saves checkpoints (TensorFlow requires it); only the chief writes into the run directory
(:func:`role`), the others into temporary directories they remove.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

from catdog_tf import watchdog
from catdog_tf.errors import ConfigError
from catdog_tf.models import batch_norms

# Seconds a multi_worker process waits for every task of its cluster to start.
WORKER_TIMEOUT_ENV = "CATDOG_TF_WORKER_TIMEOUT"
DEFAULT_WORKER_TIMEOUT = 600.0


@dataclasses.dataclass(frozen=True)
class Role:
    """This process's part in a run.

    Attributes:
      chief: Whether it writes the run directory (the one process of a single-process run).
      task: ``"worker:1"`` style name from ``TF_CONFIG``; ``""`` without one.
    """

    chief: bool
    task: str


def role(strategy: str) -> Role:
    """This process's role under ``strategy`` (``TF_CONFIG`` for ``multi_worker``).

    ``TF_CONFIG`` is read by TensorFlow's ``TFConfigClusterResolver``. The chief is the
    ``chief`` task if the cluster lists one, else worker 0, as in TensorFlow's multi-worker
    guide.

    Raises:
      ConfigError: ``TF_CONFIG`` is not valid JSON, has no task, or names a task type other
        than chief or worker.
    """
    if strategy != "multi_worker" or not os.environ.get("TF_CONFIG"):
        if os.environ.get("TF_CONFIG"):
            logging.warning(
                "TF_CONFIG is set, but strategy=%s trains in this process alone and ignores "
                "it; set strategy=multi_worker to train with its cluster",
                strategy,
            )
        return Role(chief=True, task="")
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        task_type, task_id = resolver.task_type, resolver.task_id
        jobs = resolver.cluster_spec().jobs
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"TF_CONFIG is not {{'cluster': {{...}}, 'task': {{'type': ..., 'index': ...}}}} "
            f"({e}); see README 'Scaling out'"
        ) from e
    if task_type not in ("chief", "worker") or task_type not in jobs:
        raise ConfigError(
            f"TF_CONFIG task type {task_type!r}: multi_worker runs chief and worker tasks "
            f"listed in its cluster ({', '.join(jobs) or 'none'}); see README 'Scaling out'"
        )
    chief = task_type == "chief" or (task_id == 0 and "chief" not in jobs)
    return Role(chief=chief, task=f"{task_type}:{task_id}")


def local_cluster(workers: int) -> list[str]:
    """``TF_CONFIG`` of each of ``workers`` processes on this machine (127.0.0.1, free ports).

    For trying ``multi_worker`` on one machine (tests, benchmarks): start one process per
    entry, each with its ``TF_CONFIG``. The ports are free when chosen; another program may
    still take one before the workers bind it.
    """
    sockets = [socket.socket() for _ in range(workers)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()
    return [
        json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
        for i in range(workers)
    ]


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local devices) or ``multi_worker``.

    ``multi_worker`` must be created before TensorFlow runs anything else in the process
    (its collective ops are configured at start-up): the training loop creates it first.
    Creating it waits for every task of ``TF_CONFIG``'s cluster; TensorFlow's wait has no end
    and cannot be interrupted, so after :func:`worker_timeout` seconds one error line names
    the tasks that never answered and the process is ended (:mod:`catdog_tf.watchdog`).

    Raises:
      ConfigError: ``multi_worker`` could not start, or the timeout is not a number above 0.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        seconds = worker_timeout()
        waiting = (
            f"strategy=multi_worker: the cluster did not form within {seconds:g} s "
            f"({WORKER_TIMEOUT_ENV}); start every task TF_CONFIG lists, with the same command"
        )
        try:
            with watchdog.deadline(seconds, waiting, _peers()):
                return tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as e:
            raise ConfigError(
                f"strategy=multi_worker could not start ({str(e).splitlines()[0]}); it must be "
                "the first TensorFlow work of its process, one run per process"
            ) from e
    return tf.distribute.get_strategy()


def worker_timeout(environ: dict[str, str] | None = None) -> float:
    """Seconds a worker waits for its cluster: ``$CATDOG_TF_WORKER_TIMEOUT``, else 600.

    Raises:
      ConfigError: The variable is set to something other than a number above 0.
    """
    text = (os.environ if environ is None else environ).get(WORKER_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_WORKER_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"{WORKER_TIMEOUT_ENV}={text!r}: give the seconds a worker waits for the others "
            "to start, a number above 0"
        )
    return seconds


def _peers() -> dict[str, str]:
    """``{"worker:1": "host:port"}`` of the other tasks in ``TF_CONFIG``'s cluster."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    me = f"{resolver.task_type}:{resolver.task_id}"
    peers = {}
    for job, addresses in resolver.cluster_spec().as_dict().items():
        listed = addresses.items() if isinstance(addresses, dict) else enumerate(addresses)
        peers.update({f"{job}:{index}": address for index, address in listed})
    peers.pop(me, None)
    return peers


# make_batches(batch_size, num_shards, shard_index) -> that input pipeline's batches.
MakeBatches = Callable[[int, int, int], tf.data.Dataset]


def distribute_train(
    strategy: tf.distribute.Strategy,
    strategy_name: str,
    make_batches: MakeBatches,
    global_batch: int,
    steps: int,
):
    """One epoch's training input for ``steps`` optimizer steps under ``strategy``.

    ``multi_worker``: one pipeline per worker, each over its own shard, yielding per-replica
    batches (``distribute_datasets_from_function``). ``mirrored``: one pipeline of global
    batches, split across the local replicas. ``default``: the global batches as they are.
    """
    if strategy_name == "multi_worker":

        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            batch = context.get_per_replica_batch_size(global_batch)
            local_replicas = context.num_replicas_in_sync // context.num_input_pipelines
            dataset = make_batches(batch, context.num_input_pipelines, context.input_pipeline_id)
            return dataset.take(steps * local_replicas)

        return strategy.distribute_datasets_from_function(per_worker)
    return _split_across_replicas(strategy, make_batches(global_batch, 1, 0).take(steps))


def _split_across_replicas(
    strategy: tf.distribute.Strategy, dataset: tf.data.Dataset
) -> tf.data.Dataset | tf.distribute.DistributedDataset:
    """Global batches split across the local replicas; as they are with one replica."""
    if strategy.num_replicas_in_sync == 1:
        return dataset
    return strategy.experimental_distribute_dataset(dataset)


def evaluates_locally(strategy_name: str) -> bool:
    """Whether each process evaluates whole batches itself, without splitting them.

    True under ``multi_worker``: every worker's weights are everyone's, so each evaluates
    the whole split; every image counts once, and no collective op waits on a partial last
    batch. Elsewhere a batch is split across the local replicas and gathered back.
    """
    return strategy_name == "multi_worker"


def distribute_eval(
    strategy: tf.distribute.Strategy, strategy_name: str, dataset: tf.data.Dataset
) -> tf.data.Dataset | tf.distribute.DistributedDataset:
    """Evaluation input under ``strategy``: split across local replicas unless evaluated locally."""
    if evaluates_locally(strategy_name):
        return dataset
    return _split_across_replicas(strategy, dataset)


def agree(strategy: tf.distribute.Strategy, value: float) -> float:
    """The mean of ``value`` over the replicas of all workers: one number they all share.

    Every worker evaluates the whole validation split with the same weights; summation order
    may still differ in the last bit, and a best-epoch or early-stopping decision that differs
    between workers would leave one waiting for the other forever. Also a barrier: it returns
    once every worker has reached it.
    """
    if strategy.num_replicas_in_sync == 1:
        return value
    # Inside a tf.function: run eagerly, the collective strategy warns of its overhead.
    per_replica = strategy.run(tf.function(tf.identity), args=(tf.constant(value, tf.float64),))
    return float(strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None))


def synchronize_batch_norm(model: keras.Model) -> int:
    """Makes every ``BatchNormalization`` of ``model`` (nested models too) synchronized.

    With several replicas, each would otherwise normalize by the statistics of its own slice
    of the batch. Keras reads the flag at call time. Returns how many layers were changed.
    """
    changed = [layer for layer in batch_norms(model) if not layer.synchronized]
    for layer in changed:
        layer.synchronized = True
    return len(changed)
