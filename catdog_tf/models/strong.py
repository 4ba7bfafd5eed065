"""Stronger from-scratch models, built to beat every reference row, and a tiny test model.

* ``conv4_bn``: four conv-BN-ReLU-pool blocks (32-64-128-256), global average pooling,
  dropout. The conv3 recipe with batch norm and no giant dense layer: ~0.4M parameters.
* ``conv5_bn``: conv4_bn behind a stride-2 stem convolution: several times faster, for CPU
  budgets (BENCHMARKS.md).
* ``conv5_wh``: conv5_bn with a frozen 2x2 patch-whitening stem set from the training images
  (:mod:`catdog_tf.models.whitening`) in place of the learned stem convolution.
* ``sepnet``: a small Xception-style residual net of separable convolutions, in the spirit of
  the Keras "image classification from scratch" example (which reaches ~96% at 180x180),
  narrowed to fit a CPU budget at 94x125.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from catdog_tf.models import whitening
from catdog_tf.models.reference import _logit
from catdog_tf.models.registry import INPUT_SHAPE, register
from catdog_tf.utils import is_number

# The activations conv4_bn's blocks take (Keras's names).
ACTIVATIONS = ("relu", "gelu", "silu")


def _conv_bn_act(
    x,
    filters: int,
    name: str,
    strides: int = 1,
    bn: dict[str, Any] | None = None,
    dirac: bool = False,
    pool: str = "",
    activation: str = "relu",
):
    """A 3x3 convolution, max pooling if ``pool`` names it, batch norm (``bn``), activation."""
    conv = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )
    x = conv(x)  # Builds the kernel, so it can be set now.
    if dirac:
        dirac_init(conv)
    if pool:
        # Batch norm and the activation then run on a quarter of the elements.
        x = layers.MaxPooling2D(2, name=pool)(x)
    x = layers.BatchNormalization(name=f"{name}_bn", **(bn or {}))(x)
    if activation == "relu":
        return layers.ReLU(name=f"{name}_relu")(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


def dirac_init(conv: layers.Conv2D) -> None:
    """Makes the first min(in, out) kernels of a built 3x3 ``conv`` pass their channel through.

    Output channel i < min(in, out) starts as input channel i (a 1 at the kernel's centre,
    0 elsewhere); the other kernels keep their random initialization. The identity
    ("Dirac") initialization of the fast small-CNN recipes: each block starts close to
    passing its input on.
    """
    kernel = keras.ops.convert_to_numpy(conv.kernel).copy()
    height, width, channels_in, channels_out = kernel.shape
    n = min(channels_in, channels_out)
    kernel[..., :n] = 0.0
    kernel[height // 2, width // 2, range(n), range(n)] = 1.0
    conv.kernel.assign(kernel)


def _per_block(counts: int | Sequence[int], blocks: int, name: str) -> list[int]:
    """``counts`` as one non-negative int per block; a single int is every block's."""
    per_block = [counts] * blocks if isinstance(counts, int) else list(counts)
    if len(per_block) != blocks or not all(
        is_number(n, integer=True) and n >= 0 for n in per_block
    ):
        raise ValueError(f"{name} takes one count >= 0, or one per block ({blocks}): {counts}")
    return per_block


def _block(
    x,
    name: str,
    filters: int,
    convs: int,
    pool_first: bool,
    pooled: int,
    bn: dict[str, Any],
    dirac: bool,
    residual: bool,
    activation: str,
):
    """``convs`` conv-BN-activation, 2x2 max pooling, then ``pooled`` more at the pooled size.

    The arguments are :func:`conv4_bn`'s, for one block; ``bn`` is batch norm's keyword
    arguments, and ``residual`` adds the pooled convolutions' output to their input.
    """
    layer = functools.partial(_conv_bn_act, bn=bn, dirac=dirac, activation=activation)
    for c in range(convs):
        pool = f"{name}_pool" if pool_first and c == convs - 1 else ""
        x = layer(x, filters, f"{name}_{c + 1}", pool=pool)
    if not pool_first:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    branch = x
    for c in range(pooled):
        branch = layer(branch, filters, f"{name}_pooled{c + 1}")
    if residual and pooled:
        return layers.Add(name=f"{name}_residual")([x, branch])
    return branch


