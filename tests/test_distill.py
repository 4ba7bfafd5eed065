"""Knowledge distillation: the loss against a teacher, its checks, and its compute."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from catdog_tf import build, models
from catdog_tf.compare import finished_under
from catdog_tf.errors import ConfigError, RunFilesError, WorkdirConfigError
from catdog_tf.plan import resolve
from catdog_tf.train import Steps, train_and_evaluate
from catdog_tf.train import steps as steps_module
from catdog_tf.train import teacher as teacher_lib
from catdog_tf.utils import read_json


@pytest.mark.parametrize(("weight", "smoothing"), [(0.5, 0.0), (1.0, 0.0), (0.3, 0.2)])
def test_distillation_loss_mixes_keras_cross_entropies(weight, smoothing):
    labels = tf.constant([0, 1, 1, 0])
    logits = tf.constant([[-3.0], [0.5], [4.0], [1.0]])
    teacher = tf.constant([0.1, 0.7, 0.95, 0.4])
    ours = steps_module.per_example_loss(
        "cross_entropy", labels, logits, smoothing, teacher, weight
    ).numpy()

    def keras_loss(targets, eps):
        loss = keras.losses.BinaryCrossentropy(
            from_logits=True, label_smoothing=eps, reduction=None
        )
        return np.ravel(loss(tf.cast(targets, tf.float32)[:, None], logits))

    expected = (1 - weight) * keras_loss(labels, smoothing) + weight * keras_loss(teacher, 0.0)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


def test_a_train_step_is_scored_against_the_teachers_probabilities(finished_run):
    config = finished_run.config.replace(
        model="_tiny", teacher=finished_run.workdir, distill_weight=0.75, label_smoothing=0.1
    )
    teacher = keras.saving.load_model(os.path.join(finished_run.workdir, "model.keras"))
    steps = Steps(config, resolve(config, train_images=8), teacher=teacher)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (4, 24, 32, 3)), tf.uint8)
    labels = tf.constant([0, 1, 1, 0], tf.int32)
    x = steps_module.normalize(images)
    logits = steps.model(x, training=True)  # No dropout or batch norm: as in the step.
    probs = tf.sigmoid(teacher(x, training=False))
    expected = steps_module.per_example_loss("cross_entropy", labels, logits, 0.1, probs, 0.75)
    loss_sum, _ = steps.train_step(images, labels)
    np.testing.assert_allclose(float(loss_sum), float(tf.reduce_sum(expected)), rtol=1e-5)


def test_a_distilled_run_counts_its_teachers_compute(finished_run, tmp_path):
    config = finished_run.config.replace(teacher=finished_run.workdir, distill_weight=0.5)
    result = train_and_evaluate(config, str(tmp_path / "student"), verbose=False)
    teacher_result = read_json(os.path.join(finished_run.workdir, "result.json"))
    assert result["teacher"] == {
        "run_dir": finished_run.workdir,
        "training_flops": teacher_result["training_flops"],
    }
    history = read_json(tmp_path / "student" / "history.json")
    teacher = keras.saving.load_model(os.path.join(finished_run.workdir, "model.keras"))
    assert {h["teacher_flops_per_image"] for h in history} == {models.count_flops(teacher)}
    own = sum(3 * result["model"]["flops"] * h["images"] for h in history)
    forward = sum(h["teacher_flops_per_image"] * h["images"] for h in history)
    expected = own + forward + teacher_result["training_flops"]
    assert result["training_flops"] == pytest.approx(expected)


def test_a_teacher_that_trained_on_the_scored_images_is_refused(finished_run, tmp_path):
    other_split = finished_run.config.replace(
        teacher=finished_run.workdir, distill_weight=0.5, seed=1
    )
    with pytest.raises(ConfigError, match="did not hold out this run's validation images"):
        train_and_evaluate(other_split, str(tmp_path / "seed1"), verbose=False)
    assert not os.path.exists(tmp_path / "seed1" / "config.json")
    no_run = other_split.replace(teacher=str(tmp_path), seed=0)
    with pytest.raises(ConfigError, match="is not a finished run"):
        train_and_evaluate(no_run, str(tmp_path / "none"), verbose=False)


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        ("predictions.npz", ConfigError, "has no predictions.npz"),
        ("model.keras", RunFilesError, "model.keras cannot be loaded"),
        ("result.json", RunFilesError, "result.json is not a valid result"),
    ],
)
def test_a_damaged_teacher_is_one_clear_error(
    finished_run, finished_copy, tmp_path, damage, error, message
):
    target = os.path.join(finished_copy, damage)
    if damage == "predictions.npz":
        os.remove(target)
    elif damage == "result.json":
        with open(target, "w") as f:
            f.write('{"training_flops": ')
    else:
        with open(target, "r+b") as f:
            f.truncate(100)
    config = finished_run.config.replace(teacher=finished_copy, distill_weight=0.5)
    with pytest.raises(error, match=message):
        train_and_evaluate(config, str(tmp_path / "student"), verbose=False)
    assert not os.path.exists(tmp_path / "student" / "config.json")  # Refused first.


def test_a_teacher_replaced_while_it_loads_is_refused(
    finished_run, finished_copy, tmp_path, monkeypatch
):
    load = teacher_lib.load_model_file

    def load_then_retrain(path, *args, **kwargs):
        model = load(path, *args, **kwargs)
        with open(path, "ab") as f:  # Another model.keras lands as this one is read.
            f.write(b"retrained")
        return model

    monkeypatch.setattr(teacher_lib, "load_model_file", load_then_retrain)
    config = finished_run.config.replace(teacher=finished_copy, distill_weight=0.5)
    with pytest.raises(ConfigError, match="model.keras changed while it was read"):
        train_and_evaluate(config, str(tmp_path / "student"), verbose=False)
    assert not os.path.exists(tmp_path / "student" / "config.json")


def test_a_student_resumes_only_under_the_teacher_it_started_with(
    finished_run, finished_copy, tmp_path
):
    config = finished_run.config.replace(teacher=finished_copy, distill_weight=0.5)
    student = str(tmp_path / "student")
    train_and_evaluate(config, student, verbose=False)
    saved = read_json(os.path.join(student, "config.json"))["plan"]["teacher_fingerprint"]
    assert finished_under(student, config)  # What a comparison or an ablation reads again.
    # The teacher retrained in place: another model.keras in the same folder.
    teacher_file = os.path.join(finished_copy, "model.keras")
    retrained = keras.saving.load_model(teacher_file)
    retrained.weights[0].assign(retrained.weights[0] + 1.0)
    retrained.save(teacher_file)
    assert not finished_under(student, config)
    longer = config.replace(epochs=config.epochs + 1)
    with pytest.raises(WorkdirConfigError, match=f"teacher_fingerprint: '{saved}' -> "):
        train_and_evaluate(longer, student, verbose=False)


def test_a_teacher_runs_in_the_students_precision(finished_run, finished_copy):
    config = finished_run.config
    trained = keras.saving.load_model(os.path.join(finished_run.workdir, "model.keras"))
    # The same teacher as if trained in bfloat16: saved with that policy in every layer.
    build.in_precision(trained, config, "mixed_bfloat16").save(
        os.path.join(finished_copy, "model.keras")
    )
    saved = keras.saving.load_model(os.path.join(finished_copy, "model.keras"))
    assert saved.layers[1].dtype_policy.compute_dtype == "bfloat16"  # Its first convolution.
    teacher = teacher_lib.Teacher(finished_copy, 1.0, "", config, saved)
    images = np.random.default_rng(0).uniform(0, 1, (4, *config.image_size, 3)).astype("float32")
    for precision, compute, tolerance in (
        ("float32", "float32", 1e-6),
        ("mixed_bfloat16", "bfloat16", 3e-2),
    ):
        model = teacher_lib.frozen_model(teacher, precision)
        assert model.layers[1].dtype_policy.compute_dtype == compute
        assert not model.trainable_weights
        np.testing.assert_allclose(
            np.asarray(model(images), np.float32), trained(images), rtol=tolerance, atol=tolerance
        )


def test_the_memory_estimate_counts_the_teachers_forward_pass(finished_run, monkeypatch):
    config = finished_run.config
    student = models.build_model(config.model, (*config.image_size, 3))
    teacher = keras.saving.load_model(os.path.join(finished_run.workdir, "model.keras"))
    alone = sum(build.memory_needed(student, config, 100, 80).values())
    taught = build.memory_needed(student, config, 100, 80, teacher)
    assert sum(taught.values()) > alone
    # Enough memory for the student alone, too little with its teacher.
    free = (alone + sum(taught.values())) / 2 / build.MEMORY_SHARE
    monkeypatch.setattr(build.machine, "available_memory", lambda: free)
    splits = {"train": range(80), "validation": range(10), "test": range(10)}
    build.check_memory(student, config, splits)
    with pytest.raises(ConfigError, match="teacher"):
        build.check_memory(student, config, splits, teacher)


@pytest.mark.parametrize(
    "changes",
    [{"teacher": "run"}, {"distill_weight": 0.5}, {"teacher": "run", "distill_weight": 1.5}],
)
def test_teacher_and_distill_weight_go_together(finished_run, changes):
    with pytest.raises(ConfigError, match="teacher|distill_weight"):
        finished_run.config.replace(**changes).validate()
