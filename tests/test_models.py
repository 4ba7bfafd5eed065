import keras
import numpy as np
import pytest
import tensorflow as tf

from catdog_tf import config, models
from catdog_tf.errors import ConfigError
from catdog_tf.models import whitening
from catdog_tf.models.fused import FusedBatchNorm

REFERENCE = ["mlp", "conv1", "conv2", "conv2_wide", "conv3"]


def _conv(k_in, k_out):
    return 9 * k_in * k_out + k_out


def _dense(n_in, n_out):
    return n_in * n_out + n_out


# Closed-form parameter counts at 94x125x3 ('valid' 3x3 convs, 2x2 pools).
EXPECTED_PARAMS = {
    "mlp": _dense(94 * 125 * 3, 256) + _dense(256, 1),
    # conv 92x123 -> pool 46x61.
    "conv1": _conv(3, 24) + _dense(46 * 61 * 24, 768) + _dense(768, 128) + _dense(128, 1),
    # 92x123 -> 46x61 -> 44x59 -> 22x29.
    "conv2": _conv(3, 48)
    + _conv(48, 48)
    + _dense(22 * 29 * 48, 768)
    + _dense(768, 128)
    + _dense(128, 1),
    "conv2_wide": _conv(3, 128)
    + _conv(128, 128)
    + _dense(22 * 29 * 128, 768)
    + _dense(768, 128)
    + _dense(128, 1),
    # ... -> 20x27 -> 10x13.
    "conv3": _conv(3, 32)
    + _conv(32, 32)
    + _conv(32, 64)
    + _dense(10 * 13 * 64, 64)
    + _dense(64, 1),
}


SCRATCH = [n for n in models.available_models() if not models.get_spec(n).pretrained]


@pytest.mark.parametrize("name", SCRATCH)  # Pretrained ones: tests/test_pretrained.py.
@pytest.mark.parametrize("shape", [(94, 125, 3), (64, 72, 3)])
def test_output_shape_and_dtype(name, shape):
    model = models.build_model(name, input_shape=shape)
    out = model(np.random.default_rng(0).random((2, *shape), np.float32))
    assert out.shape == (2, 1) and out.dtype == tf.float32


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_param_counts(name):
    assert models.build_model(name).count_params() == EXPECTED_PARAMS[name]


def test_conv1_is_heavy_as_in_the_article():
    info = models.describe(models.build_model("conv1"))
    assert info["weight_mb"] > 200
    assert info["params"] == EXPECTED_PARAMS["conv1"]


def test_describe_flops_match_closed_form_for_mlp():
    info = models.describe(models.build_model("mlp"))
    # Dense layers: 2 FLOPs per multiply-add, plus one add per bias.
    mults = 94 * 125 * 3 * 256 + 256
    assert abs(info["flops"] - 2 * mults) / (2 * mults) < 0.01
    assert "parameters" in info["summary"]


@pytest.mark.parametrize("name", ["conv3", "conv4_bn"])
def test_mixed_bfloat16_returns_float32_logits(name):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.build_model(name, input_shape=(32, 40, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer(index=1).compute_dtype == "bfloat16"
    out = model(np.zeros((2, 32, 40, 3), np.float32))
    assert out.dtype == tf.float32


def test_builder_arguments():
    model = models.build_model("conv3", filters=(8, 8, 16), dense_units=32, dropout=0.2)
    assert model.get_layer("conv1").filters == 8 and model.get_layer("dense1").units == 32
    assert model.get_layer("dropout1").rate == 0.2


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match="known models: mlp, conv1"):
        models.build_model("resnet9000")


def test_help_text_names_every_registered_model_in_order():
    assert tuple(models.available_models()) == config.MODELS


def test_private_models_hidden_but_buildable():
    assert "_tiny" not in models.available_models()
    assert models.build_model("_tiny", input_shape=(16, 16, 3)).count_params() < 1000


def test_register_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        models.register("conv3")(lambda **kw: None)


def _correlated_images(n=12, h=20, w=30):
    """Images whose pixels and channels are correlated, all directions of variance sizeable."""
    rng = np.random.default_rng(0)
    noise = rng.random((n, h + 1, w + 1, 3))
    smooth = noise[:, 1:, 1:] + 0.5 * noise[:, :-1, :-1]  # Neighbours correlated.
    mix = np.array([[1.0, 0.4, 0.2], [0.3, 1.0, 0.5], [0.1, 0.2, 1.0]])
    return (smooth @ mix / 3).astype(np.float32)


def test_whitening_kernel_whitens_the_patches_tensorflow_convolves():
    images = _correlated_images()
    kernel = whitening.patch_whitening_kernel(images, patch=2)
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])
    out = tf.nn.conv2d(images, kernel, strides=2, padding="VALID").numpy()
    # The same patches as TensorFlow's convolution sees them, in the kernel's layout.
    rows = whitening.patches(images, 2)
    np.testing.assert_allclose(out.reshape(-1, 24), rows @ kernel.reshape(12, 24), atol=1e-4)
    covariance = np.cov(out[..., :12].reshape(-1, 12), rowvar=False)
    np.testing.assert_allclose(covariance, np.eye(12), atol=2e-3)


