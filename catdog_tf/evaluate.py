"""Using a finished run: evaluate it on another folder, add flip-TTA metrics, or predict images."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from catdog_tf import data, rundir, shipped
from catdog_tf.build import compute_precision, in_precision, load_model_file
from catdog_tf.config import Config
from catdog_tf.data import seen
from catdog_tf.errors import ConfigError, OutputPathError, RunFilesError, first_line
from catdog_tf.train import finish, metrics
from catdog_tf.train import report as report_lib
from catdog_tf.train.steps import inference, model_outputs
from catdog_tf.utils import atomic_write_json, atomic_write_text, read_json


def check_run(workdir: str) -> Config:
    """The config of finished run ``workdir``, once its files are found.

    A shipped model's files must also match its checksums (:func:`catdog_tf.shipped.verify`).

    Raises:
      FileNotFoundError: ``workdir`` has no finished run (no ``model.keras``/``result.json``).
      RunFilesError: A shipped model's file is not the one shipped.
    """
    if rundir.is_shipped(workdir):
        shipped.verify(workdir)
    for name in (rundir.CONFIG, rundir.MODEL, rundir.RESULT):
        if not os.path.exists(rundir.path(workdir, name)):
            raise FileNotFoundError(
                f"{workdir} has no {name}: is it a finished catdog-train run directory?"
            )
    return rundir.read_config(workdir)[0]


def load_run(workdir: str, float32: bool = False) -> tuple[Config, keras.Model, dict[str, Any]]:
    """(config, best model, result) of a finished run.

    Args:
      workdir: A finished run directory.
      float32: Compute in float32 even if the run trained in mixed precision, as its
        exports (``serving.keras`` and every ``catdog-export`` format) do. By default the
        model computes in its training precision, the one its ``result.json`` measured.

    Raises:
      FileNotFoundError: ``workdir`` has no finished run (no ``model.keras``/``result.json``).
      RunFilesError: A file is damaged, or a shipped model's file is not the one shipped.
    """
    config = check_run(workdir)
    model_path = rundir.path(workdir, rundir.MODEL)
    model = load_model_file(model_path, workdir)
    if tuple(model.input_shape[1:3]) != tuple(config.image_size):
        raise RunFilesError(
            f"{model_path} takes {tuple(model.input_shape[1:3])} images but "
            f"{rundir.path(workdir, rundir.CONFIG)} says {config.image_size}: the two files "
            "are not of the same run"
        )
    if float32 and compute_precision(model) != "float32":
        model = in_precision(model, config, "float32")
    return config, model, rundir.read_result(workdir)


def _logits(
    model: keras.Model, dataset: tf.data.Dataset, tta: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = model_outputs(model, dataset, tta=tta)
    return logits.reshape(-1), labels


def evaluate_workdir(
    workdir: str,
    data_spec: str,
    batch_size: int = 64,
    output: str | None = None,
    tta: bool = False,
    float32: bool = False,
) -> dict[str, Any]:
    """Evaluates a run's best model on all of ``data_spec``, as a test split.

    The threshold is the one the run chose on its validation split, applied unchanged; with
    ``tta``, the one it chose on its flip-averaged validation logits.

    Args:
      workdir: A finished run directory.
      data_spec: Folder, ``tfds:cats_vs_dogs`` or ``synthetic``; every usable image is used.
      batch_size: Evaluation batch size.
      output: Where to write the metrics JSON (default ``eval-<folder name>-<hash>.json``
        in :func:`catdog_tf.rundir.outputs_folder`, ``...-tta.json`` with ``tta``);
        ``<output>-predictions.csv`` (one row per image) and ``<output>-mistakes.png`` (the
        most confident mistakes) are written beside it. Checked by
        :func:`catdog_tf.rundir.check_output`.
      tta: Flip test-time augmentation (:func:`catdog_tf.train.steps.flip_averaged`); the
        run must have TTA metrics: trained with ``tta=true``, or given them by :func:`add_tta`.
      float32: Compute in float32 as the run's exports do (:func:`load_run`); the default
        report name ends in ``-float32``.

    Returns:
      The metrics of :func:`catdog_tf.train.metrics.evaluate_predictions`, plus ``data``,
      ``skipped_files``, ``left_out_seen`` (images of ``data_spec`` the run trained or chose
      on, left out: :mod:`catdog_tf.data.seen`), ``threshold_from``, ``tta`` and
      ``precision`` (the Keras policy the model computed in).

    Raises:
      ConfigError: ``tta`` for a run trained without it; every image was seen by the run.
    """
    config, model, result = load_run(workdir, float32)
    threshold = _validation_threshold(workdir, result, tta)
    # Checked before the work: a refused --output costs no evaluation.
    report_file, predictions_file, mistakes_file = _report_files(
        workdir, data_spec, output, tta, float32
    )
    examples, seen_part, skipped = images_unseen_and_seen(workdir, config, data_spec)
    left_out = len(seen_part)
    dataset = data.eval_batches(_decoded(examples, config), batch_size)
    logits, labels = _logits(model, dataset, tta)
    report = metrics.evaluate_predictions(logits, labels, threshold=threshold)
    report.update(
        {
            "data": data_spec,
            "tta": tta,
            "precision": compute_precision(model),
            "threshold_from": "validation split of the run" + (", flip-averaged" if tta else ""),
            "skipped_files": len(skipped),
            "left_out_seen": left_out,
            **examples.counts(),
        }
    )
    title = f"{config.model} on {data_spec}"
    report_lib.write_split_outputs(
        predictions_file, mistakes_file, examples, logits, threshold, title
    )
    atomic_write_json(report_file, report)
    return report


def images_unseen_and_seen(
    workdir: str, config: Config, data_spec: str
) -> tuple[data.Examples, data.Examples, list[Any]]:
    """Every usable image of ``data_spec``, parted by whether run ``workdir`` saw it.

    Returns:
      The images it never trained or chose on (a test set for it), those it did
      (:mod:`catdog_tf.data.seen`), and the files skipped as unusable.

    Raises:
      ConfigError: Every image was seen: nothing is left to test the run on.
      RunFilesError: The run's ``seen.npz`` cannot be read.
    """
    loaded, skipped = data.load_usable(data_spec, config.seed, config.synthetic_size)
    examples = _all_of(list(loaded.values()))
    if not examples.synthetic:
        _warn_if_synthetic(workdir, config)
    mask = _seen_mask(workdir, examples, data_spec)
    left_out = int(mask.sum())
    if left_out == len(examples):
        raise ConfigError(
            f"all {left_out:,} images of {data_spec} were trained or chosen on by {workdir}: "
            "nothing is left to test it on; evaluate it on images it has not seen"
        )
    if left_out:
        logging.warning(
            "%s of the %s images of %s were trained or chosen on by this run: left out, the "
            "report covers the other %s",
            f"{left_out:,}",
            f"{len(examples):,}",
            data_spec,
            f"{len(examples) - left_out:,}",
        )
    return examples.subset(np.flatnonzero(~mask)), examples.subset(np.flatnonzero(mask)), skipped


def _seen_mask(workdir: str, examples: data.Examples, data_spec: str) -> np.ndarray:
    """Which of ``examples`` the run trained or chose on (none, with a warning, unrecorded)."""
    record_path = rundir.path(workdir, rundir.SEEN)
    if not os.path.exists(record_path):
        logging.warning(
            "%s does not record which images it trained on (no %s): if %s holds any of them, "
            "this report counts them as test images",
            workdir,
            rundir.SEEN,
            data_spec,
        )
        return np.zeros(len(examples), bool)
    try:
        with np.load(record_path) as saved:
            return seen.seen_mask(examples, dict(saved))
    except (OSError, ValueError, KeyError) as e:
        raise RunFilesError(f"{record_path} cannot be read ({first_line(e)})") from e


def _warn_if_synthetic(workdir: str, config: Config) -> None:
    if config.data == "synthetic":
        logging.warning(
            "%s was trained on synthetic shapes, not photographs: what it says of photographs "
            "means nothing about cats and dogs",
            workdir,
        )


def _validation_threshold(workdir: str, result: dict[str, Any], tta: bool) -> float:
    """The threshold the run chose on validation (flip-averaged with ``tta``)."""
    validation = result.get("validation_tta") if tta else result["validation"]
    if validation is None:
        raise ConfigError(
            f"{workdir} was trained without tta, so it has no threshold chosen on "
            "flip-averaged validation logits; add one with catdog-eval --add_tta, or "
            "evaluate without --tta"
        )
    return validation["best_threshold"]


def _report_files(
    workdir: str, data_spec: str, output: str | None, tta: bool, float32: bool
) -> tuple[str, str, str]:
    """(report JSON, predictions CSV, mistakes PNG) of an evaluation, each checked.

    The CSV and PNG sit beside the report as ``<report>-predictions.csv`` and
    ``<report>-mistakes.png``. They replace only an earlier report's own (the report is
    there too); an existing report is replaced with a warning that names it.

    Raises:
      OutputPathError: A file would land on a run's own files, a shipped model or the
        package, or a CSV/PNG of that name exists without its report.
    """
    report = _default_output(workdir, data_spec, tta, float32) if output is None else output
    report = rundir.check_output(report, "--output")
    base = report.removesuffix(".json")
    sidecars = (f"{base}-predictions.csv", f"{base}-mistakes.png")
    for sidecar in sidecars:
        rundir.check_output(sidecar, "--output")
        if os.path.lexists(sidecar) and not os.path.exists(report):
            raise OutputPathError(
                f"{sidecar} exists but the report it would belong to ({report}) does not: "
                "it is not an earlier evaluation's; give another --output"
            )
    _replace_only_own(report, "--output", "a catdog-eval report", _is_report)
    if os.path.exists(report):
        logging.warning("replacing the earlier report %s and its CSV and PNG", report)
    return report, *sidecars


def _replace_only_own(path: str, flag: str, what: str, is_own: Callable[[str], bool]) -> None:
    """Refuses to write over an existing file that is not an earlier output of this kind."""
    if os.path.lexists(path) and not is_own(path):
        raise OutputPathError(
            f"{flag}={path} exists and is not {what}: it is never written over; give "
            "another name, or delete it yourself"
        )


def _is_report(path: str) -> bool:
    try:
        report = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"n", "best_threshold"} <= report.keys()


def _is_submission(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip() == _SUBMISSION_HEADER
    except (OSError, ValueError):
        return False


# File names a file system takes (255 bytes) with room for the suffixes added to them.
_NAME_BYTES = 120


def _default_output(workdir: str, data_spec: str, tta: bool, float32: bool) -> str:
    """``eval-<folder name>-<hash of its path>[-tta][-float32].json`` in the outputs folder.

    The hash keeps two folders of the same name (``a/test``, ``b/test``) apart; a long name
    is cut to fit the file system's limit.
    """
    name = os.path.basename(os.path.normpath(data_spec)).replace(":", "_") or "data"
    name = os.fsencode(name)[:_NAME_BYTES].decode("utf-8", "ignore")
    where = hashlib.blake2b(os.fsencode(os.path.abspath(data_spec)), digest_size=4).hexdigest()
    folder = rundir.outputs_folder(workdir)
    suffix = ("-tta" if tta else "") + ("-float32" if float32 else "")
    return os.path.join(folder, f"eval-{name}-{where}{suffix}.json")


def _all_of(parts: list[data.Examples]) -> data.Examples:
    """The examples of every part of a loaded spec (``all``, or its own splits) as one."""
    return data.Examples(
        items=np.concatenate([e.items for e in parts]),
        labels=np.concatenate([e.labels for e in parts]),
        origin=parts[0].origin,
        encoded=parts[0].encoded,
        synthetic=parts[0].synthetic,
        # The scan read every header already; without these the pipeline would read them again.
        orientations=np.concatenate([e.orientations for e in parts])
        if all(e.orientations is not None for e in parts)
        else None,
    )


# How closely the recomputed plain validation metrics must match the run's own: float noise
# of another CPU's kernels stays orders below it; another split of the same folder does not.
_REPRODUCE_RTOL = 1e-3


def run_splits(config: Config, data_spec: str) -> dict[str, data.Examples]:
    """The splits a run made, rebuilt from its config (seed, sizes) and ``data_spec``."""
    return data.prepare_splits(
        data_spec,
        (config.train_size, config.val_size, config.test_size),
        config.seed,
        config.synthetic_size,
        config.skip_bad_files,
    ).splits


def add_tta(workdir: str, data_spec: str | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Adds flip-TTA metrics to a run trained without them, as training with ``tta`` would.

    Rebuilds the run's validation and test splits (its data, seed and sizes), chooses the TTA
    threshold on the flip-averaged validation logits and reports test at it, then writes
    ``validation_tta``/``test_tta`` into ``result.json`` (and the logits into
    ``predictions.npz`` when the run has one). The plain validation metrics are recomputed
    first and must reproduce the run's own: this is what proves the images are the ones the
    run was split from, and the model the one that was evaluated.

    Args:
      workdir: A finished run directory trained with ``tta=false``.
      data_spec: Where the run's images are now (default: the ``data`` it was trained on);
        the same images under another path are fine.
      batch_size: Evaluation batch size.

    Returns:
      ``{"validation_tta": ..., "test_tta": ...}`` (``test_tta`` None without a test split).

    Raises:
      ConfigError: The run already has TTA metrics, or is a shipped model (read-only).
      DataSourceError: The images do not reproduce the run's validation metrics.
    """
    config, model, result = load_run(workdir)
    if result.get("validation_tta") is not None:
        raise ConfigError(
            f"{workdir} already has flip-TTA metrics (validation_tta in "
            f"{rundir.path(workdir, rundir.RESULT)}); evaluate it with --tta"
        )
    if rundir.is_shipped(workdir):
        raise ConfigError(
            f"{workdir} is a shipped model, never written to; it has TTA metrics already, or "
            f"train your own with the command in {rundir.path(workdir, rundir.SHIPPED_MARK)}"
        )
    spec = data_spec or config.data
    splits = run_splits(config, spec)

    def batches(name: str) -> tf.data.Dataset:
        return data.eval_batches(_decoded(splits[name], config), batch_size)

    _check_reproduces(
        metrics.evaluate_predictions(*_logits(model, batches("validation"))), result, spec
    )
    names = [n for n in ("validation", "test") if len(splits[n]) and result.get(n)]
    tta = {name: _logits(model, batches(name), tta=True) for name in names}
    val_tta, test_tta = metrics.validation_and_test(tta)
    added = {"validation_tta": val_tta, "test_tta": test_tta}
    logits = {name: name_logits for name, (name_logits, _) in tta.items()}
    finish.add_tta_outputs(workdir, result, added, logits, spec)
    return added


