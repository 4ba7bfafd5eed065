"""A moving average of every weight of a model, batch-norm statistics included.

Keras's optimizer EMA (``use_ema``) averages the trainable weights only, so a model evaluated
with it pairs averaged kernels with the batch-norm statistics of the latest weights. This
average covers every float variable of the model (kernels, biases, batch-norm scales, shifts,
moving means and variances), as the weight averaging of the fast small-CNN recipes does, and
it can start late: until ``start_step`` the average is the weights themselves, so the first
epochs' weights, far from the final ones, never enter it.

With ``every`` > 0 it is Lookahead (Zhang et al., 2019, as airbench applies it to every
variable): the average takes a step only every ``every`` optimizer steps, and the weights are
then set to it, so training goes on from the average.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


class WeightAverage:
    """An exponential moving average of a model's float variables.

    Create it under the strategy scope the model was built in; call :meth:`update` after
    every optimizer step, and evaluate inside :meth:`swapped`.

    Attributes:
      decay: The average keeps this fraction of itself at each of its steps after
        ``start_step``.
      start_step: Through this optimizer step the average equals the weights.
      every: 0: the average steps after every optimizer step and leaves the weights alone.
        Else it steps after every ``every``-th, and the weights are set to it (Lookahead).
      variables: The averages (``tf.Variable``), one per float variable of the model, in
        ``model.weights`` order: checkpoint these to resume exactly.
    """

    def __init__(self, model: keras.Model, decay: float, start_step: int, every: int = 0):
        """Starts the average at the model's current weights.

        Args:
          model: The model whose weights are averaged.
          decay: In (0, 1).
          start_step: The optimizer step (``optimizer.iterations``) after which the
            average starts to lag behind the weights; at least 1.
          every: Lookahead's period in optimizer steps; 0 for a plain moving average.
        """
        self.decay = decay
        self.start_step = max(1, int(start_step))
        self.every = int(every)
        # Dropout's random-generator state is an integer variable: not a weight to average.
        self._weights = [w for w in model.weights if "float" in str(w.dtype)]
        self.variables = [
            tf.Variable(w.value, trainable=False, name=f"average_{i}")
            for i, w in enumerate(self._weights)
        ]

    def update(self, step: tf.Tensor) -> None:
        """Called after optimizer step ``step`` (a scalar tensor): the average's step, if due."""
        step = tf.cast(step, tf.int64)
        started = step > self.start_step
        due = started & (step % self.every == 0) if self.every else started
        # Before the start the average is the weights; between Lookahead's steps it holds.
        decay = tf.where(due, self.decay, tf.where(started, 1.0, 0.0))
        for average, weight in zip(self.variables, self._weights, strict=True):
            value = tf.convert_to_tensor(weight.value)
            average.assign(decay * average + (1.0 - decay) * value)
            if self.every:
                weight.assign(tf.where(due, tf.convert_to_tensor(average), value))

    @contextlib.contextmanager
    def swapped(self):
        """Inside the block the model holds the averages; its own weights come back after."""
        saved = [keras.ops.convert_to_numpy(w) for w in self._weights]
        for weight, average in zip(self._weights, self.variables, strict=True):
            weight.assign(average)
        try:
            yield
        finally:
            for weight, value in zip(self._weights, saved, strict=True):
                weight.assign(value)
