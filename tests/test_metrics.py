import numpy as np
import pytest
import scipy.stats

from catdog_tf.train import metrics


def test_pearson_equals_scipy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    probs = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)
    assert metrics.pearson(probs, labels) == pytest.approx(
        scipy.stats.pearsonr(probs, labels).statistic, abs=1e-12
    )


def test_pearson_constant_predictions_is_zero():
    assert metrics.pearson(np.full(10, 0.5), np.arange(10) % 2) == 0.0


def test_threshold_sweep_hand_made():
    probs = np.array([0.05, 0.15, 0.35, 0.55, 0.65, 0.95])
    labels = np.array([0, 0, 1, 0, 1, 1])
    sweep = metrics.threshold_sweep(probs, labels, metrics.ARTICLE_THRESHOLDS)
    assert sweep[0.0] == pytest.approx(3 / 6)  # Everything is "dog".
    assert sweep[0.2] == pytest.approx(5 / 6)  # Only 0.55 (a cat) is wrong.
    assert sweep[0.5] == pytest.approx(4 / 6)  # 0.35 dog and 0.55 cat wrong.
    assert sweep[0.9] == pytest.approx(4 / 6)
    t, acc = metrics.best_threshold(probs, labels)
    # 5/6 is reached on [0.15, 0.35) and on [0.55, 0.65); ties go to the one nearest 0.5.
    assert acc == pytest.approx(5 / 6) and t == pytest.approx(0.55)


def test_article_thresholds_are_0_to_0_9():
    np.testing.assert_allclose(metrics.ARTICLE_THRESHOLDS, np.arange(10) / 10)


def test_roc_auc_brute_force():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    probs = np.round(rng.random(200) * 0.5 + labels * 0.3, 2)  # Rounding makes ties.
    pos, neg = probs[labels == 1], probs[labels == 0]
    brute = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert metrics.roc_auc(probs, labels) == pytest.approx(brute, abs=1e-12)


def test_cross_entropy_and_mse_are_stable_and_correct():
    logits = np.array([-1000.0, 0.0, 1000.0, 2.0])
    labels = np.array([0, 1, 1, 0])
    expected = [0.0, np.log(2), 0.0, np.log1p(np.exp(2.0))]
    assert metrics.cross_entropy(logits, labels) == pytest.approx(np.mean(expected))
    probs = metrics.probabilities(logits)
    assert metrics.mse(probs, labels) == pytest.approx(np.mean((probs - labels) ** 2))


def test_evaluate_uses_given_threshold():
    logits = np.array([-2.0, -0.1, 0.1, 2.0])
    labels = np.array([0, 1, 0, 1])
    own = metrics.evaluate_predictions(logits, labels)
    fixed = metrics.evaluate_predictions(logits, labels, threshold=0.5)
    assert own["best_accuracy"] >= fixed["best_accuracy"] == pytest.approx(0.5)
    assert fixed["best_threshold"] == 0.5 and fixed["n"] == 4
    assert len(own["article_sweep"]) == 10
