r"""Ensembles of finished runs: test accuracy against their summed training compute.

An ensemble's logit is the mean of its members' logits. The members must hold out the same
validation and test images (runs with the same seed split the data alike, whatever their
recipe). Each combination of the ``--runs`` is one row: its compute (the members'
``training_flops`` summed, a distilled member's teacher counted once, a fraction of
:func:`catdog_tf.models.reference_training_flops`), its validation accuracy at 0.5, and its
test accuracy at the threshold its own validation logits choose, without and with flip TTA
(where every member has TTA logits). With ``--seeds``, each run is a pattern whose
``{seed}`` names one run per seed; a row is then the mean over the seeds (± the 95% t
interval's half-width). Choose a row on validation, never on test::

    python benchmarks/ensembles.py --seeds=0,1,2 \
        --runs='runs/ablation/wh_pool_first_ls02-seed{seed},runs/ablation/wh_best_60-seed{seed}'
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

from catdog_tf import models, rundir, stats
from catdog_tf.train import metrics

_RUNS = flags.DEFINE_list(
    "runs", [], "Finished run directories, the candidate members; with --seeds, patterns."
)
_SEEDS = flags.DEFINE_list(
    "seeds", [], "Seeds whose runs each pattern's {seed} names: one ensemble per seed."
)
_MAX_MEMBERS = flags.DEFINE_integer(
    "max_members", 0, "Largest ensemble in the table; 0 for all the runs.", lower_bound=0
)

SPLITS = ("validation", "test")


class Member(NamedTuple):
    """A finished run's saved logits, labels and image paths, and its training FLOPs.

    ``training_flops`` is all of the run's compute, a distilled run's teacher's included;
    ``teacher`` is then that teacher's (real path, ``training_flops``).
    """

    name: str
    training_flops: float
    saved: dict[str, np.ndarray]
    path: str = ""
    teacher: tuple[str, float] | None = None


def compute(members: tuple[Member, ...]) -> float:
    """The members' training FLOPs, each teacher counted once, member or not."""
    paths = {m.path for m in members}
    teachers = {m.teacher for m in members if m.teacher}
    own = sum(m.training_flops - (m.teacher[1] if m.teacher else 0.0) for m in members)
    return own + sum(flops for path, flops in teachers if path not in paths)


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
    result = rundir.read_result(run)
    if not result.get("training_flops"):
        raise SystemExit(f"ensembles: {run}'s result.json does not count its training_flops")
    teacher = result.get("teacher")
    return Member(
        os.path.basename(os.path.normpath(run)),
        result["training_flops"],
        arrays,
        os.path.realpath(run),
        (os.path.realpath(teacher["run_dir"]), teacher["training_flops"]) if teacher else None,
    )


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
    # The mean logit of each split, scored as a run's are: the threshold chosen on validation.
    validation, test = metrics.validation_and_test(
        {
            s: (
                np.mean([m.saved[s + suffix] for m in members], axis=0),
                members[0].saved[f"{s}_labels"],
            )
            for s in SPLITS
        }
    )
    return validation["accuracy_at_0.5"], test["best_accuracy"]


def interval(values: list[float]) -> str:
    """``mean ± half-width`` in percent over the seeds, or the one value."""
    i = stats.t_interval([100 * v for v in values])
    return f"{i.mean:.2f}" if len(values) < 2 else f"{i.mean:.2f} ± {i.high - i.mean:.2f}"


def row(
    per_seed: list[tuple[Member, ...]], names: list[str], reference: float
) -> tuple[float, str]:
    """(compute, the table's line) of one ensemble, ``per_seed`` its members on each seed."""
    flops = np.mean([compute(members) for members in per_seed])
    plain = [accuracies(members, tta=False) for members in per_seed]
    flipped = [accuracies(members, tta=True) for members in per_seed]
    tta = "-" if None in flipped else interval([f[1] for f in flipped])
    line = (
        f"| {' + '.join(names)} | {len(names)} | {flops / reference:.2f} "
        f"| {interval([p[0] for p in plain])} | {interval([p[1] for p in plain])} | {tta} |"
    )
    return flops, line


def members_per_seed(patterns: list[str], seeds: list[str]) -> list[list[Member]]:
    """The runs of every seed (one list per seed, in ``patterns``' order), split alike.

    Raises:
      SystemExit: one line, for a pattern without ``{seed}`` when seeds are given, or as
        :func:`load` and :func:`check_same_split` do.
    """
    if not seeds:
        runs = [patterns]
    elif all("{seed}" in p for p in patterns):
        runs = [[p.replace("{seed}", seed) for p in patterns] for seed in seeds]
    else:
        raise SystemExit("ensembles: with --seeds, every --runs entry names its {seed}")
    per_seed = [[load(run) for run in seed_runs] for seed_runs in runs]
    for members in per_seed:
        check_same_split(members)
    return per_seed


def main(argv: list[str]) -> None:
    del argv
    if not _RUNS.value:
        raise SystemExit("ensembles: give --runs, the finished run directories to combine")
    per_seed = members_per_seed(_RUNS.value, _SEEDS.value)
    names = [os.path.basename(os.path.normpath(p)).replace("{seed}", "N") for p in _RUNS.value]
    largest = _MAX_MEMBERS.value or len(names)
    reference = models.reference_training_flops()
    rows = [
        row(
            [tuple(members[i] for i in chosen) for members in per_seed],
            [names[i] for i in chosen],
            reference,
        )
        for size in range(1, largest + 1)
        for chosen in itertools.combinations(range(len(names)), size)
    ]
    seeds = f" (means over seeds {', '.join(_SEEDS.value)})" if _SEEDS.value else ""
    print(f"| members{seeds} | n | compute | val acc@0.5 | test acc@thr | with flip TTA |")
    print("|---|---:|---:|---:|---:|---:|")
    for _, line in sorted(rows, key=lambda r: r[0]):
        print(line)


if __name__ == "__main__":
    script.run(main)