def test_whitening_stem_model_is_frozen_and_set_from_images():
    model = models.build_model("conv5_wh", input_shape=(32, 40, 3))
    layer = models.whitening_layer(model)
    assert not layer.trainable and layer.kernel.shape == (2, 2, 3, 24)
    assert all("whiten/" not in v.path for v in model.trainable_variables)
    images = _correlated_images(h=32, w=40)
    models.init_whitening(model, images)
    np.testing.assert_array_equal(
        layer.kernel.numpy(), whitening.patch_whitening_kernel(images, patch=2)
    )
    assert models.count_flops(model) < models.count_flops(
        models.build_model("conv5_bn", input_shape=(32, 40, 3))
    )
    with pytest.raises(ValueError, match="no 'whiten' layer"):
        models.init_whitening(models.build_model("conv5_bn"), images)


def test_narrower_whitening_stem_keeps_the_largest_components_of_both_signs():
    images = _correlated_images(h=32, w=40)
    full = whitening.patch_whitening_kernel(images, patch=2)
    model = models.build_model("conv5_wh", input_shape=(32, 40, 3), whiten_components=5)
    models.init_whitening(model, images)
    kernel = models.whitening_layer(model).kernel.numpy()
    np.testing.assert_allclose(kernel, np.concatenate([full[..., :5], full[..., 12:17]], -1))
    assert models.count_flops(model) < models.count_flops(
        models.build_model("conv5_wh", input_shape=(32, 40, 3))
    )
    for bad in (-1, 13):
        with pytest.raises(ValueError, match=r"whiten_components must be in \[0, 12\]"):
            models.build_model("conv5_wh", whiten_components=bad)
    with pytest.raises(ValueError, match="needs the whitening stem"):
        models.build_model("conv5_bn", whiten_components=4)


def test_batch_norms_lists_nested_models_layers_too():
    inner = models.build_model("conv4_bn", input_shape=(16, 16, 3))
    outer_input = keras.Input((16, 16, 3))
    extra = keras.layers.BatchNormalization(name="outer_bn")
    outer = keras.Model(outer_input, extra(inner(outer_input)))
    listed = models.batch_norms(outer)
    assert listed[:-1] == models.batch_norms(inner) and listed[-1] is extra
    assert len(listed) > 2 and all(isinstance(bn, keras.layers.BatchNormalization) for bn in listed)


def test_dirac_blocks_pass_their_input_channels_through_and_bn_scale_can_go():
    model = models.build_model("conv4_bn", input_shape=(16, 16, 3), dirac=True, bn_scale=False)
    conv = model.get_layer("block2_1_conv")  # 32 -> 64 channels
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 32)).astype(np.float32)
    out = conv(x).numpy()
    np.testing.assert_allclose(out[..., :32], x, atol=1e-6)
    assert np.abs(out[..., 32:]).max() > 0.1  # The others keep their random start.
    batch_norms = models.batch_norms(model)
    assert batch_norms and all(layer.gamma is None for layer in batch_norms)
    pooled = models.build_model("conv4_bn", input_shape=(16, 16, 3), dirac=True, pooled_convs=1)
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 64)).astype(np.float32)
    np.testing.assert_allclose(pooled.get_layer("block2_pooled1_conv")(x), x, atol=1e-6)


