"""Train and eval steps: ``tf.GradientTape`` under ``tf.function``, optionally XLA-compiled.

:class:`Steps` owns a model, its optimizer and a ``tf.distribute`` strategy. The per-replica
step is the only XLA-compiled part (``jit_compile``); the outer function runs it through
``strategy.run`` and sums the per-replica results, as Keras's own ``fit`` does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from catdog_tf.config import Config, ConfigError
from catdog_tf.data import normalize
from catdog_tf.models import build_model, get_spec


def resolve_precision(config: Config) -> str:
    """The precision policy: the model's measured default under ``auto``, else the config's.

    ``mixed_bfloat16`` is a CPU speed-up (AVX-512 BF16 / AMX); on a GPU ``auto`` picks
    ``mixed_float16`` only when the model's CPU default is mixed, and float32 otherwise.
    """
    if config.precision != "auto":
        return config.precision
    default = get_spec(config.model).precision
    if default != "float32" and tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return default


def resolve_jit(config: Config) -> bool:
    """XLA on or off.

    ``auto`` is on with a GPU; on CPU it is the model's measured default: XLA made the conv
    nets' steps 1.4-5x slower here, but the dense-heavy mlp's 1.85x faster.
    """
    if config.jit_compile == "auto":
        return bool(tf.config.list_physical_devices("GPU")) or get_spec(config.model).xla_on_cpu
    return config.jit_compile == "on"


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras's global precision policy set to ``name`` inside the block, restored after.

    Layers keep the policy they were built with, so later models get their own.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_configured_model(config: Config) -> keras.Model:
    """``config.model`` at the config's image size, with its kwargs (and weights if pretrained).

    Builds under the current precision policy and strategy scope; a pretrained model whose
    ``config.init_from`` names a finished run starts from that run's weights.
    """
    spec = get_spec(config.model)
    kwargs = dict(config.model_kwargs)
    if spec.pretrained:
        kwargs.setdefault("weights", config.weights)
    model = build_model(config.model, (*config.image_size, 3), **kwargs)
    if config.init_from:
        copy_weights(config.init_from, model)
    elif spec.starts_from:
        logging.warning(
            "%s usually starts from a finished %s run (init_from=RUN_DIR); without it the "
            "random head's large gradients reach the unfrozen backbone block",
            config.model,
            spec.starts_from,
        )
    return model


def copy_weights(run_dir: str, model: keras.Model) -> None:
    """Sets every weight of ``model`` from the same-named weight of ``run_dir``'s model.keras.

    Matching by name (not by order) lets a fine-tuning model, whose trainable flags differ,
    start from the bottleneck model it shares its layers with.

    Raises:
      ConfigError: ``run_dir`` has no model.keras, or lacks a weight ``model`` needs.
    """
    path = os.path.join(run_dir, "model.keras")
    if not os.path.exists(path):
        raise ConfigError(f"init_from={run_dir!r} has no model.keras: is it a finished run?")
    source = {v.path: v for v in keras.saving.load_model(path).weights}
    for variable in model.weights:
        found = source.get(variable.path)
        if found is None or tuple(found.shape) != tuple(variable.shape):
            raise ConfigError(
                f"init_from={run_dir!r}: its model has no weight {variable.path} of shape "
                f"{tuple(variable.shape)}; is it a run of the same model family and image size?"
            )
        variable.assign(found)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local devices) or ``multi_worker``."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(
    config: Config, steps_per_epoch: int, precision: str
) -> keras.optimizers.Optimizer:
    """Adam (AdamW with weight decay), RMSprop or SGD with momentum, for one run.

    Cosine decay is optional; ``mixed_float16`` wraps the optimizer in a
    ``LossScaleOptimizer``, the TensorFlow mixed-precision guide's custom-loop recipe.
    """
    spec = get_spec(config.model)
    lr: Any = config.learning_rate or spec.learning_rate
    name = spec.optimizer if config.optimizer == "auto" else config.optimizer
    if config.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, config.epochs * steps_per_epoch)
        )
    if name == "adam":
        optimizer = (
            keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
            if config.weight_decay
            else keras.optimizers.Adam(lr)
        )
    elif name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(lr, weight_decay=config.weight_decay or None)
    else:
        optimizer = keras.optimizers.SGD(
            lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay or None
        )
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def per_example_loss(name: str, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Loss of each example, float32, shape (batch,).

    ``mse``: squared error of the sigmoid probability (the article's loss).
    ``cross_entropy``: binary cross-entropy from logits (stable for any logit).
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.float32)
    logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
    if name == "mse":
        return tf.square(tf.sigmoid(logits) - labels)
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def collect_logits(
    step: Callable[..., tuple[Any, Any]], batches: Iterable
) -> tuple[np.ndarray, np.ndarray]:
    """Runs ``step(images, labels) -> (logits, labels)`` over every batch; NumPy arrays out.

    Shared by training-time evaluation (:meth:`Steps.predict`) and :func:`model_outputs`.
    """
    logits, labels = [], []
    for images, batch_labels in batches:
        batch_logits, batch_labels = step(images, batch_labels)
        logits.append(np.asarray(batch_logits))
        labels.append(np.asarray(batch_labels))
    if not logits:
        return np.zeros([0], np.float32), np.zeros([0], np.int32)
    return np.concatenate(logits), np.concatenate(labels)


def model_outputs(model: keras.Model, batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """float32 outputs of ``model`` (inference mode) on every uint8 (images, labels) batch.

    Used with a saved model (``catdog_tf.train.evaluate``) and with a pretrained model's
    feature extractor (``catdog_tf.train.features``); returns (outputs, labels) in order.
    """

    @tf.function(reduce_retracing=True)
    def step(images, labels):
        return tf.cast(model(normalize(images), training=False), tf.float32), labels

    return collect_logits(step, batches)


class Steps:
    """Model, optimizer and compiled steps of one run.

    Attributes:
      model: The Keras model (built under the strategy's scope and precision policy).
      optimizer: Its optimizer, with slot variables already built (so a checkpoint restores
        them exactly).
      strategy: The ``tf.distribute`` strategy.
      precision: The precision policy in use.
      jit_compile: Whether the per-replica steps are XLA-compiled.
      traces: How many times each step function was traced (a test checks 1).
    """

    def __init__(
        self,
        config: Config,
        steps_per_epoch: int,
        strategy: tf.distribute.Strategy | None = None,
        model: keras.Model | None = None,
    ):
        """Builds (or takes) the model, its optimizer and the compiled steps.

        Args:
          config: The run's config.
          steps_per_epoch: Optimizer steps per epoch (sets the cosine schedule's length).
          strategy: Distribution strategy; default from ``config.strategy``.
          model: A model built under ``strategy``'s scope to train instead of
            ``config.model`` (the head of a bottleneck model, trained on cached features).
        """
        self.config = config
        self.strategy = strategy or make_strategy(config.strategy)
        self.precision = resolve_precision(config)
        self.jit_compile = resolve_jit(config)
        self.traces = {"train": 0, "eval": 0}
        with precision_policy(self.precision), self.strategy.scope():
            self.model = model or build_configured_model(config)
            self.optimizer = make_optimizer(config, steps_per_epoch, self.precision)
            self.optimizer.build(self.model.trainable_variables)
        self._train = self._make_train_step()
        self._eval = self._make_eval_step()

    def _make_train_step(self):
        model, optimizer, loss_name = self.model, self.optimizer, self.config.loss
        global_batch = float(self.config.batch_size)
        scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        @tf.function(jit_compile=self.jit_compile)
        def replica_step(images, labels):
            images = normalize(images)  # The pipeline's last stage, fused into the step.
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                losses = per_example_loss(loss_name, labels, logits)
                # Sum / global batch size: correct gradient scale under any replica count.
                loss = tf.reduce_sum(losses) / global_batch
                if model.losses:
                    loss += tf.add_n(model.losses) / self.strategy.num_replicas_in_sync
                scaled = optimizer.scale_loss(loss) if scales_loss else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            correct = tf.reduce_sum(
                tf.cast(
                    (tf.reshape(logits, [-1]) > 0) == (tf.reshape(labels, [-1]) == 1), tf.float32
                )
            )
            return tf.reduce_sum(losses), correct

        @tf.function(reduce_retracing=True)
        def train_step(images, labels):
            self.traces["train"] += 1  # Runs only while tracing.
            loss_sum, correct = self.strategy.run(replica_step, args=(images, labels))
            reduce = tf.distribute.ReduceOp.SUM
            return (
                self.strategy.reduce(reduce, loss_sum, axis=None),
                self.strategy.reduce(reduce, correct, axis=None),
            )

        return train_step

    def _make_eval_step(self):
        model = self.model

        @tf.function(jit_compile=self.jit_compile)
        def replica_step(images, labels):
            logits = model(normalize(images), training=False)
            logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
            return logits, tf.reshape(labels, [-1])

        @tf.function(reduce_retracing=True)
        def eval_step(images, labels):
            self.traces["eval"] += 1
            logits, labels = self.strategy.run(replica_step, args=(images, labels))
            # gather concatenates in replica order, the order the batch was split in.
            return (self.strategy.gather(logits, axis=0), self.strategy.gather(labels, axis=0))

        return eval_step

    def train_step(self, images, labels) -> tuple[tf.Tensor, tf.Tensor]:
        """One optimizer step on a (distributed) batch: (sum of losses, correct count)."""
        return self._train(images, labels)

    def eval_step(self, images, labels) -> tuple[tf.Tensor, tf.Tensor]:
        """(logits, labels) of a (distributed) batch, gathered from all replicas."""
        return self._eval(images, labels)

    def predict(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Logits and labels of every example of a batched (images, labels) dataset, as NumPy."""
        return collect_logits(self.eval_step, self.distribute(dataset))

    def distribute(self, dataset: tf.data.Dataset):
        """Splits global batches across replicas (a no-op for the default strategy)."""
        if self.strategy.num_replicas_in_sync == 1:
            return dataset
        return self.strategy.experimental_distribute_dataset(dataset)
