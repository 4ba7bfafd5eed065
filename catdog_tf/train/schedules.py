"""The learning rate over a run: constant, cosine or linear decay, after an optional warm-up.

The constant and cosine rates are Keras's ``CosineDecay``, which has the warm-up built in.
The linear decay is Keras's ``PolynomialDecay`` of power 1, behind a warm-up of its own that
rises as ``CosineDecay``'s does (``PolynomialDecay`` has none).
"""

from __future__ import annotations

import keras

from catdog_tf.plan import Plan


class TriangularDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear from 0 up to ``peak`` over ``warmup_steps``, then linear down to 0.

    The decay is Keras's ``PolynomialDecay`` (power 1, ending at 0) over ``decay_steps``,
    started when the warm-up ends; the warm-up rises as ``CosineDecay``'s does.
    """

    def __init__(self, peak: float, warmup_steps: int, decay_steps: int):
        """Sets the triangle's peak and its two sides.

        Args:
          peak: The rate at the end of the warm-up.
          warmup_steps: Optimizer steps of the rise (0: the rate starts at ``peak``).
          decay_steps: Optimizer steps of the fall to 0 after it.
        """
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self._decay = keras.optimizers.schedules.PolynomialDecay(
            peak, max(1, decay_steps), end_learning_rate=0.0, power=1.0
        )

    def __call__(self, step):
        """The rate at optimizer step ``step`` (a scalar tensor)."""
        step = keras.ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        rising = self.peak * step / max(warmup, 1.0)
        return keras.ops.where(step < warmup, rising, self._decay(step - warmup))

    def get_config(self) -> dict:
        """The constructor's arguments, as Keras serializes a schedule."""
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
        }


def learning_rate_schedule(
    plan: Plan, scale: float = 1.0
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The plan's learning rate: constant, cosine or linear, after an optional linear warm-up.

    Constant and cosine are Keras's ``CosineDecay``: with a warm-up it rises linearly from 0
    to the peak over ``warmup_steps``; a constant rate after the warm-up is a cosine with
    ``alpha=1`` (no decay). Linear is :class:`TriangularDecay`. ``scale`` multiplies the whole
    schedule (its peak).
    """
    warmup = plan.warmup_steps
    peak = plan.learning_rate * scale
    if plan.lr_schedule == "linear":
        return TriangularDecay(peak, warmup, plan.decay_steps)
    cosine = plan.lr_schedule == "cosine"
    if not (cosine or warmup):
        return peak
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else peak,
        decay_steps=max(1, plan.decay_steps) if cosine else 1,
        alpha=0.0 if cosine else 1.0,
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )
