"""Training twins of a model whose batch norm runs TensorFlow's fused kernel.

Keras 3's ``BatchNormalization`` computes a training batch's moments and normalizes with
separate element-wise ops, each a pass over the activations in both directions; TensorFlow's
``FusedBatchNormV3`` (and its gradient) does it in one kernel, oneDNN's on CPU. On the
small, memory-bound CNNs here the train step spends much of its time in those passes.

A twin is the model's graph rebuilt through the same layer objects
(:func:`~catdog_tf.models.registry.rebuilt`, as
:func:`~catdog_tf.models.registry.at_image_size` does), each ``BatchNormalization`` wrapped
by a :class:`FusedBatchNorm` that reads and updates that layer's own variables. Training the
twin trains the model; the model itself, which is evaluated, saved and exported, keeps plain
Keras layers, so a saved model loads with ``keras.saving.load_model`` alone.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from catdog_tf.models.registry import rebuilt

__all__ = ["FusedBatchNorm", "batch_norms", "fusable", "training_twin"]


def batch_norms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every ``BatchNormalization`` of ``model``, nested models' too, in layer order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += batch_norms(layer)
    return found


def fusable(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` is a batch norm whose training step the fused kernel can compute.

    The fused kernel has no renormalized variant; the other cases it lacks (input not
    channels-last images, ``synchronized`` across replicas, a mask) are told at call time,
    where :class:`FusedBatchNorm` leaves them to Keras.
    """
    return (
        isinstance(layer, keras.layers.BatchNormalization)
        and keras.backend.backend() == "tensorflow"
        and not layer.renorm
    )


class FusedBatchNorm(keras.layers.Layer):
    """Wraps a built ``BatchNormalization``: the same function, its training step fused.

    Outside training (or when the wrapped layer is frozen) it calls the wrapped layer. In
    training it normalizes by the batch's moments with ``tf.compat.v1.nn.fused_batch_norm``
    in float32 (as Keras upcasts) and updates the wrapped layer's moving mean and variance as
    Keras does, with the population variance.
    """

    def __init__(self, layer: keras.layers.BatchNormalization, **kwargs):
        super().__init__(name=f"{layer.name}_fused", dtype=layer.dtype_policy, **kwargs)
        self.layer = layer

    def call(self, inputs, training=None, mask=None):
        """The wrapped layer's output; in training, by the fused kernel where it applies."""
        layer = self.layer
        fits = len(inputs.shape) == 4 and layer.axis in (-1, 3) and mask is None
        if not (training and layer.trainable and fits) or layer.synchronized:
            return layer(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)
        ones = tf.ones_like(layer.moving_mean)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            scale=tf.cast(layer.gamma, tf.float32) if layer.scale else ones,
            offset=tf.cast(layer.beta, tf.float32) if layer.center else tf.zeros_like(ones),
            epsilon=layer.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the sample variance (n - 1 in the denominator); Keras keeps the
        # population variance.
        count = tf.cast(
            tf.size(x, out_type=tf.int64) // tf.shape(x, out_type=tf.int64)[-1], tf.float32
        )
        variance = variance * (count - 1.0) / count
        momentum = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
        layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        """Batch norm keeps the shape."""
        return input_shape


def training_twin(model: keras.Model) -> keras.Model:
    """``model``'s graph through the same layers, its :func:`fusable` batch norms fused.

    Args:
      model: A built functional model.

    Returns:
      The twin, or ``model`` itself when none of its layers is :func:`fusable` (nested
      models are layers: their batch norms stay as they are). Every variable of the twin is
      one of ``model``'s.
    """
    if not any(fusable(layer) for layer in model.layers):
        return model
    return rebuilt(
        model,
        model.input_shape[1:],
        clone_function=lambda layer: FusedBatchNorm(layer) if fusable(layer) else layer,
    )
