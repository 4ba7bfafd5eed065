"""catdog-inspect: feature maps, filters and Grad-CAM / saliency, checked on known models."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import make_image
from PIL import Image

from catdog_tf import models, visualize


def _linear_conv_model(shape, sign=1.0):
    # logit = sign * mean over pixels of channel 0: for the predicted class (dog if sign > 0,
    # cat if < 0) Grad-CAM's weight is positive and uniform, so the heat map must be
    # channel 0 itself, scaled to [0, 1].
    inputs = keras.Input(shape)
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="pick_red")
    x = conv(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(1, name="logit")
    model = keras.Model(inputs, dense(x))
    conv.set_weights([np.array([1.0, 0.0, 0.0]).reshape(1, 1, 3, 1)])
    dense.set_weights([np.full((1, 1), sign), np.zeros(1)])
    return model


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_grad_cam_of_a_known_model(sign):
    image = np.random.default_rng(0).random((1, 8, 10, 3)).astype(np.float32)
    heat, prob = visualize.grad_cam(_linear_conv_model((8, 10, 3), sign), image)
    np.testing.assert_allclose(heat, image[0, ..., 0] / image[0, ..., 0].max(), atol=1e-5)
    assert abs(prob - 1 / (1 + np.exp(-sign * image[0, ..., 0].mean()))) < 1e-5


def test_saliency_sees_only_what_the_model_reads():
    # The mlp-like model below reads only the left half of the image.
    inputs = keras.Input((6, 8, 3))
    x = keras.layers.Cropping2D(((0, 0), (0, 4)))(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    image = np.random.default_rng(1).random((1, 6, 8, 3)).astype(np.float32)
    heat, _ = visualize.saliency(model, image)
    assert heat.shape == (6, 8) and heat.max() == 1.0
    assert np.all(heat[:, 4:] == 0) and np.all(heat[:, :4] > 0)


def test_pretrained_model_is_inspected_through_its_backbone():
    model = models.build_model("vgg16_bottleneck", input_shape=(32, 40, 3), weights="none")
    image = np.random.default_rng(0).random((1, 32, 40, 3)).astype(np.float32)
    maps = visualize.feature_maps(model, image)
    assert list(maps)[0] == "block1_conv1" and len(maps) == 13
    assert maps["block1_conv1"].shape == (32, 40, 64)
    name, kernel = visualize.first_filters(model)
    assert name == "block1_conv1" and kernel.shape == (3, 3, 3, 64)
    heat, prob = visualize.grad_cam(model, image)
    assert heat.shape == (32, 40) and heat.min() >= 0 and heat.max() <= 1 and 0 < prob < 1


def test_catdog_inspect_writes_the_images(finished_copy, tmp_path):
    workdir = finished_copy  # conv1: one conv layer, "conv1".
    image = make_image(str(tmp_path / "dog.1.jpg"), 1, size=(50, 60))
    out = subprocess.run(
        [sys.executable, "-m", "catdog_tf.cli.inspect", f"--workdir={workdir}", image],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    folder = os.path.join(workdir, "inspect", "dog.1")
    expected = {"featuremaps_conv1.png", "filters_conv1.png", "gradcam.png"}
    assert set(os.listdir(folder)) == expected
    assert sorted(out.stdout.split()) == sorted(os.path.join(folder, n) for n in expected)
    for name in expected:
        with Image.open(os.path.join(folder, name)) as png:
            assert png.format == "PNG" and png.size[0] > 100
    missing = subprocess.run(
        [sys.executable, "-m", "catdog_tf.cli.inspect", f"--workdir={workdir}", "nope.jpg"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and ": error: no image file 'nope.jpg'" in missing.stderr
