"""Trained models shipped in catdog_tf/weights: each loads and predicts; shipping and guards."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_image, make_kaggle_folder

import catdog_tf
from catdog_tf import card, rundir, shipped, stats
from catdog_tf.config import get_preset
from catdog_tf.errors import ConfigError, RunFilesError, WorkdirConfigError
from catdog_tf.evaluate import evaluate_workdir, load_run, predict_files
from catdog_tf.train import train_and_evaluate
from catdog_tf.utils import atomic_write_json, read_json


def _table_names(readme: str) -> list[str]:
    """Names in the first column of the tables of a README's section of shipped models.

    That section is the whole file, or the part headed "Use a trained model".
    """
    with open(readme) as f:
        text = f.read()
    section = re.search(r"^## Use a trained model\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    return re.findall(
        r"^\| `([\w.-]+)` \|", section.group(1) if section else text, flags=re.MULTILINE
    )


@pytest.mark.parametrize(
    "readme",
    [
        os.path.join(shipped.FOLDER, "README.md"),
        # The project's README, beside the package in a checkout.
        os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md"),
    ],
    ids=["weights", "project"],
)
def test_readme_table_lists_exactly_the_shipped_models(readme):
    assert sorted(_table_names(readme)) == shipped.available()


@pytest.mark.parametrize("name", shipped.available())
def test_each_shipped_model_predicts_a_generated_image(tmp_path, name):
    run = shipped.path(name)
    for file in (*rundir.SHIPPED_FILES, rundir.SHIPPED_MARK):
        assert os.path.exists(rundir.path(run, file)), file
    shipped.verify(run)  # Every file is the one that shipped.
    # The card is the one its files give today: it cannot drift from them.
    assert Path(run, rundir.MODEL_CARD).read_text() == card.model_card(run, name)
    about = read_json(rundir.path(run, rundir.SHIPPED_MARK))
    assert about["command"] and about["cpu"] and about["result"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", about["catdog_tf_version"])
    images = [
        make_image(str(tmp_path / f"{label}.jpg"), label, size=(200, 260), seed=label)
        for label in (0, 1)
    ]
    (first, p_first), (second, p_second) = predict_files(run, images)
    assert (first, second) == tuple(images)
    assert 0 <= p_first <= 1 and 0 <= p_second <= 1
    result = read_json(rundir.path(run, rundir.RESULT))
    assert 0 < result["validation"]["best_threshold"] < 1  # What catdog-eval applies.
    # Every shipped model has a flip-TTA threshold too (trained with tta, or add_tta).
    assert 0 < result["validation_tta"]["best_threshold"] < 1
    assert result["test_tta"]["n"] == result["test"]["n"]


@pytest.mark.parametrize("name", shipped.available())
def test_each_shipped_model_is_what_its_command_trains_today(name):
    # The shipped command names a preset; a preset retuned after shipping must be re-shipped,
    # or the command would make another model than the one the README's table describes.
    run = shipped.path(name)
    command = read_json(rundir.path(run, rundir.SHIPPED_MARK))["command"]
    (preset,) = re.findall(r"--preset=(\w+)", command)
    trained, _ = rundir.read_config(run)
    assert name == f"{trained.model}-{preset}"
    assert re.search(rf"--seeds?={trained.seed}\b", command)
    # The data folder and the model are the command's own flags (--data, --model(s)). Every
    # other field is compared, not rundir.config_differences' subset: that one is for
    # resuming, so it lets epochs, the learning rate and the fields `auto` pins differ.
    today = get_preset(preset, trained.model).replace(data=trained.data, seed=trained.seed)
    assert trained == today  # Dataclass equality: every field; pytest names those that differ.


def test_ship_copies_what_use_needs_and_the_copy_is_read_only(finished_run, tmp_path, monkeypatch):
    folder = str(tmp_path / "weights")
    target = shipped.ship(finished_run.workdir, "tiny", {"command": "x", "cpu": "y"}, folder)
    assert shipped.available(folder) == ["tiny"]
    assert shipped.path("tiny", folder) == target
    assert sorted(os.listdir(target)) == sorted([*shipped.COVERED, rundir.CHECKSUMS])
    about = read_json(rundir.path(target, rundir.SHIPPED_MARK))
    assert about == {"catdog_tf_version": catdog_tf.__version__, "command": "x", "cpu": "y"}
    with pytest.raises(ConfigError, match="shipped: tiny"):
        shipped.path("nope", folder)
    with pytest.raises(WorkdirConfigError, match="read-only"):
        train_and_evaluate(finished_run.config, target, verbose=False)
    assert sorted(os.listdir(target)) == sorted([*shipped.COVERED, rundir.CHECKSUMS])
    monkeypatch.chdir(tmp_path)  # The eval report of a shipped model goes to ./NAME-outputs.
    unseen = make_kaggle_folder(str(tmp_path / "unseen"), first=500)
    report = evaluate_workdir(target, unseen)
    assert report["n"] == 12 and report["left_out_seen"] == 0
    assert len(list((tmp_path / "tiny-outputs").glob("eval-unseen-*.json"))) == 1
    assert sorted(os.listdir(target)) == sorted([*shipped.COVERED, rundir.CHECKSUMS])


def test_ship_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(ConfigError, match="not a finished run"):
        shipped.ship(str(tmp_path), "x", {}, str(tmp_path / "weights"))


@pytest.mark.parametrize("args", [[], ["--workdir=a", "--weights=b"]])
def test_predict_needs_exactly_one_of_workdir_and_weights(args, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "catdog_tf.cli.predict", *args, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "exactly one" in out.stderr and "Traceback" not in out.stderr


def test_unknown_shipped_name_is_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "catdog_tf.cli.predict", "--weights=nope", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "no shipped model named 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_checksums_match_sha256sum_and_name_a_damaged_file(finished_run, tmp_path):
    target = shipped.ship(finished_run.workdir, "tiny", {"command": "x"}, str(tmp_path / "w"))
    lines = (Path(target) / rundir.CHECKSUMS).read_text().splitlines()
    assert sorted(line.split("  ")[1] for line in lines) == sorted(shipped.COVERED)
    if shutil.which("sha256sum"):  # The coreutils tool reads the same file.
        out = subprocess.run(["sha256sum", "-c", rundir.CHECKSUMS], cwd=target, capture_output=True)
        assert out.returncode == 0, out.stdout
    for name in (rundir.RESULT, rundir.SHIPPED_MARK, rundir.SERVING):
        copy = shutil.copytree(target, tmp_path / f"edited-{name}")
        with open(copy / name, "ab") as f:
            f.write(b" ")
        with pytest.raises(RunFilesError, match=f"{name} is not the file that shipped"):
            load_run(str(copy))
    gone = shutil.copytree(target, tmp_path / "no-sums")
    os.remove(gone / rundir.CHECKSUMS)
    with pytest.raises(RunFilesError, match="cannot be checked"):
        load_run(str(gone))


def test_amend_adds_seeds_and_export_checks_to_the_card(finished_run, tmp_path):
    target = shipped.ship(finished_run.workdir, "tiny", {"command": "x"}, str(tmp_path / "w"))
    assert "One seed of this recipe was trained" in card.model_card(target)
    seeds = [{"seed": i, "test": a, "test_tta": b} for i, (a, b) in enumerate([(0.9, 0.91)] * 3)]
    seeds[1].update(test=0.93, test_tta=0.935)
    formats = {
        "n": 4,
        "threshold": 0.5,
        "catdog_tf": {"accuracy": 0.75},
        "formats": {
            "litert_int8": {
                "file": "model_int8.tflite",
                "runtime": "ai-edge-litert 9",
                "accuracy": 0.5,
                "max_difference": 0.125,
                "max_difference_from_predict": 0.25,
                "p99_difference_from_predict": 0.0625,
                "calibration": "200 images the run trained or chose on",
            }
        },
    }
    shipped.amend(target, seeds=seeds, formats=formats)
    shipped.verify(target)  # The checksums cover the amended files.
    text = Path(target, rundir.MODEL_CARD).read_text()
    assert text == card.model_card(target, "tiny")
    interval = stats.t_interval([0.9, 0.93, 0.9])
    assert f"{100 * interval.mean:.2f}% ± {100 * interval.half_width():.2f}" in text
    assert "over 3 seeds; per seed 90.00, 93.00, 90.00" in text
    row = "| `litert_int8` | `model_int8.tflite` | ai-edge-litert 9 | 0.5000 | 0.12 | 0.25 / 0.062"
    assert row in text
    assert "calibrated on 200 images the run trained or chose on" in text
    assert "(images trained x 3 x forward FLOPs)" in text
    assert "--float32" not in text  # A float32 model computes as its exports do.
    shipped.amend(target, precision="mixed_bfloat16 (auto), XLA off")
    assert "computes in bfloat16 as the model trained (with `--float32`" in (
        Path(target, rundir.MODEL_CARD).read_text()
    )


@pytest.mark.parametrize("sam_epochs", [0, 1])
def test_the_card_counts_both_passes_of_a_sharpness_aware_run(finished_copy, tmp_path, sam_epochs):
    saved = read_json(rundir.path(finished_copy, rundir.CONFIG))
    saved["config"].update(sam_rho=0.05, sam_epochs=sam_epochs)
    atomic_write_json(rundir.path(finished_copy, rundir.CONFIG), saved)
    target = shipped.ship(finished_copy, "tiny", {"command": "x"}, str(tmp_path / "w"))
    epochs = read_json(rundir.path(finished_copy, rundir.RESULT))["epochs_run"]
    where = f" in epochs {epochs}-{epochs}" if sam_epochs else ""
    assert f"forward FLOPs, x 2{where}: each sharpness-aware step takes two passes)" in (
        Path(target, rundir.MODEL_CARD).read_text()
    )


def test_the_card_counts_muons_update_flops(finished_copy, tmp_path):
    saved = read_json(rundir.path(finished_copy, rundir.CONFIG))
    saved["config"].update(optimizer="muon")
    atomic_write_json(rundir.path(finished_copy, rundir.CONFIG), saved)
    target = shipped.ship(finished_copy, "tiny", {"command": "x"}, str(tmp_path / "w"))
    assert "forward FLOPs, and each Muon step's Newton-Schulz iterations)" in (
        Path(target, rundir.MODEL_CARD).read_text()
    )
