"""Muon for conv kernels: Keras's Muon on each kernel viewed as a matrix, its FLOPs counted."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from catdog_tf.train.muon import ConvMuon

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
