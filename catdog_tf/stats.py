"""Error bars and significance for the comparison table.

Two sources of variation, two intervals:

* over seeds (a seed changes the split, the shuffles, the augmentation and the init): the
  Student-t interval of the per-seed numbers, :func:`t_interval`;
* with a single seed, over the test images only: a bootstrap interval of the per-image
  correctness, :func:`bootstrap_interval` (``scipy.stats.bootstrap``). It is narrower, as it
  ignores how much another seed would move the number, and is labelled as such.

Two models are compared on the same test images (same seed, same split) with the exact
McNemar test: only the images exactly one of them gets right carry information, and under
"no difference" each of those is a fair coin. Over several seeds the discordant images are
pooled (each seed's are independent coins under the null, so their total is binomial): one
exact ``scipy.stats.binomtest``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.stats

CONFIDENCE = 0.95
ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval, and how the interval was made.

    Attributes:
      mean: The mean.
      low: Lower end (NaN when it cannot be computed, e.g. one value).
      high: Upper end.
      method: ``t over N seeds``, ``bootstrap over N images`` or ``one value``.
    """

    mean: float
    low: float
    high: float
    method: str

    def half_width(self) -> float:
        """Half the interval's width (NaN when there is none)."""
        return (self.high - self.low) / 2

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """``mean ± half`` (scaled, e.g. to percent), or the mean alone."""
        if not np.isfinite(self.half_width()):
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.half_width() * scale:.{digits}f}"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of per-seed values."""
    x = np.asarray(values, np.float64)
    mean = float(np.mean(x))
    if len(x) < 2:
        return Interval(mean, float("nan"), float("nan"), "one value")
    sem = float(scipy.stats.sem(x))
    half = float(scipy.stats.t.ppf((1 + confidence) / 2, len(x) - 1)) * sem
    return Interval(mean, mean - half, mean + half, f"t over {len(x)} seeds")


def bootstrap_interval(
    correct: np.ndarray, confidence: float = CONFIDENCE, resamples: int = 2000, seed: int = 0
) -> Interval:
    """Mean and percentile-bootstrap interval of 0/1 per-image correctness (one run)."""
    x = np.asarray(correct, np.float64)
    result = scipy.stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(
        float(np.mean(x)), float(ci.low), float(ci.high), f"bootstrap over {len(x)} images"
    )


@dataclasses.dataclass(frozen=True)
class Paired:
    """Exact McNemar comparison of two models on the same test images.

    Attributes:
      only_a: Images model A gets right and B wrong (summed over seeds).
      only_b: Images B gets right and A wrong.
      p_value: Two-sided exact binomial p-value of ``only_a`` among the discordant images.
      difference: Accuracy of A minus accuracy of B (over all images of all seeds).
    """

    only_a: int
    only_b: int
    p_value: float
    difference: float

    def verdict(self, alpha: float = ALPHA) -> str:
        """``better`` / ``worse`` (A against B) at level ``alpha``, else no detectable one."""
        if self.p_value >= alpha:
            return "no detectable difference"
        return "better" if self.only_a > self.only_b else "worse"


def mcnemar(correct_a: Sequence[np.ndarray], correct_b: Sequence[np.ndarray]) -> Paired:
    """Exact McNemar test of A against B, pooled over seeds.

    Args:
      correct_a: Per seed, A's 0/1 correctness on that seed's test images.
      correct_b: Per seed, B's on the same images in the same order.

    Raises:
      ValueError: The seeds or the images do not pair up.
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"{len(correct_a)} seeds against {len(correct_b)}")
    only_a = only_b = total = 0
    diff_sum = 0.0
    for a, b in zip(correct_a, correct_b, strict=True):
        a, b = np.asarray(a, bool), np.asarray(b, bool)
        if a.shape != b.shape:
            raise ValueError(f"{a.shape} test images against {b.shape}")
        only_a += int(np.sum(a & ~b))
        only_b += int(np.sum(~a & b))
        diff_sum += float(np.sum(a) - np.sum(b))
        total += len(a)
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else scipy.stats.binomtest(only_a, discordant, 0.5).pvalue
    return Paired(only_a, only_b, float(p), diff_sum / max(total, 1))