def test_pooling_first_is_the_same_function_while_batch_norm_scales_are_positive():
    # Max pooling commutes with an increasing per-channel map (batch norm at inference with a
    # positive scale, then ReLU), so only where the batch norms run changes.
    shape = (48, 64, 3)
    after = models.build_model("conv5_wh", input_shape=shape, convs_per_block=2)
    first = models.build_model("conv5_wh", input_shape=shape, convs_per_block=2, pool_first=True)
    rng = np.random.default_rng(0)
    for layer in after.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, c),
                    rng.normal(size=c),
                    rng.normal(size=c),
                    rng.uniform(0.5, 2, c),
                ]
            )
    first.set_weights(after.get_weights())
    x = rng.uniform(-1, 1, size=(4, *shape)).astype(np.float32)
    np.testing.assert_allclose(first(x), after(x), rtol=1e-4, atol=1e-5)
    pooled = first.get_layer("block1_2_bn").input.shape
    assert pooled[1:3] == after.get_layer("block1_pool").output.shape[1:3]
    assert first.get_layer("block1_1_bn").input.shape[1:3] == (24, 32)  # Not the block's last.


@pytest.mark.parametrize("residual", [False, True])
def test_pooled_convs_run_at_the_pooled_size_and_can_be_residual(residual):
    shape = (48, 64, 3)
    model = models.build_model(
        "conv5_wh",
        input_shape=shape,
        pool_first=True,
        pooled_convs=[0, 1, 0, 2],
        residual=residual,
    )
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.endswith("_conv") and "pooled" in n] == [
        "block2_pooled1_conv",
        "block4_pooled1_conv",
        "block4_pooled2_conv",
    ]
    pooled = model.get_layer("block2_pool").output.shape
    assert model.get_layer("block2_pooled1_conv").output.shape[1:3] == pooled[1:3]
    adds = [n for n in names if n.endswith("_residual")]
    assert adds == (["block2_residual", "block4_residual"] if residual else [])
    if residual:  # The block's pooled input plus its branch.
        parts = ["block2_1_relu", "block2_pooled1_relu", "block2_residual"]
        probe = keras.Model(model.input, [model.get_layer(n).output for n in parts])
        x = np.random.default_rng(0).uniform(size=(2, *shape)).astype(np.float32)
        pooled_input, branch, total = (keras.ops.convert_to_numpy(t) for t in probe(x))
        np.testing.assert_allclose(total, pooled_input + branch, rtol=1e-5, atol=1e-6)
    plain = models.build_model("conv5_wh", input_shape=shape, pool_first=True)
    assert models.count_flops(model) > models.count_flops(plain)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pooled_convs": [1, 1]},
        {"pooled_convs": -1},
        {"pooled_convs": [1, 1, 1, True]},
        {"residual": True},
    ],
)
def test_bad_pooled_convs_are_one_config_error(kwargs):
    with pytest.raises(ConfigError, match="pooled_convs"):
        models.build_model("conv5_wh", input_shape=(48, 64, 3), **kwargs)


def test_bn_momentum_sets_how_far_one_training_batch_moves_the_statistics():
    model = models.build_model("conv5_bn", input_shape=(32, 32, 3), bn_momentum=0.75)
    batch_norms = models.batch_norms(model)
    assert {layer.name for layer in batch_norms} >= {"stem_bn", "block1_1_bn"}
    assert all(layer.momentum == 0.75 for layer in batch_norms)
    x = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype(np.float32)
    probe = keras.Model(model.input, model.get_layer("block1_1_bn").input)
    batch_mean = np.mean(keras.ops.convert_to_numpy(probe(x, training=True)), axis=(0, 1, 2))
    model(x, training=True)
    moved = keras.ops.convert_to_numpy(model.get_layer("block1_1_bn").moving_mean)
    np.testing.assert_allclose(moved, 0.25 * batch_mean, rtol=1e-4, atol=1e-6)


