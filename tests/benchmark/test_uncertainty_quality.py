"""New uncertainty-quality scores against scipy, scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score

from ensembles.benchmark.scoring import single_uncertainty, uncertainty_quality
from ensembles.benchmark.uncertainty_quality import (
    misclassification_auroc,
    selective_rows,
    spearman_uncertainty_error,
)
from ensembles.errors import ConfigError, ShapeError


def test_spearman_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    variance = rng.random(50)
    error = variance + rng.normal(scale=0.3, size=50)
    expected = spearmanr(variance, error).statistic
    assert spearman_uncertainty_error(variance, error) == pytest.approx(expected)


def test_spearman_hand_computed_with_ties() -> None:
    # Ranks of u: 1, 2.5, 2.5, 4; ranks of e: 4, 3, 2, 1 -> Pearson of the ranks.
    u_rank = np.array([1, 2.5, 2.5, 4])
    e_rank = np.array([4, 3, 2, 1])
    expected = np.corrcoef(u_rank, e_rank)[0, 1]
    result = spearman_uncertainty_error(np.array([0.1, 0.2, 0.2, 0.9]), np.array([9, 5, 3, 1]))
    assert result == pytest.approx(expected)
    assert result == pytest.approx(-0.9486832980505138)


def test_spearman_is_nan_for_constant_uncertainty() -> None:
    assert math.isnan(spearman_uncertainty_error(np.ones(5), np.arange(5.0)))


def test_selective_rows_keep_the_most_certain_share() -> None:
    variance = np.array([0.5, 0.1, 0.9, 0.3, 0.7])
    # ceil(0.8 * 5) = 4 rows: all but the 0.9 one.
    assert selective_rows(variance, 0.8).tolist() == [0, 1, 3, 4]
    assert selective_rows(variance, 0.4).tolist() == [1, 3]
    # Ties keep the earlier row.
    assert selective_rows(np.array([0.2, 0.2, 0.2]), 0.5).tolist() == [0, 1]


def test_selective_accuracy_and_rmse_match_sklearn_on_kept_rows() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=40)
    y = rng.integers(0, 3, 40)
    variance = rng.random(40)
    kept = np.sort(np.argsort(variance)[:32])
    scores = uncertainty_quality("classification", probs, y, variance, variance)
    assert scores["selective_accuracy"] == pytest.approx(
        accuracy_score(y[kept], probs[kept].argmax(axis=1))
    )
    wrong = probs.argmax(axis=1) != y
    assert scores["auroc_variance"] == pytest.approx(roc_auc_score(wrong, variance))
    values = rng.normal(size=(40, 1))
    targets = values + rng.normal(size=(40, 1))
    regression = uncertainty_quality("regression", values, targets, variance)
    assert regression["selective_rmse"] == pytest.approx(
        np.sqrt(mean_squared_error(targets[kept], values[kept]))
    )


def test_selective_rows_reject_bad_coverage() -> None:
    with pytest.raises(ConfigError, match=r"coverage must be in \(0, 1\]"):
        selective_rows(np.ones(3), 0.0)


def test_auroc_matches_sklearn_and_hand_computed() -> None:
    uncertainty = np.array([0.1, 0.4, 0.35, 0.8])
    wrong = np.array([False, False, True, True])
    # Pairs (wrong, right): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3 / 4.
    assert misclassification_auroc(uncertainty, wrong) == pytest.approx(0.75)
    rng = np.random.default_rng(2)
    u, w = rng.random(60), rng.random(60) < 0.3
    assert misclassification_auroc(u, w) == pytest.approx(roc_auc_score(w, u))


def test_auroc_is_nan_when_nothing_is_misclassified() -> None:
    assert math.isnan(misclassification_auroc(np.arange(4.0), np.zeros(4, dtype=bool)))


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ShapeError, match=r"shape \(n_samples,\)"):
        spearman_uncertainty_error(np.ones(3), np.ones(4))


def test_single_classifier_has_no_uncertainty_scores() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    scores = uncertainty_quality("classification", probs, np.array([0, 0]), None)
    assert all(math.isnan(value) for value in scores.values())


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_selective_score_is_nan_when_the_variance_is_constant(task: str) -> None:
    rng = np.random.default_rng(3)
    if task == "classification":
        combined, y = rng.dirichlet(np.ones(3), size=20), rng.integers(0, 3, 20)
    else:
        combined, y = rng.normal(size=(20, 1)), rng.normal(size=(20, 1))
    scores = uncertainty_quality(task, combined, y, np.full(20, 0.25))
    selective = "selective_accuracy" if task == "classification" else "selective_rmse"
    assert math.isnan(scores[selective])
    assert math.isnan(scores["spearman"])


def test_single_classifier_uncertainty_is_its_predictive_entropy() -> None:
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]])
    entropy = single_uncertainty("classification", probs)
    expected = [np.log(2), 0.0, -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))]
    assert entropy == pytest.approx(expected)
    scores = uncertainty_quality("classification", probs, np.array([1, 0, 1]), entropy)
    # Wrong rows 0 (entropy log 2) and 2 (0.33) against the right row 1 (0): perfect ranking.
    assert scores["auroc_variance"] == pytest.approx(1.0)


def test_single_regressor_uncertainty_is_its_own_variance() -> None:
    values = np.zeros((2, 2))
    assert single_uncertainty("regression", values) is None
    variance = np.array([[1.0, 3.0], [0.5, 0.5]])
    assert single_uncertainty("regression", values, variance).tolist() == [2.0, 0.5]


@pytest.mark.parametrize(
    "call",
    [
        lambda: spearman_uncertainty_error(np.ones((3, 1)), np.ones((3, 1))),
        lambda: misclassification_auroc(np.ones(3), np.zeros(2, dtype=bool)),
        lambda: spearman_uncertainty_error(np.array([]), np.array([])),
    ],
)
def test_mismatched_or_empty_inputs_name_the_expected_shape(call) -> None:
    with pytest.raises(
        ShapeError,
        match=r"uncertainty and the per-row errors must both have shape \(n_samples,\); got ",
    ):
        call()


def test_selective_rows_refuse_a_matrix() -> None:
    with pytest.raises(
        ShapeError, match=r"uncertainty must have shape \(n_samples,\); got \(2, 2\)\."
    ):
        selective_rows(np.ones((2, 2)))
