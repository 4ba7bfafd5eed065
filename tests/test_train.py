"""The training loop: it learns, does not retrace, resumes exactly, stops early, guards NaN."""

import contextlib
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import train_killed_then_resumed

from catdog_tf import data, machine, rundir
from catdog_tf.config import Config, smoke
from catdog_tf.errors import ConfigError, DataSourceError
from catdog_tf.plan import resolve
from catdog_tf.train import (
    NonFiniteLossError,
    Steps,
    WorkdirConfigError,
    loop,
    metrics,
    train_and_evaluate,
)
from catdog_tf.train import steps as steps_module
from catdog_tf.utils import read_json


def tiny_config(**changes) -> Config:
    base = smoke("_tiny").replace(
        synthetic_size=128,
        image_height=24,
        image_width=32,
        batch_size=16,
        epochs=2,
        learning_rate=3e-2,
    )
    return base.replace(**changes)


def _weights(path):
    return [w.numpy() for w in keras.saving.load_model(path).weights]


def test_tiny_model_learns_synthetic(tmp_path):
    config = tiny_config(synthetic_size=256, epochs=6, image_height=32, image_width=40)
    result = train_and_evaluate(config, str(tmp_path / "run"), verbose=False)
    assert result["validation"]["accuracy_at_0.5"] > 0.8
    assert result["test"]["best_accuracy"] > 0.8
    assert result["data"]["train"]["synthetic"] is True
    for name in ("config.json", "history.json", "result.json", "model.keras", "predictions.npz"):
        assert os.path.exists(tmp_path / "run" / name)
    history = read_json(tmp_path / "run" / "history.json")
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert os.listdir(tmp_path / "run" / "tensorboard")


def test_train_step_traced_once():
    config = tiny_config()
    steps = Steps(config, resolve(config, train_images=64))
    images = tf.random.uniform([16, 24, 32, 3])
    labels = tf.constant([0, 1] * 8, tf.int32)
    for _ in range(5):
        steps.train_step(images, labels)
    for batch in (16, 16, 5):
        steps.eval_step(images[:batch], labels[:batch])
    traced = steps.traced_functions
    assert traced["train"].experimental_get_tracing_count() == 1
    assert traced["eval"].experimental_get_tracing_count() <= 2


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_per_example_loss_matches_keras(loss):
    labels = tf.constant([0, 1, 1, 0])
    logits = tf.constant([[-3.0], [0.5], [4.0], [1.0]])
    ours = steps_module.per_example_loss(loss, labels, logits).numpy()
    y = tf.cast(labels, tf.float32)[:, None]
    if loss == "mse":
        expected = keras.losses.MeanSquaredError(reduction=None)(y, tf.sigmoid(logits))
    else:
        expected = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)(y, logits)
    np.testing.assert_allclose(ours, np.ravel(expected), rtol=1e-5)


