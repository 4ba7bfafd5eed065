"""Deterministic, stratified train/validation/test splits."""

from __future__ import annotations

import numpy as np
from absl import logging

from catdog_tf.data.sources import DataSourceError, Examples

SPLITS = ("train", "validation", "test")


def _resolve_counts(sizes: tuple[float, float, float], total: int) -> list[int]:
    """Turns int counts / float fractions into counts; checks they fit in ``total``.

    Fractions are rounded cumulatively (each split gets round(F + f) - round(F) of the data,
    F the fractions before it), so fractions adding up to 1 use every image exactly once.
    """
    counts, before = [], 0.0
    for size in sizes:
        if isinstance(size, float) and size <= 1:
            counts.append(int(round((before + size) * total)) - int(round(before * total)))
            before += size
        else:
            counts.append(int(size))
    if sum(counts) > total:
        raise DataSourceError(
            f"split sizes {dict(zip(SPLITS, counts, strict=True))} need {sum(counts)} images "
            f"but the data has {total}"
        )
    return counts


def split(
    examples: Examples, sizes: tuple[float, float, float], seed: int = 0
) -> dict[str, Examples]:
    """Splits examples into disjoint train/validation/test sets, keeping class balance.

    Each class is permuted with ``seed`` and dealt out in proportion to its share of the
    data, so every split has (to within one image) the class ratio of the whole. Images not
    needed by the requested counts are left out, which is how the article's 4,096/1,024
    sample of a larger folder is drawn.

    Args:
      examples: All examples.
      sizes: (train, validation, test): int counts or float fractions of ``len(examples)``.
      seed: Seed of the permutation; the same seed gives the same split.

    Returns:
      ``{"train", "validation", "test"}`` examples; an empty split has zero examples.
    """
    counts = _resolve_counts(sizes, len(examples))
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(examples.labels == c)) for c in (0, 1)]
    share = len(per_class[1]) / len(examples)
    chosen: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    offsets = [0, 0]
    cumulative = 0
    for name, count in zip(SPLITS, counts, strict=True):
        # Round the running total, not each split: per-split rounding can ask a class for
        # one image more than it has; this way the dog total is exactly round(N * share).
        dogs_before = int(round(cumulative * share))
        cumulative += count
        n_dog = int(round(cumulative * share)) - dogs_before
        for cls, n in ((0, count - n_dog), (1, n_dog)):
            take = per_class[cls][offsets[cls] : offsets[cls] + n]
            if len(take) < n:
                raise DataSourceError(f"not enough class-{cls} images for the {name} split")
            chosen[name].append(take)
            offsets[cls] += n
    result = {}
    for name in SPLITS:
        # Interleave classes in a seeded order so a split is never sorted by class.
        indices = rng.permutation(np.concatenate(chosen[name]))
        result[name] = examples.subset(indices)
    return result


def make_splits(
    data: dict[str, Examples], sizes: tuple[float, float, float], seed: int = 0
) -> dict[str, Examples]:
    """Splits ``{"all": ...}`` data, or keeps a folder's predefined splits.

    With predefined ``train``/``validation`` folders but no ``test``, the validation folder is
    halved into validation and test so that the reported test numbers stay unseen by model
    and threshold selection.
    """
    if "all" in data:
        return split(data["all"], sizes, seed)
    logging.info(
        "the data has its own %s folders, used as they are: train_size, val_size and "
        "test_size do not apply",
        "/".join(name for name in ("train", "validation", "test") if name in data),
    )
    result = dict(data)
    if "validation" not in result:
        raise DataSourceError("a train/ folder needs a val/ (or validation/) folder beside it")
    if "test" not in result:
        halves = split(result["validation"], (0.5, 0.5, 0.0), seed)
        result["validation"], result["test"] = halves["train"], halves["validation"]
    return result
