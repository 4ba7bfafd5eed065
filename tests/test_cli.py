"""The command line, run as a user would: subprocesses of the installed entry points."""

import csv
import glob
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import import_benchmark, make_image, make_kaggle_folder

import catdog_tf
from catdog_tf.evaluate import predict_files
from catdog_tf.utils import read_json

# As a user runs them: no TF_CPP_MIN_LOG_LEVEL (conftest sets one for in-process tests).
ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
# Every line a command prints of its own: results on stdout, 'PROG: ...' lines on stderr.
PREDICTION = re.compile(r"^[^\t]+\t(0\.\d{4}|1\.0000|unreadable)$")
EPOCH_LINES = re.compile(r"^(epoch \d+/\d+ \(\w+, \w+\)|  train loss .* img/s)$")


def cli(module, *args, check=True):
    out = subprocess.run(
        [sys.executable, "-m", f"catdog_tf.cli.{module}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def assert_own_lines(out, prog, stdout_line=None):
    """Each stderr line is the command's own ('PROG: ...'); each stdout line matches."""
    for line in out.stderr.splitlines():
        assert line.startswith(f"{prog}: "), f"not {prog}'s own line: {line!r}"
    for line in out.stdout.splitlines() if stdout_line else ():
        assert stdout_line.match(line), f"not a {prog} result line: {line!r}"


def json_after_lines(stdout: str, line_format):
    """The JSON document a command prints last; every line before it must match."""
    lines = stdout.splitlines()
    start = lines.index("{")
    for line in lines[:start]:
        assert line_format.match(line), f"unexpected line: {line!r}"
    return json.loads("\n".join(lines[start:]))


@pytest.mark.parametrize(
    "module", ["train", "evaluate", "predict", "compare", "data", "machine", "export"]
)
def test_help_and_version_answer_without_tensorflow(module):
    for flag in ("--helpfull", "--version"):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", f"catdog_tf.cli.{module}", flag],
            capture_output=True,
            text=True,
            timeout=120,
            env=ENV,
        )
        assert out.returncode in (0, 1), out.stderr[-2000:]  # absl exits 1 after --help.
        imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
        assert "tensorflow" not in imported and "keras" not in imported
        if flag == "--version":
            assert out.stdout.split()[-1] == catdog_tf.__version__
        else:
            assert "--workdir" in out.stdout or "--data" in out.stdout
            assert "catdog-" in out.stdout  # The module docstring, with its example command.


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model=nope"], "unknown model 'nope'"),
        (["--epochs=-1"], "epochs must be positive"),
        (["--data=/does/not/exist", "--epochs=1"], "no such file or folder"),
        (["--set=colour=red"], "unknown config field 'colour'"),
        # Refused by absl's parser, before the command runs.
        (["--epochs=abc"], "flag --epochs=abc: invalid literal for int()"),
        (["--colour=red"], "Unknown command line flag 'colour'"),
    ],
)
def test_bad_flags_give_one_clear_line(tmp_path, args, message):
    out = cli("train", f"--workdir={tmp_path}/w", "--preset=smoke", *args, check=False)
    assert out.returncode == 2
    # One line, and nothing of TensorFlow's start-up before it.
    (line,) = out.stderr.splitlines()
    assert line.startswith("catdog-train: error: ") and message in line


