"""The reference architectures: the article's MLP and 1-/2-conv nets, and the Keras-blog 3-conv.

All take [0, 1]-scaled images and return one float32 logit (also under mixed precision, so
the loss is computed in float32). Convolutions are 3x3 with 'valid' padding and 2x2 max
pooling, as in the article's ``tf.layers`` code and the Keras blog.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import keras
from keras import layers

from catdog_tf.models.registry import INPUT_SHAPE, register


def _logit(x) -> keras.KerasTensor:
    # float32 output keeps the sigmoid and the loss accurate under mixed precision.
    return layers.Dense(1, dtype="float32", name="logit")(x)


def _dense_head(x, dense_units: Sequence[int], dropout: float):
    for i, units in enumerate(dense_units):
        x = layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{i + 1}")(x)
    return _logit(x)


@register(
    "mlp",
    learning_rate=1e-5,
    summary="flatten, dense 256 ReLU, logit (article MLP)",
)
def mlp(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    hidden_units: int = 256,
    dropout: float = 0.0,
    name: str = "mlp",
) -> keras.Model:
    """The article's multilayer perceptron: flatten, one hidden ReLU layer, logit.

    At 94x125x3 the flatten has 35,250 inputs: 9,024,513 parameters with 256 hidden units.
    """
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    return keras.Model(inputs, _dense_head(x, [hidden_units], dropout), name=name)


def conv_net(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    filters: Sequence[int] = (24,),
    dense_units: Sequence[int] = (768, 128),
    dropout: float = 0.0,
    name: str = "conv",
) -> keras.Model:
    """Conv blocks (3x3 'valid' conv + ReLU, 2x2 max-pool), flatten, dense head, logit.

    The article's nets are this with ``filters=(24,)``, ``(48, 48)`` and ``(128, 128)``. The
    article does not print its dense widths, only that the 1-conv model is "heavy, 200+ MB";
    768 and 128 reproduce that size (207 MB).

    Args:
      input_shape: (height, width, channels).
      filters: Kernels of each conv block.
      dense_units: Widths of the ReLU dense layers before the logit.
      dropout: Dropout after each dense layer (0 for none, as in the article).
      name: Model name.
    """
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _dense_head(x, dense_units, dropout), name=name)


conv1 = register(
    "conv1",
    learning_rate=1e-4,
    summary="conv 24, pool, dense 768-128 (article 1-conv; flatten 67,344; 51.8M params)",
)(functools.partial(conv_net, filters=(24,), name="conv1"))
conv2 = register(
    "conv2",
    learning_rate=1e-4,
    summary="2x (conv 48, pool), dense 768-128 (article 2-conv; flatten 30,624)",
)(functools.partial(conv_net, filters=(48, 48), name="conv2"))
conv2_wide = register(
    "conv2_wide",
    learning_rate=1e-4,
    summary="2x (conv 128, pool), dense 768-128 (article wide 2-conv; flatten 81,664)",
)(functools.partial(conv_net, filters=(128, 128), name="conv2_wide"))


@register(
    "conv3",
    learning_rate=1e-3,
    summary="conv 32-32-64 + pools, dense 64, dropout 0.5 (Keras blog)",
)
def conv3(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    filters: Sequence[int] = (32, 32, 64),
    dense_units: int = 64,
    dropout: float = 0.5,
    name: str = "conv3",
) -> keras.Model:
    """The Keras-blog 3-block net: conv 32, 32, 64 (3x3, ReLU, 2x2 pool), dense 64, dropout.

    At 94x125 the flatten has 10x13x64 = 8,320 inputs: 561,249 parameters.
    """
    return conv_net(
        input_shape, filters=filters, dense_units=(dense_units,), dropout=dropout, name=name
    )
