"""The serving model: any-size 0..255 images in, P(dog) out, loadable by plain Keras.

A run's ``model.keras`` is the training model: [0, 1] float images at exactly the run's size
in, one logit out, in the training precision, and (for pretrained models) with this
package's preprocessing layer inside. :func:`serving_model` wraps the same weights into what
a user of ``keras.utils.load_img`` expects::

    image (batch, any height, any width, 3), float 0..255
      -> Resizing to the run's size (bilinear, as the pipeline)
      -> Rescaling by 1/255
      -> the classifier, rebuilt in float32 whatever the training precision
      -> sigmoid: P(dog), shape (batch, 1)

Every layer is a built-in Keras layer (a pretrained model's preprocessing becomes an
equivalent fixed ``Dense`` on the channels), so ``keras.saving.load_model`` reads it without
importing catdog_tf, and Keras's ``model.export`` writes it as a SavedModel, ONNX or LiteRT
file (call the model once first: the ONNX export needs a traced model).

What it does not repeat: the pipeline rounds the resized image to uint8 and, unless the run's
``dct_method`` is ``INTEGER_ACCURATE`` (PIL's decoding), decodes JPEGs with TensorFlow's fast
integer DCT, so its probabilities differ from the serving model's by a little.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from catdog_tf.build import in_precision, precision_policy
from catdog_tf.config import Config
from catdog_tf.models import pretrained


def affine_channels_layer(
    function: Callable[[tf.Tensor], tf.Tensor], name: str, channels: int = 3
) -> keras.layers.Dense:
    """A frozen ``Dense(channels)`` that computes ``function`` on the last axis.

    ``function`` must be affine per pixel (scales, offsets, a channel permutation, as every
    ``keras.applications`` ``preprocess_input`` here is); it is read off at the zero vector
    and the unit vectors, then checked on random values.

    Raises:
      ValueError: ``function`` is not affine on the channels.
    """
    basis = np.concatenate([np.zeros((1, channels)), np.eye(channels)]).astype(np.float32)
    out = np.asarray(function(tf.constant(basis[None, None])))[0, 0]
    bias, kernel = out[0], out[1:] - out[0]
    layer = keras.layers.Dense(channels, trainable=False, name=name, dtype="float32")
    layer.build((None, None, None, channels))
    layer.set_weights([kernel, bias])
    probe = np.random.default_rng(0).uniform(0, 1, (1, 4, 4, channels)).astype(np.float32)
    if not np.allclose(layer(probe), function(tf.constant(probe)), rtol=1e-4, atol=1e-3):
        raise ValueError(f"{name}: the preprocessing is not affine on the channels")
    return layer


def _plain_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer itself (its weights shared), or a built-in stand-in for a custom one."""
    if isinstance(layer, pretrained.BackbonePreprocess):
        return affine_channels_layer(layer.call, name=layer.name)
    return layer


def serving_model(model: keras.Model, config: Config) -> keras.Model:
    """The serving model of ``model``, a trained ``config.model`` (see the module docstring).

    Args:
      model: The trained model (any precision), as in a run's ``model.keras``.
      config: The run's config (its model name, kwargs and image size).

    Returns:
      A float32 Keras model mapping (batch, H, W, 3) images in 0..255, any H and W, to P(dog).
    """
    classifier = in_precision(model, config, "float32")
    with precision_policy("float32"):
        plain = keras.models.clone_model(classifier, clone_function=_plain_layer)
        inputs = keras.Input((None, None, 3), name="image")
        x = keras.layers.Resizing(*config.image_size, interpolation="bilinear", name="resize")(
            inputs
        )
        x = keras.layers.Rescaling(1 / 255, name="scale")(x)
        # training=False fixed in the graph: a serving model never runs dropout, however
        # it is called (Keras's training=None default reached the nested dropout).
        p_dog = keras.layers.Activation("sigmoid", name="p_dog")(plain(x, training=False))
        return keras.Model(inputs, p_dog, name=f"{config.model}_serving")
