"""What a Keras and absl user expects: help, a plain-Keras serving model, TensorBoard's
layout, plain piped logs, training a run longer, numeric CSVs, per-image predictions."""

import csv
import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.special
import tensorflow as tf
from conftest import make_image, make_kaggle_folder, tiny_config
from PIL import Image, ImageOps

from catdog_tf import build, card, compare, deploy, models, rundir
from catdog_tf.cli.common import config_help
from catdog_tf.config import Config, field_docs
from catdog_tf.data import pipeline
from catdog_tf.errors import ConfigError
from catdog_tf.evaluate import evaluate_workdir, load_run, predict_files
from catdog_tf.train import metrics, train_and_evaluate
from catdog_tf.utils import atomic_write_json, read_json, sha256

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
BIN = os.path.dirname(sys.executable)
COMMANDS = ["train", "eval", "predict", "compare", "data", "inspect", "machine"]


def test_every_config_field_has_help_from_its_metadata():
    docs = field_docs()
    assert list(docs) == [field.name for field in dataclasses.fields(Config)]
    lines = dict(
        line.strip().split(": ", 1) for line in config_help().splitlines() if line[:2] == "  "
    )
    assert list(lines) == list(docs)
    for name, doc in docs.items():
        assert doc.endswith(".") and docs[name].startswith(lines[name]), name


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_commands_doc_and_flags(command):
    out = subprocess.run(
        [os.path.join(BIN, f"catdog-{command}"), "--helpshort"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    text = out.stdout
    assert f"catdog-{command}" in text.splitlines()[0]  # The module docstring comes first.
    assert "--workdir" in text or command in ("data", "machine")
    if command in ("train", "compare", "machine"):
        assert "--set" in text and "--progress" in text
        assert "config fields" in text and "  learning_rate: " in text
        assert "models: mlp, conv1" in text
    else:  # No --set: the config fields would be help for flags it does not have.
        assert "--set" not in text and "config fields" not in text


def test_predict_with_tta_averages_the_logits_of_the_image_and_its_mirror(finished_run, tmp_path):
    workdir = finished_run.workdir
    # PNG, so the mirror file holds exactly the mirrored pixels.
    image = make_image(str(tmp_path / "a.png"), 1, size=(50, 70), seed=3, fmt="PNG")
    mirror = str(tmp_path / "b.png")
    ImageOps.mirror(Image.open(image)).save(mirror)
    plain = [p for _, p in predict_files(workdir, [image, mirror])]
    flipped = [p for _, p in predict_files(workdir, [image, mirror], tta=True)]
    expected = scipy.special.expit(np.mean(scipy.special.logit(plain)))
    np.testing.assert_allclose(flipped, [expected, expected], rtol=1e-4)
    assert abs(plain[0] - plain[1]) > 1e-4  # The model is not mirror-symmetric by itself.


@pytest.mark.parametrize("tta", [False, True])
def test_few_images_predict_eagerly_as_many_do_through_tf_data(finished_run, tmp_path, tta):
    root, workdir = finished_run.root, finished_run.workdir
    eager = predict_files(workdir, [root], tta=tta)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "EAGER_LIMIT", 0)  # As for a folder of many images.
        graph = predict_files(workdir, [root], tta=tta)
    assert [p for p, _ in eager] == [p for p, _ in graph]
    np.testing.assert_allclose([q for _, q in eager], [q for _, q in graph], atol=1e-5)


def test_a_run_decoding_as_pil_does_predicts_on_pils_pixels(finished_run, finished_copy, tmp_path):
    files = [
        make_image(str(tmp_path / f"{i}.jpg"), i % 2, size=size, seed=i)
        for i, size in enumerate([(45, 70), (120, 90), (33, 33)])
    ]
    config, model, _ = load_run(finished_run.workdir)
    pil = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    images = np.stack([pipeline.resize(image, config.image_size) for image in pil]) / 255
    expected = metrics.probabilities(np.asarray(model(images)).reshape(-1))
    fast = [p for _, p in predict_files(finished_run.workdir, files)]
    assert np.abs(np.subtract(fast, expected)).max() > 1e-5  # The fast DCT's pixels differ.
    accurate = finished_copy
    saved = read_json(rundir.path(accurate, rundir.CONFIG))
    saved["config"]["dct_method"] = "INTEGER_ACCURATE"
    atomic_write_json(rundir.path(accurate, rundir.CONFIG), saved)
    for eager_limit in (pipeline.EAGER_LIMIT, 0):  # A few images, then as for many.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pipeline, "EAGER_LIMIT", eager_limit)
            got = [p for _, p in predict_files(accurate, files)]
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_float32_gives_a_bf16_runs_exports_probabilities(finished_run, finished_copy, tmp_path):
    config, trained, _ = load_run(finished_run.workdir)
    # The same run as if trained in bfloat16: every layer saved with that policy.
    build.in_precision(trained, config, "mixed_bfloat16").save(
        rundir.path(finished_copy, rundir.MODEL)
    )
    files = [make_image(str(tmp_path / f"{i}.jpg"), i % 2, seed=i) for i in range(3)]
    exported = [p for _, p in predict_files(finished_run.workdir, files)]
    in_bf16 = [p for _, p in predict_files(finished_copy, files)]
    assert np.abs(np.subtract(in_bf16, exported)).max() > 1e-4
    for eager_limit in (pipeline.EAGER_LIMIT, 0):  # A few images, then as for many.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pipeline, "EAGER_LIMIT", eager_limit)
            got = [p for _, p in predict_files(finished_copy, files, float32=True)]
        np.testing.assert_allclose(got, exported, atol=1e-6)
    unseen = make_kaggle_folder(str(tmp_path / "unseen"), n_per_class=3, first=50)
    plain = evaluate_workdir(finished_copy, unseen)
    report = evaluate_workdir(finished_copy, unseen, float32=True)
    assert (plain["precision"], report["precision"]) == ("mixed_bfloat16", "float32")
    reference = evaluate_workdir(finished_run.workdir, unseen, output=str(tmp_path / "f.json"))
    assert report["cross_entropy"] == pytest.approx(reference["cross_entropy"], abs=1e-6)
    reports = [f for f in os.listdir(finished_copy) if f.startswith("eval-") and f.endswith("json")]
    assert len(reports) == 2  # The float32 report is its own file.


def test_serving_model_is_plain_keras_and_matches_predict(finished_run, tmp_path):
    workdir = finished_run.workdir
    files = []
    for i, size in enumerate([(45, 70), (120, 90), (33, 33)]):
        files.append(make_image(str(tmp_path / f"{i}.jpg"), i % 2, size=size, seed=i))
    expected = [p for _, p in predict_files(workdir, files)]
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, keras, tensorflow as tf
        model = keras.saving.load_model({rundir.path(workdir, rundir.SERVING)!r})
        probs = []
        for path in {files!r}:
            image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
            probs.append(float(model(tf.cast(image, tf.float32)[None]).numpy()[0, 0]))
        model.export({str(tmp_path / "saved")!r}, verbose=False)
        flat = tf.lite.TFLiteConverter.from_saved_model({str(tmp_path / "saved")!r}).convert()
        lite = tf.lite.Interpreter(model_content=flat)
        image = tf.cast(tf.io.decode_jpeg(tf.io.read_file({files[0]!r}), channels=3), tf.float32)
        lite.resize_tensor_input(lite.get_input_details()[0]["index"], [1, *image.shape])
        lite.allocate_tensors()
        lite.set_tensor(lite.get_input_details()[0]["index"], image[None].numpy())
        lite.invoke()
        print(*probs, float(lite.get_tensor(lite.get_output_details()[0]["index"])[0, 0]))
        assert not [m for m in sys.modules if m.startswith("catdog_tf")]
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=str(tmp_path),  # Not the repository: catdog_tf is not importable by accident.
    )
    assert out.returncode == 0, out.stderr[-3000:]
    *served, lite = [float(v) for v in out.stdout.split()]
    # The pipeline's fast integer DCT and uint8 rounding differ a little from the above.
    np.testing.assert_allclose(served, expected, atol=0.01)
    assert lite == pytest.approx(served[0], abs=1e-4)


