"""Muon for conv kernels: Keras's Muon on each kernel viewed as a matrix, its FLOPs counted."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from catdog_tf.config import smoke
from catdog_tf.train import train_and_evaluate
from catdog_tf.train.muon import ConvMuon
from catdog_tf.utils import read_json

SETTINGS = {"learning_rate": 0.02, "weight_decay": 0.1, "adam_weight_decay": 0.1}


def _stepped(optimizer, values: np.ndarray, gradients: list[np.ndarray]) -> np.ndarray:
    """``values`` after ``optimizer`` applies each of ``gradients`` in turn."""
    variable = keras.Variable(values, name="kernel")
    optimizer.build([variable])
    for gradient in gradients:
        optimizer.apply([tf.constant(gradient)], [variable])
    return variable.numpy()


def _draws(shape, count=3, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape).astype(np.float32)
    return values, [rng.normal(size=shape).astype(np.float32) for _ in range(count)]


def test_a_matrix_steps_as_keras_muon_steps_it():
    values, gradients = _draws((6, 4))
    ours = _stepped(ConvMuon(**SETTINGS), values, gradients)
    theirs = _stepped(keras.optimizers.Muon(**SETTINGS), values, gradients)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    assert np.abs(ours - values).max() > 1e-3


def test_a_conv_kernel_steps_as_keras_muon_steps_its_matrix():
    values, gradients = _draws((3, 3, 2, 4))
    ours = _stepped(ConvMuon(**SETTINGS), values, gradients)
    as_matrix = [g.reshape(18, 4) for g in gradients]
    theirs = _stepped(keras.optimizers.Muon(**SETTINGS), values.reshape(18, 4), as_matrix)
    np.testing.assert_allclose(ours, theirs.reshape(values.shape), rtol=1e-5, atol=1e-6)
    # Keras alone sends a 4-D kernel to its AdamW step, which moves it elsewhere.
    adamw = _stepped(keras.optimizers.Muon(**SETTINGS), values, gradients)
    assert np.abs(ours - adamw).max() > 1e-3


@pytest.mark.parametrize("shape", [(5,), (5, 1), (3, 3, 4, 1)])
def test_vectors_and_one_unit_kernels_take_the_adamw_step(shape):
    values, gradients = _draws(shape)
    ours = _stepped(ConvMuon(**SETTINGS), values, gradients)
    flat = [g.ravel() for g in gradients]
    theirs = _stepped(keras.optimizers.Muon(**SETTINGS), values.ravel(), flat)
    np.testing.assert_allclose(ours.ravel(), theirs, rtol=1e-6, atol=1e-7)


def test_update_flops_count_five_newton_schulz_iterations_of_each_kernel():
    kernel = keras.Variable(np.zeros((3, 3, 2, 4), np.float32))
    dense = keras.Variable(np.zeros((8, 16), np.float32))
    others = [keras.Variable(np.zeros(s, np.float32)) for s in [(4,), (8, 1)]]
    # (18 x 4): m = 4, n = 18; (8 x 16): m = 8, n = 16; per iteration 4 m^2 n + 2 m^3.
    expected = 5 * (4 * 16 * 18 + 2 * 64) + 5 * (4 * 64 * 16 + 2 * 512)
    assert ConvMuon().update_flops([kernel, dense, *others]) == expected


def test_a_muon_run_counts_its_update_flops_and_resumes_exactly(tmp_path):
    config = smoke("_tiny").replace(
        synthetic_size=128,
        image_height=24,
        image_width=32,
        batch_size=16,
        epochs=2,
        optimizer="muon",
        learning_rate=3e-3,
        weight_decay=0.3,
    )
    whole = train_and_evaluate(config, str(tmp_path / "whole"), verbose=False)
    history = read_json(tmp_path / "whole" / "history.json")
    update = {h["update_flops_per_image"] for h in history}
    # _tiny's one conv kernel (3 x 3 x 3, 8): an 8 x 27 matrix; its logit kernel is a vector.
    assert update == {5 * (4 * 64 * 27 + 2 * 512) / 16}
    images = 2 * (64 // 16) * 16
    per_image = 3 * whole["model"]["flops"] + update.pop()
    assert whole["training_flops"] == pytest.approx(per_image * images)

    def killed_after_first_epoch(epoch, entry):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(
            config, str(tmp_path / "resumed"), verbose=False, on_epoch_end=killed_after_first_epoch
        )
    resumed = train_and_evaluate(config, str(tmp_path / "resumed"), verbose=False)
    again = read_json(tmp_path / "resumed" / "history.json")
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in again]
    assert whole["validation"] == resumed["validation"]
