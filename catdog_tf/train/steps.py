"""Train and eval steps: ``tf.GradientTape`` under ``tf.function``, optionally XLA-compiled.

:class:`Steps` owns a model, its optimizer and a ``tf.distribute`` strategy. The per-replica
step is the only XLA-compiled part (``jit_compile``); the outer function runs it through
``strategy.run`` and sums the per-replica results, as Keras's own ``fit`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from catdog_tf.build import build_configured_model, precision_policy
from catdog_tf.calibration import time_interleaved
from catdog_tf.config import Config
from catdog_tf.data import normalize
from catdog_tf.errors import ConfigError
from catdog_tf.models import at_image_size, batch_norms, training_twin
from catdog_tf.plan import Plan
from catdog_tf.train import distributed
from catdog_tf.train.averaging import WeightAverage
from catdog_tf.train.muon import ConvMuon
from catdog_tf.train.schedules import learning_rate_schedule


def make_optimizer(
    config: Config,
    plan: Plan,
    lr_scale: float = 1.0,
    no_decay: list[keras.Variable] | None = None,
) -> keras.optimizers.Optimizer:
    """The plan's Adam (AdamW with weight decay), RMSprop, SGD with momentum, Lion or Muon.

    The learning rate follows :func:`learning_rate_schedule`, times ``lr_scale``. The
    variables of ``no_decay`` are left out of the weight decay (Keras's
    ``exclude_from_weight_decay``). ``mixed_float16`` wraps the optimizer in a
    ``LossScaleOptimizer``, the TensorFlow mixed-precision guide's custom-loop recipe.
    """
    lr = learning_rate_schedule(plan, lr_scale)
    name = plan.optimizer
    if name == "adam":
        optimizer = (
            keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
            if config.weight_decay
            else keras.optimizers.Adam(lr)
        )
    elif name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(lr, weight_decay=config.weight_decay or None)
    elif name == "lion":
        optimizer = keras.optimizers.Lion(lr, weight_decay=config.weight_decay or None)
    elif name == "muon":
        decay = config.weight_decay or None
        optimizer = ConvMuon(lr, weight_decay=decay, adam_weight_decay=decay)
    else:
        optimizer = keras.optimizers.SGD(
            lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay or None
        )
    if no_decay:
        optimizer.exclude_from_weight_decay(var_list=no_decay)
    if plan.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def per_example_loss(
    name: str,
    labels: tf.Tensor,
    logits: tf.Tensor,
    label_smoothing: float = 0.0,
    teacher_probs: tf.Tensor | None = None,
    distill_weight: float = 0.0,
) -> tf.Tensor:
    """Loss of each example, float32, shape (batch,).

    ``mse``: squared error of the sigmoid probability (the article's loss).
    ``cross_entropy``: binary cross-entropy from logits (stable for any logit).
    ``label_smoothing`` moves the targets halfway-to-0.5 by that fraction, as Keras's
    ``BinaryCrossentropy(label_smoothing=...)`` does. With ``teacher_probs`` (knowledge
    distillation), ``distill_weight`` of the loss takes them as targets instead.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.float32)
    logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
    loss = _loss_against(name, labels, logits)
    if teacher_probs is None:
        return loss
    soft = _loss_against(name, tf.cast(tf.reshape(teacher_probs, [-1]), tf.float32), logits)
    return (1.0 - distill_weight) * loss + distill_weight * soft


def _loss_against(name: str, targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """``name``'s loss of each logit against a target probability."""
    if name == "mse":
        return tf.square(tf.sigmoid(logits) - targets)
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)


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


