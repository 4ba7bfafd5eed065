"""Transfer-learning models, offline: weights=none, a local weights file, the download error."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from catdog_tf import build, machine, models
from catdog_tf.build import copy_weights
from catdog_tf.compare import compare
from catdog_tf.config import ConfigError, smoke
from catdog_tf.errors import RunFilesError
from catdog_tf.models import pretrained
from catdog_tf.plan import resolve
from catdog_tf.train import Steps, train_and_evaluate

SHAPE = (32, 40, 3)  # VGG16's smallest input is 32x32.


def config(model="vgg16_bottleneck", **changes):
    base = smoke(model).replace(
        weights="none",
        precision="float32",  # Exact comparisons; the bf16 default is checked on its own.
        synthetic_size=64,
        image_height=SHAPE[0],
        image_width=SHAPE[1],
        batch_size=16,
        epochs=1,
    )
    return base.replace(**changes)


def _by_path(model):
    return {v.path: v.numpy() for v in model.weights}


@pytest.mark.parametrize("name", ["vgg16_bottleneck", "mobilenetv2_finetune"])
def test_shapes_and_head(name):
    model = models.build_model(name, input_shape=SHAPE, weights="none")
    images = np.random.default_rng(0).random((2, *SHAPE), np.float32)
    out = model(images)
    assert out.shape == (2, 1) and out.dtype == tf.float32
    features = pretrained.feature_extractor(model)(images)
    np.testing.assert_allclose(pretrained.head(model)(features), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "changed", "unchanged"),
    [
        ("vgg16_bottleneck", [], ["block1_conv1/kernel", "block5_conv3/kernel"]),
        ("vgg16_finetune", ["block5_conv1/kernel"], ["block4_conv3/kernel"]),
    ],
)
def test_frozen_and_unfrozen_backbone_after_a_step(name, changed, unchanged):
    run_config = config(name, learning_rate=1e-2)
    steps = Steps(run_config, resolve(run_config, train_images=16))
    before = _by_path(steps.model)
    images = tf.random.uniform([16, *SHAPE])
    steps.train_step(images, tf.constant([0, 1] * 8))
    after = _by_path(steps.model)
    assert not np.array_equal(before["head_dense/kernel"], after["head_dense/kernel"])
    for path in changed:
        assert not np.array_equal(before[path], after[path]), path
    for path in unchanged:
        np.testing.assert_array_equal(before[path], after[path])


# Under mixed_bfloat16 (what auto may pick on a CPU with native bf16) the features are still
# stored as float32.
@pytest.mark.parametrize(("precision", "atol"), [("float32", 1e-4), ("mixed_bfloat16", 3e-3)])
def test_bottleneck_run_caches_features_and_reuses_them(tmp_path, precision, atol):
    workdir = str(tmp_path / "run")
    first = train_and_evaluate(config(precision=precision), workdir, verbose=False)
    assert first["plan"]["precision"] == precision
    assert first["bottleneck_features"]["reused"] is False
    assert first["bottleneck_features"]["dim"] == 1 * 1 * 512  # 32x40 -> 1x1x512, flattened.
    path = os.path.join(workdir, "features", "train.npz")
    mtime = os.path.getmtime(path)
    # The same command again (e.g. after a kill) loads the features instead of re-extracting.
    second = train_and_evaluate(config(precision=precision), workdir, verbose=False)
    assert second["bottleneck_features"]["reused"] is True
    assert os.path.getmtime(path) == mtime
    assert second["validation"] == first["validation"]
    # The exported whole model (backbone + the head trained on features) gives the same logits.
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    assert model.get_layer("head_dense").trainable
    with np.load(os.path.join(workdir, "features", "validation.npz")) as arrays:
        assert arrays["features"].dtype == np.float32
        head_logits = pretrained.head(model)(arrays["features"]).numpy().ravel()
    with np.load(os.path.join(workdir, "predictions.npz")) as predictions:
        np.testing.assert_allclose(predictions["validation_logits"], head_logits, atol=atol)


def test_a_bottleneck_run_too_large_for_memory_is_refused_before_extracting(tmp_path, monkeypatch):
    model = models.build_model("vgg16_bottleneck", input_shape=SHAPE, weights="none")
    needed = build.memory_needed(model, config(), cached_images=100, train_images=80)
    # Each image is read once: no image cache, but every image's 512 features, held twice.
    assert set(needed) == {"backbone", "features", "head"}
    assert needed["features"] == 100 * 512 * 4 * 2
    monkeypatch.setattr(machine, "available_memory", lambda: 64 * 1024)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"would take about .* GiB \(backbone") as refused:
        train_and_evaluate(config(), str(workdir), verbose=False)
    assert "cache=" not in str(refused.value)
    assert not (workdir / "features").exists()


def test_missing_weights_error_says_how_to_supply_the_file(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    def offline(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(pretrained.WeightsUnavailableError) as e:
        pretrained.load_backbone("vgg16", "imagenet", SHAPE)
    message = str(e.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "--set=weights=PATH" in message and "weights=none" in message
    assert isinstance(e.value, ConfigError)  # The CLI prints it as one error line.
    with pytest.raises(pretrained.WeightsUnavailableError, match="does not exist"):
        pretrained.load_backbone("vgg16", str(tmp_path / "missing.h5"), SHAPE)


def test_local_weights_file(tmp_path):
    keras.utils.set_random_seed(1)
    base = pretrained.load_backbone("mobilenetv2", "none", SHAPE)
    path = str(tmp_path / "backbone.weights.h5")
    base.save_weights(path)
    keras.utils.set_random_seed(2)
    loaded = pretrained.load_backbone("mobilenetv2", path, SHAPE)
    for a, b in zip(base.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_finetune_starts_from_the_bottleneck_run(tmp_path):
    source = models.build_model("vgg16_bottleneck", input_shape=SHAPE, weights="none")
    os.makedirs(tmp_path / "bottleneck")
    source.save(tmp_path / "bottleneck" / "model.keras")
    target = models.build_model("vgg16_finetune", input_shape=SHAPE, weights="none")
    copy_weights(str(tmp_path / "bottleneck"), target)
    expected = _by_path(source)
    for path, value in _by_path(target).items():
        np.testing.assert_array_equal(value, expected[path])
    with pytest.raises(ConfigError, match="no model.keras"):
        copy_weights(str(tmp_path), target)
    with open(tmp_path / "bottleneck" / "model.keras", "r+b") as f:
        f.truncate(100)
    with pytest.raises(RunFilesError, match="model.keras cannot be loaded"):
        copy_weights(str(tmp_path / "bottleneck"), target)


def test_compare_links_finetune_to_its_bottleneck_run(tmp_path):
    workdir = str(tmp_path / "cmp")

    def make(model, loss):
        return config(model, loss=loss)

    with pytest.raises(ConfigError, match="list vgg16_bottleneck before vgg16_finetune"):
        compare(make, ["vgg16_finetune"], ["cross_entropy"], workdir, verbose=False)
    results = compare(
        make, ["vgg16_bottleneck", "vgg16_finetune"], ["cross_entropy"], workdir, verbose=False
    )
    assert results[1]["config"]["init_from"] == os.path.join(
        workdir, "vgg16_bottleneck-cross_entropy"
    )
    assert results[1]["config"]["optimizer"] == "auto"
    assert results[1]["bottleneck_features"] is None


def test_a_saved_models_precision_is_read_from_its_layers_inside_the_backbone(tmp_path):
    with build.precision_policy("mixed_bfloat16"):
        model = models.build_model("mobilenetv2_finetune", input_shape=SHAPE, weights="none")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert build.compute_precision(loaded) == "mixed_bfloat16"
    twin = build.in_precision(loaded, config("mobilenetv2_finetune"), "float32")
    assert build.compute_precision(twin) == "float32"
