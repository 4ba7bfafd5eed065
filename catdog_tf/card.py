"""The model card of a shipped model, generated from its own files so that it cannot drift.

:func:`model_card` reads a shipped model's ``config.json``, ``result.json`` and
``shipped.json`` and writes the sections a Hugging Face model card has: model details,
intended and out-of-scope use, training data, evaluation, limitations, compute, framework
versions, license and how to reproduce. :func:`catdog_tf.shipped.ship` writes it as
``MODEL_CARD.md`` beside the model; a test checks each shipped card against a fresh one.
"""

from __future__ import annotations

import os
from typing import Any

from catdog_tf import rundir, stats
from catdog_tf.utils import read_json

LICENSE = "Apache-2.0"


def model_card(model_dir: str, name: str | None = None) -> str:
    """Markdown of the model card of the shipped model or finished run in ``model_dir``.

    Args:
      model_dir: A shipped model (its ``shipped.json`` adds what made it, the other seeds
        of its recipe and its exports' accuracies) or a finished run.
      name: The model's name (default: the folder's name).
    """
    name = name or os.path.basename(os.path.abspath(model_dir))
    config, _ = rundir.read_config(model_dir)
    result = rundir.read_result(model_dir)
    mark = rundir.path(model_dir, rundir.SHIPPED_MARK)
    about = read_json(mark) if os.path.exists(mark) else {}
    sections = [
        _front_matter(result),
        f"# {name}\n\nA cats-vs-dogs image classifier trained from scratch with catdog_tf: "
        f"it gives P(dog) for a photograph.",
        _details(config, result),
        _use(name),
        _training_data(result, config.seed),
        _evaluation(result, about.get("seeds", [])),
        _formats(about.get("formats"), config.dct_method, about.get("precision", "")),
        _limitations(),
        _compute(config, result, about),
        f"## Framework versions\n\n- catdog_tf {about.get('catdog_tf_version', '?')}\n"
        f"- {_tensorflow(about)}",
        f"## License\n\n{LICENSE}, as catdog_tf. The training images are Kaggle's Dogs vs. "
        "Cats competition data, under that competition's rules.",
        f"## How to reproduce\n\n```bash\n{about.get('command', '(not recorded)')}\n```\n\n"
        f"Seed {config.seed}; a CPU without native bfloat16 trains the same recipe in "
        "float32, to other weights.",
    ]
    return "\n\n".join(sections) + "\n"


def _front_matter(result: dict[str, Any]) -> str:
    test = result["test"]
    return (
        "---\n"
        f"license: {LICENSE.lower()}\n"
        "library_name: keras\n"
        "pipeline_tag: image-classification\n"
        "tags: [image-classification, cats-vs-dogs, tensorflow, keras]\n"
        "metrics: [accuracy, roc_auc]\n"
        "model-index:\n"
        f"  - name: {result['model']['name']}\n"
        "    results:\n"
        "      - task: {type: image-classification}\n"
        "        dataset: {name: Kaggle Dogs vs. Cats (train, 2,000-image test split), "
        "type: dogs-vs-cats}\n"
        "        metrics:\n"
        f"          - {{type: accuracy, value: {test['best_accuracy']}}}\n"
        f"          - {{type: roc_auc, value: {round(test['roc_auc'], 4)}}}\n"
        "---"
    )


def _details(config: Any, result: dict[str, Any]) -> str:
    model = result["model"]
    height, width = config.image_size
    return (
        "## Model details\n\n"
        f"- Architecture: `{model['name']}` ({model['layers']} layers), "
        f"`catdog_tf.models.build_model('{model['name']}')`.\n"
        f"- Parameters: {model['params']:,} ({model['weight_mb']} MB); "
        f"{model['flops'] / 1e6:,.0f} MFLOPs per image.\n"
        f"- Input of `serving.keras`: RGB images of any size, pixel values 0-255; it resizes "
        f"them to {height}x{width} and scales them itself. Output: P(dog).\n"
        f"- Decision threshold: {result['validation']['best_threshold']} (chosen on the "
        "validation split); `model.keras` is the training form (logits)."
    )


