"""Hostile input, by class: no silent wrong number, no lost file, one clear line per error.

benchmarks/hostile_inputs.py runs the console scripts on a catalogue of such cases; these
tests pin each class down at the library level, fast.
"""

import fcntl
import json
import math
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_class_folders, make_image, make_kaggle_folder
from PIL import Image, ImageOps

import catdog_tf
from catdog_tf import data, deploy, evaluate, machine, models, rundir, utils
from catdog_tf.cli.common import error_line
from catdog_tf.compare import compare
from catdog_tf.config import DCT_METHODS, Config, get_preset, parse_override, smoke
from catdog_tf.data import header, seen
from catdog_tf.errors import (
    ConfigError,
    DataSourceError,
    OutputPathError,
    RunFilesError,
    WorkdirBusyError,
    WorkdirConfigError,
)
from catdog_tf.train import distributed, metrics, train_and_evaluate, trainee

# --- Outputs: strict JSON, the umask, undefined metrics.


def test_json_outputs_follow_umask_and_never_hold_nan(tmp_path):
    previous = os.umask(0o027)
    try:
        path = str(tmp_path / "r.json")
        utils.atomic_write_json(path, {"a": math.nan, "b": [np.float32("inf"), 1.5], "c": 2})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    with open(path) as f:
        text = f.read()
    assert json.loads(text, parse_constant=pytest.fail) == {"a": None, "b": [None, 1.5], "c": 2}


def test_metrics_of_one_class_are_undefined_not_zero():
    report = metrics.evaluate_predictions(np.array([0.3, -1.0, 2.0]), np.array([1, 1, 1]))
    assert report["pearson"] is None and report["roc_auc"] is None
    assert report["accuracy_at_0.5"] == pytest.approx(2 / 3)


# --- Config values.


@pytest.mark.parametrize(
    "override, message",
    [
        ("train_size=1.5", "fraction of the data"),
        ("learning_rate=nan", "finite float"),
        ("learning_rate=inf", "finite float"),
        ("seed=-1", "seed must be in"),
        ("image_height=100000", "larger than 1024"),
        ("synthetic_size=1000000000", "at most"),
        ("model_kwargs=[1]", "cannot parse"),
        ('model_kwargs={"pool_first": true}', "model conv3 takes no model_kwargs pool_first"),
        ('model_kwargs={"input_shape": [8, 8, 3]}', "comes from image_height"),
        ("augment_ops=cutout", "augment_ops='cutout' is not one of affine, flip_shift"),
        ("mix=blend", "mix='blend' is not one of none, mixup, cutmix"),
        ("mix_alpha=inf", "finite float"),
        ("mix_alpha=-1", "mix_alpha must be positive"),
    ],
)
def test_bad_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        parse_override(smoke(), override).validate()


def test_model_kwargs_the_model_does_not_take_are_refused_before_any_data_is_read():
    # quick_wh's pool_first is a conv4_bn argument; the mlp has no such thing.
    config = get_preset("quick_wh", "mlp").replace(data="/does/not/exist")
    with pytest.raises(ConfigError, match="model mlp takes no model_kwargs pool_first"):
        config.validate()


def test_hand_edited_config_of_wrong_types_is_refused():
    values = smoke().to_dict()
    for field, bad in (
        ("model_kwargs", [1]),
        ("epochs", "3"),
        ("epochs", True),
        ("learning_rate", False),
        ("augment", 1),
        ("seed", 1.5),
    ):
        with pytest.raises(ConfigError, match=field):
            Config.from_dict({**values, field: bad}).validate()
    with pytest.raises(ConfigError, match="JSON object"):
        Config.from_dict([1, 2])


