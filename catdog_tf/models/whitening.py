"""A fixed patch-whitening first layer, set from the training images before training.

The first layer of a trained CNN tends towards a whitening of image patches (Chowers and
Weiss, 2022); airbench sets it so from the start and freezes it, its largest single saving
of training time on CIFAR-10. Here the layer is a frozen ``Conv2D`` over non-overlapping
``patch x patch`` patches (stride ``patch``, so it is also the stem's downsampling), whose
kernels are the eigenvectors of the patches' covariance scaled by one over the square root of
their eigenvalue, and the same kernels negated, so that the ReLU after the batch norm passes
both signs of every component. Only built-in Keras layers: models save and serve as any other.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

# The stem layer's name: the models build it under this name, the trainer finds it by it.
WHITEN_LAYER = "whiten"
# How many training images the kernel is estimated from (a few million patches).
SAMPLE_IMAGES = 512
# Each component's scale is 1 / sqrt(eigenvalue + EPS_RELATIVE x the largest eigenvalue):
# the near-empty components (noise) are amplified at most this much less than the rest.
EPS_RELATIVE = 1e-4


def whitening_stem(x: keras.KerasTensor, patch: int = 2, components: int = 0) -> keras.KerasTensor:
    """Frozen whitening conv (stride ``patch``), BN, ReLU.

    The kernels are placeholders until :func:`init_whitening` sets them from images.

    Args:
      x: The image input, (height, width, channels).
      patch: Side of the patches the layer whitens; also its stride.
      components: How many of the patches' principal components it keeps, largest first
        (two kernels each, one per sign); 0 keeps all ``patch^2 x channels`` of them.
    """
    components = check_components(components, patch * patch * x.shape[-1])
    x = layers.Conv2D(
        2 * components,
        patch,
        strides=patch,
        padding="valid",
        use_bias=False,
        trainable=False,
        name=WHITEN_LAYER,
    )(x)
    # The batch norm gives the frozen layer the trainable shift (and scale) airbench's
    # whitening conv has as a bias.
    x = layers.BatchNormalization(name=f"{WHITEN_LAYER}_bn")(x)
    return layers.ReLU(name=f"{WHITEN_LAYER}_relu")(x)


def check_components(components: int, available: int) -> int:
    """``components`` (0 for all ``available``) as a count, refused unless it is in range.

    Raises:
      ValueError: ``components`` is negative or more than a patch has.
    """
    if not 0 <= components <= available:
        raise ValueError(
            f"whiten_components must be in [0, {available}] (0 keeps all), got {components}"
        )
    return components or available


def patches(images: np.ndarray, patch: int) -> np.ndarray:
    """The non-overlapping ``patch x patch`` patches of (N, H, W, C) images, as rows.

    Each row is flattened in a ``Conv2D`` kernel's (row, column, channel) order, the patches
    a stride-``patch`` VALID convolution sees.
    """
    n, h, w, c = images.shape
    h, w = h // patch * patch, w // patch * patch
    blocks = images[:, :h, :w].reshape(n, h // patch, patch, w // patch, patch, c)
    return blocks.transpose(0, 1, 3, 2, 4, 5).reshape(-1, patch * patch * c)


def patch_whitening_kernel(
    images: np.ndarray, patch: int = 2, eps_relative: float = EPS_RELATIVE, components: int = 0
) -> np.ndarray:
    """The whitening layer's kernel for ``images`` (N, H, W, C floats in [0, 1]).

    Args:
      images: The sample the patches' covariance is estimated from.
      patch: Side of the patches.
      eps_relative: The smallest components' floor, relative to the largest eigenvalue.
      components: How many components to keep, largest eigenvalue first (0: all).

    Returns:
      float32 (patch, patch, C, 2 x K): the whitening kernels of the K kept components,
      largest eigenvalue first, then the same kernels negated.
    """
    rows = patches(np.asarray(images, np.float64), patch)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(rows, rowvar=False))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    eps = eps_relative * eigenvalues[0]
    kernels = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0) + eps)
    kernels = kernels[:, : check_components(components, len(eigenvalues))]
    kernels = kernels.reshape(patch, patch, images.shape[-1], -1)
    return np.concatenate([kernels, -kernels], axis=-1).astype(np.float32)


def whitening_layer(model: keras.Model) -> layers.Conv2D | None:
    """The model's whitening layer, or None if it has none."""
    names = {layer.name: layer for layer in model.layers}
    return names.get(WHITEN_LAYER)


def init_whitening(model: keras.Model, images: np.ndarray) -> None:
    """Sets ``model``'s whitening layer from ``images`` (a sample of the training split).

    Raises:
      ValueError: ``model`` has no whitening layer.
    """
    layer = whitening_layer(model)
    if layer is None:
        raise ValueError(f"{model.name} has no {WHITEN_LAYER!r} layer")
    patch, components = layer.kernel.shape[0], layer.kernel.shape[-1] // 2
    layer.kernel.assign(patch_whitening_kernel(images, patch, components=components))
