"""Binary ROC AUC and average precision against scikit-learn, and where they are reported."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from ensembles.combiners import split_rows
from ensembles.errors import ShapeError
from ensembles.evaluation import crossfit
from ensembles.heldout import SplitPredictions
from ensembles.metrics import (
    average_precision,
    classification_metrics,
    mann_whitney_auc,
    roc_auc,
)

CORE_KEYS = ["accuracy", "nll", "brier", "ece"]


def binary_case(seed: int, n_samples: int, n_levels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Random labels and positive-class probabilities; ``n_levels`` distinct values make ties."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n_samples)
    y[:2] = [0, 1]  # both classes present
    positive = rng.random(n_samples)
    if n_levels is not None:
        positive = rng.integers(0, n_levels + 1, size=n_samples) / n_levels
    return np.column_stack([1.0 - positive, positive]), y


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_levels", [None, 1, 3, 10])
@pytest.mark.parametrize("n_samples", [2, 7, 300])
def test_roc_auc_and_average_precision_equal_sklearn(
    seed: int, n_levels: int | None, n_samples: int
) -> None:
    probs, y = binary_case(seed, n_samples, n_levels)
    assert roc_auc(probs, y) == pytest.approx(roc_auc_score(y, probs[:, 1]), abs=1e-12)
    expected = average_precision_score(y, probs[:, 1])
    assert average_precision(probs, y) == pytest.approx(expected, abs=1e-12)


def test_hand_computed_with_a_tie() -> None:
    # Scores 0.9 (pos), 0.5 (neg), 0.5 (pos), 0.1 (neg): pairs won 1 + 1 + 0.5 + 1 of 4.
    probs = np.array([[0.1, 0.9], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    y = np.array([1, 0, 1, 0])
    assert roc_auc(probs, y) == pytest.approx(3.5 / 4, abs=1e-12)
    # Thresholds 0.9: precision 1, recall 1/2; 0.5: precision 2/3, recall 1.
    assert average_precision(probs, y) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)


def test_mann_whitney_auc_counts_ties_one_half() -> None:
    assert mann_whitney_auc(np.array([0.2, 0.2]), np.array([0.2])) == 0.5
    assert mann_whitney_auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert mann_whitney_auc(np.array([0.3]), np.array([0.1, 0.3])) == 0.25


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_gives_nan_and_no_key(label: int) -> None:
    probs = np.array([[0.3, 0.7], [0.6, 0.4], [0.5, 0.5]])
    y = np.full(3, label)
    assert math.isnan(roc_auc(probs, y)) and math.isnan(average_precision(probs, y))
    scores = classification_metrics(probs, y)
    assert list(scores) == CORE_KEYS
    json.dumps(scores, allow_nan=False)  # what the manifest's JSON requires


def test_binary_metrics_add_both_keys_and_multi_class_is_unchanged() -> None:
    probs, y = binary_case(0, 50, None)
    scores = classification_metrics(probs, y)
    assert list(scores) == [*CORE_KEYS, "roc_auc", "average_precision"]
    assert scores["roc_auc"] == roc_auc(probs, y)
    assert all(type(value) is float for value in scores.values())
    rng = np.random.default_rng(1)
    three = rng.dirichlet(np.ones(3), size=50)
    assert list(classification_metrics(three, rng.integers(0, 3, size=50))) == CORE_KEYS


def test_more_than_two_classes_are_refused() -> None:
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(ShapeError, match=r"roc_auc needs the probabilities of a binary task"):
        roc_auc(probs, np.array([0, 1, 2, 0]))
    with pytest.raises(ShapeError, match=r"average_precision needs .* got \(4, 3\)"):
        average_precision(probs, np.array([0, 1, 2, 0]))


def test_crossfit_keeps_the_half_where_roc_auc_is_defined() -> None:
    """One positive row: the halves are stratified, so only the half holding it has both
    classes, and the metric is that half's."""
    n_rows = 40
    rng = np.random.default_rng(3)
    y = np.zeros(n_rows, dtype=np.int64)
    y[17] = 1
    halves = split_rows(y, "classification", seed=0)
    both = next(half for half in halves if 17 in half)
    positive = rng.random((2, n_rows))
    member_preds = np.stack([np.column_stack([1 - p, p]) for p in positive])
    data = SplitPredictions(rng.normal(size=(n_rows, 2)), y, member_preds)
    metrics = crossfit("mean", "classification", {}, data).metrics
    expected = roc_auc(member_preds[:, both].mean(axis=0), y[both])
    assert metrics["roc_auc"] == pytest.approx(expected, abs=1e-12)
    assert list(metrics) == [*CORE_KEYS, "roc_auc", "average_precision"]