@pytest.mark.parametrize(
    "name, shape, kwargs, message",
    [
        ("conv1", (32, 40, 3), {"bogus": 1}, "TypeError"),
        ("conv3", (2, 2, 3), {}, "cannot be built"),
    ],
)
def test_models_that_cannot_be_built_give_config_errors(name, shape, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        models.build_model(name, shape, **kwargs)


# --- Data folders.


def test_symlink_loops_and_duplicate_links_list_each_image_once(tmp_path):
    root = make_class_folders(str(tmp_path / "d"), n_per_class=3)
    os.symlink(os.path.join(root, "cats"), os.path.join(root, "cats", "loop"))
    os.symlink(os.path.join(root, "dogs", "0.jpg"), os.path.join(root, "dogs", "again.jpg"))
    examples = data.list_folder(root)
    assert len(examples) == 6
    assert len({os.path.realpath(p) for p in examples.items}) == 6


def test_one_file_under_both_classes_is_refused(tmp_path):
    root = make_class_folders(str(tmp_path / "d"), n_per_class=3)
    os.symlink(os.path.join(root, "cats", "0.jpg"), os.path.join(root, "dogs", "x.jpg"))
    with pytest.raises(DataSourceError, match="both a cat and a dog"):
        data.list_folder(root)


def test_flat_files_beside_class_folders_are_refused(tmp_path):
    root = make_class_folders(str(tmp_path / "d"), n_per_class=2)
    make_image(os.path.join(root, "dog.7.jpg"), 1)
    with pytest.raises(DataSourceError, match="use one layout"):
        data.list_folder(root)


def test_unprefixed_names_are_left_out_with_a_warning(tmp_path, caplog):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2)
    make_image(os.path.join(root, "dogs.9.jpg"), 1)
    assert len(data.list_folder(root)) == 4
    assert "1 image files have no cat./dog. name prefix" in caplog.text


def test_names_that_are_not_utf8_load_and_decode(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2)
    odd = os.fsdecode(os.path.join(os.fsencode(root), b"dog.\xff\xfe.jpg"))
    make_image(odd, 1)
    report = data.scan(data.list_folder(root))
    assert odd in set(report.kept.items) and not report.skipped
    images = list(data.decoded_dataset(report.kept, (8, 10)))
    assert len(images) == 5


def test_oversized_images_are_skipped_before_decoding(tmp_path, monkeypatch):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2, size=(10, 10))
    make_image(os.path.join(root, "dog.9.jpg"), 1, size=(40, 50))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL's limit, which scan uses.
    report = data.scan(data.list_folder(root))
    assert [(os.path.basename(p), r.split(" (")[0]) for p, r in report.skipped] == [
        ("dog.9.jpg", "too large")
    ]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pil_exif_transpose(orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    image.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(image))
    got = data.orient(tf.constant(pixels), tf.constant(orientation)).numpy()
    np.testing.assert_array_equal(got, expected)


def test_exif_rotated_photo_is_decoded_upright(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path / "dog.1.png")  # PNG: lossless, so pixels compare exactly.
    Image.fromarray(pixels).save(path, exif=exif)
    examples = data.scan(
        data.Examples(np.array([path], dtype=object), np.array([1], np.int32), "one")
    ).kept
    assert list(examples.orientations) == [6]
    with Image.open(path) as opened:
        upright = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    assert upright.shape == (10, 6, 3)
    ((decoded, _),) = list(data.decoded_dataset(examples, image_size=(10, 6)))
    np.testing.assert_array_equal(decoded.numpy(), upright)
    (eager,) = data.decoded_images(examples, image_size=(10, 6))  # The few-images path.
    np.testing.assert_array_equal(eager, upright)


def test_source_fingerprint_sees_added_and_replaced_files(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2)
    before = data.source_fingerprint(root)
    assert data.source_fingerprint(root) == before
    make_image(os.path.join(root, "cat.0.jpg"), 0, size=(50, 60))  # Replaced, other size.
    replaced = data.source_fingerprint(root)
    make_image(os.path.join(root, "dog.9.jpg"), 1)
    assert len({before, replaced, data.source_fingerprint(root)}) == 3


# --- Run directories.


def _tiny(data_dir: str, **changes) -> Config:
    values = dict(image_height=16, image_width=20, batch_size=4, epochs=2, train_size=0.5)
    values.update(val_size=0.25, test_size=0.25)
    return smoke("mlp").replace(data=data_dir, **{**values, **changes})


def test_run_files_without_config_are_refused_and_kept(tmp_path):
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    (workdir / "history.json").write_text("[]")
    for overwrite in (False, True):
        with pytest.raises(WorkdirConfigError, match="no config.json"):
            rundir.check_workdir(str(workdir), smoke(), overwrite=overwrite)
    assert (workdir / "history.json").exists()


