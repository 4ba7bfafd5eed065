"""The architecture comparison: train a grid of models x losses, write the table and plots.

Each (model, loss) is an independent run directory under the comparison's workdir, trained by
:func:`catdog_tf.train.train_and_evaluate`: finished runs are skipped, interrupted ones resume.
Output: ``table.md``, ``table.csv``, ``results.json`` and ``plots/`` (learning curves and the
threshold sweep of every run).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from catdog_tf import data, figures, models, rundir, summary
from catdog_tf import plan as plan_lib
from catdog_tf.config import Config
from catdog_tf.errors import CatdogError, ConfigError
from catdog_tf.summary import format_markdown
from catdog_tf.train import measure_train_speeds, metrics, teacher, train_and_evaluate
from catdog_tf.utils import atomic_write_json, atomic_write_text, read_json


def run_name(model: str, loss: str, seed: int | None = None) -> str:
    """Directory name of one run of the comparison (``-seedN`` when seeds are listed)."""
    return f"{model}-{loss}" + ("" if seed is None else f"-seed{seed}")


def plot_run(result_dir: str, plots_dir: str, name: str) -> list[str]:
    """Learning curves and the threshold-sweep curve of one run, as PNGs; returns paths."""
    plt = figures.pyplot()

    os.makedirs(plots_dir, exist_ok=True)
    history = read_json(rundir.path(result_dir, rundir.HISTORY))
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{name}: loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [h["val_accuracy_at_0.5"] for h in history], "o-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy at 0.5", title=f"{name}: accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    curves = figures.save(fig, os.path.join(plots_dir, f"{name}-curves.png"))

    predictions = np.load(rundir.path(result_dir, rundir.PREDICTIONS))
    fig, ax = plt.subplots(figsize=(5, 4))
    for split in ("validation", "test"):
        if f"{split}_logits" in predictions:
            probs = metrics.probabilities(predictions[f"{split}_logits"])
            sweep = metrics.threshold_sweep(probs, predictions[f"{split}_labels"])
            ax.plot(list(sweep), list(sweep.values()), label=split)
    ax.set(xlabel="threshold (dog if p > t)", ylabel="accuracy", title=f"{name}: sweep")
    ax.legend()
    ax.grid(alpha=0.3)
    sweep_path = figures.save(fig, os.path.join(plots_dir, f"{name}-sweep.png"))
    return [curves, sweep_path]


def compare(
    make_config: Callable[[str, str], Config],
    model_names: Sequence[str],
    losses: Sequence[str],
    workdir: str,
    *,
    seeds: Sequence[int] | None = None,
    rerun: bool = False,
    verbose: bool = True,
    progress_bar: bool | None = None,
) -> list[dict[str, Any]]:
    """Trains every (model, loss[, seed]) and writes the comparison table.

    Args:
      make_config: ``(model, loss) -> Config`` for one run (a preset plus overrides).
      model_names: Models, in table order.
      losses: Losses, e.g. ``["mse", "cross_entropy"]``.
      workdir: Comparison directory; each run gets ``workdir/<model>-<loss>[-seed<N>]/``.
      seeds: Seeds to run each row with (a seed changes the split, shuffles, augmentation
        and init); None runs the config's own seed once.
      rerun: Train runs again even if they finished (their directories are replaced).
      verbose: Per-epoch lines.
      progress_bar: Progress bars too (None: when stdout is a terminal).

    Returns:
      The ``result.json`` of every run (with its ``run_dir``), in table order.
    """
    _check_request(model_names, losses, seeds, workdir)
    # Every config is built and checked before the first run trains: a bad name in
    # --models fails now, not after the runs before it.
    planned = [
        (model_name, loss, seed, _seeded(make_config(model_name, loss), seed).validate())
        for model_name in model_names
        for loss in losses
        for seed in seeds or [None]
    ]
    rundir.make_folder(workdir)
    results = []
    for model_name, loss, seed, config in planned:
        config = _link_start(config, workdir, seed)
        name = run_name(model_name, loss, seed)
        run_dir = os.path.join(workdir, name)
        if not rerun and finished_under(run_dir, config):
            if verbose:
                print(f"{name}: finished, skipped (use --rerun)")
            result = rundir.read_result(run_dir)
        else:
            if verbose:
                print(f"=== {name} ===")
            result = train_and_evaluate(
                config, run_dir, overwrite=rerun, verbose=verbose, progress_bar=progress_bar
            )
            plot_run(run_dir, rundir.path(workdir, rundir.PLOTS), name)
        results.append({**result, "run_dir": name})
        write_outputs(results, workdir)  # After every run: a partial table survives.
    return write_outputs(results, workdir)


def _check_request(
    model_names: Sequence[str], losses: Sequence[str], seeds: Sequence[int] | None, workdir: str
) -> None:
    """Refuses empty or repeated lists, and a ``workdir`` that is a single run's folder."""
    for kind, names in (("model", model_names), ("loss", losses), ("seed", seeds or [0])):
        repeated = sorted({str(n) for n in names if list(names).count(n) > 1})
        if repeated:
            raise ConfigError(f"{kind} listed twice: {', '.join(repeated)}; list each once")
        if not names:
            raise ConfigError(f"no {kind} to compare")
    rundir.check_run_folder(workdir)
    if os.path.exists(rundir.path(workdir, rundir.CONFIG)):
        raise ConfigError(
            f"--workdir={workdir} holds a catdog-train run ({rundir.CONFIG}); a comparison "
            "writes each of its runs into a subfolder: give it a folder of its own"
        )


