r"""Test accuracy against training compute: every shipped recipe and any group of runs.

Each shipped model is one point: its seeds' test accuracies (``shipped.json``, or the one
run shipped) at its ``training_flops``. Each ``--groups`` entry ``LABEL=GLOB`` adds the
finished runs its glob matches (one per seed, e.g. a ``recipe_ablation.py`` row). Compute is a
fraction of :func:`catdog_tf.models.reference_training_flops`; error bars are 95% t
intervals over seeds. Writes the plot and prints the table::

    python benchmarks/frontier.py --groups='wh_alternating_flip=runs/ablation/wh_alt*-seed*' \
        --output=results/frontier/accuracy_vs_compute.png
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import glob
import math
import os
import statistics
from typing import NamedTuple

from absl import flags

from catdog_tf import figures, models, rundir, shipped, stats
from catdog_tf.utils import read_json

_GROUPS = flags.DEFINE_list("groups", [], "LABEL=GLOB of run directories, one per seed.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "The plot's PNG file (written over if it exists).", required=True
)

# The goals, (compute, test accuracy without TTA), drawn as targets.
GOALS = ((0.25, 0.96), (1.0, 0.97))


class Point(NamedTuple):
    """One recipe: its label, compute fraction and per-seed test accuracies."""

    label: str
    compute: float
    test: list[float]
    test_tta: list[float]


def shipped_points(reference: float) -> list[Point]:
    """One point per shipped model, over the seeds its ``shipped.json`` records."""
    points = []
    for name in shipped.available():
        folder = shipped.path(name)
        result = rundir.read_result(folder)
        seeds = read_json(rundir.path(folder, rundir.SHIPPED_MARK)).get("seeds") or [
            {
                "test": result["test"]["best_accuracy"],
                "test_tta": (result.get("test_tta") or {}).get("best_accuracy"),
            }
        ]
        points.append(
            Point(
                name,
                result["training_flops"] / reference,
                [s["test"] for s in seeds],
                [s["test_tta"] for s in seeds if s.get("test_tta") is not None],
            )
        )
    return points


def group_point(label: str, pattern: str, reference: float) -> Point | None:
    """One point over the finished runs ``pattern`` matches (None if it matches none)."""
    results = [
        rundir.read_result(run) for run in sorted(glob.glob(pattern)) if rundir.is_finished(run)
    ]
    if not results:
        return None
    return Point(
        label,
        statistics.mean(r["training_flops"] for r in results) / reference,
        [r["test"]["best_accuracy"] for r in results],
        [r["test_tta"]["best_accuracy"] for r in results if r.get("test_tta")],
    )


def interval(values: list[float]) -> str:
    """``mean ± half-width`` in percent, or the one value."""
    if not values:
        return "-"
    i = stats.t_interval([100 * v for v in values])
    return f"{i.mean:.2f}" if len(values) < 2 else f"{i.mean:.2f} ± {i.high - i.mean:.2f}"


# Fewer seeds get no error bar: two give a t interval of +-12.7 standard errors, a bar
# that runs off the chart and reads as a line at its compute.
MIN_SEEDS_FOR_BAR = 3


def dodged(computes: list[float], step: float = 0.008) -> list[float]:
    """``computes`` (sorted) moved apart where they fall within ``2 * step`` in log10.

    Each run of nearby points is spread symmetrically about its own centre, so that
    markers and bars at the same compute stay readable side by side.
    """
    logs = [math.log10(c) for c in computes]
    out, start = [], 0
    for end in range(1, len(logs) + 1):
        if end == len(logs) or logs[end] - logs[end - 1] > 2 * step:
            n = end - start
            centre = sum(logs[start:end]) / n
            out += [10 ** (centre + (j - (n - 1) / 2) * step) for j in range(n)]
            start = end
    return out


def plot(points: list[Point], path: str) -> None:
    """Test accuracy (and with flip TTA) against compute, with 95% t error bars."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5))
    xs = dodged([p.compute for p in points])
    for k, (p, x) in enumerate(zip(points, xs, strict=True)):
        for values, marker, face in ((p.test, "o", f"C{k}"), (p.test_tta, "s", "none")):
            if values:
                i = stats.t_interval([100 * v for v in values])
                ax.errorbar(
                    x,
                    i.mean,
                    yerr=0.0 if len(values) < MIN_SEEDS_FOR_BAR else i.high - i.mean,
                    fmt=marker,
                    color=f"C{k}",
                    mfc=face,
                    capsize=3,
                    label=f"{p.label} ({len(p.test)} seed{'s' * (len(p.test) > 1)})"
                    if face != "none"
                    else None,
                )
    for compute, accuracy in GOALS:
        ax.plot(compute, 100 * accuracy, "k*", markersize=12)
    ax.set_xscale("log")
    ticks = [0.15, 0.25, 0.4, 0.63, 1.0]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(89.5, 98.5)
    ax.set_xlabel("training compute (fraction of conv5_bn's 60-epoch full run)")
    ax.set_ylabel("test accuracy, % (filled: plain; hollow squares: flip TTA)")
    ax.set_title(
        "Accuracy against training compute "
        f"(stars: goals; bars: 95% t over seeds, with {MIN_SEEDS_FOR_BAR} or more)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figures.save(fig, path)


def main(argv: list[str]) -> None:
    del argv
    reference = models.reference_training_flops()
    points = shipped_points(reference)
    for entry in _GROUPS.value:
        label, _, pattern = entry.partition("=")
        point = group_point(label, pattern, reference)
        if point is None:
            raise SystemExit(f"frontier: no finished run matches {pattern!r}")
        points.append(point)
    points.sort(key=lambda p: p.compute)
    print("| recipe | compute | seeds | test % | with flip TTA % |")
    print("|---|---:|---:|---:|---:|")
    for p in points:
        print(
            f"| {p.label} | {p.compute:.2f} | {len(p.test)} | {interval(p.test)} "
            f"| {interval(p.test_tta)} |"
        )
    os.makedirs(os.path.dirname(_OUTPUT.value) or ".", exist_ok=True)
    plot(points, _OUTPUT.value)
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
    script.run(main)