def _needs_export_extra():
    for runtime in ("onnxruntime", "ai_edge_litert", "tf2onnx"):
        extra = 'pip install -e ".[export]"'
        pytest.importorskip(runtime, reason=f"{runtime} comes with the export extra: {extra}")


def test_every_export_runs_without_tensorflow_and_is_checked(finished_run, tmp_path):
    _needs_export_extra()
    import keras

    output = str(tmp_path / "out")
    formats = ["onnx", "litert", "litert_int8", "hf"]
    written = deploy.export_run(finished_run.workdir, formats, output, finished_run.root)
    assert written == {name: os.path.join(output, deploy.FORMATS[name]) for name in formats}
    report = deploy.check_exports(finished_run.workdir, written, finished_run.root)
    assert report == read_json(os.path.join(output, deploy.REPORT))
    # The check ran on the images the run never saw, every one of them.
    result = read_json(rundir.path(finished_run.workdir, rundir.RESULT))
    assert report["n"] == result["test"]["n"] and report["left_out_seen"] > 0
    assert report["catdog_tf"]["accuracy"] == pytest.approx(result["test"]["best_accuracy"])
    assert sorted(report["formats"]) == ["litert", "litert_int8", "onnx"]
    for name, checked in report["formats"].items():
        assert checked["sha256"] == sha256(written[name])
        assert 0 <= checked["accuracy"] <= 1
    for name in ("onnx", "litert"):  # The float exports are serving.keras, to float noise.
        assert report["formats"][name]["max_difference"] < 1e-4
        assert report["formats"][name]["max_difference_from_predict"] < deploy.FLOAT_TOLERANCE
    assert report["formats"]["litert_int8"]["max_difference"] < 0.2
    # The hub folder is Keras's own layout: the loader hf:// downloads into reads it.
    hub = written["hf"]
    keras_files = {"config.json", "metadata.json", "model.weights.h5"}
    assert {"README.md", *keras_files} <= set(os.listdir(hub))
    with open(os.path.join(hub, "README.md")) as f:
        assert f.read() == card.model_card(finished_run.workdir)
    image = np.random.default_rng(0).uniform(0, 255, (1, 37, 51, 3)).astype(np.float32)
    serving = keras.saving.load_model(rundir.path(finished_run.workdir, rundir.SERVING))
    assert float(keras.saving.load_model(hub)(image)[0, 0]) == float(serving(image)[0, 0])
    with pytest.raises(ConfigError, match="never replaced"):
        deploy.export_run(finished_run.workdir, ["onnx"], output)
    with pytest.raises(ConfigError, match="known: saved_model, onnx, litert, litert_int8, hf"):
        deploy.export_run(finished_run.workdir, ["onnx", "tfjs"], str(tmp_path / "other"))


