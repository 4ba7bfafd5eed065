"""The comparison table's rows: per (model, loss), means over seeds, intervals, paired tests.

:func:`summarize` groups a comparison's runs by (model, loss); each row gets the mean of every
table column over its seeds, a 95% interval for the test metrics (Student t over seeds, or,
with one seed, a bootstrap over the test images for accuracy), and the exact McNemar test of
its test predictions against the row above and against the best row (:mod:`catdog_tf.stats`).
:func:`table` formats the rows (its columns, :data:`COLUMNS`, and the article's reported
numbers live here, the table's one owner); :func:`plot` draws accuracy against compute and
parameters with error bars, and the learning curves with a band over seeds.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from catdog_tf import figures, rundir, stats
from catdog_tf.train import finish, metrics
from catdog_tf.utils import is_number, read_json

# What the reference article reports (validation set of 1,024 images, MSE loss), and the
# Keras-blog row for conv3 (different set-up: 2,000 training images, 150x150, augmentation).
ARTICLE_REPORTED: dict[str, str] = {
    "mlp": "~random guessing",
    "conv1": "MSE 0.36, Pearson 0.152",
    "conv2": "MSE 0.33, Pearson 0.21, best acc 61%",
    "conv2_wide": "Pearson 0.30, best acc 67%",
    "conv3": "Keras blog: 79-81% (2,000 images)",
    "vgg16_bottleneck": "Keras blog bottleneck: ~90-91%",
    "vgg16_finetune": "Keras blog fine-tuning: ~94-95%",
}

# (header, key path into result.json, format)
COLUMNS: list[tuple[str, tuple[str, ...], str]] = [
    ("model", ("config", "model"), "{}"),
    ("loss", ("config", "loss"), "{}"),
    ("params", ("model", "params"), "{:,}"),
    ("weight MB", ("model", "weight_mb"), "{:.1f}"),
    ("epochs", ("epochs_run",), "{}"),
    ("s/epoch", ("seconds_per_epoch",), "{:.1f}"),
    ("train s", ("total_train_seconds",), "{:.0f}"),
    ("img/s", ("train_images_per_second",), "{:.0f}"),
    ("train FLOPs", ("training_flops",), "{:.2e}"),
    ("val MSE", ("validation", "mse"), "{:.3f}"),
    ("val CE", ("validation", "cross_entropy"), "{:.3f}"),
    ("val Pearson", ("validation", "pearson"), "{:.3f}"),
    ("val acc@0.5", ("validation", "accuracy_at_0.5"), "{:.3f}"),
    ("best thr", ("validation", "best_threshold"), "{:.3f}"),
    ("val best acc", ("validation", "best_accuracy"), "{:.3f}"),
    ("val AUC", ("validation", "roc_auc"), "{:.3f}"),
    ("test MSE", ("test", "mse"), "{:.3f}"),
    ("test CE", ("test", "cross_entropy"), "{:.3f}"),
    ("test Pearson", ("test", "pearson"), "{:.3f}"),
    ("test acc@0.5", ("test", "accuracy_at_0.5"), "{:.3f}"),
    ("test acc@thr", ("test", "best_accuracy"), "{:.3f}"),
    ("test AUC", ("test", "roc_auc"), "{:.3f}"),
    ("test acc@0.5 TTA", ("test_tta", "accuracy_at_0.5"), "{:.3f}"),
    ("test acc@thr TTA", ("test_tta", "best_accuracy"), "{:.3f}"),
]


def _get(result: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = result
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _article(result: dict[str, Any]) -> str:
    return ARTICLE_REPORTED.get(result["config"]["model"], "")


def format_markdown(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# Test metrics that get an interval: (column header, key in result["test"]).
INTERVAL_METRICS = (
    ("acc@0.5", "accuracy_at_0.5"),
    ("acc@thr", "best_accuracy"),
    ("AUC", "roc_auc"),
    ("Pearson", "pearson"),
    # Both losses: every run is scored on both, whichever it was trained with.
    ("MSE", "mse"),
    ("CE", "cross_entropy"),
)


@dataclasses.dataclass
class Row:
    """One (model, loss) of the comparison, over its seeds.

    Attributes:
      runs: The runs' ``result.json`` contents (each with ``run_dir``).
      correct: Per run, the 0/1 correctness of each test image at the run's validation
        threshold (None where the run's predictions could not be read).
      correct_at_half: The same at threshold 0.5.
      intervals: Per :data:`INTERVAL_METRICS` header, the test metric's interval.
      vs_above: McNemar of this row against the row above (None for the first).
      vs_best: McNemar against the row with the best mean test accuracy (None for that row).
      test_sets: Per seed, an identity of the run's test images (paths, or labels), so that
        two rows are paired only on the very same images.
      histories: Per run, its ``history.json`` (empty where missing).
    """

    runs: list[dict[str, Any]]
    correct: list[np.ndarray] | None
    correct_at_half: list[np.ndarray] | None
    test_sets: dict[int, int] = dataclasses.field(default_factory=dict)
    histories: list[list[dict[str, Any]]] = dataclasses.field(default_factory=list)
    intervals: dict[str, stats.Interval] = dataclasses.field(default_factory=dict)
    vs_above: stats.Paired | None = None
    vs_best: stats.Paired | None = None

    @property
    def seeds(self) -> list[int]:
        """The runs' seeds."""
        return [r["config"]["seed"] for r in self.runs]

    @property
    def name(self) -> str:
        """``model-loss``."""
        return f"{self.runs[0]['config']['model']}-{self.runs[0]['config']['loss']}"


def _test_correctness(result: dict[str, Any], workdir: str):
    """(correct at the validation threshold, correct at 0.5, labels, paths) of a run's test."""
    path = rundir.path(os.path.join(workdir, result.get("run_dir", "")), rundir.PREDICTIONS)
    if not result.get("run_dir") or not os.path.exists(path):
        return None
    saved = np.load(path)
    if "test_logits" not in saved:
        return None
    probs, labels = metrics.probabilities(saved["test_logits"]), saved["test_labels"]
    threshold = result["validation"]["best_threshold"]
    paths = saved.get("test_paths")
    return (
        metrics.correct_at(probs, labels, threshold),
        metrics.correct_at(probs, labels, 0.5),
        labels,
        paths,
    )


def _pair(a: Row, b: Row) -> stats.Paired | None:
    """McNemar of row ``a`` against ``b`` on the seeds both have, if their images match."""
    if a.correct is None or b.correct is None:
        return None
    by_seed_b = dict(zip(b.seeds, b.correct, strict=True))
    pairs_a, pairs_b = [], []
    for seed, correct in zip(a.seeds, a.correct, strict=True):
        if seed in by_seed_b and a.test_sets.get(seed) == b.test_sets.get(seed):
            pairs_a.append(correct)
            pairs_b.append(by_seed_b[seed])
    return stats.mcnemar(pairs_a, pairs_b) if pairs_a else None


def summarize(results: list[dict[str, Any]], workdir: str) -> list[Row]:
    """The table's rows, in the order their (model, loss) first appears in ``results``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        key = (result["config"]["model"], result["config"]["loss"])
        groups.setdefault(key, []).append(result)
    rows = []
    for runs in groups.values():
        read = [_test_correctness(r, workdir) for r in runs]
        complete = all(x is not None for x in read)
        row = Row(
            runs,
            [x[0] for x in read] if complete else None,
            [x[1] for x in read] if complete else None,
        )
        if complete:
            for result, (_, _, labels, paths) in zip(runs, read, strict=True):
                # Two runs pair up only on the very same test images, in the same order.
                identity = tuple(paths) if paths is not None else tuple(labels)
                row.test_sets[result["config"]["seed"]] = hash(identity)
        for i, result in enumerate(runs):
            path = rundir.path(os.path.join(workdir, result.get("run_dir", "")), rundir.HISTORY)
            history = read_json(path) if os.path.exists(path) else []
            row.histories.append(history)
            if result.get("training_flops") is None:
                # A run finished before its compute was recorded: recover it from its history.
                flops = finish.training_flops(result.get("model", {}), history)
                runs[i] = {**result, "training_flops": flops}
        for header, key in INTERVAL_METRICS:
            values = [r["test"][key] for r in runs if r.get("test") and r["test"][key] is not None]
            if len(values) >= 2 or not values:
                row.intervals[header] = stats.t_interval(values) if values else None
            elif header.startswith("acc") and complete:
                correct = row.correct if header == "acc@thr" else row.correct_at_half
                row.intervals[header] = stats.bootstrap_interval(correct[0])
            else:
                row.intervals[header] = stats.t_interval(values)
        rows.append(row)
    if rows:
        accuracy = [
            row.intervals["acc@thr"].mean if row.intervals["acc@thr"] else -1 for row in rows
        ]
        best = rows[int(np.argmax(accuracy))]
        for i, row in enumerate(rows):
            row.vs_above = _pair(row, rows[i - 1]) if i else None
            row.vs_best = _pair(row, best) if row is not best else None
    return rows


def _mean(values: list[Any]) -> Any:
    numbers = [v for v in values if is_number(v)]
    if len(numbers) == len(values) and numbers:
        mean = float(np.mean(numbers))
        return int(mean) if all(isinstance(v, int) for v in numbers) and mean.is_integer() else mean
    return values[0] if values else None


EXTRA_HEADERS = [
    "seeds",
    "interval",
    *(f"test {name} ±" for name, _ in INTERVAL_METRICS),
    "Δ acc vs above",
    "p vs above",
    "vs above",
    "Δ acc vs best",
    "p vs best",
    "vs best",
    "article reported",
]


def table(rows: list[Row]) -> tuple[list[str], list[list[str]], list[list[Any]]]:
    """Header, formatted rows (markdown) and raw rows (CSV: plain numbers) of the table."""
    header = [c[0] for c in COLUMNS] + EXTRA_HEADERS
    formatted, raw = [], []
    for row in rows:
        means = [_mean([_get(r, path) for r in row.runs]) for _, path, _ in COLUMNS]
        text = [
            "-" if v is None else fmt.format(v)
            for v, (_, _, fmt) in zip(means, COLUMNS, strict=True)
        ]
        intervals = [row.intervals.get(name) for name, _ in INTERVAL_METRICS]
        methods = {i.method for i in intervals if i is not None and np.isfinite(i.half_width())}
        halves = [
            i.half_width() if i is not None and np.isfinite(i.half_width()) else None
            for i in intervals
        ]
        paired = []
        for test in (row.vs_above, row.vs_best):
            paired.append(
                [None, None, ""]
                if test is None
                else [test.difference, test.p_value, test.verdict()]
            )
        extra_raw = [
            ",".join(str(s) for s in row.seeds),
            "; ".join(sorted(methods)),
            *halves,
            *paired[0],
            *paired[1],
            _article(row.runs[0]),
        ]
        raw.append([("" if v is None else v) for v in means + extra_raw])
        extra_text = [
            extra_raw[0],
            extra_raw[1] or "-",
            *("-" if h is None else f"±{h:.3f}" for h in halves),
        ]
        for diff, p, verdict in paired:
            extra_text += ["-", "-", "-"] if diff is None else [f"{diff:+.3f}", f"{p:.3g}", verdict]
        extra_text.append(extra_raw[-1])
        formatted.append(text + extra_text)
    return header, formatted, raw


def plot(rows: list[Row], folder: str) -> list[str]:
    """Accuracy against FLOPs and parameters (error bars), learning curves (band over seeds)."""
    plt = figures.pyplot()

    os.makedirs(folder, exist_ok=True)
    written = []
    axes = (
        ("training_flops", "training FLOPs (3 x forward FLOPs x images trained on)"),
        ("params", "parameters"),
    )
    for key, label in axes:
        fig, ax = plt.subplots(figsize=(6, 4))
        for row in rows:
            interval = row.intervals.get("acc@thr")
            if key == "params":
                x = row.runs[0]["model"].get(key)
            else:  # A seed's compute can differ (early stopping): the mean over seeds.
                x = _mean([r.get(key) for r in row.runs])
            if interval is None or not isinstance(x, (int, float)) or not x:
                continue
            error = interval.half_width() if np.isfinite(interval.half_width()) else 0.0
            ax.errorbar([x], [interval.mean], yerr=[error], fmt="o", capsize=4, label=row.name)
        ax.set(xscale="log", xlabel=label, ylabel="test accuracy (95% interval)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        written.append(figures.save(fig, os.path.join(folder, f"accuracy_vs_{key}.png")))
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        curves = [[h["val_accuracy_at_0.5"] for h in history] for history in row.histories]
        curves = [c for c in curves if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        values = np.array([c[:length] for c in curves])
        epochs = np.arange(1, length + 1)
        ax.plot(epochs, values.mean(axis=0), label=row.name)
        ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), alpha=0.2)
    ax.set(xlabel="epoch", ylabel="validation accuracy at 0.5 (band: seeds' range)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return [*written, figures.save(fig, os.path.join(folder, "learning_curves.png"))]
