"""The time-to-accuracy options: label smoothing, warm-up, weight averaging, flip TTA, compute."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_kaggle_folder, train_killed_then_resumed

from catdog_tf import build, data, models, shipped
from catdog_tf.config import (
    Config,
    fast,
    fast_progressive,
    fast_progressive_wh,
    full,
    full_progressive,
    full_progressive_wh,
    full_sam_wh,
    quick_wh,
    smoke,
)
from catdog_tf.errors import ConfigError
from catdog_tf.evaluate import add_tta, evaluate_workdir
from catdog_tf.models import whitening
from catdog_tf.plan import resolve
from catdog_tf.train import Steps, schedules, train_and_evaluate
from catdog_tf.train import steps as steps_module
from catdog_tf.utils import read_json


def tiny_config(**changes) -> Config:
    base = smoke("_tiny").replace(
        synthetic_size=128, image_height=24, image_width=32, batch_size=16, learning_rate=3e-2
    )
    return base.replace(**changes)


@pytest.mark.parametrize("smoothing", [0.1, 0.3])
def test_label_smoothing_matches_keras(smoothing):
    labels = tf.constant([0, 1, 1, 0])
    logits = tf.constant([[-3.0], [0.5], [4.0], [1.0]])
    ours = steps_module.per_example_loss("cross_entropy", labels, logits, smoothing).numpy()
    keras_loss = keras.losses.BinaryCrossentropy(
        from_logits=True, label_smoothing=smoothing, reduction=None
    )
    expected = keras_loss(tf.cast(labels, tf.float32)[:, None], logits)
    np.testing.assert_allclose(ours, np.ravel(expected), rtol=1e-5)


def _rates(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_warmup_then_cosine_schedule():
    config = full("_tiny").replace(
        epochs=10, warmup_epochs=2.0, learning_rate=0.1, precision="float32", jit_compile="off"
    )
    plan = resolve(config, train_images=640)  # 10 steps per epoch
    assert (plan.warmup_steps, plan.decay_steps) == (20, 80)
    schedule = schedules.learning_rate_schedule(plan)
    np.testing.assert_allclose(_rates(schedule, [0, 10, 20]), [0.0, 0.05, 0.1], atol=1e-7)
    # After the warm-up: 0.1 * (1 + cos(pi * t / 80)) / 2.
    t = np.array([20, 60, 100])
    expected = 0.1 * (1 + np.cos(np.pi * np.minimum(t - 20, 80) / 80)) / 2
    np.testing.assert_allclose(_rates(schedule, t), expected, atol=1e-7)


def test_warmup_then_linear_decay_is_keras_warmup_then_keras_polynomial_decay():
    config = full("_tiny").replace(
        epochs=10,
        warmup_epochs=2.0,
        learning_rate=0.1,
        lr_schedule="linear",
        precision="float32",
        jit_compile="off",
    )
    plan = resolve(config, train_images=640)  # 10 steps per epoch
    assert (plan.warmup_steps, plan.decay_steps) == (20, 80)
    schedule = schedules.learning_rate_schedule(plan)
    rising = keras.optimizers.schedules.CosineDecay(0.0, 80, warmup_target=0.1, warmup_steps=20)
    falling = keras.optimizers.schedules.PolynomialDecay(0.1, 80, end_learning_rate=0.0)
    t = np.arange(0, 101, 5)
    expected = [float(rising(s)) if s < 20 else float(falling(s - 20)) for s in t]
    np.testing.assert_allclose(_rates(schedule, t), expected, atol=1e-7)
    # The triangle's corners, by hand: 0 at the start, the peak after the warm-up, 0 at the end.
    np.testing.assert_allclose(_rates(schedule, [0, 10, 20, 60, 100]), [0, 0.05, 0.1, 0.05, 0])
    # Without a warm-up it starts at the peak; half the peak at a half-share optimizer.
    plan = resolve(config.replace(warmup_epochs=0), train_images=640)
    half = schedules.learning_rate_schedule(plan, scale=0.5)
    np.testing.assert_allclose(_rates(half, [0, 50, 100]), [0.05, 0.025, 0.0], atol=1e-7)


def test_warmup_then_constant_schedule():
    config = smoke("_tiny").replace(epochs=4, warmup_epochs=0.5, learning_rate=0.2)
    plan = resolve(config, train_images=320)  # 10 steps per epoch, 5 of warm-up
    schedule = schedules.learning_rate_schedule(plan)
    np.testing.assert_allclose(_rates(schedule, [0, 1, 5, 6, 39]), [0, 0.04, 0.2, 0.2, 0.2])
    assert schedules.learning_rate_schedule(resolve(config.replace(warmup_epochs=0), 320)) == 0.2


@pytest.mark.parametrize(
    "changes",
    [
        {"label_smoothing": 1.0},
        {"label_smoothing": -0.1},
        {"ema_decay": 1.0},
        {"ema_start": 1.0},  # No ema_decay.
        {"lookahead_steps": 5},  # No ema_decay.
        {"ema_decay": 0.5, "lookahead_steps": -1},
        {"ema_decay": 0.9, "ema_start": 2.0, "epochs": 2},
        {"alternating_flip": True},  # No augment.
        {"cutout": 0.25},  # No augment.
        {"cutout": 1.0, "augment": True},
        {"mix": "mixup"},  # No augment.
        {"mix_alpha": 0.2, "augment": True},  # No mix.
        {"mix": "cutmix", "augment": True, "mix_alpha": 0.0},
        {"sam_rho": -0.05},
        {"sam_rho": 0.05, "precision": "mixed_float16"},
        {"sam_epochs": 1},  # No sam_rho.
        {"sam_rho": 0.05, "sam_epochs": -1},
        {"sam_rho": 0.05, "sam_epochs": 3, "epochs": 2},
        {"warmup_epochs": 2.0, "epochs": 2},
        {"warmup_epochs": -1.0},
        {"low_res_epochs": 2, "epochs": 2},
        {"low_res_epochs": -1},
        {"low_res_epochs": 1, "low_res_scale": 1.0},
        {"low_res_epochs": 1, "low_res_scale": 0.0},
        {"low_res_epochs": 1, "low_res_scale": 0.2},  # 24x32 -> 5x6: too small.
        {"low_res_epochs": 1, "mid_res_epochs": 1, "epochs": 2},
        {"mid_res_epochs": -1},
        {"mid_res_epochs": 1, "mid_res_scale": 1.0},
        {"mid_res_epochs": 1, "mid_res_scale": 0.2},
    ],
)
def test_bad_recipe_values_are_refused(changes):
    with pytest.raises(ConfigError):
        tiny_config(**changes).validate()


def test_a_config_saved_before_mixing_and_sam_existed_reads_as_neither():
    values = tiny_config().to_dict()
    del values["mix"], values["mix_alpha"], values["sam_rho"]
    assert Config.from_dict(values) == tiny_config()
    assert Config.from_dict(values).mix == "none" and Config.from_dict(values).sam_rho == 0


def _lockstep_runs(*configs: Config) -> list[Steps]:
    """Each config's ``Steps`` on 64 training images, all from the first's seeded weights.

    Seeded: in a tiny ReLU and max-pooling net, some initial weights put a near-tie where a
    rounding difference (a fused kernel, NumPy's arithmetic against TensorFlow's) flips it
    and moves a whole channel's gradient by about 1e-3. Unseeded, each process starts from
    other weights and meets such a tie now and then; seeded, a comparison is the same in
    every process.
    """
    keras.utils.set_random_seed(0)
    runs = [Steps(c, resolve(c, train_images=64)) for c in configs]
    for steps in runs[1:]:
        steps.model.set_weights(runs[0].model.get_weights())
    return runs


def test_a_sharpness_aware_step_applies_the_gradient_at_the_moved_weights():
    rho, rate = 0.05, 0.1
    # conv4_bn without dropout: the same batch gives the same forward pass every time.
    plain = tiny_config(
        model="conv4_bn",
        model_kwargs={"dropout": 0.0},
        optimizer="sgd",
        learning_rate=rate,
        batch_size=16,
    )
    sam = plain.replace(sam_rho=rho)
    # The third trains a sharpness-aware config in one of its plain epochs (sam_epochs).
    runs = _lockstep_runs(plain, sam, sam)
    start = runs[1].model.get_weights()
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (16, 24, 32, 3)), tf.uint8)
    labels = tf.constant(rng.integers(0, 2, 16), tf.int32)

    # Foret et al.'s gradient, by hand: step up the normalized gradient, take it there.
    model = runs[1].train_models[(24, 32)]
    variables = model.trainable_variables

    def gradient():
        with tf.GradientTape() as tape:
            logits = model(data.normalize(images), training=True)
            loss = tf.reduce_mean(steps_module.per_example_loss("cross_entropy", labels, logits))
        return tape.gradient(loss, variables)

    first = gradient()
    scale = rho / tf.linalg.global_norm(first)
    for v, g in zip(variables, first, strict=True):
        v.assign_add(g * scale)
    expected = gradient()
    runs[1].model.set_weights(start)
    before = [v.numpy() for v in variables]

    for run, sharpness_aware in zip(runs, (None, None, False), strict=True):
        run.train_step(images, labels, sharpness_aware=sharpness_aware)
    with pytest.raises(ConfigError, match="sam_rho"):
        runs[0].train_step(images, labels, sharpness_aware=True)
    for got, want in zip(runs[2].model.get_weights(), runs[0].model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Keras's Nesterov SGD moves a weight by -(1 + momentum) x rate x gradient at its first step.
    for v, w, g in zip(variables, before, expected, strict=True):
        np.testing.assert_allclose(v.numpy() - w, -1.9 * rate * g.numpy(), rtol=2e-4, atol=1e-6)
    # The second pass assigns nothing: the moving statistics are the plain step's.
    stats = [[v.numpy() for v in r.model.non_trainable_variables] for r in runs]
    assert stats[1] and any("moving_mean" in v.path for v in runs[1].model.non_trainable_variables)
    for got, want in zip(*stats[:2], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(runs[0].model.trainable_variables[0], variables[0])


@pytest.mark.parametrize("start", [0.0, 2.0])
def test_moving_average_covers_every_weight_from_its_start(start):
    decay = 0.9
    # conv4_bn: batch norm, so the moving means and variances are averaged too.
    config = tiny_config(model="conv4_bn", ema_decay=decay, ema_start=start / 4)
    steps = Steps(config, resolve(config, train_images=64))  # 4 steps per epoch
    floats = [w for w in steps.model.weights if "float" in str(w.dtype)]
    assert any("moving_variance" in w.path for w in floats)
    rng = np.random.default_rng(0)
    average = None
    for step in range(1, 5):
        images = tf.constant(rng.integers(0, 256, (16, 24, 32, 3)), tf.uint8)
        labels = tf.constant(rng.integers(0, 2, 16), tf.int32)
        steps.train_step(images, labels)
        now = [w.numpy() for w in floats]
        # The average follows the weights through the start step (at least the first).
        if step <= max(1, start):
            average = now
        else:
            average = [decay * a + (1 - decay) * w for a, w in zip(average, now, strict=True)]
    training = [w.numpy() for w in floats]
    with steps.averaged():
        inside = [w.numpy() for w in floats]
    for got, want in zip(inside, average, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    changed = [not np.array_equal(a, b) for a, b in zip(inside, training, strict=True)]
    assert all(changed[i] for i, w in enumerate(floats) if "moving_mean" in w.path)
    for got, want in zip(floats, training, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)


def test_lookahead_steps_the_average_every_k_steps_and_trains_on_from_it():
    decay, every = 0.6, 2
    # conv4_bn without dropout: two runs of the same batches take the same steps. SGD, whose
    # step is proportional to the gradient: Adam's would turn a small difference in a
    # near-zero gradient into a whole step.
    plain = tiny_config(model="conv4_bn", model_kwargs={"dropout": 0.0}, optimizer="sgd")
    runs = _lockstep_runs(plain, plain.replace(ema_decay=decay, lookahead_steps=every))
    floats = [[w for w in r.model.weights if "float" in str(w.dtype)] for r in runs]
    rng = np.random.default_rng(0)
    average = None
    for step in range(1, 6):
        images = tf.constant(rng.integers(0, 256, (16, 24, 32, 3)), tf.uint8)
        labels = tf.constant(rng.integers(0, 2, 16), tf.int32)
        for r in runs:
            r.train_step(images, labels)
        # Lookahead by hand on the plain run: the first step starts the average.
        fast = [w.numpy() for w in floats[0]]
        if step == 1:
            average = fast
        elif step % every == 0:
            average = [decay * a + (1 - decay) * w for a, w in zip(average, fast, strict=True)]
            for weight, value in zip(floats[0], average, strict=True):
                weight.assign(value)
        # A missed or extra Lookahead step moves weights by about 1e-2.
        for got, want in zip(floats[1], floats[0], strict=True):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
    with runs[1].averaged():
        inside = [w.numpy() for w in floats[1]]
    for got, want in zip(inside, average, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # After step 5 (not a Lookahead step) the weights have moved on from the average.
    assert not all(np.allclose(a, w.numpy()) for a, w in zip(average, floats[1], strict=True))


def _one_step_each(*configs: Config) -> tuple[list[Steps], list[np.ndarray], list[list]]:
    """One step of each config's run on one batch, all from the first's weights.

    Returns (the runs' steps, the trainable weights before, each run's after).
    """
    runs = _lockstep_runs(*configs)
    before = [v.numpy() for v in runs[0].model.trainable_variables]
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (16, 24, 32, 3)), tf.uint8)
    labels = tf.constant(rng.integers(0, 2, 16), tf.int32)
    for steps in runs:
        steps.train_step(images, labels)
    return runs, before, [[v.numpy() for v in steps.model.trainable_variables] for steps in runs]


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lion", "muon"])
def test_weight_decay_shrinks_each_weight_by_rate_times_decay_before_the_update(optimizer):
    # Decoupled (AdamW) decay: the same step without decay, minus lr x decay x the weight.
    decay, rate = 0.5, 3e-2
    plain = tiny_config(optimizer=optimizer, learning_rate=rate)
    _, before, after = _one_step_each(plain, plain.replace(weight_decay=decay))
    for w0, undecayed, decayed in zip(before, *after, strict=True):
        np.testing.assert_allclose(decayed, undecayed - rate * decay * w0, rtol=1e-5, atol=1e-7)
    assert any(np.abs(rate * decay * w0).max() > 1e-3 for w0 in before)
    if optimizer == "lion":  # Its first step is the rate times the gradient's sign.
        for w0, w1 in zip(before, after[0], strict=True):
            moved = np.abs(w1 - w0)
            np.testing.assert_allclose(moved[moved > 0], rate, rtol=1e-5)


@pytest.mark.parametrize(
    "changes", [{"optimizer": "adam"}, {"optimizer": "muon"}, {"bn_bias_lr_scale": 4.0}]
)
def test_without_decay_vectors_the_1d_weights_take_the_undecayed_step(changes):
    decay, rate = 0.5, 3e-2
    plain = tiny_config(
        model="conv4_bn", model_kwargs={"dropout": 0.0}, learning_rate=rate, **changes
    )
    left_out = plain.replace(weight_decay=decay, decay_vectors=False)
    runs, before, (undecayed, decayed) = _one_step_each(plain, left_out)
    variables = runs[0].model.trainable_variables
    for v, w0, a, b in zip(variables, before, undecayed, decayed, strict=True):
        expected = a if len(v.shape) <= 1 else a - rate * decay * w0
        np.testing.assert_allclose(b, expected, rtol=1e-5, atol=1e-7)
    # The batch norms' scales start at 1: decayed, they would have moved.
    scales = [w0 for v, w0 in zip(variables, before, strict=True) if v.path.endswith("gamma")]
    assert scales and all(np.all(w0 == 1.0) for w0 in scales)


def test_bn_bias_lr_scale_steps_the_shifts_that_many_times_as_far():
    # Adam's first step is the rate times the gradient's sign, so four times the rate moves
    # each shift four times as far; every other weight takes the step it takes without it.
    plain = tiny_config(model="conv4_bn", model_kwargs={"dropout": 0.0})
    runs, before, after = _one_step_each(plain, plain.replace(bn_bias_lr_scale=4.0))
    shifts = {v.path for v in runs[1].shifts}
    assert shifts == {bn.beta.path for bn in models.batch_norms(runs[1].model)}
    variables = runs[1].model.trainable_variables
    for v, w0, plain_w, scaled_w in zip(variables, before, *after, strict=True):
        factor = 4.0 if v.path in shifts else 1.0
        np.testing.assert_allclose(scaled_w - w0, factor * (plain_w - w0), rtol=1e-4, atol=1e-7)
    assert runs[1].shift_optimizer.iterations.numpy() == 1


def test_bn_bias_lr_scale_needs_batch_norm_and_one_loss_scale():
    config = tiny_config(bn_bias_lr_scale=2.0)
    with pytest.raises(ConfigError, match="the _tiny model trains none"):
        Steps(config, resolve(config, train_images=64))
    with pytest.raises(ConfigError, match="mixed_float16"):
        config.replace(model="conv4_bn", precision="mixed_float16").validate()
    with pytest.raises(ConfigError, match="must be positive"):
        config.replace(bn_bias_lr_scale=0.0).validate()


def test_flip_tta_is_the_mean_of_the_image_and_its_mirror():
    config = tiny_config()
    steps = Steps(config, resolve(config, train_images=64))
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (5, 24, 32, 3)), tf.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, tf.zeros(5, tf.int32))).batch(4)
    model = steps.model
    x = data.normalize(images)
    expected = (model(x, training=False) + model(x[:, :, ::-1], training=False)).numpy() / 2
    tta_logits, _ = steps.predict(dataset, tta=True)
    np.testing.assert_allclose(tta_logits, expected.ravel(), rtol=1e-5, atol=1e-6)
    saved_logits, _ = steps_module.model_outputs(model, dataset, tta=True)
    np.testing.assert_allclose(saved_logits.ravel(), expected.ravel(), rtol=1e-5, atol=1e-6)
    plain, _ = steps.predict(dataset)
    assert not np.allclose(plain, tta_logits)


def test_recipe_run_reports_tta_and_compute_and_resumes_exactly(tmp_path):
    config = tiny_config(
        model="conv4_bn",
        bn_bias_lr_scale=4.0,
        epochs=3,
        warmup_epochs=1.0,
        label_smoothing=0.1,
        ema_decay=0.9,
        ema_start=1.5,
        lookahead_steps=3,
        tta=True,
        augment=True,
        alternating_flip=True,
        cutout=0.3,
        mix="mixup",
        mix_alpha=0.4,
        sam_rho=0.05,
        sam_epochs=2,
    )
    whole = train_and_evaluate(config, str(tmp_path / "whole"), verbose=False)
    for key in ("validation_tta", "test_tta"):
        assert 0 <= whole[key]["accuracy_at_0.5"] <= 1
    assert whole["test_tta"]["best_threshold"] == whole["validation_tta"]["best_threshold"]
    images = 3 * (64 // 16) * 16  # epochs x steps x batch
    # Sharpness-aware minimization trains each image of its last two epochs twice.
    assert whole["training_flops"] == pytest.approx(5 / 3 * 3 * whole["model"]["flops"] * images)
    arrays = np.load(tmp_path / "whole" / "predictions.npz")
    assert arrays["test_tta_logits"].shape == arrays["test_logits"].shape
    resumed = train_killed_then_resumed(config, str(tmp_path / "resumed"))
    history = [read_json(tmp_path / run / "history.json") for run in ("whole", "resumed")]
    assert [h["train_loss"] for h in history[0]] == [h["train_loss"] for h in history[1]]
    assert [h.get("train_passes", 1) for h in history[1]] == [1, 2, 2]
    assert whole["validation"] == resumed["validation"]
    assert whole["test_tta"] == resumed["test_tta"]


def test_eval_with_tta_uses_the_tta_threshold(tmp_path, kaggle_dir):
    plain = tiny_config(data=kaggle_dir, train_size=6, val_size=3, test_size=3, batch_size=2)
    train_and_evaluate(plain, str(tmp_path / "plain"), verbose=False)
    with pytest.raises(ConfigError, match="tta"):
        evaluate_workdir(str(tmp_path / "plain"), kaggle_dir, tta=True)
    result = train_and_evaluate(plain.replace(tta=True), str(tmp_path / "tta"), verbose=False)
    report = evaluate_workdir(str(tmp_path / "tta"), kaggle_dir, tta=True)
    assert report["tta"] is True
    assert report["best_threshold"] == result["validation_tta"]["best_threshold"]
    assert evaluate_workdir(str(tmp_path / "tta"), kaggle_dir)["tta"] is False


def test_add_tta_after_training_matches_training_with_tta(tmp_path, kaggle_dir):
    plain = tiny_config(data=kaggle_dir, train_size=6, val_size=3, test_size=3, batch_size=2)
    before = train_and_evaluate(plain, str(tmp_path / "plain"), verbose=False)
    trained = train_and_evaluate(plain.replace(tta=True), str(tmp_path / "tta"), verbose=False)
    # The same images under another path are the run's images.
    moved = shutil.copytree(kaggle_dir, str(tmp_path / "moved"))
    added = add_tta(str(tmp_path / "plain"), moved)
    for key in ("validation_tta", "test_tta"):
        for metric in ("cross_entropy", "best_threshold", "best_accuracy", "n"):
            assert added[key][metric] == pytest.approx(trained[key][metric], rel=1e-4)
    result = read_json(tmp_path / "plain" / "result.json")
    assert result["test_tta"] == added["test_tta"]
    arrays = [np.load(tmp_path / run / "predictions.npz") for run in ("plain", "tta")]
    np.testing.assert_allclose(arrays[0]["test_tta_logits"], arrays[1]["test_tta_logits"], 1e-4)
    report = evaluate_workdir(str(tmp_path / "plain"), kaggle_dir, tta=True)
    assert report["best_threshold"] == added["validation_tta"]["best_threshold"]
    with pytest.raises(ConfigError, match="already has flip-TTA"):
        add_tta(str(tmp_path / "plain"))
    shipped_dir = shipped.ship(str(tmp_path / "plain"), "copy", {}, folder=str(tmp_path / "w"))
    (tmp_path / "w" / "copy" / "result.json").write_text(json.dumps(before))
    shipped.write_checksums(shipped_dir)  # As if a run without TTA had shipped.
    with pytest.raises(ConfigError, match="shipped model, never written to"):
        add_tta(shipped_dir)


def test_add_tta_refuses_other_images_under_the_same_names(tmp_path, kaggle_dir):
    config = tiny_config(data=kaggle_dir, train_size=6, val_size=3, test_size=3, batch_size=2)
    run_dir = str(tmp_path / "run")
    train_and_evaluate(config, run_dir, verbose=False)
    before = read_json(tmp_path / "run" / "result.json")
    impostor = make_kaggle_folder(str(tmp_path / "impostor"), size=(36, 28))
    with pytest.raises(data.DataSourceError, match="does not reproduce the run's validation"):
        add_tta(run_dir, impostor)
    assert read_json(tmp_path / "run" / "result.json") == before  # Nothing written.


def test_fast_preset_is_a_quarter_of_full():
    recipe, reference = fast(), full("conv5_bn")
    assert recipe.validate() is recipe
    assert recipe.epochs * 4 == reference.epochs
    assert recipe.train_size == reference.train_size and recipe.tta


@pytest.mark.parametrize(
    "preset,share",
    [
        (fast_progressive, 0.25),
        (fast_progressive_wh, 0.25),
        (quick_wh, 0.21),
        (full_progressive, 0.65),
        (full_progressive_wh, 0.54),
        (full_sam_wh, 0.99),
    ],
)
def test_progressive_presets_fit_their_share_of_full(preset, share):
    recipe, reference = preset(), full("conv5_bn")
    assert recipe.validate() is recipe and recipe.tta
    model = models.build_model(recipe.model, (*recipe.image_size, 3), **recipe.model_kwargs)
    low = models.count_flops(models.at_image_size(model, recipe.low_res_size))
    high = models.count_flops(model)
    compute = sum(
        recipe.train_passes(e) * (low if recipe.epoch_image_size(e) else high)
        for e in range(recipe.epochs)
    )
    # Against conv5_bn's full run whatever the preset's model: a cheaper model buys epochs.
    full_compute = reference.epochs * models.count_flops(
        models.build_model(reference.model, (*reference.image_size, 3))
    )
    assert compute <= share * full_compute


def test_memory_estimate_holds_the_shrunk_images_once_per_size():
    config = tiny_config(epochs=4, low_res_epochs=2, mid_res_epochs=1)
    model = models.build_model(config.model, (*config.image_size, 3))
    needed = build.memory_needed(model, config, cached_images=100, train_images=80)
    assert needed["image cache"] == 100 * 24 * 32 * 3
    assert needed["shrunk image cache"] == 80 * (12 * 16 + 18 * 24) * 3
    for cache in ("", "cache_folder"):  # Nothing cached, or cached in files.
        uncached = build.memory_needed(model, config.replace(cache=cache), 100, 80)
        assert uncached["image cache"] == uncached["shrunk image cache"] == 0


def test_a_muon_run_counts_its_update_flops_and_resumes_exactly(tmp_path):
    config = tiny_config(epochs=2, optimizer="muon", learning_rate=3e-3, weight_decay=0.3)
    whole = train_and_evaluate(config, str(tmp_path / "whole"), verbose=False)
    history = read_json(tmp_path / "whole" / "history.json")
    update = {h["update_flops_per_image"] for h in history}
    # _tiny's one conv kernel (3 x 3 x 3, 8): an 8 x 27 matrix; its logit kernel is a vector.
    assert update == {5 * (4 * 64 * 27 + 2 * 512) / 16}
    images = 2 * (64 // 16) * 16  # epochs x steps x batch
    per_image = 3 * whole["model"]["flops"] + update.pop()
    assert whole["training_flops"] == pytest.approx(per_image * images)
    resumed = train_killed_then_resumed(config, str(tmp_path / "resumed"))
    again = read_json(tmp_path / "resumed" / "history.json")
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in again]
    assert whole["validation"] == resumed["validation"]


def test_progressive_resizing_trains_the_shared_layers_and_counts_its_compute(tmp_path):
    config = tiny_config(
        epochs=4, low_res_epochs=2, low_res_scale=0.5, mid_res_epochs=1, augment=True
    )
    assert (config.low_res_size, config.mid_res_size) == ((12, 16), (18, 24))
    result = train_and_evaluate(config.replace(cache="cache"), str(tmp_path / "run"), verbose=False)
    # A file cache holds the shrunk images too, one file per size, beside the decoded ones.
    cached = os.listdir(tmp_path / "run" / "cache")
    for size in ("", "-shrunk-12x16", "-shrunk-18x24"):
        assert any(f.startswith("train-") and f.endswith(f"24x32{size}.index") for f in cached)
    history = read_json(tmp_path / "run" / "history.json")
    assert [h.get("image_size") for h in history] == [[12, 16], [12, 16], [18, 24], None]
    low, mid = history[0]["flops_per_image"], history[2]["flops_per_image"]
    full_size = result["model"]["flops"]
    assert 0 < low < full_size / 2 < mid < full_size  # A quarter, then 9/16 of the pixels.
    per_epoch = (64 // 16) * 16
    assert result["training_flops"] == pytest.approx(3 * per_epoch * (2 * low + mid + full_size))
    assert "flops_per_image" not in history[3]
    # Speed is that of the full-size epochs only: the shrunk ones are cheaper.
    assert result["seconds_per_epoch"] == history[3]["seconds"]


def test_a_low_res_step_moves_the_full_size_model():
    config = tiny_config(low_res_epochs=1)
    steps = Steps(config, resolve(config, train_images=64))
    assert sorted(steps.train_models) == [(12, 16), (24, 32)]
    before = [v.numpy() for v in steps.model.trainable_variables]
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (16, 12, 16, 3)), tf.uint8)
    steps.train_step(images, tf.constant(rng.integers(0, 2, 16), tf.int32), (12, 16))
    after = [v.numpy() for v in steps.model.trainable_variables]
    # Every weight of the full-size model moved: the two models share their layers.
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_progressive_resizing_refuses_a_flattening_model():
    config = smoke("conv3").replace(low_res_epochs=1)
    with pytest.raises(ConfigError, match="pools globally"):
        Steps(config, resolve(config, train_images=64))


def test_progressive_resizing_refuses_a_bottleneck_model():
    config = full("vgg16_bottleneck").replace(low_res_epochs=1, weights="none")
    with pytest.raises(ConfigError, match="does not apply"):
        resolve(config, train_images=64)


def test_whitening_stem_is_set_from_the_training_split_and_stays_frozen(tmp_path):
    config = tiny_config(model="conv5_wh", image_height=32, image_width=40, epochs=2)
    train_and_evaluate(config, str(tmp_path / "run"), verbose=False)
    splits = data.prepare_splits(
        config.data,
        (config.train_size, config.val_size, config.test_size),
        config.seed,
        config.synthetic_size,
    ).splits
    sample = data.first_images(splits["train"], config.image_size, whitening.SAMPLE_IMAGES)
    trained = keras.saving.load_model(tmp_path / "run" / "model.keras")
    kernel = models.whitening_layer(trained).kernel.numpy()
    np.testing.assert_allclose(kernel, whitening.patch_whitening_kernel(sample), 1e-5, 1e-6)
    # A run started from it keeps its kernel, though its own split (seed) would give another.
    later = config.replace(seed=1, epochs=1, init_from=str(tmp_path / "run"))
    train_and_evaluate(later, str(tmp_path / "later"), verbose=False)
    again = keras.saving.load_model(tmp_path / "later" / "model.keras")
    np.testing.assert_array_equal(models.whitening_layer(again).kernel.numpy(), kernel)


def test_six_view_tta_is_the_mean_over_shifted_and_mirrored_images():
    config = tiny_config()
    model = Steps(config, resolve(config, train_images=64)).model
    images = data.normalize(
        tf.constant(np.random.default_rng(2).integers(0, 256, (3, 24, 32, 3)), tf.uint8)
    )
    x = images.numpy()
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    views = [x, padded[:, :-2, :-2], padded[:, 2:, 2:]]  # (0, 0), (+1, +1), (-1, -1)
    assert np.array_equal(views[1][:, 1:, 1:], x[:, :-1, :-1])  # Moved down and right.
    expected = (
        np.mean(
            [
                model(v, training=False).numpy() + model(v[:, :, ::-1], training=False).numpy()
                for v in views
            ],
            axis=0,
        )
        / 2
    )
    got = steps_module.views_averaged(model)(images).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    flip = steps_module.views_averaged(model, ((0, 0),))(images).numpy()
    np.testing.assert_allclose(flip, steps_module.flip_averaged(model)(images).numpy(), atol=1e-6)