def _check_reproduces(val: dict[str, Any], result: dict[str, Any], spec: str) -> None:
    """Raises DataSourceError unless ``val`` matches the run's own validation metrics."""
    saved = result["validation"]
    if val["n"] == saved["n"] and all(
        np.isclose(val[k], saved[k], rtol=_REPRODUCE_RTOL, atol=0) for k in ("cross_entropy", "mse")
    ):
        return
    raise data.DataSourceError(
        f"{spec} does not reproduce the run's validation metrics ({val['n']} images, "
        f"cross-entropy {val['cross_entropy']:.4f}, against {saved['n']} and "
        f"{saved['cross_entropy']:.4f}): these are not the images it was split from; give "
        "--data the folder it was trained on"
    )


def list_images(inputs: list[str]) -> list[str]:
    """Image files named in ``inputs``: files as given, folders with their subfolders (sorted)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, names in os.walk(item):
                dirs.sort()
                paths.extend(
                    os.path.join(root, n)
                    for n in sorted(names)
                    if n.lower().endswith(data.sources.IMAGE_EXTENSIONS)
                )
        elif os.path.exists(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return paths


def predict_files(
    workdir: str,
    inputs: list[str],
    batch_size: int = 64,
    submission: str | None = None,
    tta: bool = False,
    float32: bool = False,
) -> list[tuple[str, float | None]]:
    """Probability of dog for each image file (None for files that do not decode).

    Args:
      workdir: A finished run directory.
      inputs: Image files and/or folders of images (e.g. Kaggle ``test1/`` with ``<id>.jpg``).
      batch_size: Prediction batch size.
      submission: If given, also write a Kaggle submission CSV (``id,label`` with the
        probability of dog as label) for files named ``<id>.<ext>``.
      tta: Flip test-time augmentation: the probability of the mean of the image's and its
        mirror image's logits (:func:`catdog_tf.train.steps.flip_averaged`). Any run allows
        it: a probability needs no threshold chosen on flip-averaged validation logits.
      float32: Compute in float32 as the run's exports do (:func:`load_run`): a model
        trained in mixed precision then gives its exports' probabilities on the same pixels.

    Returns:
      ``(path, probability)`` per file, in input order.
    """
    config, model, _ = load_run(workdir, float32)
    _warn_if_synthetic(workdir, config)
    if submission:
        submission = rundir.check_output(submission, "--submission")
        _replace_only_own(submission, "--submission", "a submission CSV", _is_submission)
    paths = list_images(inputs)
    if not paths:
        raise data.DataSourceError(
            f"no image files ({', '.join(data.sources.IMAGE_EXTENSIONS)}) in {', '.join(inputs)}"
        )
    examples = data.Examples(
        items=np.array(paths, dtype=object), labels=np.zeros(len(paths), np.int32), origin="predict"
    )
    report = data.scan(examples)
    probs: dict[str, float] = {}
    if len(report.kept):
        logits = _image_logits(model, report.kept, config, batch_size, tta)
        probs = dict(zip(report.kept.items, metrics.probabilities(logits).tolist(), strict=True))
    results = [(p, probs.get(p)) for p in paths]
    if submission:
        _write_submission(submission, results)
    return results


def _image_logits(
    model: keras.Model,
    examples: data.Examples,
    config: Config,
    batch_size: int,
    tta: bool,
) -> np.ndarray:
    """float32 logits of ``model`` on the images of ``examples``, in order.

    A few images (:data:`catdog_tf.data.EAGER_LIMIT`) go through the same stages and the
    model eagerly, as one batch: tracing a pipeline and a step would cost far more.
    """
    if len(examples) <= data.EAGER_LIMIT:
        decoded = data.decoded_images(examples, config.image_size, config.dct_method)
        images = data.normalize(tf.constant(decoded))
        return np.asarray(inference(model, tta)(images), np.float32).reshape(-1)
    dataset = data.eval_batches(_decoded(examples, config), batch_size)
    return _logits(model, dataset, tta)[0]


def _decoded(examples: data.Examples, config: Config) -> tf.data.Dataset:
    """The run's decoded, uncached images of ``examples``: the pixels its training saw."""
    return data.decoded_dataset(examples, config.image_size, cache="", dct_method=config.dct_method)


