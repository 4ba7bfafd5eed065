"""The smoke preset of catdog-compare, end to end: every file and column."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import import_benchmark

from catdog_tf import compare, summary
from catdog_tf.config import smoke
from catdog_tf.utils import read_json


def test_smoke_compare_end_to_end(tmp_path):
    workdir = str(tmp_path / "cmp")
    names = ["mlp", "conv1", "conv2", "conv2_wide", "conv3"]

    def make_config(model, loss):
        return smoke(model).replace(
            loss=loss, synthetic_size=128, image_height=24, image_width=32, epochs=2, tta=True
        )

    results = compare.compare(make_config, names, ["mse", "cross_entropy"], workdir, verbose=False)
    assert len(results) == 10
    for name in ("table.md", "table.csv", "results.json"):
        assert os.path.exists(os.path.join(workdir, name))
    rows = list(csv.DictReader(Path(workdir, "table.csv").read_text().splitlines()))
    header = [c[0] for c in summary.COLUMNS]
    assert list(rows[0])[: len(header)] == header and list(rows[0])[-1] == "article reported"
    assert [(r["model"], r["loss"]) for r in rows] == [
        (m, loss) for m in names for loss in ("mse", "cross_entropy")
    ]
    for row in rows:
        for column in header:
            assert row[column] not in ("", "-"), (row["model"], column)
    assert rows[4]["article reported"] == "MSE 0.33, Pearson 0.21, best acc 61%"
    table = Path(workdir, "table.md").read_text()
    assert table.count("\n") == 12 and "| conv2_wide | mse |" in table
    for m in names:
        for loss in ("mse", "cross_entropy"):
            for kind in ("curves", "sweep"):
                png = os.path.join(workdir, "plots", f"{m}-{loss}-{kind}.png")
                assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert len(read_json(os.path.join(workdir, "results.json"))) == 10

    # A second call skips finished runs (no retraining: same objects back).
    again = compare.compare(make_config, names[:1], ["mse"], workdir, verbose=False)
    assert again[0]["total_train_seconds"] == results[0]["total_train_seconds"]


def test_an_ensemble_scores_as_its_run_and_its_members_must_share_a_split(finished_run, tmp_path):
    ensembles = import_benchmark("ensembles")
    run = ensembles.load(finished_run.workdir)
    result = read_json(os.path.join(finished_run.workdir, "result.json"))
    expected = (result["validation"]["accuracy_at_0.5"], result["test"]["best_accuracy"])
    assert ensembles.accuracies((run,), tta=False) == pytest.approx(expected)
    # A run twice is the run; a second member's test logits move the mean logit, judged at
    # the threshold the (unchanged) validation logits chose.
    assert ensembles.accuracies((run, run), tta=False) == pytest.approx(expected)
    logits = -3 * run.saved["test_logits"]
    second = run._replace(saved={**run.saved, "test_logits": logits})
    p_dog = 1 / (1 + np.exp(-(run.saved["test_logits"] + logits) / 2))
    right = (p_dog > result["validation"]["best_threshold"]) == (run.saved["test_labels"] == 1)
    assert right.mean() != expected[1]
    assert ensembles.accuracies((run, second), tta=False)[1] == pytest.approx(right.mean())
    # A pattern names one run per seed; a row is the mean over the seeds.
    for seed in (0, 1):
        os.symlink(finished_run.workdir, tmp_path / f"run-seed{seed}")
    per_seed = ensembles.members_per_seed([str(tmp_path / "run-seed{seed}")] * 2, ["0", "1"])
    assert [len(members) for members in per_seed] == [2, 2]
    compute, line = ensembles.row([tuple(m) for m in per_seed], ["a", "b"], reference=1.0)
    assert compute == 2 * run.training_flops
    assert f"| a + b | 2 | {compute:.2f} | {100 * expected[0]:.2f} ± 0.00 |" in line
    # A distilled member's teacher counts once: in it, or as a member itself.
    teacher = run._replace(path="/t", training_flops=9.0)
    student = run._replace(path="/s", training_flops=14.0, teacher=("/t", 9.0))
    assert ensembles.compute((student,)) == 14.0
    assert ensembles.compute((student, teacher)) == 14.0
    assert ensembles.compute((student, student._replace(path="/s2"))) == 5.0 + 5.0 + 9.0
    with pytest.raises(SystemExit, match="names its {seed}"):
        ensembles.members_per_seed([finished_run.workdir], ["0"])
    other = np.roll(run.saved["test_paths"], 1)
    with pytest.raises(SystemExit, match="does not hold out the test images of"):
        ensembles.check_same_split([run, run._replace(saved={**run.saved, "test_paths": other})])
    with pytest.raises(SystemExit, match="is not a finished run"):
        ensembles.load(str(tmp_path))


def test_the_frontier_plot_spreads_recipes_of_one_compute_and_keeps_the_rest():
    frontier = import_benchmark("frontier")
    computes = [0.2, 0.25, 0.25, 0.25, 0.53, 1.0]
    xs = frontier.dodged(computes)
    assert xs[0] == pytest.approx(0.2) and xs[4:] == pytest.approx([0.53, 1.0])
    # The three at 0.25 move apart, in order and evenly in log, about 0.25 itself.
    logs = np.log10(xs[1:4])
    assert np.all(np.diff(logs) > 0) and np.diff(logs) == pytest.approx([0.008, 0.008])
    assert logs[1] == pytest.approx(np.log10(0.25))