@pytest.mark.parametrize("where", ["file", "file/run"])
def test_workdir_that_is_or_sits_in_a_file_is_refused_and_the_file_kept(tmp_path, where):
    (tmp_path / "file").write_text("theirs")
    workdir = str(tmp_path / where)
    config = smoke("_tiny").replace(synthetic_size=32, epochs=1)
    with pytest.raises(WorkdirConfigError, match="is a file, not a folder"):
        train_and_evaluate(config, workdir, verbose=False)
    with pytest.raises(WorkdirConfigError, match="is a file, not a folder"):
        compare(lambda model, loss: config, ["_tiny"], ["mse"], workdir, verbose=False)
    assert (tmp_path / "file").read_text() == "theirs"


def test_unreadable_config_is_refused_and_never_deleted(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text("{garbage")
    (workdir / "model.keras").write_text("theirs")
    with pytest.raises(WorkdirConfigError, match="not a valid catdog_tf config"):
        rundir.check_workdir(str(workdir), smoke(), overwrite=True)
    assert (workdir / "config.json").read_text() == "{garbage"
    assert (workdir / "model.keras").exists()


def test_a_locked_workdir_is_refused(tmp_path):
    workdir = str(tmp_path / "run")
    with (
        rundir.locked(workdir),
        pytest.raises(WorkdirBusyError, match=f"process {os.getpid()}"),
        rundir.locked(workdir),
    ):
        pass
    with rundir.locked(workdir):  # Released after the block.
        pass


def test_a_run_refused_before_it_writes_leaves_no_folder_behind(tmp_path):
    # A mistyped --data must not leave runs/new/seed0/ (and its lock) to puzzle over.
    workdir = tmp_path / "runs" / "new" / "seed0"
    with pytest.raises(DataSourceError, match="no such file or folder"):
        train_and_evaluate(_tiny(str(tmp_path / "no_such_data")), str(workdir), verbose=False)
    assert os.listdir(tmp_path) == []
    # A folder the user made stays, as does anything written into a new one.
    (tmp_path / "mine").mkdir()
    with rundir.locked(str(tmp_path / "mine")):
        pass
    with rundir.locked(str(workdir)):
        (workdir / "notes.txt").write_text("kept")
    assert (tmp_path / "mine").is_dir() and (workdir / "notes.txt").read_text() == "kept"


def test_a_lock_held_elsewhere_stops_training_before_it_writes(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=4)
    workdir = tmp_path / "run"
    workdir.mkdir()
    fd = os.open(workdir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(WorkdirBusyError):
            train_and_evaluate(_tiny(root), str(workdir), verbose=False)
    finally:
        os.close(fd)
    assert sorted(os.listdir(workdir)) == [".lock"]


def _history(workdir):
    return utils.read_json(os.path.join(workdir, "history.json"))


def _history_epochs(workdir):
    return [h["epoch"] for h in _history(workdir)]


@pytest.mark.parametrize("damage", ["garbage state file", "truncated newest", "missing newest"])
def test_damaged_checkpoints_resume_from_the_newest_that_reads(finished_run, finished_copy, damage):
    source, workdir = finished_run.workdir, finished_copy
    folder = os.path.join(workdir, "checkpoints")
    if damage == "garbage state file":
        with open(os.path.join(folder, "checkpoint"), "w") as f:
            f.write("garbage {{{")
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith("ckpt-2.data") and damage == "truncated newest":
            with open(path, "rb") as f:
                payload = f.read()
            with open(path, "wb") as f:
                f.write(payload[: len(payload) // 3])
        if name.startswith("ckpt-2") and damage == "missing newest":
            os.remove(path)
    result = train_and_evaluate(finished_run.config, workdir, verbose=False)
    assert _history_epochs(workdir) == [1, 2] and result["epochs_run"] == 2
    # Epochs restored from a checkpoint keep their original timing; retrained ones do not.
    kept = 2 if damage == "garbage state file" else 1
    original, now = _history(source), _history(workdir)
    assert [h["seconds"] for h in now[:kept]] == [h["seconds"] for h in original[:kept]]
    if kept == 1:
        assert now[1]["seconds"] != original[1]["seconds"]


def test_no_readable_checkpoint_is_an_error_not_a_restart(finished_run, finished_copy):
    workdir = finished_copy
    folder = os.path.join(workdir, "checkpoints")
    for name in os.listdir(folder):
        if ".data" in name:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(b"x")
    with pytest.raises(RunFilesError, match="no checkpoint"):
        train_and_evaluate(finished_run.config, workdir, verbose=False)
    assert _history_epochs(workdir) == [1, 2]


def test_resume_on_changed_data_is_refused(finished_run, finished_copy, tmp_path):
    import shutil

    workdir = finished_copy
    new_root = str(tmp_path / "d")
    shutil.copytree(finished_run.root, new_root)
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    saved["config"]["data"] = new_root
    utils.atomic_write_json(os.path.join(workdir, "config.json"), saved)
    make_image(os.path.join(new_root, "dog.50.jpg"), 1)
    with pytest.raises(WorkdirConfigError, match="data_fingerprint"):
        train_and_evaluate(finished_run.config.replace(data=new_root), workdir, verbose=False)


def test_a_shared_file_cache_never_serves_other_images(tmp_path):
    cache = str(tmp_path / "cache")
    first = make_kaggle_folder(str(tmp_path / "a"), n_per_class=4)
    second = make_class_folders(str(tmp_path / "b"), n_per_class=6)
    train_and_evaluate(_tiny(first, cache=cache), str(tmp_path / "r1"), verbose=False)
    result = train_and_evaluate(_tiny(second, cache=cache), str(tmp_path / "r2"), verbose=False)
    logits = np.load(tmp_path / "r2" / "predictions.npz")["validation_logits"]
    assert len(logits) == result["data"]["validation"]["n"] == 3
    assert sum(v["n"] for v in result["data"].values()) == 12


def test_a_shared_file_cache_never_serves_another_decoders_pixels(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=4)
    config = _tiny(root, cache=str(tmp_path / "cache"))
    examples = data.list_folder(root)
    prefixes = {
        trainee.cache_arg(config.replace(dct_method=m), examples, str(tmp_path / "run"), "train")
        for m in DCT_METHODS
    }
    assert len(prefixes) == len(DCT_METHODS)


def test_a_killed_runs_cache_lockfile_does_not_block_the_next(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=4)
    config = _tiny(root, cache="cache", model="_tiny", low_res_epochs=1)
    splits = data.prepare_splits(root, (0.5, 0.25, 0.25), config.seed).splits
    cache = tmp_path / "run" / "cache"
    cache.mkdir(parents=True)
    for split, examples in splits.items():  # What tf.data leaves when killed mid-write.
        (cache / f"{split}-{examples.fingerprint()}-16x20_0.lockfile").write_text("")
    shrunk = f"train-{splits['train'].fingerprint()}-16x20-shrunk-8x10_0.lockfile"
    (cache / shrunk).write_text("")
    assert train_and_evaluate(config, str(tmp_path / "run"), verbose=False)["epochs_run"] == 2


def test_a_split_of_one_class_is_refused(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=4)
    for i in range(4):
        with open(os.path.join(root, f"dog.{i}.jpg"), "w") as f:
            f.write("junk")
    with pytest.raises(DataSourceError, match="only one class is left"):
        train_and_evaluate(_tiny(root), str(tmp_path / "run"), verbose=False)


# --- Using a finished run.


def test_damaged_model_or_result_gives_run_files_error(finished_run, tmp_path):
    import shutil

    source = finished_run.workdir
    for name, payload in (("model.keras", b"PK\x03\x04broken"), ("result.json", b"{}")):
        workdir = str(tmp_path / name)
        shutil.copytree(source, workdir)
        with open(os.path.join(workdir, name), "wb") as f:
            f.write(payload)
        with pytest.raises(RunFilesError, match=name):
            evaluate.load_run(workdir)


def test_a_run_of_the_early_flat_layout_is_refused_naming_the_version(finished_copy):
    workdir = finished_copy
    config_path = os.path.join(workdir, "config.json")
    saved = utils.read_json(config_path)
    assert saved["catdog_tf_version"] == catdog_tf.__version__
    utils.atomic_write_json(config_path, saved["config"])  # The layout of early 0.1.0 runs.
    for use in (
        lambda: evaluate.load_run(workdir),
        lambda: rundir.check_workdir(workdir, Config.from_dict(saved["config"]), False),
    ):
        with pytest.raises(WorkdirConfigError, match="flat config of an early 0.1.0 run"):
            use()
    assert utils.read_json(config_path) == saved["config"]
    assert os.path.exists(os.path.join(workdir, "model.keras"))


def test_submission_takes_ascii_numeric_ids_only(finished_run, tmp_path):
    workdir = finished_run.workdir
    make_image(str(tmp_path / "p" / "1.jpg"), 1)
    make_image(str(tmp_path / "p" / "\u00b2.jpg"), 1)
    (tmp_path / "p" / "3.jpg").write_text("junk")
    csv = str(tmp_path / "s.csv")
    evaluate.predict_files(workdir, [str(tmp_path / "p")], submission=csv)
    with open(csv) as f:
        rows = f.read().split()
    assert rows[0] == "id,label" and rows[1].startswith("1,") and rows[2] == "3,0.500000"
    assert len(rows) == 3
    with pytest.raises(ConfigError, match="same numeric id"):
        evaluate.predict_files(workdir, [str(tmp_path / "p")] * 2, submission=csv)


def test_compare_refuses_a_model_listed_twice(tmp_path):
    with pytest.raises(ConfigError, match="listed twice: mlp"):
        compare(lambda m, loss: smoke(m), ["mlp", "mlp"], ["mse"], str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_error_lines():
    assert error_line(KeyboardInterrupt())[1] == 130
    assert error_line(ConfigError("bad\nsecond line")) == ("bad", 2)
    op = tf.errors.ResourceExhaustedError(None, None, "No space left on device\nmore")
    assert error_line(op) == ("TensorFlow: No space left on device", 2)
    line, status = error_line(ZeroDivisionError("x"))
    assert status == 3 and line.startswith("internal error (ZeroDivisionError: x)")


# --- Outputs never land on what they must not touch.


def test_outputs_are_refused_on_a_runs_own_files_and_in_the_package(finished_run, tmp_path):
    run = finished_run.workdir
    for target in ("result.json", "config.json", "seen.npz", "checkpoints/x.json"):
        with pytest.raises(OutputPathError, match="belongs to the run"):
            rundir.check_output(os.path.join(run, target), "--output")
    shipped = os.path.join(rundir.PACKAGE_FOLDER, "weights", "conv5_bn-fast", "eval.json")
    with pytest.raises(OutputPathError, match="inside the installed catdog_tf package"):
        rundir.check_output(shipped, "--output")
    with pytest.raises(OutputPathError, match="is a folder"):
        rundir.check_output(str(tmp_path), "--output")
    fresh = rundir.check_output(str(tmp_path / "new" / "deeper" / "r.json"), "--output")
    assert os.path.isdir(os.path.dirname(fresh))  # A missing folder is made, not an error.
    with pytest.raises(OutputPathError, match="belongs to the run"):
        evaluate.evaluate_workdir(run, finished_run.root, output=os.path.join(run, "result.json"))
    with pytest.raises(OutputPathError, match="belongs to the run"):
        evaluate.predict_files(run, [finished_run.root], submission=f"{run}/config.json")


def test_training_into_the_package_or_a_comparison_is_refused(finished_run, tmp_path):
    config = _tiny(finished_run.root)
    with pytest.raises(OutputPathError, match="installed catdog_tf package"):
        train_and_evaluate(config, os.path.join(rundir.PACKAGE_FOLDER, "weights"), verbose=False)
    comparison = tmp_path / "c"
    comparison.mkdir()
    for name in (rundir.COMPARISON_RESULTS, rundir.TABLE_MD):
        (comparison / name).write_text("{}")
    with pytest.raises(WorkdirConfigError, match="holds a comparison"):
        train_and_evaluate(config, str(comparison), verbose=False)
    assert sorted(os.listdir(comparison)) == [rundir.COMPARISON_RESULTS, rundir.TABLE_MD]
    listed = sorted(os.listdir(finished_run.root))
    for inside in (finished_run.root, os.path.join(finished_run.root, "run")):
        with pytest.raises(WorkdirConfigError, match="the data folder"):
            train_and_evaluate(config, inside, verbose=False)
    assert sorted(os.listdir(finished_run.root)) == listed


def test_compare_checks_every_row_and_its_folder_before_training(finished_run, tmp_path):
    def make(model, loss):
        return _tiny(finished_run.root, loss=loss).replace(model=model)

    with pytest.raises(ConfigError, match="unknown model 'bogus'"):
        compare(make, ["mlp", "bogus"], ["mse"], str(tmp_path / "c"))
    assert not os.path.exists(tmp_path / "c" / "mlp-mse")
    with pytest.raises(ConfigError, match="holds a catdog-train run"):
        compare(make, ["mlp"], ["mse"], finished_run.workdir)


def test_reports_are_never_replaced_silently(finished_run, tmp_path, caplog):
    run, root = finished_run.workdir, finished_run.root
    report = str(tmp_path / "r.json")
    evaluate.evaluate_workdir(run, root, output=report)
    assert "replacing" not in caplog.text
    evaluate.evaluate_workdir(run, root, output=report)
    assert "replacing the earlier report" in caplog.text
    (tmp_path / "s-predictions.csv").write_text("the user's own file")
    with pytest.raises(OutputPathError, match="not an earlier evaluation's"):
        evaluate.evaluate_workdir(run, root, output=str(tmp_path / "s.json"))
    assert (tmp_path / "s-predictions.csv").read_text() == "the user's own file"
    photo = make_image(str(tmp_path / "photo.jpg"), 1)
    before = Path(photo).read_bytes()
    with pytest.raises(OutputPathError, match="is not a catdog-eval report"):
        evaluate.evaluate_workdir(run, root, output=photo)
    assert Path(photo).read_bytes() == before


def test_export_names_a_damaged_serving_model(finished_copy, tmp_path):
    serving = Path(rundir.path(finished_copy, rundir.SERVING))
    serving.write_bytes(serving.read_bytes()[:100])
    with pytest.raises(RunFilesError, match="serving.keras cannot be loaded"):
        deploy.export_run(finished_copy, ["litert"], str(tmp_path / "exported"))
    assert not list((tmp_path / "exported").glob("*.tflite"))


@pytest.mark.parametrize("name", ["model.onnx", "model.tflite"])
def test_a_damaged_export_is_named_by_its_check(tmp_path, name):
    pytest.importorskip(
        "onnxruntime", reason='comes with the export extra: pip install -e ".[export]"'
    )
    pytest.importorskip(
        "ai_edge_litert", reason='comes with the export extra: pip install -e ".[export]"'
    )
    damaged = tmp_path / name
    damaged.write_bytes(b"not a model")
    image = make_image(str(tmp_path / "cat.1.jpg"), 0)
    with pytest.raises(RunFilesError, match=f"{name} does not run without TensorFlow: .+"):
        deploy.run_portable(str(damaged), [image])


def test_a_submission_replaces_only_an_earlier_submission(finished_run, tmp_path):
    make_image(str(tmp_path / "p" / "1.jpg"), 1)
    notes = tmp_path / "notes.csv"
    notes.write_text("the user's own table\n")
    with pytest.raises(OutputPathError, match="is not a submission CSV"):
        evaluate.predict_files(finished_run.workdir, [str(tmp_path / "p")], submission=str(notes))
    assert notes.read_text() == "the user's own table\n"
    submission = str(tmp_path / "s.csv")
    for _ in range(2):  # The second run replaces the first one's submission.
        evaluate.predict_files(finished_run.workdir, [str(tmp_path / "p")], submission=submission)
        assert Path(submission).read_text().splitlines()[0] == "id,label"


def test_default_report_names_keep_folders_apart_and_fit(finished_run, finished_copy, tmp_path):
    long_name = "x" * 250  # Near the file system's 255-byte limit for one name.
    folders = [str(tmp_path / "a" / "test"), str(tmp_path / "b" / "test")]
    folders.append(str(tmp_path / long_name))
    for folder in folders:
        shutil.copytree(finished_run.root, folder)
        evaluate.evaluate_workdir(finished_copy, folder)
    reports = [n for n in os.listdir(finished_copy) if n.startswith("eval-")]
    assert len([n for n in reports if n.endswith(".json")]) == 3
    assert all(len(os.fsencode(n)) < 200 for n in reports)


# --- An image is the same image by its identity, not its name and size.


def test_a_file_rewritten_at_the_same_size_changes_the_fingerprint(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2)
    before = data.source_fingerprint(root)
    path = os.path.join(root, "cat.0.jpg")
    raw = bytearray(Path(path).read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # Other pixels, the same size.
    stat_before = os.stat(path)
    Path(path).write_bytes(bytes(raw))
    os.utime(path, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns + 1))
    assert os.path.getsize(path) == stat_before.st_size
    assert data.source_fingerprint(root) != before


def test_kaggle_links_under_both_labels_are_refused_and_repeats_listed_once(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=3)
    os.symlink(os.path.join(root, "dog.1.jpg"), os.path.join(root, "dog.99.jpg"))
    assert len(data.list_folder(root)) == 6
    os.symlink(os.path.join(root, "dog.1.jpg"), os.path.join(root, "cat.99.jpg"))
    with pytest.raises(DataSourceError, match="both a cat and a dog"):
        data.list_folder(root)


# --- Evaluation says what it measured.


def _renamed_copies(examples, folder):
    """The images of ``examples`` under other names, in class folders."""
    for item, label in zip(examples.items, examples.labels, strict=True):
        name = f"copy-{os.path.basename(item)}"
        target = os.path.join(folder, "dogs" if label else "cats", name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(item, target)


def test_evaluation_leaves_out_the_images_the_run_saw(finished_run, tmp_path, caplog):
    run, config = finished_run.workdir, finished_run.config
    splits = data.prepare_splits(
        config.data, (config.train_size, config.val_size, config.test_size), config.seed
    ).splits
    seen_images = len(splits["train"]) + len(splits["validation"])
    report = evaluate.evaluate_workdir(run, finished_run.root, output=str(tmp_path / "a.json"))
    assert report["left_out_seen"] == seen_images
    assert report["n"] == len(splits["test"])
    assert f"{seen_images:,} of the" in caplog.text
    copies = str(tmp_path / "copies")  # The same bytes under other names: still seen.
    _renamed_copies(splits["train"], copies)
    _renamed_copies(splits["test"], copies)
    report = evaluate.evaluate_workdir(run, copies, output=str(tmp_path / "b.json"))
    assert (report["left_out_seen"], report["n"]) == (len(splits["train"]), len(splits["test"]))
    only_seen = str(tmp_path / "only-seen")
    _renamed_copies(splits["validation"], only_seen)
    with pytest.raises(ConfigError, match="nothing is left to test it on"):
        evaluate.evaluate_workdir(run, only_seen, output=str(tmp_path / "c.json"))


def test_kaggle_ids_count_as_seen_whatever_the_copy(tmp_path):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2)
    trained = data.list_folder(root)
    record = seen.record(trained)
    other = make_kaggle_folder(str(tmp_path / "resized"), n_per_class=3, size=(50, 60))
    assert seen.seen_mask(data.list_folder(other), record).tolist() == [1, 1, 0] * 2


def test_a_model_of_synthetic_shapes_warns_on_photos(finished_run, finished_copy, caplog):
    saved = utils.read_json(os.path.join(finished_copy, "config.json"))
    saved["config"]["data"] = "synthetic"
    utils.atomic_write_json(os.path.join(finished_copy, "config.json"), saved)
    evaluate.predict_files(finished_copy, [finished_run.root])
    assert "trained on synthetic shapes" in caplog.text


# --- Flags and environment are used or refused, never ignored.


def test_tf_config_without_multi_worker_is_said(monkeypatch, caplog):
    monkeypatch.setenv("TF_CONFIG", distributed.local_cluster(2)[0])
    assert distributed.role("default").chief
    assert "TF_CONFIG is set, but strategy=default" in caplog.text


def test_a_run_is_never_shortened(finished_run, finished_copy):
    config = finished_run.config
    with pytest.raises(WorkdirConfigError, match="never shortened"):
        rundir.check_workdir(finished_copy, config.replace(epochs=config.epochs - 1), False)


def test_prediction_walks_subfolders_and_counts_what_a_submission_leaves_out(
    finished_run, tmp_path, caplog
):
    make_image(str(tmp_path / "p" / "1.jpg"), 1)
    make_image(str(tmp_path / "p" / "more" / "2.jpg"), 0)
    make_image(str(tmp_path / "p" / "=cmd.jpg"), 0)
    results = evaluate.predict_files(
        finished_run.workdir, [str(tmp_path / "p")], submission=str(tmp_path / "s.csv")
    )
    assert [os.path.basename(p) for p, _ in results] == ["1.jpg", "=cmd.jpg", "2.jpg"]
    assert "1 of 3 files are not named <id>.<ext>" in caplog.text
    assert (tmp_path / "s.csv").read_text().split()[1:3] == [
        f"1,{results[0][1]:.6f}",
        f"2,{results[2][1]:.6f}",
    ]


def test_names_with_control_characters_print_as_one_field():
    assert data.sources.display("a\nb\tc\x1b.jpg") == "a\\x0ab\\x09c\\x1b.jpg"


@pytest.mark.parametrize("ending", ["cut", "cut, then an end marker"])
def test_truncated_jpegs_are_named_not_trained_on_grey(tmp_path, ending):
    root = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2, size=(64, 80))
    path = os.path.join(root, "dog.0.jpg")
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: len(raw) // 2] + (b"\xff\xd9" if ending != "cut" else b""))
    skipped = dict(data.scan(data.list_folder(root)).skipped)
    assert list(skipped) == [path]
    assert skipped[path].startswith("truncated JPEG")


def test_tfds_names_other_than_cats_vs_dogs_are_refused_at_once():
    with pytest.raises(DataSourceError, match="tfds:cats_vs_dogs"):
        data.load("tfds:mnist")


def test_compare_refuses_seed_beside_seeds_before_training(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "catdog_tf.cli.compare"]
        + [f"--workdir={tmp_path}/c", "--seeds=0,1", "--seed=3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"
        },  # As users run it.
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "catdog-compare: error: --seeds runs each row with every seed it lists: drop --seed"
    ]
    assert not os.path.exists(tmp_path / "c")


# --- Waits end, memory is estimated.


def test_a_wait_past_its_deadline_ends_with_one_line_naming_the_missing(tmp_path):
    port = distributed.local_cluster(1)[0].split("127.0.0.1:")[1].split('"')[0]
    waiter = (
        "import time\nfrom catdog_tf import watchdog\n"
        f"peers = {{'worker:1': '127.0.0.1:{port}'}}\n"
        "with watchdog.deadline(1, 'the cluster did not form', peers):\n"
        "    time.sleep(60)\n"
    )
    out = subprocess.run([sys.executable, "-c", waiter], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9
    assert out.stderr.splitlines()[-1].endswith(
        f"error: the cluster did not form (missing: worker:1 at 127.0.0.1:{port})"
    )
    quick = "from catdog_tf import watchdog\nwith watchdog.deadline(30, 'x', {}):\n    pass\n"
    done = subprocess.run([sys.executable, "-c", quick], capture_output=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, b"")


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_a_bad_worker_timeout_is_refused(value):
    with pytest.raises(ConfigError, match="CATDOG_TF_WORKER_TIMEOUT"):
        distributed.worker_timeout({"CATDOG_TF_WORKER_TIMEOUT": value})
    assert distributed.worker_timeout({}) == distributed.DEFAULT_WORKER_TIMEOUT
    assert distributed.worker_timeout({"CATDOG_TF_WORKER_TIMEOUT": "2.5"}) == 2.5


def test_a_run_that_cannot_fit_in_memory_is_refused_before_training(
    finished_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(machine, "available_memory", lambda: 64 * 1024)
    with pytest.raises(ConfigError, match=r"would take about .* GiB \(weights and optimizer"):
        train_and_evaluate(_tiny(finished_run.root), str(tmp_path / "run"), verbose=False)
    assert not os.path.exists(tmp_path / "run" / "history.json")


def test_available_memory_is_the_smaller_of_the_system_and_the_cgroup(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal: 100 kB\nMemAvailable: 50 kB\n")
    (tmp_path / "cg").mkdir()
    (tmp_path / "cg" / "memory.max").write_text("40960\n")
    (tmp_path / "cg" / "memory.current").write_text("1024\n")
    meminfo, cgroup = str(tmp_path / "meminfo"), str(tmp_path / "cg")
    assert machine.available_memory(meminfo, cgroup) == 40960 - 1024
    (tmp_path / "cg" / "memory.max").write_text("max\n")
    assert machine.available_memory(meminfo, cgroup) == 50 * 1024


# --- Valid input is taken, or its format named.


@pytest.mark.parametrize(
    "mode, save, reason",
    [
        ("RGB", {"format": "TIFF"}, "TIFF image"),
        ("1", {"format": "BMP"}, "1-bit BMP image"),
        ("P", {"format": "BMP"}, "palette BMP image"),
        ("L", {"format": "BMP"}, None),
        ("P", {"format": "PNG"}, None),
    ],
)
def test_image_formats_are_decoded_right_or_named(tmp_path, mode, save, reason):
    path = str(tmp_path / "img")
    pixels = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, **save)
    assert header.read_header(path).problem == (
        None if reason is None else f"{reason}, {header.CONVERT}"
    )
    if reason is None:  # What TensorFlow decodes is what PIL reads.
        decoded = tf.io.decode_image(Path(path).read_bytes(), channels=3).numpy()
        assert np.array_equal(decoded, np.asarray(Image.open(path).convert("RGB")))
