"""Error bars and paired tests, against SciPy; a two-seed comparison writes them."""

import csv
import os

import numpy as np
import pytest
import scipy.stats

from catdog_tf import rundir, stats
from catdog_tf.compare import compare, write_outputs
from catdog_tf.config import smoke
from catdog_tf.utils import atomic_write_json, read_json


def test_t_interval_matches_scipy():
    values = [0.71, 0.74, 0.69, 0.73]
    interval = stats.t_interval(values)
    low, high = scipy.stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values)
    )
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    assert interval.method == "t over 4 seeds"
    assert np.isnan(stats.t_interval([0.7]).half_width())


def test_bootstrap_interval_brackets_the_accuracy():
    correct = np.random.default_rng(0).uniform(size=2000) < 0.8
    interval = stats.bootstrap_interval(correct)
    assert interval.low < interval.mean < interval.high
    # The normal approximation of a proportion's interval: sqrt(p (1 - p) / n) * 1.96.
    assert interval.half_width() == pytest.approx(1.96 * np.sqrt(0.8 * 0.2 / 2000), rel=0.15)
    assert interval.method == "bootstrap over 2000 images"


def test_mcnemar_is_the_exact_binomial_test_of_discordant_images():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 0], bool)
    paired = stats.mcnemar([a], [b])
    assert (paired.only_a, paired.only_b) == (4, 1)
    assert paired.p_value == pytest.approx(scipy.stats.binomtest(4, 5, 0.5).pvalue)
    assert paired.difference == pytest.approx(0.3)
    assert paired.verdict() == "no detectable difference"
    # Over seeds the discordant images are pooled into one exact test.
    many = stats.mcnemar([a] * 6, [b] * 6)
    assert many.p_value == pytest.approx(scipy.stats.binomtest(24, 30, 0.5).pvalue)
    assert many.verdict() == "better" and stats.mcnemar([b] * 6, [a] * 6).verdict() == "worse"
    with pytest.raises(ValueError):
        stats.mcnemar([a], [b[:5]])


def test_two_seed_smoke_comparison_writes_intervals_tests_and_plots(tmp_path):
    def make(model, loss):
        return smoke(model).replace(loss=loss, synthetic_size=96, epochs=1, batch_size=16)

    workdir = str(tmp_path / "cmp")
    results = compare(make, ["mlp", "_tiny"], ["mse"], workdir, seeds=[0, 1], verbose=False)
    assert [r["run_dir"] for r in results] == [
        "mlp-mse-seed0",
        "mlp-mse-seed1",
        "_tiny-mse-seed0",
        "_tiny-mse-seed1",
    ]
    with open(os.path.join(workdir, "table.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["mlp", "_tiny"] and rows[0]["seeds"] == "0,1"
    assert rows[0]["interval"] == "t over 2 seeds"
    accuracies = [r["test"]["best_accuracy"] for r in results[:2]]
    assert float(rows[0]["test acc@thr"]) == pytest.approx(np.mean(accuracies))
    half = stats.t_interval(accuracies).half_width()
    assert float(rows[0]["test acc@thr ±"]) == pytest.approx(half)
    for column, key in (("test MSE ±", "mse"), ("test CE ±", "cross_entropy")):
        losses = [r["test"][key] for r in results[:2]]
        low, high = scipy.stats.t.interval(
            0.95, 1, loc=np.mean(losses), scale=scipy.stats.sem(losses)
        )
        assert float(rows[0][column]) == pytest.approx((high - low) / 2)
    seconds = [r["total_train_seconds"] for r in results[:2]]
    assert float(rows[0]["train s"]) == pytest.approx(np.mean(seconds))
    assert rows[0]["p vs above"] == "" and 0 <= float(rows[1]["p vs above"]) <= 1
    assert rows[1]["vs above"] in ("better", "worse", "no detectable difference")
    for name in ("accuracy_vs_training_flops.png", "accuracy_vs_params.png", "learning_curves.png"):
        assert os.path.getsize(os.path.join(workdir, "plots", name)) > 0
    flops = float(rows[0]["train FLOPs"])
    assert flops == pytest.approx(np.mean([r["training_flops"] for r in results[:2]]))

    # Runs finished before the image count and the compute were recorded get their compute
    # back from the epochs' speed and time, which the loop computed from the same count.
    for result in results:
        del result["training_flops"]
        history_path = rundir.path(os.path.join(workdir, result["run_dir"]), rundir.HISTORY)
        history = read_json(history_path)
        for record in history:
            del record["images"]
        atomic_write_json(history_path, history)
    write_outputs(results, workdir)
    with open(os.path.join(workdir, "table.csv")) as f:
        assert float(next(csv.DictReader(f))["train FLOPs"]) == pytest.approx(flops)


def test_one_seed_gets_a_bootstrap_interval_labelled_as_such(tmp_path):
    def make(model, loss):
        return smoke(model).replace(loss=loss, synthetic_size=96, epochs=1, batch_size=16)

    workdir = str(tmp_path / "cmp")
    compare(make, ["mlp"], ["mse"], workdir, verbose=False)
    with open(os.path.join(workdir, "table.csv")) as f:
        (row,) = list(csv.DictReader(f))
    assert row["interval"].startswith("bootstrap over") and float(row["test acc@thr ±"]) > 0
    assert row["test AUC ±"] == ""