def _seeded(config: Config, seed: int | None) -> Config:
    return config if seed is None else config.replace(seed=seed)


def finished_under(run_dir: str, config: Config) -> bool:
    """Whether ``run_dir`` finished with ``config`` and the plan ``config`` resolves to now.

    A finished run that fails this is handed to ``train_and_evaluate``, which refuses it with
    the differences named (or, with ``--rerun``, trains it again): a changed default never
    silently stands in a table.
    """
    if not rundir.is_finished(run_dir):
        return False
    try:
        if rundir.read_result(run_dir)["config"]["epochs"] != config.epochs:
            return False  # To be trained longer (or was trained for more epochs).
        old, saved = rundir.read_config(run_dir)
        if saved is None or rundir.config_differences(old, config):
            return False
        fingerprint = data.source_fingerprint(config.data, config.seed, config.synthetic_size)
        plan = plan_lib.resolve(
            config,
            saved["train_images"],
            measure=measure_train_speeds,
            data_fingerprint=fingerprint,
            teacher_fingerprint=teacher.fingerprint(config.teacher) if config.teacher else "",
        )
    except (OSError, KeyError, TypeError, ValueError, CatdogError):
        return False  # train_and_evaluate reports what is wrong.
    return not plan.differences(saved)


def _link_start(config: Config, workdir: str, seed: int | None = None) -> Config:
    """A fine-tuning run starts from its bottleneck run of the same comparison, loss, seed."""
    start = models.get_spec(config.model).starts_from
    if not start or config.init_from:
        return config
    source = os.path.join(workdir, run_name(start, config.loss, seed))
    if not os.path.exists(rundir.path(source, rundir.MODEL)):
        raise ConfigError(
            f"{config.model} starts from a finished {start} run ({source}); list {start} "
            f"before {config.model} in --models, or set init_from to a finished run"
        )
    return config.replace(init_from=source)


def write_outputs(results: list[dict[str, Any]], workdir: str) -> list[dict[str, Any]]:
    """Writes the table (``table.md``, ``table.csv``), ``results.json`` and summary plots.

    The table has one row per (model, loss): the mean of each run's numbers over its seeds,
    95% intervals and the paired tests of :func:`catdog_tf.summary.summarize`.
    ``results.json`` keeps every run's own numbers, so the table can be recomputed.
    """
    rows = summary.summarize(results, workdir)
    header, formatted, raw = summary.table(rows)
    atomic_write_text(rundir.path(workdir, rundir.TABLE_MD), format_markdown(header, formatted))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    # The CSV holds the numbers themselves (pandas reads them as numbers); the markdown
    # table is the formatted view.
    writer.writerows(raw)
    atomic_write_text(rundir.path(workdir, rundir.TABLE_CSV), buffer.getvalue())
    atomic_write_json(rundir.path(workdir, rundir.COMPARISON_RESULTS), results)
    summary.plot(rows, rundir.path(workdir, rundir.PLOTS))
    return results