def _use(name: str) -> str:
    return (
        "## Intended use\n\n"
        "Telling cats from dogs in photographs of one pet, as in Kaggle's Dogs vs. Cats; "
        "teaching and comparing training recipes.\n\n"
        "```bash\n"
        f"catdog-predict --weights={name} --tta photo.jpg\n"
        f"catdog-eval --weights={name} --data=path/to/labelled/folder\n"
        "```\n\n"
        "## Out-of-scope use\n\n"
        "Images with neither or both animals (it always answers cat or dog), other species, "
        "breed identification, and any decision about a person or an animal's welfare."
    )


def _training_data(result: dict[str, Any], seed: int) -> str:
    rows = [
        f"| {split} | {part['n']:,} | {part['cat']:,} | {part['dog']:,} |"
        for split, part in result["data"].items()
    ]
    origin = next(iter(result["data"].values()))["origin"]
    return (
        "## Training data\n\n"
        f"{origin}, split by seed {seed} into "
        "class-balanced parts. `seen.npz` records the training and validation images, which "
        "`catdog-eval` leaves out.\n\n"
        "| split | images | cats | dogs |\n|---|---:|---:|---:|\n" + "\n".join(rows)
    )


def _evaluation(result: dict[str, Any], seeds: list[dict[str, Any]]) -> str:
    rows = []
    for key, label in (("test", "test"), ("test_tta", "test, flip TTA")):
        metrics = result.get(key)
        if metrics:
            c = metrics["confusion"]
            rows.append(
                f"| {label} | {metrics['n']:,} | {metrics['best_accuracy']:.4f} | "
                f"{metrics['roc_auc']:.4f} | {metrics['cross_entropy']:.4f} | "
                f"{c['cat_as_cat']} / {c['cat_as_dog']} / {c['dog_as_cat']} / {c['dog_as_dog']} |"
            )
    return (
        "## Evaluation\n\n"
        "On the test split, which the run never trained on or chose anything with, at the "
        "threshold chosen on validation (flip TTA: on flip-averaged validation logits).\n\n"
        "| images | n | accuracy | AUC | cross-entropy | confusion: cat as cat / cat as dog "
        "/ dog as cat / dog as dog |\n|---|---:|---:|---:|---:|---|\n"
        + "\n".join(rows)
        + _over_seeds(seeds)
    )


def _over_seeds(seeds: list[dict[str, Any]]) -> str:
    """The recipe's test accuracy over every seed trained: mean, 95% t interval, each seed."""
    if len(seeds) < 2:
        return "\n\nOne seed of this recipe was trained: other seeds land a few tenths apart."
    lines = []
    for key, label in (("test", "test accuracy"), ("test_tta", "with flip TTA")):
        values = [s[key] for s in seeds if s.get(key) is not None]
        if len(values) >= 2:
            interval = stats.t_interval(values)
            each = ", ".join(f"{100 * v:.2f}" for v in values)
            lines.append(
                f"- {label}: {100 * interval.mean:.2f}% ± {100 * interval.half_width():.2f} "
                f"(95% t interval over {len(values)} seeds; per seed {each})"
            )
    origin = seeds[0].get("source", "the same command with --seed=N")
    return (
        f"\n\nSeeds {', '.join(str(s['seed']) for s in seeds)} of this recipe ({origin}), "
        "each on its own split's 2,000 test images:\n\n" + "\n".join(lines)
    )


# Why catdog-predict's P(dog) differs from an export's, by the run's dct_method.
_PREDICT_PIXELS = {
    "INTEGER_FAST": "decodes JPEGs with TensorFlow's fast integer DCT and rounds the resized "
    "image to 8 bits",
    "INTEGER_ACCURATE": "decodes JPEGs as PIL does but rounds the resized image to 8 bits",
}


