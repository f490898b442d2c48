"""Uncertainty measures against hand computations and their identities."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from ensembles.errors import ConfigError, DataError, ShapeError
from ensembles.uncertainty import (
    UNCERTAINTY_NAMES,
    VARIANCE_SCALE_RANGE,
    fit_variance_scale,
    member_variance,
    served_uncertainty,
)


def member_probs(seed=0, n_members=5, n_samples=50, n_classes=4):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(n_classes, 0.7), size=(n_members, n_samples))


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)


def test_classification_hand_example():
    # Two members, one sample: [1, 0] and [0.5, 0.5]; a combiner serves [0.3, 0.7].
    member_preds = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])
    served = np.array([[0.3, 0.7]])
    result = served_uncertainty("classification", member_preds, served)
    assert tuple(result) == UNCERTAINTY_NAMES["classification"]
    # Of the served probabilities:
    served_entropy = -(0.3 * np.log(0.3) + 0.7 * np.log(0.7))
    np.testing.assert_allclose(result["predictive_entropy"], [served_entropy], atol=1e-15)
    np.testing.assert_allclose(result["max_probability"], [0.7])
    # Of the pool, members weighed equally (pool mean [0.75, 0.25]):
    np.testing.assert_allclose(result["variance"], [[0.0625, 0.0625]], atol=1e-15)
    np.testing.assert_allclose(result["expected_entropy"], [0.5 * np.log(2)], atol=1e-15)
    pool_entropy = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    np.testing.assert_allclose(
        result["mutual_information"], [pool_entropy - 0.5 * np.log(2)], atol=1e-15
    )
    # The served label is class 1; the tied member [0.5, 0.5] votes class 0 (lowest index).
    np.testing.assert_allclose(result["agreement"], [0.0])


def test_disagreement_ignores_the_combiner_and_entropy_follows_the_served_output():
    member_preds = member_probs()
    pool_mean = member_preds.mean(axis=0)
    at_mean = served_uncertainty("classification", member_preds, pool_mean)
    one_hot = np.eye(4)[member_preds[2].argmax(axis=1)]  # a combiner that picks member 2
    picked = served_uncertainty("classification", member_preds, one_hot)
    for key in ("variance", "expected_entropy", "mutual_information"):
        np.testing.assert_array_equal(picked[key], at_mean[key])
    np.testing.assert_allclose(at_mean["variance"], member_preds.var(axis=0), atol=1e-15)
    np.testing.assert_allclose(at_mean["variance"], member_variance(member_preds), atol=0)
    # At the pool mean the entropy decomposes; served one-hot has no entropy at all.
    np.testing.assert_allclose(
        at_mean["predictive_entropy"],
        at_mean["expected_entropy"] + at_mean["mutual_information"],
        atol=1e-12,
    )
    assert np.all(at_mean["mutual_information"] > 0)
    np.testing.assert_array_equal(picked["predictive_entropy"], 0.0)
    assert not np.signbit(picked["predictive_entropy"]).any()  # 0, not -0, in JSON
    np.testing.assert_array_equal(picked["max_probability"], 1.0)
    agrees = member_preds.argmax(axis=2) == member_preds[2].argmax(axis=1)
    np.testing.assert_allclose(picked["agreement"], agrees.mean(axis=0))
    assert np.all(picked["agreement"] >= 0.2)  # member 2 always agrees with itself
    assert at_mean["variance"].shape == (50, 4)
    assert all(at_mean[key].shape == (50,) for key in UNCERTAINTY_NAMES["classification"][1:])


def test_identical_members_have_no_disagreement():
    member = member_probs(n_members=1)
    result = served_uncertainty("classification", np.repeat(member, 3, axis=0), member[0])
    assert result["variance"].max() < 1e-30  # zero up to the rounding of the mean
    np.testing.assert_allclose(result["mutual_information"], 0.0, atol=1e-15)
    assert np.all(result["agreement"] == 1)
    np.testing.assert_allclose(result["predictive_entropy"], entropy(member[0]), atol=1e-15)


def test_zero_probabilities_have_finite_entropy():
    member_preds = np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])
    result = served_uncertainty("classification", member_preds, member_preds.mean(axis=0))
    np.testing.assert_allclose(result["predictive_entropy"], [np.log(2)])
    np.testing.assert_allclose(result["expected_entropy"], [0.0])
    np.testing.assert_allclose(result["mutual_information"], [np.log(2)])


def test_regression_total_variance_is_aleatoric_plus_epistemic():
    rng = np.random.default_rng(1)
    member_preds = rng.normal(size=(4, 30, 2))
    member_variances = rng.uniform(0.1, 2.0, size=(4, 30, 2))
    served = rng.normal(size=(30, 2))  # e.g. a blend's output
    result = served_uncertainty("regression", member_preds, served, member_variances)
    assert tuple(result) == UNCERTAINTY_NAMES["regression"]
    epistemic = member_preds.var(axis=0)
    aleatoric = member_variances.mean(axis=0)
    np.testing.assert_allclose(result["variance"], epistemic, atol=1e-14)
    np.testing.assert_allclose(result["aleatoric_variance"], aleatoric, atol=1e-14)
    np.testing.assert_allclose(result["total_variance"], aleatoric + epistemic, atol=1e-14)
    z = 1.6448536269514722  # the normal quantile at 0.95
    half_width = z * np.sqrt(aleatoric + epistemic)
    np.testing.assert_allclose(result["interval_upper"], served + half_width)
    np.testing.assert_allclose(result["interval_lower"], served - half_width)


def test_the_served_models_own_variance_is_the_aleatoric_part():
    # The weight-averaged model: its own value and variance head, the pool's disagreement.
    member_preds = np.array([[[1.0]], [[3.0]]])
    result = served_uncertainty(
        "regression",
        member_preds,
        np.array([[2.5]]),
        member_variances=np.array([[[9.0]], [[9.0]]]),
        served_variance=np.array([[0.5]]),
        level=0.5,
    )
    np.testing.assert_allclose(result["variance"], [[1.0]])
    np.testing.assert_allclose(result["aleatoric_variance"], [[0.5]])
    np.testing.assert_allclose(result["total_variance"], [[1.5]])
    z = NormalDist().inv_cdf(0.75)
    np.testing.assert_allclose(result["interval_lower"], [[2.5 - z * np.sqrt(1.5)]])
    np.testing.assert_allclose(result["interval_upper"], [[2.5 + z * np.sqrt(1.5)]])


def test_regression_interval_uses_epistemic_variance_without_aleatoric():
    member_preds = np.array([[[1.0]], [[3.0]]])
    result = served_uncertainty("regression", member_preds, np.array([[10.0]]), level=0.5)
    assert set(result) == {"variance", "total_variance", "interval_lower", "interval_upper"}
    np.testing.assert_allclose(result["variance"], [[1.0]])
    np.testing.assert_allclose(result["total_variance"], [[1.0]])
    z = NormalDist().inv_cdf(0.75)
    np.testing.assert_allclose(result["interval_lower"], [[10.0 - z]])
    np.testing.assert_allclose(result["interval_upper"], [[10.0 + z]])


def test_variance_scale_calibrates_total_variance_and_interval():
    """The scale multiplies aleatoric + epistemic; the decomposition itself stays raw."""
    member_preds = np.array([[[1.0]], [[3.0]]])
    member_variances = np.array([[[0.5]], [[1.5]]])
    result = served_uncertainty(
        "regression",
        member_preds,
        np.array([[2.0]]),
        member_variances,
        level=0.5,
        variance_scale=4.0,
    )
    np.testing.assert_allclose(result["variance"], [[1.0]])
    np.testing.assert_allclose(result["aleatoric_variance"], [[1.0]])
    np.testing.assert_allclose(result["total_variance"], [[8.0]])  # 4 x (1 + 1)
    z = NormalDist().inv_cdf(0.75)
    np.testing.assert_allclose(result["interval_upper"], [[2.0 + z * np.sqrt(8.0)]])


def test_fit_variance_scale_is_the_maximum_likelihood_factor():
    """By hand: the errors' squares over the variances, averaged; clipped to its range."""
    y = np.array([[1.0], [2.0], [4.0]])
    served = np.array([[0.0], [2.0], [2.0]])
    variance = np.array([[1.0], [1.0], [2.0]])
    assert fit_variance_scale(y, served, variance) == pytest.approx((1 + 0 + 2) / 3)
    low, high = VARIANCE_SCALE_RANGE
    assert fit_variance_scale(y * 1e6, served, variance) == high
    assert fit_variance_scale(served, served, variance) == low
    # Under the model's own distribution the fitted scale is near 1.
    rng = np.random.default_rng(0)
    sigma2 = rng.uniform(0.5, 2.0, size=(20000, 1))
    draws = np.sqrt(sigma2) * rng.normal(size=sigma2.shape)
    assert fit_variance_scale(draws, np.zeros_like(draws), sigma2) == pytest.approx(1.0, abs=0.03)


