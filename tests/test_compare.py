"""The smoke preset of catdog-compare, end to end: every file and column."""

import csv
import os
from pathlib import Path

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