def test_logit_scale_multiplies_the_logit_and_survives_saving(tmp_path):
    shape = (32, 32, 3)
    model = models.build_model("conv5_wh", input_shape=shape, logit_scale=0.125)
    x = np.random.default_rng(0).uniform(size=(3, *shape)).astype(np.float32)
    head = keras.Model(model.input, model.get_layer("logit").output)
    np.testing.assert_allclose(model(x), 0.125 * head(x).numpy(), rtol=1e-5, atol=1e-7)
    path = tmp_path / "model.keras"
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x), model(x), rtol=1e-6)
    plain = models.build_model("conv5_wh", input_shape=shape)
    assert "logit_scale" not in [layer.name for layer in plain.layers]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"bn_momentum": 1.0}, "bn_momentum"),
        ({"bn_momentum": -0.1}, "bn_momentum"),
        ({"logit_scale": 0}, "logit_scale"),
        ({"logit_scale": float("nan")}, "logit_scale"),
        ({"logit_scale": "0.1"}, "logit_scale"),
        ({"activation": "tanh"}, "activation"),
        ({"activation": None}, "activation"),
    ],
)
def test_bad_bn_momentum_logit_scale_or_activation_is_one_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        models.build_model("conv5_wh", input_shape=(32, 32, 3), **kwargs)


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_the_blocks_activation_is_keras_own_and_the_stem_keeps_its_relu(tmp_path, activation):
    shape = (32, 32, 3)
    model = models.build_model("conv5_wh", input_shape=shape, activation=activation, dropout=0.0)
    names = [layer.name for layer in model.layers]
    assert "whiten_relu" in names
    assert [n for n in names if n.endswith(f"_{activation}")] == [
        f"block{b}_1_{activation}" for b in range(1, 5)
    ]
    x = np.random.default_rng(0).uniform(size=(3, *shape)).astype(np.float32)
    normed = keras.Model(model.input, model.get_layer("block2_1_bn").output)(x)
    activated = keras.Model(model.input, model.get_layer(f"block2_1_{activation}").output)(x)
    expected = getattr(keras.activations, activation)(normed)
    np.testing.assert_allclose(activated, expected, rtol=1e-6, atol=1e-6)
    twin = models.training_twin(model)
    np.testing.assert_allclose(twin(x, training=True), model(x, training=True), atol=1e-4)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def _train_step(model, x, y):
    """Loss, gradients of every trainable variable and of the input: one training call."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.square(model(x, training=True) - y))
    return loss, tape.gradient(loss, [*model.trainable_variables, x])


@pytest.mark.parametrize("scale", [True, False])
def test_fused_batch_norm_trains_as_keras_batch_norm(scale):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, size=(4, 5, 6, 8)), tf.float32)
    y = tf.constant(rng.normal(size=(4, 5, 6, 8)), tf.float32)
    gamma = rng.normal(1.0, 0.2, size=8).astype(np.float32)
    layers = [keras.layers.BatchNormalization(scale=scale, momentum=0.9) for _ in range(2)]
    for layer in layers:
        layer.build(x.shape)
        if scale:
            layer.gamma.assign(gamma)
        layer.beta.assign(np.linspace(-1, 1, 8).astype(np.float32))
    fused = FusedBatchNorm(layers[1])
    (keras_loss, keras_grads), (fused_loss, fused_grads) = (
        _train_step(layers[0], x, y),
        _train_step(fused, x, y),
    )
    np.testing.assert_allclose(fused_loss, keras_loss, rtol=1e-5)
    for mine, theirs in zip(fused_grads, keras_grads, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)
    for name in ("moving_mean", "moving_variance"):
        moved = getattr(layers[1], name).numpy()
        np.testing.assert_allclose(moved, getattr(layers[0], name).numpy(), rtol=1e-5)
        assert not np.allclose(moved, 0.0 if name == "moving_mean" else 1.0)
    # Outside training it is the wrapped layer.
    np.testing.assert_array_equal(fused(x, training=False), layers[1](x, training=False))


def test_a_training_twin_trains_the_models_own_variables():
    model = models.build_model("conv5_wh", input_shape=(32, 32, 3), dropout=0.0)
    twin = models.training_twin(model)
    assert twin is not model
    assert {id(v) for v in twin.weights} == {id(v) for v in model.weights}
    assert any(isinstance(layer, FusedBatchNorm) for layer in twin.layers)
    assert not any(isinstance(layer, FusedBatchNorm) for layer in model.layers)
    x = tf.random.stateless_uniform((4, 32, 32, 3), seed=(1, 2))
    np.testing.assert_array_equal(twin(x, training=False), model(x, training=False))
    np.testing.assert_allclose(twin(x, training=True), model(x, training=True), atol=1e-4)
    # A model without batch norm is its own twin.
    plain = models.build_model("conv1", input_shape=(32, 32, 3))
    assert models.training_twin(plain) is plain
