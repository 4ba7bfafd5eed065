"""Stage three of a run: everything a finished run writes, from one module.

:func:`finish` exports the best model (``model.keras``, ``serving.keras``), evaluates it on
validation and test (and with flip TTA), and writes ``predictions.npz``, ``seen.npz``, the
per-image CSVs, the mistake galleries and ``result.json``; :func:`add_tta_outputs` adds
flip-TTA metrics to them after training. :func:`training_flops` is the run's compute, as the
result and the comparison table report it.
"""

from __future__ import annotations

import collections
import io
import os
import statistics
from typing import Any

import keras
import numpy as np

from catdog_tf import data, export, rundir
from catdog_tf.config import Config
from catdog_tf.data import seen
from catdog_tf.train import metrics, report
from catdog_tf.train.prepare import Prepared
from catdog_tf.train.trainee import Trainee
from catdog_tf.utils import atomic_write_bytes, atomic_write_json


def finish(
    prepared: Prepared,
    trainee: Trainee,
    description: dict[str, Any],
    history: list[dict[str, Any]],
    workdir: str,
) -> dict[str, Any]:
    """Writes every output of a run whose best weights ``trainee.model`` holds.

    Args:
      prepared: The run's config, plan and splits.
      trainee: The trained model, its steps and evaluation batches.
      description: :func:`catdog_tf.models.describe` of the model.
      history: Every epoch's entry.
      workdir: Where to write.

    Returns:
      The contents of ``result.json``.
    """
    export_models(trainee.model, prepared.config, workdir)
    result = {
        **_about(prepared, trainee, description, history),
        **_evaluations(prepared, trainee, workdir),
    }
    write_seen(prepared.splits, workdir)
    atomic_write_json(rundir.path(workdir, rundir.RESULT), result)
    return result


def write_seen(splits: dict[str, data.Examples], workdir: str) -> None:
    """Writes ``seen.npz``: which images the run trained or chose its epoch and threshold on."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **seen.record(splits["train"], splits["validation"]))
    atomic_write_bytes(rundir.path(workdir, rundir.SEEN), buffer.getvalue())


def add_tta_outputs(
    workdir: str,
    result: dict[str, Any],
    added: dict[str, Any],
    tta_logits: dict[str, np.ndarray],
    spec: str,
) -> None:
    """Adds flip-TTA metrics chosen after training to a finished run's outputs.

    Args:
      workdir: The finished run.
      result: Its ``result.json`` as it was.
      added: ``validation_tta`` and ``test_tta`` metrics.
      tta_logits: Flip-averaged logits per split, added to ``predictions.npz``.
      spec: The ``--data`` the splits were rebuilt from.
    """
    npz = rundir.path(workdir, rundir.PREDICTIONS)
    if os.path.exists(npz):
        with np.load(npz) as saved:
            arrays = dict(saved)
        arrays.update({f"{name}_tta_logits": logits for name, logits in tta_logits.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(npz, buffer.getvalue())
    atomic_write_json(
        rundir.path(workdir, rundir.RESULT),
        {**result, **added, "tta_added_after_training": {"data": spec}},
    )


def export_models(model: keras.Model, config: Config, workdir: str) -> None:
    """Writes ``model.keras`` and its serving form ``serving.keras``, each atomically."""
    for name, exported in (
        (rundir.MODEL, model),
        (rundir.SERVING, export.serving_model(model, config)),
    ):
        tmp = os.path.join(workdir, f".tmp.{name}")  # Keras wants the .keras suffix.
        exported.save(tmp)
        os.replace(tmp, rundir.path(workdir, name))


def _evaluations(prepared: Prepared, trainee: Trainee, workdir: str) -> dict[str, Any]:
    """Validation and test metrics (plain and flip TTA); writes the per-image outputs.

    Flip TTA is reported beside, never instead of, the plain numbers; its threshold is
    chosen on the flip-averaged validation logits.
    """
    config, splits, steps = prepared.config, prepared.splits, trainee.steps
    predictions = {name: steps.predict(ds) for name, ds in trainee.eval_ds.items()}
    val, test = metrics.validation_and_test(predictions)
    tta = (
        {name: steps.predict(ds, tta=True) for name, ds in trainee.eval_ds.items()}
        if config.tta
        else {}
    )
    val_tta, test_tta = metrics.validation_and_test(tta) if tta else (None, None)
    # Logits, labels and paths of the best model, for sweep plots and later analysis.
    arrays = {}
    for name, (logits, labels) in predictions.items():
        arrays.update({f"{name}_logits": logits, f"{name}_labels": labels})
        if name in tta:
            arrays[f"{name}_tta_logits"] = tta[name][0]
        arrays[f"{name}_paths"] = np.array(report.item_names(splits[name]), dtype=str)
        report.write_split_outputs(
            *rundir.split_outputs(workdir, name),
            splits[name],
            logits,
            val["best_threshold"],
            title=f"{config.model} {name}",
        )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(rundir.path(workdir, rundir.PREDICTIONS), buffer.getvalue())
    return {"validation": val, "test": test, "validation_tta": val_tta, "test_tta": test_tta}


def _about(
    prepared: Prepared,
    trainee: Trainee,
    description: dict[str, Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """The run's config, plan, model, data and timings: the first part of ``result.json``."""
    skipped = prepared.skipped
    return {
        "config": prepared.config.to_dict(),
        "plan": prepared.plan.to_dict(),
        "model": description,
        "bottleneck_features": trainee.features_info,
        "replicas": trainee.steps.strategy.num_replicas_in_sync,
        "data": {
            name: {"n": len(ex), **ex.counts(), "origin": ex.origin, "synthetic": ex.synthetic}
            for name, ex in prepared.splits.items()
        },
        "skipped_files": {
            "count": len(skipped),
            "reasons": dict(collections.Counter(reason for _, reason in skipped)),
            "paths": [p for p, _ in skipped],
        },
        "epochs_run": len(history),
        "best_epoch": int(np.argmin([h["val_loss"] for h in history])) + 1 if history else 0,
        "seconds_per_epoch": _steady(history, "seconds"),
        "train_images_per_second": _steady(history, "images_per_second"),
        "total_train_seconds": sum(h["seconds"] for h in history),
        **_compute(prepared, description, history),
    }