def test_train_eval_predict_end_to_end(tmp_path):
    train_dir = make_kaggle_folder(str(tmp_path / "train"), n_per_class=8)
    other = make_kaggle_folder(str(tmp_path / "other"), n_per_class=3, first=500)
    workdir = str(tmp_path / "run")
    out = cli(
        "train",
        "--preset=smoke",
        "--model=_tiny",
        f"--data={train_dir}",
        f"--workdir={workdir}",
        "--epochs=1",
        "--batch_size=4",
        "--set=train_size=8",
        "--set=val_size=4",
        "--set=test_size=4",
        "--set=image_height=24",
        "--set=image_width=32",
        "--progress=lines",
    )
    # Quiet: TensorFlow's start-up and C++ lines are hidden, only the package's own remain.
    assert_own_lines(out, "catdog-train")
    assert "catdog-train: plan: precision = float32" in out.stderr
    printed = json_after_lines(out.stdout, EPOCH_LINES)
    result = read_json(os.path.join(workdir, "result.json"))
    assert result["epochs_run"] == 1 and result["test"]["n"] == 4
    assert printed["test"] == result["test"]

    out = cli("evaluate", f"--workdir={workdir}", f"--data={other}")
    assert_own_lines(out, "catdog-eval")
    report = json.loads(out.stdout)
    assert report["n"] == 6 and report["best_threshold"] == result["validation"]["best_threshold"]
    assert len(glob.glob(os.path.join(workdir, "eval-other-*.json"))) == 1
    out = cli("evaluate", f"--workdir={workdir}", "--tta", f"--data={other}", check=False)
    assert out.returncode == 2 and "catdog-eval --add_tta" in out.stderr
    out = cli("evaluate", f"--workdir={workdir}", check=False)
    assert out.returncode == 2 and "give --data=FOLDER" in out.stderr
    out = cli("evaluate", f"--workdir={workdir}", "--add_tta", "--float32", check=False)
    assert out.returncode == 2 and "in its training precision" in out.stderr
    out = cli("evaluate", f"--workdir={workdir}", "--add_tta")
    added = json.loads(out.stdout[out.stdout.index("{") :])
    assert added["test_tta"]["n"] == 4
    out = cli("evaluate", f"--workdir={workdir}", "--tta", f"--data={other}")
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert report["tta"] and report["best_threshold"] == added["validation_tta"]["best_threshold"]

    test1 = tmp_path / "test1"
    for i in (3, 1, 2):
        make_image(str(test1 / f"{i}.jpg"), i % 2)
    (test1 / "4.jpg").write_text("broken")
    submission = str(tmp_path / "submission.csv")
    out = cli("predict", f"--workdir={workdir}", f"--submission={submission}", str(test1))
    assert_own_lines(out, "catdog-predict", PREDICTION)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1].endswith("unreadable")
    rows = list(csv.reader(Path(submission).read_text().splitlines()))
    assert rows[0] == ["id", "label"] and [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert all(0 <= float(r[1]) <= 1 for r in rows[1:])
    # A float32 run computes as its exports do already: --float32 changes nothing.
    out = cli("predict", f"--workdir={workdir}", "--tta", "--float32", str(test1))
    printed = [line.split("\t")[1] for line in out.stdout.strip().splitlines()]
    expected = [p for _, p in predict_files(workdir, [str(test1)], tta=True)]
    assert printed[-1] == "unreadable" and expected[-1] is None
    # The subprocess may run other kernels (oneDNN), so compare numbers, not digits.
    np.testing.assert_allclose([float(p) for p in printed[:-1]], expected[:-1], atol=2e-4)


def test_data_summary(tmp_path):
    folder = make_kaggle_folder(str(tmp_path / "d"), n_per_class=2)
    open(os.path.join(folder, "cat.9.jpg"), "w").close()
    out = cli("data", f"--data={folder}")
    assert "5 images (3 cats, 2 dogs)" in out.stdout
    assert "1 skipped (1 empty file)" in out.stdout


def _train_args(data_dir, workdir, epochs=4):
    return [
        "--preset=smoke",
        "--model=_tiny",
        f"--data={data_dir}",
        f"--workdir={workdir}",
        f"--epochs={epochs}",
        "--batch_size=4",
        "--set=train_size=40",
        "--set=val_size=8",
        "--set=test_size=8",
        "--set=image_height=24",
        "--set=image_width=32",
        '--set=model_kwargs={"dropout": 0.3}',
        "--set=augment=true",
    ]


def test_sigkill_then_same_command_resumes_exactly(tmp_path):
    data_dir = make_kaggle_folder(str(tmp_path / "d"), n_per_class=28, size=(24, 32))
    cli("train", *_train_args(data_dir, str(tmp_path / "full")))

    workdir = str(tmp_path / "killed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "catdog_tf.cli.train", *_train_args(data_dir, workdir)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = os.path.join(workdir, "checkpoints", "ckpt-1.index")
    deadline = time.time() + 240
    while not os.path.exists(first) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # Mid-run: after epoch 1's checkpoint at the latest.
    proc.wait()
    assert not os.path.exists(os.path.join(workdir, "result.json"))

    cli("train", *_train_args(data_dir, workdir))
    full = read_json(tmp_path / "full" / "history.json")
    resumed = read_json(os.path.join(workdir, "history.json"))
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4]
    assert [h["train_loss"] for h in full] == [h["train_loss"] for h in resumed]
    assert (
        read_json(tmp_path / "full" / "result.json")["validation"]
        == read_json(os.path.join(workdir, "result.json"))["validation"]
    )


def test_flagfile(tmp_path):
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text("--preset=smoke\n--model=nope\n")
    out = cli("train", f"--flagfile={flagfile}", f"--workdir={tmp_path}/w", check=False)
    assert out.returncode == 2 and "unknown model 'nope'" in out.stderr


def test_unwritable_workdir_gives_one_clear_line():
    # /sys refuses new entries even to root, so this is a real unwritable location.
    out = cli(
        "train",
        "--preset=smoke",
        "--model=_tiny",
        "--workdir=/sys/catdog_test",
        "--epochs=1",
        check=False,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1 and "/sys/catdog_test" in lines[0]


def test_verbosity_is_read_from_the_command_line_as_absl_reads_it():
    from catdog_tf.cli.script import verbosity_in

    assert verbosity_in([]) == 0
    assert verbosity_in(["--verbosity=1"]) == 1
    assert verbosity_in(["-v", "2", "--data=x"]) == 2
    assert verbosity_in(["--v=1", "--verbosity=0"]) == 0  # The last one wins.
    assert verbosity_in(["--", "--verbosity=1"]) == 0  # After "--": an argument, not a flag.
    assert verbosity_in(["--verbosity=loud", "--vv=3"]) == 0


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
    """Runs ``benchmarks/SCRIPT.py`` with ``args``; its exit status, stdout and stderr."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{script}.py"
    return subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=120, env=ENV
    )


@pytest.mark.parametrize(
    "script, flag, message",
    [
        ("augmentation_cost", "--shrink=1.5", "low_res_scale must be in (0, 1), got 1.5"),
        # Checked before the ceilings are timed: nothing printed, no seconds spent.
        ("roofline", "--also_with=batch_size=0", "batch_size must be positive, got 0"),
        (
            "export_drift",
            "--workdir=no-such-run",
            "no-such-run has no config.json: is it a finished catdog-train run directory?",
        ),
        (
            "ensembles",
            "--max_members=-1",
            "flag --max_members=-1: -1 is not a non-negative integer (--helpshort lists the flags)",
        ),
    ],
)
def test_a_benchmark_script_prints_only_its_own_lines(script, flag, message):
    # As the commands: TensorFlow's C++ start-up lines hidden, a bad value one line.
    out = run_benchmark(script, flag)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line == f"{script}: error: {message}", line


def test_recipe_ablation_prints_each_runs_command_with_every_set_last():
    # Every row's configuration is checked on the way: a row that no longer parses fails here.
    out = run_benchmark("recipe_ablation", "--commands", "--seeds=0,3", "--set=precision=float32")
    assert out.returncode == 0, out.stderr[-2000:]
    commands = [shlex.split(line) for line in out.stdout.splitlines()]
    workdirs = [c[-1].removeprefix("--workdir=") for c in commands]
    assert len(set(workdirs)) == len(workdirs) > 40
    assert all(c[0] == "catdog-train" and c[-3] == "--set=precision=float32" for c in commands)
    by_workdir = dict(zip(workdirs, commands, strict=True))
    assert by_workdir["runs/ablation/wh_pool_first_ls02-seed3"][1:-2] == [
        "--preset=fast_progressive_wh",
        "--model=conv5_wh",
        "--seed=3",
        "--set=lr_schedule=cosine",
        '--set=model_kwargs={"pool_first": true}',
        "--set=label_smoothing=0.2",
        "--set=precision=float32",
    ]
    # A row's teacher is the same seed's run of another row, in the same --workdir.
    assert (
        "--set=teacher=runs/ablation/wh_best_60-seed3"
        in by_workdir["runs/ablation/wh_distill05-seed3"]
    )


def test_roofline_times_each_variant_with_its_own_batch_model_and_flops():
    from catdog_tf.config import get_preset

    roofline = import_benchmark("roofline")
    config = get_preset("quick_wh").replace(
        precision="float32", jit_compile="off", batch_size=4, image_height=64, image_width=96
    )
    pooled = 'model_kwargs={"pool_first": true, "pooled_convs": 1}'
    cells = roofline.step_cells(config, [pooled, "batch_size=8"], steps=1, keras_batch_norm=False)
    assert list(cells) == [
        "train 64x96",
        f"train 64x96, {pooled}",
        "train 64x96, batch_size=8",
        "train 32x48",
        f"train 32x48, {pooled}",
        "train 32x48, batch_size=8",
        "eval 64x96",
    ]
    run, images, flops, precision = cells["train 64x96, batch_size=8"]
    assert (images, flops, precision) == (8, cells["train 64x96"][2], "float32")
    assert cells["train 64x96"][1] == 4
    assert cells[f"train 64x96, {pooled}"][2] > 1.2 * cells["train 64x96"][2]
    assert cells["train 32x48"][2] < cells["train 64x96"][2] / 3
    assert cells["eval 64x96"][2] == pytest.approx(cells["train 64x96"][2] / 3)
    assert np.isfinite(run())  # The variant's step runs on its own 8-image batches.
