"""Evaluation metrics over a whole split, from the accumulated predictions of every image.

Nothing here averages batch means: every metric is computed from the full vectors of
predicted probabilities and labels, so the numbers do not depend on the batch size.
"""

from __future__ import annotations

import numpy as np
import scipy.special

# scipy.stats is imported where it is used: it takes most of a second, which a command that
# only predicts (catdog-predict) would pay at start-up for nothing.

# The article's 10 straightforward thresholds: 0.0, 0.1, ..., 0.9 (predict dog when p > t).
ARTICLE_THRESHOLDS = np.round(np.arange(10) / 10, 1)
# The fine grid the best threshold is chosen from.
FINE_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 201), 3)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Sigmoid of the logits, computed stably (``scipy.special.expit``)."""
    return scipy.special.expit(np.asarray(logits, np.float64))


def mse(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error between predicted probability and the 0/1 label."""
    return float(np.mean((np.asarray(probs, np.float64) - labels) ** 2))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy from logits, stable for any logit (log1p(exp(-|z|)))."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def pearson(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Pearson correlation between predicted probability and label (the article's metric).

    Returns None when the labels hold one class only (the correlation is undefined, and no
    number would be honest), and 0.0 when the predictions are constant (a model that says
    the same for every image carries no information about the label), where
    ``scipy.stats.pearsonr`` would warn and return NaN for both.
    """
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.float64)
    if len(y) < 2 or np.ptp(y) == 0:
        return None
    if np.ptp(p) == 0:
        return 0.0
    import scipy.stats

    return float(scipy.stats.pearsonr(p, y).statistic)


def correct_at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Per example, whether predicting dog (1) for ``probs > threshold`` is right."""
    return (np.asarray(probs) > threshold) == (np.asarray(labels) == 1)


def accuracy_at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Accuracy when predicting dog (1) for ``probs > threshold``."""
    return float(np.mean(correct_at(probs, labels, threshold)))


def threshold_sweep(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray = FINE_THRESHOLDS
) -> dict[float, float]:
    """Accuracy at each threshold, vectorized: ``{threshold: accuracy}``."""
    p = np.asarray(probs)[None, :]
    correct = (p > np.asarray(thresholds)[:, None]) == (np.asarray(labels)[None, :] == 1)
    return {float(t): float(a) for t, a in zip(thresholds, correct.mean(axis=1), strict=True)}


def best_threshold(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray = FINE_THRESHOLDS
) -> tuple[float, float]:
    """(threshold, accuracy) of the most accurate threshold; ties go to the one nearest 0.5."""
    sweep = threshold_sweep(probs, labels, thresholds)
    t = max(sweep, key=lambda k: (sweep[k], -abs(k - 0.5)))
    return t, sweep[t]


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve, exact, via the Mann-Whitney U statistic (ties count half).

    None when the labels hold one class only: the curve is undefined.
    """
    y = np.asarray(labels) == 1
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    import scipy.stats

    ranks = scipy.stats.rankdata(np.asarray(probs, np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def confusion(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, int]:
    """Counts of each (true class, predicted class) pair when predicting dog for p > threshold.

    Keys: ``cat_as_cat``, ``cat_as_dog`` (false dogs), ``dog_as_cat`` (missed dogs) and
    ``dog_as_dog``; rows of ``tf.math.confusion_matrix`` with 0 = cat, 1 = dog.
    """
    predicted = np.asarray(probs) > threshold
    truth = np.asarray(labels) == 1
    return {
        f"{t}_as_{p}": int(np.sum((truth == (t == "dog")) & (predicted == (p == "dog"))))
        for t in ("cat", "dog")
        for p in ("cat", "dog")
    }


def evaluate_predictions(
    logits: np.ndarray, labels: np.ndarray, threshold: float | None = None
) -> dict[str, float | dict]:
    """Every reported metric of one split.

    Args:
      logits: Model outputs (before the sigmoid) for every image of the split.
      labels: 0/1 labels.
      threshold: A threshold chosen elsewhere (on validation) to report accuracy at; when
        None, the split's own best threshold is reported (use only on validation).

    Returns:
      ``mse``, ``cross_entropy``, ``pearson``, ``accuracy_at_0.5``, ``roc_auc``,
      ``article_sweep`` (accuracy at 0.0..0.9), ``article_best_accuracy``,
      ``best_threshold`` and ``best_accuracy`` (on the fine grid, or at ``threshold``),
      ``confusion`` (:func:`confusion` at that threshold) and ``n``. ``pearson`` and
      ``roc_auc`` are None on a split of one class.
    """
    logits = np.asarray(logits, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    probs = probabilities(logits)
    article = threshold_sweep(probs, labels, ARTICLE_THRESHOLDS)
    if threshold is None:
        threshold, best = best_threshold(probs, labels)
    else:
        best = accuracy_at(probs, labels, threshold)
    return {
        "n": int(len(labels)),
        "mse": mse(probs, labels),
        "cross_entropy": cross_entropy(logits, labels),
        "pearson": pearson(probs, labels),
        "accuracy_at_0.5": accuracy_at(probs, labels, 0.5),
        "roc_auc": roc_auc(probs, labels),
        "article_sweep": {f"{t:.1f}": a for t, a in article.items()},
        "article_best_accuracy": max(article.values()),
        "best_threshold": float(threshold),
        "best_accuracy": float(best),
        "confusion": confusion(probs, labels, threshold),
    }


def validation_and_test(
    predictions: dict[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[dict, dict | None]:
    """Validation metrics (choosing the threshold), and test's at that threshold.

    Args:
      predictions: ``(logits, labels)`` of ``validation`` and, if the run has one, ``test``.

    Returns:
      (validation metrics, test metrics or None), each of :func:`evaluate_predictions`.
    """
    val = evaluate_predictions(*predictions["validation"])
    test = (
        evaluate_predictions(*predictions["test"], threshold=val["best_threshold"])
        if "test" in predictions
        else None
    )
    return val, test