@pytest.mark.parametrize("augment_ops", ["affine", "flip_shift"])
def test_resume_after_kill_matches_uninterrupted(tmp_path, augment_ops):
    config = tiny_config(
        epochs=3, model_kwargs={"dropout": 0.3}, augment=True, augment_ops=augment_ops
    )
    full = train_and_evaluate(config, str(tmp_path / "full"), verbose=False)
    resumed = train_killed_then_resumed(config, str(tmp_path / "resumed"))

    history_full = read_json(tmp_path / "full" / "history.json")
    history_resumed = read_json(tmp_path / "resumed" / "history.json")
    assert [h["train_loss"] for h in history_full] == [h["train_loss"] for h in history_resumed]
    for a, b in zip(
        _weights(tmp_path / "full" / "model.keras"),
        _weights(tmp_path / "resumed" / "model.keras"),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert full["validation"] == resumed["validation"]


def test_two_seeded_runs_identical(tmp_path):
    config = tiny_config(epochs=2, augment=True)
    a = train_and_evaluate(config, str(tmp_path / "a"), verbose=False)
    b = train_and_evaluate(config, str(tmp_path / "b"), verbose=False)
    ha = read_json(tmp_path / "a" / "history.json")
    hb = read_json(tmp_path / "b" / "history.json")
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert a["validation"] == b["validation"]


def test_early_stopping_restores_best_weights(tmp_path, monkeypatch):
    # Validation losses are scripted through the public metrics function; the logits it is
    # handed show which weights each validation pass saw.
    scripted = iter([0.5, 0.4, 0.6, 0.7])
    validation_logits = []
    original = metrics.evaluate_predictions

    def scripted_metrics(logits, labels, threshold=None):
        result = original(logits, labels, threshold)
        if threshold is None:  # Validation: each epoch's, then the final report's.
            validation_logits.append(np.array(logits))
            result["cross_entropy"] = next(scripted, result["cross_entropy"])
        return result

    monkeypatch.setattr(metrics, "evaluate_predictions", scripted_metrics)
    final = {}
    config = tiny_config(epochs=6, early_stopping_patience=2)
    result = train_and_evaluate(
        config,
        str(tmp_path / "run"),
        verbose=False,
        on_finished=lambda model, result: final.update(weights=[w.numpy() for w in model.weights]),
    )
    assert result["epochs_run"] == 4 and result["best_epoch"] == 2
    epochs, reported = validation_logits[:4], validation_logits[4]
    np.testing.assert_allclose(reported, epochs[1], rtol=1e-5, atol=1e-6)  # Epoch 2's weights,
    assert not np.allclose(reported, epochs[3], rtol=1e-5, atol=1e-6)  # not the last epoch's.
    for saved, best in zip(
        _weights(tmp_path / "run" / "model.keras"), final["weights"], strict=True
    ):
        np.testing.assert_array_equal(saved, best)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    poison = tf.Variable(1.0)
    original_loss = steps_module.per_example_loss
    monkeypatch.setattr(
        steps_module, "per_example_loss", lambda *args: original_loss(*args) * poison
    )
    with pytest.raises(NonFiniteLossError, match="epoch 2: loss is nan") as info:
        train_and_evaluate(
            tiny_config(epochs=3),
            str(tmp_path / "run"),
            verbose=False,
            on_epoch_end=lambda epoch, entry: poison.assign(math.nan),
        )
    assert "last good checkpoint (epoch 1)" in str(info.value)
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert latest.endswith("ckpt-1")


def test_workdir_with_other_config_is_refused(tmp_path):
    workdir = str(tmp_path / "run")
    train_and_evaluate(tiny_config(epochs=1), workdir, verbose=False)
    with pytest.raises(WorkdirConfigError, match="seed"):
        train_and_evaluate(tiny_config(epochs=1, seed=5), workdir, verbose=False)
    result = train_and_evaluate(
        tiny_config(epochs=1, seed=5), workdir, overwrite=True, verbose=False
    )
    assert result["config"]["seed"] == 5


def test_overwrite_trains_again_from_the_start_once_the_new_run_can_start(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    config = tiny_config(epochs=1)
    train_and_evaluate(config, workdir, verbose=False)
    first = read_json(os.path.join(workdir, "history.json"))
    # The same config: without overwrite it would resume (and find nothing left to train).
    train_and_evaluate(config, workdir, overwrite=True, verbose=False)
    again = read_json(os.path.join(workdir, "history.json"))
    assert [h["seconds"] for h in again] != [h["seconds"] for h in first]
    # A planned field changed: refused, with --overwrite as the way out, which works.
    faster = config.replace(learning_rate=0.05)
    with pytest.raises(WorkdirConfigError, match="--overwrite to start again"):
        train_and_evaluate(faster, workdir, verbose=False)
    result = train_and_evaluate(faster, workdir, overwrite=True, verbose=False)
    assert result["plan"]["learning_rate"] == 0.05
    # A new run that cannot start (no such data) leaves the old one whole.
    with pytest.raises(DataSourceError):
        train_and_evaluate(
            config.replace(data=str(tmp_path / "missing")), workdir, overwrite=True, verbose=False
        )
    assert rundir.is_finished(workdir)
    # Nor does a model or a step that refuses to be built: found when they are built, and
    # with the precision set no calibration builds them earlier.
    for refused, message in [
        ({"model_kwargs": {"filters": -1}}, "cannot be built"),
        ({"bn_bias_lr_scale": 2.0}, "needs batch norms"),
    ]:
        with pytest.raises(ConfigError, match=message):
            train_and_evaluate(faster.replace(**refused), workdir, overwrite=True, verbose=False)
    assert rundir.is_finished(workdir)
    # Nor does a run too large for the memory: checked before the deletion too.
    with monkeypatch.context() as patched:
        patched.setattr(machine, "available_memory", lambda: 64 * 1024)
        with pytest.raises(ConfigError, match="would take about"):
            train_and_evaluate(faster, workdir, overwrite=True, verbose=False)
    assert rundir.is_finished(workdir)
    assert read_json(os.path.join(workdir, "result.json"))["plan"]["learning_rate"] == 0.05


def test_a_run_that_calibrates_trains_as_one_that_reads_the_calibration(tmp_path, monkeypatch):
    # Calibration builds and steps models before the run's own is built; the run's initial
    # weights must come from its seed alone.
    monkeypatch.setenv("CATDOG_TF_CACHE", str(tmp_path / "cache"))
    config = tiny_config(epochs=1, precision="auto", jit_compile="auto")
    losses = []
    for run in ("calibrates", "reads"):
        train_and_evaluate(config, str(tmp_path / run), verbose=False)
        losses.append([h["train_loss"] for h in read_json(tmp_path / run / "history.json")])
    assert os.listdir(tmp_path / "cache")
    assert losses[0] == losses[1]


def test_batch_larger_than_data_is_refused(tmp_path):
    with pytest.raises(loop.ConfigError, match="larger than the 64 training images"):
        train_and_evaluate(tiny_config(batch_size=100), str(tmp_path / "r"), verbose=False)


@pytest.mark.parametrize(
    "precision,jit", [("mixed_bfloat16", "off"), ("mixed_float16", "off"), ("float32", "on")]
)
def test_precisions_and_xla_train(tmp_path, precision, jit):
    config = tiny_config(epochs=1, precision=precision, jit_compile=jit)
    result = train_and_evaluate(config, str(tmp_path / "r"), verbose=False)
    assert result["plan"]["precision"] == precision
    assert result["plan"]["jit_compile"] == (jit == "on")
    assert math.isfinite(result["validation"]["cross_entropy"])
    if precision == "mixed_float16":
        steps = Steps(config, resolve(config, train_images=64))
        assert isinstance(steps.optimizer, keras.optimizers.LossScaleOptimizer)


def test_folder_run_with_file_cache(kaggle_dir, tmp_path):
    config = tiny_config(
        data=kaggle_dir,
        train_size=8,
        val_size=2,
        test_size=2,
        batch_size=4,
        epochs=1,
        cache="cache",
    )
    result = train_and_evaluate(config, str(tmp_path / "r"), verbose=False)
    assert result["data"]["train"]["n"] == 8
    assert os.listdir(tmp_path / "r" / "cache")


MIRRORED = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from catdog_tf.config import smoke
from catdog_tf.train import train_and_evaluate
config = smoke("_tiny").replace(synthetic_size=128, image_height=24, image_width=32,
                                batch_size=16, epochs=1, strategy="mirrored")
result = train_and_evaluate(config, {workdir!r}, verbose=False)
print("REPLICAS", result["replicas"], "N", result["validation"]["n"])
"""


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    code = MIRRORED.format(workdir=str(tmp_path / "run"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "REPLICAS 2 N 32" in out.stdout


def test_pipeline_batches_fit_steps(kaggle_dir):
    examples = data.list_folder(kaggle_dir)
    decoded = data.decoded_dataset(examples, (24, 32))
    config = tiny_config(batch_size=4)
    steps = Steps(config, resolve(config, train_images=12))
    logits, labels = steps.predict(data.eval_batches(decoded, 5))
    assert logits.shape == (12,) and np.array_equal(labels, examples.labels)
    # The steps scale the pipeline's uint8 batches to [0, 1], exactly as the model expects.
    images = np.concatenate([x for x, _ in data.eval_batches(decoded, 12)])
    expected = steps.model(images.astype(np.float32) / 255.0, training=False).numpy().ravel()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_disk_full_gives_clear_error_and_no_half_written_result(tmp_path, monkeypatch):
    from catdog_tf import utils

    real_fdopen = os.fdopen

    def full_disk(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        if "result.json" in os.readlink(f"/proc/self/fd/{fd}"):

            def no_space(text):
                raise OSError(28, "No space left on device")

            f.write = no_space
        return f

    monkeypatch.setattr(utils.os, "fdopen", full_disk)
    workdir = tmp_path / "run"
    with pytest.raises(OSError, match="No space left on device"):
        train_and_evaluate(tiny_config(epochs=1), str(workdir), verbose=False)
    assert not (workdir / "result.json").exists()
    assert not [n for n in os.listdir(workdir) if n.startswith(".tmp-")]
    assert len(read_json(workdir / "history.json")) == 1


def test_extreme_learning_rate_never_saves_a_corrupt_best_model(tmp_path):
    workdir = tmp_path / "run"
    config = tiny_config(epochs=3, learning_rate=1e6, loss="mse")
    with contextlib.suppress(NonFiniteLossError):  # Also fine: the guard stopped the run.
        train_and_evaluate(config, str(workdir), verbose=False)
    best = tf.train.latest_checkpoint(str(workdir / "best"))
    if best is None:
        assert not (workdir / "model.keras").exists()
        return
    reader = tf.train.load_checkpoint(best)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), name


def test_correct_count_is_keras_binary_accuracy_and_counts_mixed_labels_by_majority():
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(64, 1)), tf.float32)
    labels = tf.constant(rng.integers(0, 2, 64), tf.int32)
    keras_accuracy = keras.metrics.BinaryAccuracy(threshold=0.5)
    keras_accuracy.update_state(tf.reshape(labels, [-1, 1]), tf.sigmoid(logits))
    count = steps_module.correct_count(labels, logits)
    assert count.dtype == tf.float32
    assert float(count) == pytest.approx(64 * float(keras_accuracy.result()))
    # Dog shares of mixed images: right when the logit's side is the larger share's.
    shares = tf.constant([0.7, 0.3, 0.6, 0.1])
    assert float(steps_module.correct_count(shares, tf.constant([2.0, -1.0, -0.5, 3.0]))) == 2
