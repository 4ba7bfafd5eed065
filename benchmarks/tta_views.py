r"""Test-time augmentation with 1, 2 and 6 views: test accuracy and evaluation cost per run.

For each finished run (a ``catdog-train`` workdir, or a shipped model by name), rebuilds its
validation and test splits from ``--data`` (its data, seed and sizes), and evaluates its
model with one view (the image), two (and its mirror: the ``tta`` of ``result.json``) and six
(:data:`catdog_tf.train.steps.SIX_VIEW_SHIFTS`: one-pixel diagonal translations too, each
mirrored). Each view count chooses its own threshold on validation and reports test there.
The plain row must reproduce the run's own test accuracy, which checks the images::

    python benchmarks/tta_views.py --data=dogs-vs-cats/train \
        --runs=conv5_wh-fast_progressive_wh,runs/fast_progressive_wh

Prints one Markdown table; evaluation FLOPs per image are the views times the model's.
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import os

from absl import flags

from catdog_tf import data, shipped
from catdog_tf.evaluate import load_run, run_splits
from catdog_tf.train import metrics
from catdog_tf.train.steps import (
    SIX_VIEW_SHIFTS,
    forward_outputs,
    inference,
    views_averaged,
)

_RUNS = flags.DEFINE_list("runs", None, "Run directories or shipped model names.", required=True)
_DATA = flags.DEFINE_string("data", None, "Where the runs' images are.", required=True)

# Name, the translations each mirrored (None: the image alone).
VIEWS = (("1 view", None), ("2 views", ((0, 0),)), ("6 views", SIX_VIEW_SHIFTS))


def run_dir(name: str) -> str:
    """A run directory as given, else the shipped model of that name."""
    return name if os.path.isdir(name) else shipped.path(name)


def evaluate_views(workdir: str, data_spec: str) -> tuple[dict, list[tuple[str, int, dict, dict]]]:
    """The run's result; (views, count, validation and test metrics) per :data:`VIEWS`."""
    config, model, result = load_run(workdir)
    splits = run_splits(config, data_spec)
    decoded = {
        name: data.decoded_dataset(splits[name], config.image_size, dct_method=config.dct_method)
        for name in ("validation", "test")
    }
    rows = []
    for name, shifts in VIEWS:
        forward = inference(model, tta=False) if shifts is None else views_averaged(model, shifts)
        predictions = {}
        for split, ds in decoded.items():
            logits, labels = forward_outputs(forward, data.eval_batches(ds, 64))
            predictions[split] = (logits.reshape(-1), labels)
        val, test = metrics.validation_and_test(predictions)
        rows.append((name, 1 if shifts is None else 2 * len(shifts), val, test))
    return result, rows


def main(argv: list[str]) -> None:
    del argv
    print("| run | views | eval MFLOPs/image | validation | test | run's own test |")
    print("|---|---|---:|---:|---:|---:|")
    for name in _RUNS.value:
        result, rows = evaluate_views(run_dir(name), _DATA.value)
        mflops = result["model"]["flops"] / 1e6
        own = result["test"]["best_accuracy"]
        for views, count, val, test in rows:
            print(
                f"| {os.path.basename(os.path.normpath(name))} | {views} | {count * mflops:.0f} "
                f"| {val['best_accuracy']:.4f} | {test['best_accuracy']:.4f} | {own:.4f} |"
            )


if __name__ == "__main__":
    script.run(main)