# Kaggle's sample submission for dogs-vs-cats: an id and P(dog).
_SUBMISSION_HEADER = "id,label"


def _write_submission(path: str, results: list[tuple[str, float | None]]) -> None:
    rows, left_out = [], []
    for file, prob in results:
        stem = os.path.splitext(os.path.basename(file))[0]
        # ASCII digits only: str.isdigit() accepts "²", which int() rejects.
        if re.fullmatch(r"[0-9]+", stem):
            # Kaggle scores log loss: an unreadable file gets the uninformative 0.5.
            rows.append((int(stem), 0.5 if prob is None else prob))
        else:
            left_out.append(file)
    if rows and left_out:
        logging.warning(
            "--submission: %d of %d files are not named <id>.<ext> with a numeric id and are "
            "left out of it (e.g. %s)",
            len(left_out),
            len(results),
            data.sources.display(left_out[0]),
        )
    if not rows:
        raise ConfigError(
            "--submission: no file is named <id>.<ext> with a numeric id (as Kaggle's test1/ "
            "files are); nothing to submit"
        )
    ids = [i for i, _ in rows]
    if len(set(ids)) != len(ids):
        raise ConfigError(
            "--submission: two files have the same numeric id (e.g. 1.jpg and 1.png, or the "
            "same folder given twice); a submission needs one row per id"
        )
    rows.sort()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_SUBMISSION_HEADER.split(","))
    writer.writerows((i, f"{p:.6f}") for i, p in rows)
    atomic_write_text(path, buffer.getvalue())