def _compute(
    prepared: Prepared, description: dict[str, Any], history: list[dict[str, Any]]
) -> dict[str, Any]:
    """``training_flops``, the teacher's training included; with a teacher, its record."""
    flops = training_flops(description, history)
    teacher = prepared.teacher
    if teacher is None:
        return {"training_flops": flops}
    return {
        "training_flops": None if flops is None else flops + teacher.training_flops,
        "teacher": {"run_dir": teacher.run_dir, "training_flops": teacher.training_flops},
    }


def _steady(history: list[dict[str, Any]], key: str) -> float | None:
    """Median of ``key`` over the full-size epochs after the first.

    The first epoch also decodes the images and traces the steps; the shrunk epochs of
    progressive resizing are cheaper, not steady.
    """
    full = [h for h in history if "image_size" not in h]
    values = [h[key] for h in full if h is not history[0]] or [h[key] for h in full]
    return statistics.median(values) if values else None


def epoch_images(record: dict[str, Any]) -> int | None:
    """Images one epoch of ``history.json`` trained on; None if the record cannot say.

    Runs written before the count was recorded still hold ``images_per_second`` and
    ``seconds``, which the same loop computed as images / seconds: their product gives the
    count back (rounded, to undo the float division), so old runs keep their compute.
    """
    if "images" in record:
        return int(record["images"])
    if record.get("images_per_second") and record.get("seconds"):
        return round(record["images_per_second"] * record["seconds"])
    return None


def training_flops(description: dict[str, Any], history: list[dict[str, Any]]) -> float | None:
    """Training compute of a run: images trained on x 3 x forward FLOPs per image.

    A training step costs about three forward passes (the forward, and a backward pass of
    twice its cost), the usual estimate (Kaplan et al. 2020). Machine-independent, so runs on
    different CPUs compare. An epoch at another image size (progressive resizing) records its
    own ``flops_per_image``; sharpness-aware minimization's epochs train each image twice
    (``train_passes``); with a teacher, each epoch adds one forward pass of the teacher per
    image (``teacher_flops_per_image``); an optimizer whose step computes (Muon's
    Newton-Schulz iterations) adds its FLOPs per step over the batch's images
    (``update_flops_per_image``). The teacher's own training is not in here
    (:func:`finish` adds it). None when the FLOPs are unknown, the history is empty, or an
    epoch's image count cannot be recovered (:func:`epoch_images`).
    """
    flops = description.get("flops")
    images = [epoch_images(h) for h in history]
    per_image = [h.get("flops_per_image", flops) for h in history]
    taught = [h.get("teacher_flops_per_image", 0) for h in history]
    if not flops or not images or None in images or None in per_image or None in taught:
        return None
    passes = [h.get("train_passes", 1) for h in history]
    extra = [t + h.get("update_flops_per_image", 0) for t, h in zip(taught, history, strict=True)]
    return sum(
        (3.0 * p * f + e) * n for p, f, e, n in zip(passes, per_image, extra, images, strict=True)
    )
