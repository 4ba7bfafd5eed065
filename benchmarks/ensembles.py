r"""Ensembles of finished runs: test accuracy against their summed training compute.

An ensemble's logit is the mean of its members' logits. The members must hold out the same
validation and test images (runs with the same seed split the data alike, whatever their
recipe). Each combination of the ``--runs`` is one row: its compute (the members'
``training_flops`` summed, a fraction of
:func:`catdog_tf.models.reference_training_flops`), its validation accuracy at 0.5, and its
test accuracy at the threshold its own validation logits choose, without and with flip TTA
(where every member has TTA logits). Choose a row on validation, never on test::

    python benchmarks/ensembles.py \
        --runs=runs/conv5_bn-full_progressive-seed2,runs/ablation/wh_pool_first_ls02-seed2
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import itertools
import os
from typing import NamedTuple

import numpy as np
from absl import flags

from catdog_tf import models, rundir
from catdog_tf.train import metrics
from catdog_tf.utils import read_json

_RUNS = flags.DEFINE_list("runs", [], "Finished run directories, the candidate members.")
_MAX_MEMBERS = flags.DEFINE_integer(
    "max_members", 0, "Largest ensemble in the table; 0 for all the runs.", lower_bound=0
)

SPLITS = ("validation", "test")


class Member(NamedTuple):
    """A finished run's saved logits, labels and image paths, and its training FLOPs."""

    name: str
    training_flops: float
    saved: dict[str, np.ndarray]


def load(run: str) -> Member:
    """The run's :data:`~catdog_tf.rundir.PREDICTIONS` and ``training_flops``.

    Raises:
      SystemExit: one line, when ``run`` is not a finished run with saved predictions.
    """
    predictions = rundir.path(run, rundir.PREDICTIONS)
    if not rundir.is_finished(run) or not os.path.exists(predictions):
        raise SystemExit(f"ensembles: {run} is not a finished run with {rundir.PREDICTIONS}")
    with np.load(predictions) as saved:
        arrays = dict(saved)
    result = read_json(rundir.path(run, rundir.RESULT))
    return Member(os.path.basename(os.path.normpath(run)), result["training_flops"], arrays)


def check_same_split(members: list[Member]) -> None:
    """Every member holds out the first's images, in its order, with its labels.

    Raises:
      SystemExit: one line naming the first member that does not.
    """
    first = members[0]
    for member in members[1:]:
        for split in SPLITS:
            for key in (f"{split}_paths", f"{split}_labels"):
                if not np.array_equal(member.saved[key], first.saved[key]):
                    raise SystemExit(
                        f"ensembles: {member.name} does not hold out the {split} images of "
                        f"{first.name} (give runs of the same seed and data)"
                    )


def accuracies(members: tuple[Member, ...], tta: bool) -> tuple[float, float] | None:
    """(validation accuracy at 0.5, test accuracy at the validation's threshold).

    None when ``tta`` and a member has no TTA logits.
    """
    suffix = "_tta_logits" if tta else "_logits"
    if any(f"test{suffix}" not in m.saved for m in members):
        return None
    mean = {s: np.mean([m.saved[s + suffix] for m in members], axis=0) for s in SPLITS}
    labels = {s: members[0].saved[f"{s}_labels"] for s in SPLITS}
    validation = metrics.probabilities(mean["validation"])
    threshold, _ = metrics.best_threshold(validation, labels["validation"])
    test = metrics.probabilities(mean["test"])
    return (
        metrics.accuracy_at(validation, labels["validation"], 0.5),
        metrics.accuracy_at(test, labels["test"], threshold),
    )


def row(members: tuple[Member, ...], reference: float) -> tuple[float, str]:
    """(compute, the table's line) of one ensemble."""
    compute = sum(m.training_flops for m in members) / reference
    plain = accuracies(members, tta=False)
    flipped = accuracies(members, tta=True)
    tta = f"{100 * flipped[1]:.2f}" if flipped else "-"
    line = (
        f"| {' + '.join(m.name for m in members)} | {len(members)} | {compute:.2f} "
        f"| {100 * plain[0]:.2f} | {100 * plain[1]:.2f} | {tta} |"
    )
    return compute, line


def main(argv: list[str]) -> None:
    del argv
    if not _RUNS.value:
        raise SystemExit("ensembles: give --runs, the finished run directories to combine")
    members = [load(run) for run in _RUNS.value]
    check_same_split(members)
    largest = _MAX_MEMBERS.value or len(members)
    reference = models.reference_training_flops()
    rows = [
        row(combination, reference)
        for size in range(1, largest + 1)
        for combination in itertools.combinations(members, size)
    ]
    print("| members | n | compute | val acc@0.5 | test acc@thr | test acc@thr, flip TTA |")
    print("|---|---:|---:|---:|---:|---:|")
    for _, line in sorted(rows, key=lambda r: r[0]):
        print(line)


if __name__ == "__main__":
    script.run(main)