def _formats(formats: dict[str, Any] | None, dct_method: str, precision: str) -> str:
    """Each exported format's accuracy and distance from ``serving.keras`` on the test split.

    ``precision`` is the training precision as ``shipped.json`` records it; a mixed one is
    the second reason ``catdog-predict`` differs from the exports.
    """
    if not formats:
        return (
            "## Formats\n\n`catdog-export` writes SavedModel, ONNX, LiteRT (float and int8) and "
            "a hub folder; `--data` checks each without TensorFlow."
        )
    rows = [
        f"| `{name}` | `{f['file']}` | {f['runtime']} | {f['accuracy']:.4f} | "
        f"{f['max_difference']:.2g} | {f['max_difference_from_predict']:.2g} / "
        f"{f['p99_difference_from_predict']:.2g} |"
        for name, f in formats["formats"].items()
    ]
    int8 = formats["formats"].get("litert_int8", {}).get("calibration")
    why = "which moves a few images' P(dog) further"
    if precision.startswith("mixed_"):
        dtype = precision.split()[0].removeprefix("mixed_")
        why = (
            f"and computes in {dtype} as the model trained (with `--float32`, in float32 as the "
            "exports do); both move a few images' P(dog) further"
        )
    return (
        "## Formats\n\n"
        "`catdog-export --format=... --data=FOLDER` writes each; every one takes RGB images of "
        "any size, 0-255, and gives P(dog). Checked in a process without TensorFlow or "
        f"catdog_tf on the {formats['n']:,} test images, at the validation threshold "
        f"{formats['threshold']}, beside `catdog-predict` "
        f"({formats['catdog_tf']['accuracy']:.4f}). On the same pixels a float export is "
        f"`serving.keras` to float rounding; `catdog-predict` {_PREDICT_PIXELS[dct_method]}, "
        f"{why}.\n\n"
        "| format | file | runtime | accuracy | largest P(dog) difference from serving.keras "
        "| from catdog-predict: largest / 99th percentile |\n"
        "|---|---|---|---:|---:|---:|\n"
        + "\n".join(rows)
        + (f"\n\nint8: post-training quantization calibrated on {int8}." if int8 else "")
    )


def _limitations() -> str:
    return (
        "## Limitations\n\n"
        "- Trained and tested on Kaggle's images only: stock photos and other image sources "
        "score lower than the test split.\n"
        "- Seed 0 of one recipe: other seeds give other weights and accuracies a few tenths "
        "of a point apart."
    )


def _compute(config: Any, result: dict[str, Any], about: dict[str, Any]) -> str:
    how = "images trained x 3 x forward FLOPs"
    sam = [e + 1 for e in range(result["epochs_run"]) if config.sharpness_aware(e)]
    if sam:
        where = "" if len(sam) == result["epochs_run"] else f" in epochs {sam[0]}-{sam[-1]}"
        how += f", x 2{where}: each sharpness-aware step takes two passes"
    if config.optimizer == "muon":
        how += ", and each Muon step's Newton-Schulz iterations"
    if "teacher" in result:
        teacher = result["teacher"]["training_flops"]
        how += f", the teacher's forward passes, and the teacher's training: {teacher:.2e}"
    return (
        "## Compute\n\n"
        f"- Training: {result['training_flops']:.2e} FLOPs ({how}), "
        f"{result['epochs_run']} epochs.\n"
        f"- Wall time: {about.get('wall_time', '?')}.\n"
        f"- CPU: {about.get('cpu', 'not recorded')}.\n"
        f"- Precision: {about.get('precision', '?')}."
    )


def _tensorflow(about: dict[str, Any]) -> str:
    """The TensorFlow version the CPU line names (``TensorFlow 2.21.0``)."""
    words = about.get("cpu", "").split()
    if "TensorFlow" in words and words.index("TensorFlow") + 1 < len(words):
        return f"TensorFlow {words[words.index('TensorFlow') + 1]}"
    return "TensorFlow (version not recorded)"
