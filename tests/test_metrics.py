"""Metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
)

from ensembles.errors import ConfigError, DataError, ShapeError
from ensembles.metrics import (
    accuracy,
    brier,
    classification_metrics,
    expected_calibration_error,
    gaussian_nll,
    interval_coverage,
    mae,
    nll,
    regression_metrics,
    rmse,
)


def probs_and_labels(seed=0, n_samples=200, n_classes=3):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(n_classes), size=n_samples)
    return probs, rng.integers(0, n_classes, size=n_samples)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_classification_metrics_equal_sklearn(n_classes):
    probs, y = probs_and_labels(n_classes=n_classes)
    assert accuracy(probs, y) == pytest.approx(accuracy_score(y, probs.argmax(axis=1)))
    assert nll(probs, y) == pytest.approx(log_loss(y, probs), rel=1e-12)
    expected_brier = brier_score_loss(y, probs, scale_by_half=False)
    assert brier(probs, y) == pytest.approx(expected_brier, rel=1e-12)


def test_binary_brier_is_twice_the_positive_class_brier():
    probs, y = probs_and_labels(n_classes=2)
    assert brier(probs, y) == pytest.approx(2 * brier_score_loss(y, probs[:, 1]), rel=1e-12)


def test_nll_clips_at_1e_15():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    expected = (-np.log(1e-15) + np.log(2)) / 2
    assert nll(probs, np.array([1, 0])) == pytest.approx(expected, rel=1e-12)


def test_ece_hand_computed():
    # 3 bins: (0, 1/3], (1/3, 2/3], (2/3, 1].
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.55, 0.45], [0.7, 0.3]])
    y = np.array([0, 1, 1, 0, 0])
    # Bin 2: confidences 0.6, 0.55 both right: |1 - 0.575| * 2/5 = 0.17.
    # Bin 3: confidences 0.9, 0.8, 0.7; right, wrong, right: |2/3 - 0.8| * 3/5 = 0.08.
    ece = expected_calibration_error(probs, y, n_bins=3)
    assert ece == pytest.approx(0.17 + 0.08, abs=1e-12)


def test_ece_is_zero_when_calibrated_per_bin():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    pred, y = rng.normal(size=(100, 2)), rng.normal(size=(100, 2))
    assert rmse(pred, y) == pytest.approx(np.sqrt(mean_squared_error(y, pred)), rel=1e-12)
    assert mae(pred, y) == pytest.approx(mean_absolute_error(y, pred), rel=1e-12)
    # (n_samples,) targets against (n_samples, 1) predictions.
    assert rmse(pred[:, :1], y[:, 0]) == pytest.approx(
        np.sqrt(mean_squared_error(y[:, 0], pred[:, 0])), rel=1e-12
    )


def test_gaussian_nll_hand_computed():
    pred, variance, y = np.array([0.0, 1.0]), np.array([1.0, 4.0]), np.array([1.0, 1.0])
    expected = np.mean([0.5 * (np.log(2 * np.pi) + 1.0), 0.5 * (np.log(2 * np.pi * 4.0) + 0.0)])
    assert gaussian_nll(pred, variance, y) == pytest.approx(expected, rel=1e-12)


def test_interval_coverage_includes_bounds():
    lower, upper = np.array([0.0, 0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0])
    assert interval_coverage(lower, upper, np.array([0.0, 1.0, 0.5, 1.5])) == 0.75


def test_summary_dicts_return_python_floats():
    probs, y = probs_and_labels()
    scores = classification_metrics(probs, y)
    assert list(scores) == ["accuracy", "nll", "brier", "ece"]
    assert all(type(value) is float for value in scores.values())
    rng = np.random.default_rng(2)
    pred = rng.normal(size=(5000, 1))
    y_reg = pred[:, 0] + rng.normal(size=5000) * 2.0
    assert list(regression_metrics(pred, y_reg)) == ["rmse", "mae"]
    full = regression_metrics(pred, y_reg, variance=np.full((5000, 1), 4.0), level=0.9)
    assert list(full) == ["rmse", "mae", "gaussian_nll", "coverage"]
    assert all(type(value) is float for value in full.values())
    assert full["coverage"] == pytest.approx(0.9, abs=0.015)


def test_errors_name_the_problem():
    probs, y = probs_and_labels()
    with pytest.raises(ShapeError, match=r"probs of shape \(n_samples, n_classes\)"):
        nll(probs, y[:10])
    with pytest.raises(DataError, match=r"class indices in 0\.\.2"):
        accuracy(probs, y + 1)
    with pytest.raises(ConfigError, match="n_bins must be an int >= 1; got 0"):
        expected_calibration_error(probs, y, n_bins=0)
    with pytest.raises(ShapeError, match="arrays of one shape"):
        rmse(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(DataError, match="gaussian_nll needs variances > 0"):
        gaussian_nll(np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ConfigError, match="interval level must be in"):
        regression_metrics(np.zeros(2), np.zeros(2), variance=np.ones(2), level=0)


def test_ece_bins_are_closed_on_the_right():
    # Confidence 0.5 sits on the edge of 2 bins and belongs to the first, (0, 0.5].
    probs = np.array([[0.5, 0.5], [0.75, 0.25]])
    ece = expected_calibration_error(probs, np.array([0, 1]), n_bins=2)
    assert ece == pytest.approx(0.5 * 0.5 + 0.5 * 0.75)
