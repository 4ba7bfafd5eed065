"""Per-image outputs of an evaluated split: a predictions CSV and a gallery of its mistakes.

Users look at their errors first. For every split a run (or ``catdog-eval``) evaluates, this
writes one CSV row per image (its path, label, probability of dog, prediction) and a PNG of
the most confident mistakes, the images the model got wrong while being most sure.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
from PIL import Image, ImageOps

from catdog_tf import figures
from catdog_tf.data import CAT, DOG, Examples
from catdog_tf.data.sources import display
from catdog_tf.train import metrics
from catdog_tf.utils import atomic_write_text

CLASS_NAMES = {CAT: "cat", DOG: "dog"}


def item_names(examples: Examples) -> list[str]:
    """The path of each example (printable), or ``<encoded #i>`` for in-memory images."""
    if examples.encoded:
        return [f"<encoded #{i}>" for i in range(len(examples))]
    return [display(p) for p in examples.items]


def write_predictions_csv(
    path: str, names: list[str], labels: np.ndarray, probs: np.ndarray, threshold: float
) -> None:
    """``path,label,p_dog,predicted,correct``: one row per image, numbers as plain numbers."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "p_dog", "predicted", "correct"])
    for name, label, prob in zip(names, labels, probs, strict=True):
        predicted = int(prob > threshold)
        writer.writerow([name, int(label), f"{prob:.6f}", predicted, int(predicted == label)])
    atomic_write_text(path, buffer.getvalue())


def confident_mistakes(
    labels: np.ndarray, probs: np.ndarray, threshold: float, count: int
) -> np.ndarray:
    """Indices of up to ``count`` wrong predictions, the most confident first."""
    wrong = np.flatnonzero((probs > threshold) != (labels == DOG))
    confidence = np.abs(probs[wrong] - threshold)
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def _thumbnail(examples: Examples, index: int, size: int = 160) -> np.ndarray:
    item = examples.items[index]
    try:
        with Image.open(io.BytesIO(bytes(item)) if examples.encoded else item) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((size, size))
            return np.asarray(image)
    except Exception:  # Shown as grey: a gallery must not fail on one odd file.
        return np.full((size, size, 3), 128, np.uint8)


def write_mistakes_gallery(
    path: str,
    examples: Examples,
    probs: np.ndarray,
    threshold: float,
    title: str,
    count: int = 16,
) -> int:
    """A PNG grid of the ``count`` most confident mistakes; returns how many it shows."""
    plt = figures.pyplot()

    chosen = confident_mistakes(examples.labels, probs, threshold, count)
    columns = 4
    rows = max(1, -(-len(chosen) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    names = item_names(examples)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, chosen, strict=False):
        ax.imshow(_thumbnail(examples, int(index)))
        label = CLASS_NAMES[int(examples.labels[index])]
        ax.set_title(
            f"is {label}, p(dog) {probs[index]:.2f}\n{os.path.basename(names[index])[:28]}",
            fontsize=8,
        )
    if not len(chosen):
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(f"{title}: most confident mistakes at threshold {threshold:.3f}")
    figures.save(fig, path)
    return len(chosen)


def write_split_outputs(
    csv_path: str,
    gallery_path: str,
    examples: Examples,
    logits: np.ndarray,
    threshold: float,
    title: str,
) -> None:
    """The predictions CSV and the mistakes gallery of one evaluated split.

    Args:
      csv_path: Where the per-image CSV goes.
      gallery_path: Where the PNG goes.
      examples: The split's examples, in the order of ``logits``.
      logits: The model's output per image.
      threshold: The threshold predictions are made at (chosen on validation).
      title: The gallery's title (run and split).
    """
    probs = metrics.probabilities(np.asarray(logits).reshape(-1))
    if len(probs) != len(examples):
        raise ValueError(f"{len(probs)} predictions for {len(examples)} images")
    write_predictions_csv(csv_path, item_names(examples), examples.labels, probs, threshold)
    write_mistakes_gallery(gallery_path, examples, probs, threshold, title)