def test_regression_interval_covers_its_level():
    # Targets drawn from the normal the ensemble reports land inside the interval at
    # about the requested rate.
    rng = np.random.default_rng(2)
    member_preds = rng.normal(size=(5, 20000, 1))
    member_variances = rng.uniform(0.5, 1.5, size=member_preds.shape)
    centre = member_preds.mean(axis=0)
    result = served_uncertainty("regression", member_preds, centre, member_variances, level=0.8)
    y = centre + np.sqrt(result["total_variance"]) * rng.normal(size=centre.shape)
    inside = (result["interval_lower"] <= y) & (y <= result["interval_upper"])
    assert inside.mean() == pytest.approx(0.8, abs=0.01)


def test_errors_name_the_problem():
    member_preds = member_probs()
    served = member_preds.mean(axis=0)
    with pytest.raises(ShapeError, match=r"\(n_members, n_samples, n_outputs\).*\(50, 4\)"):
        served_uncertainty("classification", member_preds[0], served)
    with pytest.raises(ShapeError, match=r"served must have shape \(50, 4\).*\(50, 3\)"):
        served_uncertainty("classification", member_preds, np.ones((50, 3)))
    with pytest.raises(ConfigError, match="task must be 'classification' or 'regression'"):
        served_uncertainty("ranking", member_preds, served)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="interval level must be in"):
        served_uncertainty("regression", member_preds, served, level=1.0)
    with pytest.raises(ShapeError, match="member_variances must have shape"):
        served_uncertainty("regression", member_preds, served, np.ones((5, 50, 1)))
    with pytest.raises(DataError, match="member_variances must be non-negative"):
        served_uncertainty("regression", member_preds, served, -np.ones_like(member_preds))
    with pytest.raises(ShapeError, match="served_variance must have shape"):
        served_uncertainty("regression", member_preds, served, served_variance=np.ones(50))
    with pytest.raises(DataError, match="served_variance must be non-negative"):
        served_uncertainty("regression", member_preds, served, served_variance=-served)