def _pooled_head(x, dropout: float, logit_scale: float):
    """Global average pooling, dropout, the logit, and the logit times ``logit_scale``."""
    if not 0.0 < logit_scale < math.inf:
        raise ValueError(f"logit_scale must be a finite number > 0, got {logit_scale}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logit = _logit(x)
    if logit_scale == 1.0:
        return logit
    return layers.Rescaling(logit_scale, dtype="float32", name="logit_scale")(logit)


@register(
    "conv4_bn",
    learning_rate=1e-3,
    summary="4x (conv-BN-ReLU, pool) 32-64-128-256, GAP",
)
def conv4_bn(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    filters: Sequence[int] = (32, 64, 128, 256),
    convs_per_block: int = 1,
    stem_filters: int = 0,
    whiten_stem: bool = False,
    whiten_components: int = 0,
    dropout: float = 0.3,
    bn_scale: bool = True,
    bn_momentum: float = 0.99,
    dirac: bool = False,
    pool_first: bool = False,
    pooled_convs: int | Sequence[int] = 0,
    residual: bool = False,
    logit_scale: float = 1.0,
    activation: str = "relu",
    name: str = "conv4_bn",
) -> keras.Model:
    """Conv-BN-ReLU blocks with 2x2 max pooling, global average pooling, dropout, logit.

    Args:
      input_shape: (height, width, channels).
      filters: Kernels of each block.
      convs_per_block: Conv-BN-ReLU layers per block.
      stem_filters: If > 0, a stride-2 conv-BN-ReLU stem with this many kernels comes first:
        every block then runs on a quarter of the pixels.
      whiten_stem: Instead, a frozen stride-2 patch-whitening stem
        (:func:`~catdog_tf.models.whitening.whitening_stem`), set from training images by
        :func:`~catdog_tf.models.whitening.init_whitening` before training.
      whiten_components: The whitening stem's width: how many of the 2x2 patches'
        principal components it keeps, largest first, two channels each (0: all 12 of an
        RGB patch, 24 channels). Fewer make the first block's convolution cheaper.
      dropout: Dropout before the logit.
      bn_scale: Batch norm of the blocks learns a scale; False keeps only its shift (a
        ReLU after it makes the scale redundant with the next layer's kernel).
      bn_momentum: Momentum of every batch norm's moving mean and variance (Keras's default
        0.99); lower makes the statistics used for evaluation follow the weights faster.
      dirac: The blocks' convolutions start as identities where they can
        (:func:`dirac_init`), the pooled ones too.
      pool_first: Each block pools right after its last convolution, before batch norm and
        ReLU, which then run on a quarter of the pixels (the order of the fast small-CNN
        recipes); False pools after the ReLU.
      pooled_convs: Conv-BN-ReLU layers each block adds after its pooling, at the pooled
        size (the order of airbench's blocks: a convolution at a quarter of the cost of one
        before the pooling); one count for every block, or one per block.
      residual: The pooled convolutions of a block form a residual branch, added to the
        pooled input (ResNet-9's blocks).
      logit_scale: The logit is multiplied by this constant (the fast small-CNN recipes scale
        it down): with Adam, whose steps do not depend on the gradient's scale, it scales
        how fast the head moves the logit, and the logits it starts from.
      activation: The blocks' activation after each batch norm: ``relu``, ``gelu`` (as
        airbench) or ``silu``. A stem keeps its ReLU: the whitening stem's kernels come in
        sign pairs for it.
      name: Model name.
    """
    inputs = keras.Input(input_shape, name="image")
    if stem_filters and whiten_stem:
        raise ValueError("give stem_filters or whiten_stem, not both")
    if whiten_components and not whiten_stem:
        raise ValueError("whiten_components needs the whitening stem (conv5_wh)")
    after_pool = _per_block(pooled_convs, len(filters), "pooled_convs")
    if residual and not any(after_pool):
        raise ValueError("residual needs pooled_convs: the residual branch is made of them")
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    x = inputs
    if stem_filters:
        x = _conv_bn_act(x, stem_filters, name="stem", strides=2, bn={"momentum": bn_momentum})
    if whiten_stem:
        x = whitening.whitening_stem(x, components=whiten_components)
    bn = {"scale": bn_scale, "momentum": bn_momentum}
    block = functools.partial(_block, bn=bn, dirac=dirac, residual=residual, activation=activation)
    for b, f in enumerate(filters):
        x = block(x, f"block{b + 1}", f, convs_per_block, pool_first, after_pool[b])
    return keras.Model(inputs, _pooled_head(x, dropout, logit_scale), name=name)


conv5_bn = register(
    "conv5_bn",
    learning_rate=1e-3,
    summary="stride-2 conv-BN stem 32, then conv4_bn's 4 blocks 32-64-128-256, GAP",
)(functools.partial(conv4_bn, stem_filters=32, name="conv5_bn"))

conv5_wh = register(
    "conv5_wh",
    learning_rate=1e-3,
    summary="frozen 2x2 patch-whitening stem (24, from the training images), then conv4_bn's "
    "4 blocks 32-64-128-256, GAP",
)(functools.partial(conv4_bn, whiten_stem=True, name="conv5_wh"))


@register(
    "sepnet",
    learning_rate=1e-3,
    summary="Xception-style residual separable-conv net 64-128-256-512, GAP",
)
def sepnet(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    stem_filters: int = 32,
    block_filters: Sequence[int] = (64, 128, 256, 512),
    dropout: float = 0.3,
    name: str = "sepnet",
) -> keras.Model:
    """Residual blocks of two separable convs + strided max pool, with 1x1 strided shortcuts.

    Args:
      input_shape: (height, width, channels).
      stem_filters: Kernels of the stride-2 stem convolution.
      block_filters: Kernels of each residual block; each halves the resolution.
      dropout: Dropout before the logit.
      name: Model name.
    """
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_act(inputs, stem_filters, name="stem", strides=2)
    for b, f in enumerate(block_filters):
        shortcut = layers.Conv2D(f, 1, strides=2, padding="same", name=f"block{b + 1}_skip")(x)
        for c in range(2):
            x = layers.ReLU(name=f"block{b + 1}_{c + 1}_relu")(x)
            x = layers.SeparableConv2D(
                f, 3, padding="same", use_bias=False, name=f"block{b + 1}_{c + 1}_sep"
            )(x)
            x = layers.BatchNormalization(name=f"block{b + 1}_{c + 1}_bn")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{b + 1}_pool")(x)
        x = layers.Add(name=f"block{b + 1}_add")([x, shortcut])
    x = layers.ReLU(name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _logit(x), name=name)


@register("_tiny", learning_rate=1e-2, summary="tiny test model: conv 8, GAP, logit")
def tiny(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    filters: int = 8,
    dropout: float = 0.0,
    name: str = "tiny",
) -> keras.Model:
    """A few hundred parameters, for fast tests; not in ``available_models()``."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(filters, 3, strides=2, activation="relu", name="conv")(inputs)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _logit(x), name=name)
