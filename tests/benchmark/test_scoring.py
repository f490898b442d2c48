"""The benchmark's reported scores agree with scikit-learn on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, mean_squared_error

from ensembles.benchmark.scoring import ensemble_size_curve
from ensembles.heldout import SplitPredictions


def test_ensemble_size_curve_matches_sklearn_for_classification() -> None:
    rng = np.random.default_rng(0)
    preds = rng.dirichlet(np.ones(2), size=(3, 50))  # (n_members, n_samples, 2)
    y = rng.integers(0, 2, 50)
    test = SplitPredictions(np.zeros((50, 1)), y, preds)
    curve = ensemble_size_curve("classification", test, 0.9)
    assert curve["n_members"] == [1, 2, 3]
    for k in (1, 2, 3):
        mean = preds[:k].mean(axis=0)
        assert curve["accuracy"][k - 1] == pytest.approx(accuracy_score(y, mean.argmax(axis=1)))
        assert curve["nll"][k - 1] == pytest.approx(log_loss(y, mean, labels=[0, 1]))
        # Our Brier sums over classes: twice scikit-learn's positive-class score.
        assert curve["brier"][k - 1] == pytest.approx(2 * brier_score_loss(y, mean[:, 1]))


def test_ensemble_size_curve_matches_sklearn_for_regression() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=(40, 1))
    preds = y[None] + rng.normal(size=(4, 40, 1))
    variances = np.full_like(preds, 0.5)
    test = SplitPredictions(np.zeros((40, 1)), y, preds, variances)
    curve = ensemble_size_curve("regression", test, 0.9)
    for k in (1, 4):
        expected = np.sqrt(mean_squared_error(y, preds[:k].mean(axis=0)))
        assert curve["rmse"][k - 1] == pytest.approx(expected)
    assert set(curve) >= {"n_members", "rmse", "mae", "gaussian_nll", "coverage"}
