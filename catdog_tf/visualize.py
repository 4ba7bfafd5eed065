"""Looking inside a trained model: feature maps, first-layer filters and Grad-CAM.

``inspect_image(workdir, image_path, output_dir)`` writes, for one image:

* ``featuremaps_<layer>.png``: the activations of each conv layer (the first channels);
* ``filters_<layer>.png``: the first conv layer's kernels as small RGB patches;
* ``gradcam.png``: the image, the Grad-CAM heat map of the last conv layer (Selvaraju et al.,
  2017: feature maps weighted by the spatial mean of the gradient of the predicted class's
  score) and the overlay.
  A model without conv layers (``mlp``) gets a gradient saliency map instead.

Pretrained models are looked into through their backbone (its conv layers, and its output
for Grad-CAM).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from catdog_tf import data, figures, rundir
from catdog_tf.evaluate import load_run
from catdog_tf.train.metrics import probabilities


def load_image(
    path: str, image_size: tuple[int, int], dct_method: str = data.DCT_METHOD
) -> np.ndarray:
    """The image as the model sees it: read, decode, orient, resize, normalize; (1, H, W, 3).

    The pipeline's own stages (:func:`catdog_tf.data.load_image`), with the run's
    ``dct_method``.

    Raises:
      DataSourceError: The file is missing, not an image, too large or does not decode.
    """
    if not os.path.isfile(path):
        raise data.DataSourceError(f"{path}: no such file")
    header = data.read_header(path)
    if header.problem:
        raise data.DataSourceError(f"{path}: {header.problem}")
    try:
        image = data.load_image(
            tf.constant(os.fsencode(path)),
            tf.constant(header.orientation),
            image_size,
            encoded=False,
            dct_method=dct_method,
        )
    except tf.errors.OpError as e:
        raise data.DataSourceError(f"{path}: corrupt or truncated image data") from e
    return data.normalize(image)[tf.newaxis].numpy()


def _conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def _backbone(model: keras.Model) -> keras.Model | None:
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if nested else None


def feature_maps(model: keras.Model, image: np.ndarray) -> dict[str, np.ndarray]:
    """The output of every conv layer for one image: ``{layer name: (H, W, C)}``, in order."""
    backbone = _backbone(model)
    if backbone is not None:  # A pretrained model: the convs live in its backbone.
        to_backbone = keras.Model(model.input, backbone_input(model))
        image, model = to_backbone(image), backbone
    layers = _conv_layers(model)
    if not layers:
        return {}
    probe = keras.Model(model.input, [layer.output for layer in layers])
    outputs = probe(image, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {
        layer.name: np.asarray(out[0], np.float32)
        for layer, out in zip(layers, outputs, strict=True)
    }


def backbone_input(model: keras.Model) -> keras.KerasTensor:
    """The tensor a pretrained model feeds its backbone (its preprocessed image)."""
    return model.get_layer("preprocess").output


def first_filters(model: keras.Model) -> tuple[str, np.ndarray] | None:
    """Name and kernel (kh, kw, in, out) of the first conv layer (inside a backbone too)."""
    backbone = _backbone(model)
    layers = _conv_layers(backbone if backbone is not None else model)
    if not layers:
        return None
    return layers[0].name, np.asarray(layers[0].kernel, np.float32)


def grad_cam(model: keras.Model, image: np.ndarray) -> tuple[np.ndarray, float]:
    """Grad-CAM of the predicted class over the last conv feature map, resized to the image.

    The class score is the logit when the model says dog and minus the logit when it says
    cat, so the map shows the evidence for what the model decided.

    Returns:
      (heat map in [0, 1] of shape (H, W), probability of dog).
    """
    backbone = _backbone(model)
    if backbone is not None:
        # The features layer reads the backbone's output: its last conv block.
        last = model.get_layer("features").input
    else:
        last = _conv_layers(model)[-1].output
    probe = keras.Model(model.input, [last, model.output])
    with tf.GradientTape() as tape:
        # The maps are an intermediate of the recorded forward pass: differentiable as is.
        maps, logit = probe(tf.constant(image), training=False)
        score = tf.abs(logit)  # logit if dog (logit > 0), -logit if cat.
    grads = tf.cast(tape.gradient(score, maps), tf.float32)
    maps = tf.cast(maps, tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[0]
    cam = cam / (tf.reduce_max(cam) + 1e-8)
    cam = tf.image.resize(cam[..., tf.newaxis], image.shape[1:3])[..., 0]
    return cam.numpy(), float(probabilities(np.asarray(logit).ravel())[0])


def saliency(model: keras.Model, image: np.ndarray) -> tuple[np.ndarray, float]:
    """|d logit / d pixel| (max over colour channels), scaled to [0, 1]; and P(dog)."""
    x = tf.constant(image)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logit = tf.cast(model(x, training=False), tf.float32)
    grads = tf.reduce_max(tf.abs(tape.gradient(logit, x)), axis=-1)[0]
    return (grads / (tf.reduce_max(grads) + 1e-8)).numpy(), float(
        probabilities(np.asarray(logit).ravel())[0]
    )


def _scaled(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _grid(tiles: list[np.ndarray], title: str, path: str, cmap: str | None = "viridis") -> str:
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    fig, axes = figures.pyplot().subplots(
        rows, cols, figsize=(1.6 * cols, 1.4 * rows), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, tile in zip(axes.ravel(), tiles, strict=False):
        ax.imshow(tile, cmap=cmap, interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    return figures.save(fig, path, dpi=100)


def inspect_image(
    workdir: str, image_path: str, output_dir: str | None = None, max_maps: int = 16
) -> list[str]:
    """Writes feature maps, first-layer filters and a Grad-CAM (or saliency) PNG for an image.

    Args:
      workdir: A finished run directory (``model.keras`` and ``config.json``).
      image_path: An image file any source accepts (JPEG, PNG, ...).
      output_dir: Where to write; default ``inspect/<image name>`` in
        :func:`catdog_tf.rundir.outputs_folder` (the run directory unless shipped).
      max_maps: Channels shown per conv layer.

    Returns:
      The paths written.
    """
    if not os.path.isfile(image_path):
        raise FileNotFoundError(f"no image file {image_path!r}")
    config, model, _ = load_run(workdir)
    name = os.path.splitext(os.path.basename(image_path))[0]
    output_dir = output_dir or os.path.join(rundir.outputs_folder(workdir), "inspect", name)
    output_dir = rundir.check_output(output_dir, "--output", folder=True)
    image = load_image(image_path, config.image_size, config.dct_method)
    written = []
    for layer, maps in feature_maps(model, image).items():
        tiles = [_scaled(maps[..., c]) for c in range(min(max_maps, maps.shape[-1]))]
        title = f"{config.model} {layer}: {len(tiles)} of {maps.shape[-1]} maps"
        title += f", {maps.shape[0]}x{maps.shape[1]}"
        written.append(_grid(tiles, title, os.path.join(output_dir, f"featuremaps_{layer}.png")))
    filters = first_filters(model)
    if filters is not None:
        layer, kernel = filters
        tiles = [_scaled(kernel[..., i]) for i in range(kernel.shape[-1])]
        if kernel.shape[2] != 3:  # Only 3-channel kernels are shown as colour patches.
            tiles = [t.mean(axis=-1) for t in tiles]
        title = f"{config.model} {layer}: {kernel.shape[-1]} learned {kernel.shape[0]}x"
        title += f"{kernel.shape[1]} filters"
        written.append(
            _grid(tiles, title, os.path.join(output_dir, f"filters_{layer}.png"), cmap=None)
        )
    has_convs = _backbone(model) is not None or bool(_conv_layers(model))
    heat, prob = grad_cam(model, image) if has_convs else saliency(model, image)
    kind = "Grad-CAM" if has_convs else "saliency"
    fig, axes = figures.pyplot().subplots(1, 3, figsize=(9, 2.6))
    axes[0].imshow(image[0])
    axes[0].set_title(f"P(dog) = {prob:.3f}", fontsize=9)
    axes[1].imshow(heat, cmap="jet")
    decided = "dog" if prob >= 0.5 else "cat"
    axes[1].set_title(f"{kind} ({decided})" if has_convs else kind, fontsize=9)
    axes[2].imshow(image[0])
    axes[2].imshow(heat, cmap="jet", alpha=0.45)
    axes[2].set_title("overlay", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{config.model}: {os.path.basename(image_path)}", fontsize=9)
    path = os.path.join(output_dir, "gradcam.png" if has_convs else "saliency.png")
    written.append(figures.save(fig, path, dpi=100))
    return written