def test_exports_match_predict_on_jpegs_of_several_sizes(finished_run, tmp_path):
    _needs_export_extra()
    files = [
        make_image(str(tmp_path / f"{i}.jpg"), i % 2, size=size, seed=i)
        for i, size in enumerate([(45, 70), (120, 90), (33, 33)])
    ]
    predicted = [p for _, p in predict_files(finished_run.workdir, files)]
    written = deploy.export_run(finished_run.workdir, ["onnx", "litert"], str(tmp_path / "out"))
    for path in written.values():
        p_dog, runtime = deploy.run_portable(path, files)
        assert runtime.split()[0] in ("onnxruntime", "ai-edge-litert")
        np.testing.assert_allclose(p_dog, predicted, atol=deploy.FLOAT_TOLERANCE)


def test_int8_export_needs_images_the_run_trained_on(finished_run, tmp_path):
    with pytest.raises(ConfigError, match="give --data=the folder it trained on"):
        deploy.export_run(finished_run.workdir, ["litert_int8"], str(tmp_path / "a"))
    unseen = make_kaggle_folder(str(tmp_path / "unseen"), first=500)
    with pytest.raises(ConfigError, match="holds none as files"):
        deploy.export_run(finished_run.workdir, ["litert_int8"], str(tmp_path / "b"), unseen)
    assert not os.path.exists(tmp_path / "a") or not os.listdir(tmp_path / "a")


def test_build_model_takes_weights_none_as_keras_does():
    model = models.build_model("mobilenetv2_bottleneck", (32, 32, 3), weights=None)
    assert model.output_shape == (None, 1)


def test_tensorboard_uses_keras_layout_and_tags(finished_run):
    workdir = finished_run.workdir
    tags = {}
    for split in ("train", "validation"):
        folder = os.path.join(workdir, "tensorboard", split)
        tags[split] = {
            value.tag
            for name in os.listdir(folder)
            for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name))
            for value in event.summary.value
        }
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= tags["train"]
    assert {"epoch_loss", "epoch_accuracy", "epoch_pearson", "epoch_roc_auc"} <= tags["validation"]


