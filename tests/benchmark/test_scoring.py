"""The benchmark's reported scores agree with scikit-learn on the same predictions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, mean_squared_error

from ensembles.benchmark.scoring import (
    ensemble_size_curve,
    member_orders,
    model_uncertainty,
    ranking_uncertainty,
    score_version,
)
from ensembles.combiners import combiner_from_state
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions
from ensembles.store import ModelStore
from ensembles.uncertainty import served_uncertainty


def test_member_orders_are_seeded_permutations() -> None:
    orders = member_orders(4, n_orders=20, seed=3)
    assert orders.shape == (20, 4)
    assert all(sorted(order) == [0, 1, 2, 3] for order in orders.tolist())
    assert np.array_equal(orders, member_orders(4, n_orders=20, seed=3))
    assert len({tuple(order) for order in orders.tolist()}) > 1


def test_ensemble_size_curve_matches_sklearn_for_classification() -> None:
    rng = np.random.default_rng(0)
    preds = rng.dirichlet(np.ones(2), size=(3, 50))  # (n_members, n_samples, 2)
    y = rng.integers(0, 2, 50)
    test = SplitPredictions(np.zeros((50, 1)), y, preds)
    curve = ensemble_size_curve("classification", test, 0.9, n_orders=6, seed=1)
    assert curve["n_members"] == [1, 2, 3]
    orders = member_orders(3, n_orders=6, seed=1)
    for k in (1, 2, 3):
        means = [preds[order[:k]].mean(axis=0) for order in orders]
        accuracy = np.mean([accuracy_score(y, mean.argmax(axis=1)) for mean in means])
        nll = np.mean([log_loss(y, mean, labels=[0, 1]) for mean in means])
        # Our Brier sums over classes: twice scikit-learn's positive-class score.
        brier = np.mean([2 * brier_score_loss(y, mean[:, 1]) for mean in means])
        assert curve["accuracy"][k - 1] == pytest.approx(accuracy)
        assert curve["nll"][k - 1] == pytest.approx(nll)
        assert curve["brier"][k - 1] == pytest.approx(brier)
    # Every order ends with all members: the last point is the plain mean of them all.
    assert curve["nll"][-1] == pytest.approx(log_loss(y, preds.mean(axis=0), labels=[0, 1]))


def test_first_point_is_a_typical_member_not_member_zero() -> None:
    y = np.array([0, 1, 0, 1])
    good = np.eye(2)[y] * 0.8 + 0.1  # right on every row
    bad = np.eye(2)[1 - y] * 0.8 + 0.1  # wrong on every row
    preds = np.stack([bad, good, good, good])
    test = SplitPredictions(np.zeros((4, 1)), y, preds)
    curve = ensemble_size_curve("classification", test, 0.9)
    orders = member_orders(4)
    # k = 1 is the share of orders that start with a good member, not member 0's score.
    assert curve["accuracy"][0] == pytest.approx(np.mean(orders[:, 0] != 0))
    assert 0.0 < curve["accuracy"][0] < 1.0


def test_ensemble_size_curve_matches_sklearn_for_regression() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=(40, 1))
    preds = y[None] + rng.normal(size=(4, 40, 1))
    variances = np.full_like(preds, 0.5)
    test = SplitPredictions(np.zeros((40, 1)), y, preds, variances)
    curve = ensemble_size_curve("regression", test, 0.9, n_orders=5)
    orders = member_orders(4, n_orders=5)
    for k in (1, 4):
        expected = np.mean(
            [np.sqrt(mean_squared_error(y, preds[order[:k]].mean(axis=0))) for order in orders]
        )
        assert curve["rmse"][k - 1] == pytest.approx(expected)
    assert set(curve) >= {"n_members", "rmse", "mae", "gaussian_nll", "coverage"}


def test_score_version_gives_single_networks_an_uncertainty(trained_store: Path) -> None:
    store = ModelStore(trained_store)
    manifest = store.load_manifest("digits")
    scores = score_version(store.path("digits", manifest.version), manifest)
    assert scores["interval_level"] == manifest.training["interval_level"]
    for name in ("best_member", "average_member", "weight_average"):
        quality = scores["models"][name]
        # Predictive entropy stands in for the variance of a single classifier.
        assert math.isfinite(quality["spearman"]), name
        assert math.isfinite(quality["selective_accuracy"]), name
        assert math.isfinite(quality["auroc_variance"]), name
    # A single member has no disagreement; the weight-averaged model reports the pool's.
    assert math.isnan(scores["models"]["best_member"]["auroc_mi"])
    assert math.isfinite(scores["models"]["weight_average"]["auroc_mi"])
    assert len(scores["calibration"]["mean"]["count"]) == 15


def test_model_uncertainty_is_pool_disagreement_around_the_served_output(
    trained_store: Path,
) -> None:
    store = ModelStore(trained_store)
    manifest = store.load_manifest("digits")
    folder = store.path("digits", manifest.version)
    test = HeldoutPredictions.load(folder / HELDOUT_FILE).test
    for name in ("vote", "stack", "weight_average"):
        info = manifest.combiners[name]
        served, measures = model_uncertainty(folder, "classification", info, test, 0.9)
        if name != "weight_average":  # the averaged model's own output, run by onnxruntime
            rule = combiner_from_state(info.state)
            np.testing.assert_array_equal(served, rule.combine(test.member_preds, test.X))
        by_hand = served_uncertainty("classification", test.member_preds, served)
        for key in by_hand:
            np.testing.assert_array_equal(measures[key], by_hand[key])
        variance, mi = ranking_uncertainty("classification", measures)
        np.testing.assert_allclose(variance, test.member_preds.var(axis=0).sum(axis=1))
        np.testing.assert_array_equal(mi, measures["mutual_information"])


def test_score_version_uses_the_manifest_interval_level(trained_store: Path) -> None:
    store = ModelStore(trained_store)
    manifest = store.load_manifest("diabetes")
    folder = store.path("diabetes", manifest.version)
    wide = score_version(folder, manifest)
    manifest.training["interval_level"] = 0.5
    narrow = score_version(folder, manifest)
    assert wide["interval_level"] == 0.9 and narrow["interval_level"] == 0.5
    assert narrow["ensemble_size"]["coverage"][-1] < wide["ensemble_size"]["coverage"][-1]