def flip_averaged(model: Callable[..., tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """Flip test-time augmentation: ``images -> mean of model(images), model(mirrored)``.

    The two halves run as one batch of twice the size (one call, better vectorized).
    """

    def forward(images: tf.Tensor) -> tf.Tensor:
        both = model(tf.concat([images, tf.reverse(images, axis=[2])], 0), training=False)
        plain, mirrored = tf.split(tf.cast(both, tf.float32), 2)
        return (plain + mirrored) / 2

    return forward


def translated(images: tf.Tensor, dy: int, dx: int) -> tf.Tensor:
    """``images`` moved down ``dy`` and right ``dx`` pixels, the border filled by reflection.

    Output pixel (i, j) is input pixel (i - dy, j - dx), reflected back inside the image.
    """
    if not (dy or dx):
        return images
    pad_y, pad_x = abs(dy), abs(dx)
    padded = tf.pad(images, [[0, 0], [pad_y, pad_y], [pad_x, pad_x], [0, 0]], mode="REFLECT")
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    return padded[:, pad_y - dy : pad_y - dy + height, pad_x - dx : pad_x - dx + width]


# Multi-view test-time augmentation: the image and two one-pixel diagonal translations, each
# also mirrored (six views, as the fast small-CNN recipes evaluate).
SIX_VIEW_SHIFTS = ((0, 0), (1, 1), (-1, -1))


def views_averaged(
    model: Callable[..., tf.Tensor], shifts: tuple[tuple[int, int], ...] = SIX_VIEW_SHIFTS
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Multi-view test-time augmentation: ``images -> mean of model(view)`` over the views.

    The views are each of ``shifts`` (:func:`translated`) and its mirror image; with
    ``((0, 0),)`` this is :func:`flip_averaged`. One forward pass per view: the evaluation
    costs ``2 * len(shifts)`` times a plain one.
    """
    flip = flip_averaged(model)

    def forward(images: tf.Tensor) -> tf.Tensor:
        return tf.add_n([flip(translated(images, dy, dx)) for dy, dx in shifts]) / len(shifts)

    return forward


def inference(model: Callable[..., tf.Tensor], tta: bool) -> Callable[[tf.Tensor], tf.Tensor]:
    """``images -> float32 outputs`` of ``model`` in inference mode, flip-averaged if ``tta``."""
    if tta:
        return flip_averaged(model)
    return lambda images: tf.cast(model(images, training=False), tf.float32)


def model_outputs(
    model: keras.Model, batches: Iterable, tta: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """float32 outputs of ``model`` (inference mode) on every uint8 (images, labels) batch.

    Used with a saved model (``catdog_tf.evaluate``) and with a pretrained model's
    feature extractor (``catdog_tf.train.features``); returns (outputs, labels) in order.
    ``tta`` averages each output with the mirrored image's (:func:`flip_averaged`).
    """
    return forward_outputs(inference(model, tta), batches)


def correct_count(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """How many logits fall on their label's side of 0, as a float32 scalar.

    A mixed image's label (a dog share in [0, 1]) counts as the class it holds the larger
    share of.
    """
    majority = tf.cast(tf.reshape(labels, [-1]), tf.float32) > 0.5
    return tf.reduce_sum(tf.cast((tf.reshape(logits, [-1]) > 0) == majority, tf.float32))


def sharpness_aware(
    model: keras.Model,
    images: tf.Tensor,
    variables: list[keras.Variable],
    gradients: list[tf.Tensor | None],
    rho: float,
    loss_of: Callable[[tf.Tensor, list[tf.Tensor]], tf.Tensor],
) -> list[tf.Tensor | None]:
    """Sharpness-aware minimization's gradient (Foret et al., 2021), for one batch.

    ``variables`` move by ``rho`` times their gradient over its norm (one L2 norm over all
    of them), and the gradient is taken again there. Under a distribution strategy, the
    replicas' gradients are summed first: the weights move along the global batch's
    gradient, on every replica alike. The second pass runs through
    ``model.stateless_call``: nothing is assigned, so the weights stay where they were and
    the batch norms' moving statistics keep only the first pass's update.

    Args:
      model: The model, called in training mode.
      images: The batch, as the model takes it.
      variables: Trainable weights of ``model``, in any order.
      gradients: The first pass's gradient of each (None for one the loss does not reach).
      rho: How far the weights move.
      loss_of: ``(logits, the model's added losses) -> loss``, the first pass's loss.

    Returns:
      The gradient of each of ``variables`` at the moved weights.
    """
    reached = [(v, g) for v, g in zip(variables, gradients, strict=True) if g is not None]
    summed = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, [g for _, g in reached]
    )
    scale = rho / (tf.linalg.global_norm(summed) + 1e-12)
    offsets = {id(v): g * scale for (v, _), g in zip(reached, summed, strict=True)}
    trainable = model.trainable_variables
    with tf.GradientTape() as tape:
        moved = [v.value + offsets[id(v)] if id(v) in offsets else v.value for v in trainable]
        tape.watch(moved)
        logits, _, losses = model.stateless_call(
            moved,
            [v.value for v in model.non_trainable_variables],
            images,
            training=True,
            return_losses=True,
        )
        loss = loss_of(logits, losses)
    again = dict(zip((id(v) for v in trainable), tape.gradient(loss, moved), strict=True))
    return [again[id(v)] for v in variables]


def forward_outputs(
    forward: Callable[[tf.Tensor], tf.Tensor], batches: Iterable
) -> tuple[np.ndarray, np.ndarray]:
    """``forward``'s outputs on every uint8 (images, labels) batch, scaled as training scales.

    ``forward`` maps [0, 1] images to outputs: :func:`inference`, or a multi-view average
    (:func:`views_averaged`). Returns (outputs, labels) in order, as NumPy arrays.
    """

    # Keras layers hold no Python control flow on tensors; AutoGraph would only re-parse them.
    @tf.function(reduce_retracing=True, autograph=False)
    def step(images, labels):
        return forward(normalize(images)), labels

    return collect_logits(step, batches)


class Steps:
    """Model, optimizer and compiled steps of one run.

    Attributes:
      model: The Keras model (built under the strategy's scope and precision policy).
      optimizer: Its optimizer, with slot variables already built (so a checkpoint restores
        them exactly).
      strategy: The ``tf.distribute`` strategy.
      plan: The run's resolved plan (precision, XLA, optimizer, schedule).
      train_models: ``{(height, width): model}`` of each size the run trains at: the model,
        and with progressive resizing the same layers at each of ``config.shrunk_sizes``
        (:func:`catdog_tf.models.at_image_size`), each with its batch norms fused for
        training (:func:`catdog_tf.models.training_twin`).
      shifts: With ``config.bn_bias_lr_scale``, the batch norms' shifts (beta), which
        :attr:`shift_optimizer` trains at that multiple of the learning rate; else empty.
      shift_optimizer: Their optimizer (the same kind as :attr:`optimizer`, which trains
        every other weight), or None.
      teachers: ``{(height, width): teacher}`` of each size the run trains at, with a
        teacher (the same model, at that size); else empty.
      average: With ``config.ema_decay``, the moving average of every weight
        (:class:`~catdog_tf.train.averaging.WeightAverage`), updated after each step; else
        None.
    """

    def __init__(
        self,
        config: Config,
        plan: Plan,
        strategy: tf.distribute.Strategy | None = None,
        model: keras.Model | None = None,
        fuse_batch_norm: bool = True,
        teacher: keras.Model | None = None,
    ):
        """Builds (or takes) the model, its optimizer and the compiled steps.

        Args:
          config: The run's config.
          plan: Its resolved plan (:func:`catdog_tf.plan.resolve`).
          strategy: Distribution strategy; default from the plan.
          model: A model built under ``strategy``'s scope and the plan's precision to train
            instead of ``config.model`` (the head of a bottleneck model, on cached features).
          fuse_batch_norm: Train through :func:`catdog_tf.models.training_twin` (False:
            through the model's own Keras batch norm, to compare).
          teacher: A model built under ``strategy``'s scope whose probabilities are the
            targets of ``config.distill_weight`` of the loss (``config.teacher``'s model).
        """
        self.config = config
        self.plan = plan
        self.strategy = strategy or distributed.make_strategy(plan.strategy)
        with precision_policy(plan.precision), self.strategy.scope():
            self.model = model or build_configured_model(config, plan)
            if self.strategy.num_replicas_in_sync > 1:
                distributed.synchronize_batch_norm(self.model)
            self.shifts, self.shift_optimizer = self._shift_group()
            self.optimizer = make_optimizer(config, plan, no_decay=self._no_decay())
            self.optimizer.build(self._others(self.model.trainable_variables))
            self.average = (
                WeightAverage(
                    self.model,
                    config.ema_decay,
                    round(config.ema_start * plan.steps_per_epoch),
                    config.lookahead_steps,
                )
                if config.ema_decay
                else None
            )
            # The size a batch has unless a train step is told otherwise: read once, not per step.
            self._model_size = tuple(self.model.input_shape[1:3])
            self.train_models = self._sized_models(fuse_batch_norm)
            self.teachers = {
                size: at_image_size(teacher, size) for size in self.train_models if teacher
            }
        # A tf.function traces on its first call: a variant no epoch takes costs nothing.
        self._train = {
            (size, sam): self._make_train_step(m, self.teachers.get(size), sam)
            for size, m in self.train_models.items()
            for sam in {False, bool(config.sam_rho)}
        }
        self._eval = {tta: self._make_eval_step(tta) for tta in (False, True)}

    def _sized_models(self, fuse_batch_norm: bool) -> dict[tuple[int, int], keras.Model]:
        """:attr:`train_models`: the model at its own size and at each shrunk size.

        Built now, so a model that cannot shrink fails before the first epoch.
        """
        twin = training_twin if fuse_batch_norm else lambda m: m
        sized = {self._model_size: twin(self.model)}
        for size in self.config.shrunk_sizes:
            sized[size] = twin(at_image_size(self.model, size))
        return sized

    def update_flops(self) -> int:
        """FLOPs one optimizer step spends besides the gradient: Muon's, else 0.

        :class:`~catdog_tf.train.muon.ConvMuon` orthogonalizes each kernel's momentum by
        matrix products; the shifts' optimizer (batch-norm shifts, vectors) has none.
        """
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        if not isinstance(inner, ConvMuon):
            return 0
        return inner.update_flops(self._others(self.model.trainable_variables))

    def _shift_group(self) -> tuple[list[keras.Variable], keras.optimizers.Optimizer | None]:
        """With ``config.bn_bias_lr_scale``: the batch norms' shifts and their own optimizer."""
        scale = self.config.bn_bias_lr_scale
        if scale == 1:
            return [], None
        shifts = [bn.beta for bn in batch_norms(self.model) if bn.center and bn.trainable]
        if not shifts:
            raise ConfigError(
                f"bn_bias_lr_scale={scale} needs batch norms to train, and the "
                f"{self.config.model} model trains none"
            )
        optimizer = make_optimizer(
            self.config, self.plan, lr_scale=scale, no_decay=self._no_decay()
        )
        optimizer.build(shifts)
        return shifts, optimizer

    def _no_decay(self) -> list[keras.Variable]:
        """The weights left out of weight decay: the 1-D ones unless ``decay_vectors``."""
        if self.config.decay_vectors:
            return []
        return [v for v in self.model.trainable_variables if len(v.shape) <= 1]

    def _others(self, variables: list[keras.Variable]) -> list[keras.Variable]:
        """``variables`` without the shifts that :attr:`shift_optimizer` trains."""
        shift_ids = {id(v) for v in self.shifts}
        return [v for v in variables if id(v) not in shift_ids]

    def _make_train_step(self, model: keras.Model, teacher: keras.Model | None, sam: bool):
        optimizer, loss_name = self.optimizer, self.config.loss
        distill_weight = self.config.distill_weight
        # The shifts go last, so one gradient call serves both optimizers.
        variables = self._others(model.trainable_variables) + self.shifts
        split = len(variables) - len(self.shifts)
        smoothing = self.config.label_smoothing
        global_batch = float(self.config.batch_size)
        scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        sam_rho = self.config.sam_rho if sam else 0.0
        replicas = self.strategy.num_replicas_in_sync

        def batch_loss(labels, logits, taught, extra_losses):
            losses = per_example_loss(loss_name, labels, logits, smoothing, taught, distill_weight)
            # Sum / global batch size: correct gradient scale under any replica count.
            loss = tf.reduce_sum(losses) / global_batch
            if extra_losses:
                loss += tf.add_n(extra_losses) / replicas
            return losses, loss

        @tf.function(jit_compile=self.plan.jit_compile)
        def replica_step(images, labels):
            images = normalize(images)  # The pipeline's last stage, fused into the step.
            taught = None
            if teacher is not None:
                taught = tf.sigmoid(tf.cast(teacher(images, training=False), tf.float32))
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                losses, loss = batch_loss(labels, logits, taught, model.losses)
                scaled = optimizer.scale_loss(loss) if scales_loss else loss
            grads = tape.gradient(scaled, variables)
            if sam_rho:
                grads = sharpness_aware(
                    model,
                    images,
                    variables,
                    grads,
                    sam_rho,
                    lambda moved_logits, extra: batch_loss(labels, moved_logits, taught, extra)[1],
                )
            optimizer.apply(grads[:split], variables[:split])
            if self.shift_optimizer:
                self.shift_optimizer.apply(grads[split:], variables[split:])
            return tf.reduce_sum(losses), correct_count(labels, logits)

        @tf.function(reduce_retracing=True)
        def train_step(images, labels):
            loss_sum, correct = self.strategy.run(replica_step, args=(images, labels))
            if self.average:
                self.average.update(optimizer.iterations.value)
            reduce = tf.distribute.ReduceOp.SUM
            return (
                self.strategy.reduce(reduce, loss_sum, axis=None),
                self.strategy.reduce(reduce, correct, axis=None),
            )

        return train_step

    def _make_eval_step(self, tta: bool):
        forward = inference(self.model, tta)

        @tf.function(jit_compile=self.plan.jit_compile)
        def replica_step(images, labels):
            logits = tf.reshape(forward(normalize(images)), [-1])
            return logits, tf.reshape(labels, [-1])

        if distributed.evaluates_locally(self.plan.strategy):
            return tf.function(replica_step, reduce_retracing=True)

        @tf.function(reduce_retracing=True)
        def eval_step(images, labels):
            logits, labels = self.strategy.run(replica_step, args=(images, labels))
            # gather concatenates in replica order, the order the batch was split in.
            return (self.strategy.gather(logits, axis=0), self.strategy.gather(labels, axis=0))

        return eval_step

    @property
    def traced_functions(self) -> dict[str, tf.types.experimental.PolymorphicFunction]:
        """The outer ``tf.function`` of each step (``experimental_get_tracing_count()``)."""
        return {
            "train": self._train[self._model_size, bool(self.config.sam_rho)],
            "eval": self._eval[False],
            "eval_tta": self._eval[True],
        }

    def train_step(
        self,
        images,
        labels,
        image_size: tuple[int, int] | None = None,
        sharpness_aware: bool | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """One optimizer step on a (distributed) batch: (sum of losses, correct count).

        ``image_size`` is the batch's (height, width) when it is not the model's (a
        progressive-resizing epoch; one of :attr:`train_models`). ``sharpness_aware``
        (default: whether ``config.sam_rho`` is set) takes SAM's two passes; False with
        ``sam_rho`` is an epoch before ``config.sam_epochs``'s.
        """
        sam = bool(self.config.sam_rho) if sharpness_aware is None else sharpness_aware
        if sam and not self.config.sam_rho:
            raise ConfigError("a sharpness-aware step needs sam_rho > 0")
        return self._train[image_size or self._model_size, sam](images, labels)

    def eval_step(self, images, labels, tta: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """(logits, labels) of a batch, gathered from all replicas (whole on each worker).

        Under ``mirrored`` the batch is split across the replicas and gathered back; under
        ``multi_worker`` each worker evaluates the whole batch itself.

        ``tta`` averages each logit with the mirrored image's (:func:`flip_averaged`).
        """
        return self._eval[tta](images, labels)

    def predict(self, dataset, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Logits and labels of every example of a batched (images, labels) dataset, as NumPy."""
        dataset = distributed.distribute_eval(self.strategy, self.plan.strategy, dataset)
        return collect_logits(self._eval[tta], dataset)

    def train_input(self, make_batches: distributed.MakeBatches):
        """One epoch of training input for :meth:`train_step`, split as the strategy needs.

        Args:
          make_batches: ``(batch_size, num_shards, shard_index) -> dataset`` of one input
            pipeline's batches (:func:`catdog_tf.data.train_batches` with the epoch bound).
        """
        return distributed.distribute_train(
            self.strategy,
            self.plan.strategy,
            make_batches,
            self.config.batch_size,
            self.plan.steps_per_epoch,
        )

    @contextlib.contextmanager
    def averaged(self):
        """Inside the block the model holds the moving average of its weights, if it has one.

        Without ``ema_decay`` this does nothing. The training weights are put back on leaving.
        """
        with self.average.swapped() if self.average else contextlib.nullcontext():
            yield


def measure_train_speeds(
    config: Config, plans: list[Plan], budget_seconds: float = 3.0
) -> list[float]:
    """Training images per second of ``config.model`` under each plan: the calibration probe.

    Random uint8 batches at the config's image size and batch; pretrained models get random
    weights (speed does not depend on them, and nothing is downloaded). A bottleneck model
    is timed with its frozen backbone, the cost of extracting its features. The candidates
    are built first, then timed taking turns (:func:`catdog_tf.calibration.time_interleaved`).
    """
    probe_config = config.replace(weights="none", init_from="")
    rng = np.random.default_rng(0)
    images = tf.constant(
        rng.integers(0, 256, (config.batch_size, *config.image_size, 3), dtype=np.uint8)
    )
    labels = tf.constant(rng.integers(0, 2, (config.batch_size,), dtype=np.int32))

    def probe(plan: Plan) -> Callable[[], float]:
        steps = Steps(probe_config, dataclasses.replace(plan, starts_from="", strategy="default"))
        return lambda: float(steps.train_step(images, labels)[0])  # float() waits for it.

    return time_interleaved([probe(p) for p in plans], config.batch_size, budget_seconds)