def test_a_piped_log_is_plain_text(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=6)
    out = subprocess.run(
        [
            os.path.join(BIN, "catdog-train"),
            "--preset=smoke",
            "--model=mlp",
            f"--data={root}",
            f"--workdir={tmp_path / 'run'}",
            "--batch_size=4",
            "--set=image_height=16",
            "--set=image_width=20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for stream in (out.stdout, out.stderr):
        assert not {"\r", "\b", "\x1b"} & set(stream)
    assert "epoch 2/2" in out.stdout and "Sharding callback" not in out.stderr
    assert "deprecat" not in out.stderr.lower()


def test_a_finished_run_trains_longer(finished_run, finished_copy):
    root, workdir = finished_run.root, finished_copy
    before = read_json(rundir.path(workdir, rundir.HISTORY))
    result = train_and_evaluate(tiny_config(root, epochs=3), workdir, verbose=False)
    after = read_json(rundir.path(workdir, rundir.HISTORY))
    assert [h["epoch"] for h in after] == [1, 2, 3] and result["epochs_run"] == 3
    assert after[:2] == before  # Continued, not retrained.
    assert not compare.finished_under(workdir, tiny_config(root, epochs=4))


def test_a_config_that_never_trained_does_not_block_the_corrected_command(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=6)
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    rundir.write_config(
        workdir, tiny_config(str(tmp_path / "wrong")), {}
    )  # Failed before training.
    found = rundir.check_workdir(workdir, tiny_config(root))
    assert found == rundir.WorkdirState(saved_plan=None, replace=True)
    assert os.path.exists(rundir.path(workdir, rundir.CONFIG))  # Checking deletes nothing.
    assert train_and_evaluate(tiny_config(root), workdir, verbose=False)["epochs_run"] == 2


def test_per_image_predictions_confusion_and_mistakes(finished_run, tmp_path):
    root, workdir, tmp = finished_run.root, finished_run.workdir, tmp_path
    result = read_json(rundir.path(workdir, rundir.RESULT))
    predictions = np.load(rundir.path(workdir, rundir.PREDICTIONS))
    for split in ("validation", "test"):
        csv_path, png_path = rundir.split_outputs(workdir, split)
        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == result[split]["n"] == len(predictions[f"{split}_paths"])
        assert [r["path"] for r in rows] == list(predictions[f"{split}_paths"])
        assert all(os.path.exists(r["path"]) for r in rows)
        probs = metrics.probabilities(predictions[f"{split}_logits"])
        np.testing.assert_allclose([float(r["p_dog"]) for r in rows], probs, atol=1e-6)
        confusion = result[split]["confusion"]
        assert sum(confusion.values()) == result[split]["n"]
        wrong = sum(r["correct"] == "0" for r in rows)
        assert wrong == confusion["cat_as_dog"] + confusion["dog_as_cat"]
        assert os.path.getsize(png_path) > 0
    report = evaluate_workdir(workdir, root, output=str(tmp / "eval.json"))
    with open(tmp / "eval-predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == report["n"] == 4  # The other 12 were trained on.
    assert report["left_out_seen"] == 12
    assert (tmp / "eval-mistakes.png").exists()


def test_confusion_matches_tensorflow():
    rng = np.random.default_rng(0)
    probs, labels = rng.uniform(size=200), rng.integers(0, 2, 200)
    matrix = tf.math.confusion_matrix(labels, (probs > 0.3).astype(int), num_classes=2).numpy()
    got = metrics.confusion(probs, labels, 0.3)
    assert [[got["cat_as_cat"], got["cat_as_dog"]], [got["dog_as_cat"], got["dog_as_dog"]]] == (
        matrix.tolist()
    )


def test_comparison_csv_holds_numbers(finished_run, tmp_path):
    workdir = finished_run.workdir
    result = read_json(rundir.path(workdir, rundir.RESULT))
    compare.write_outputs([{**result, "run_dir": workdir}], str(tmp_path))
    with open(tmp_path / "table.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["params"]) == result["model"]["params"]
    assert float(row["val AUC"]) == pytest.approx(result["validation"]["roc_auc"], abs=0)
