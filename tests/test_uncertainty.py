"""Uncertainty measures against hand computations and their identities."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from ensembles.errors import ConfigError, DataError, ShapeError
from ensembles.uncertainty import (
    UNCERTAINTY_NAMES,
    classification_uncertainty,
    regression_uncertainty,
)


def member_probs(seed=0, n_members=5, n_samples=50, n_classes=4):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(n_classes, 0.7), size=(n_members, n_samples))


def test_classification_hand_example():
    # Two members, one sample: [1, 0] and [0.5, 0.5], weights 3:1.
    member_preds = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])
    result = classification_uncertainty(member_preds, weights=np.array([3.0, 1.0]))
    mean = np.array([0.875, 0.125])
    np.testing.assert_allclose(
        result["variance"], [[0.75 * 0.125**2 + 0.25 * 0.375**2] * 2], atol=1e-15
    )
    predictive = -(mean * np.log(mean)).sum()
    np.testing.assert_allclose(result["predictive_entropy"], [predictive], atol=1e-15)
    np.testing.assert_allclose(result["expected_entropy"], [0.25 * np.log(2)], atol=1e-15)
    np.testing.assert_allclose(
        result["mutual_information"], [predictive - 0.25 * np.log(2)], atol=1e-15
    )
    # The tied member [0.5, 0.5] votes class 0 (lowest index), as does the mean.
    np.testing.assert_allclose(result["agreement"], [1.0])


def test_entropy_decomposition_and_keys():
    member_preds = member_probs()
    weights = np.array([1.0, 2.0, 3.0, 1.0, 0.5])
    result = classification_uncertainty(member_preds, weights)
    assert tuple(result) == UNCERTAINTY_NAMES["classification"]
    np.testing.assert_allclose(
        result["predictive_entropy"],
        result["expected_entropy"] + result["mutual_information"],
        atol=1e-6,
    )
    assert np.all(result["mutual_information"] > 0)
    assert result["variance"].shape == (50, 4)
    assert all(result[key].shape == (50,) for key in UNCERTAINTY_NAMES["classification"][1:])


def test_uniform_weights_equal_none():
    member_preds = member_probs()
    none = classification_uncertainty(member_preds)
    uniform = classification_uncertainty(member_preds, np.full(5, 7.0))
    for key in none:
        np.testing.assert_allclose(uniform[key], none[key], atol=1e-14)
    np.testing.assert_allclose(none["variance"], member_preds.var(axis=0), atol=1e-14)


def test_agreement_against_given_combined_output():
    member_preds = np.array([[[0.9, 0.1]], [[0.8, 0.2]], [[0.4, 0.6]]])
    default = classification_uncertainty(member_preds)
    np.testing.assert_allclose(default["agreement"], [2 / 3])
    against_stack = classification_uncertainty(member_preds, combined=np.array([[0.3, 0.7]]))
    np.testing.assert_allclose(against_stack["agreement"], [1 / 3])


def test_identical_members_have_no_disagreement():
    member = member_probs(n_members=1)
    result = classification_uncertainty(np.repeat(member, 3, axis=0))
    # Zero up to the rounding of the 1/3 weights.
    assert result["variance"].max() < 1e-30
    np.testing.assert_allclose(result["mutual_information"], 0.0, atol=1e-15)
    assert np.all(result["agreement"] == 1)


def test_zero_probabilities_have_finite_entropy():
    result = classification_uncertainty(np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]]))
    np.testing.assert_allclose(result["predictive_entropy"], [np.log(2)])
    np.testing.assert_allclose(result["expected_entropy"], [0.0])


def test_regression_total_variance_is_aleatoric_plus_epistemic():
    rng = np.random.default_rng(1)
    member_preds = rng.normal(size=(4, 30, 2))
    member_variances = rng.uniform(0.1, 2.0, size=(4, 30, 2))
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    result = regression_uncertainty(member_preds, member_variances, weights)
    assert tuple(result) == UNCERTAINTY_NAMES["regression"]
    mean = np.tensordot(weights, member_preds, axes=1)
    epistemic = np.tensordot(weights, (member_preds - mean) ** 2, axes=1)
    aleatoric = np.tensordot(weights, member_variances, axes=1)
    np.testing.assert_allclose(result["variance"], epistemic, atol=1e-14)
    np.testing.assert_allclose(result["aleatoric_variance"], aleatoric, atol=1e-14)
    np.testing.assert_allclose(result["total_variance"], aleatoric + epistemic, atol=1e-14)
    z = 1.6448536269514722  # the normal quantile at 0.95
    np.testing.assert_allclose(result["interval_upper"], mean + z * np.sqrt(aleatoric + epistemic))
    np.testing.assert_allclose(result["interval_lower"], mean - z * np.sqrt(aleatoric + epistemic))


def test_regression_interval_uses_epistemic_variance_and_combined_centre():
    member_preds = np.array([[[1.0]], [[3.0]]])
    result = regression_uncertainty(member_preds, level=0.5, combined=np.array([[10.0]]))
    assert set(result) == {"variance", "interval_lower", "interval_upper"}
    np.testing.assert_allclose(result["variance"], [[1.0]])
    z = NormalDist().inv_cdf(0.75)
    np.testing.assert_allclose(result["interval_lower"], [[10.0 - z]])
    np.testing.assert_allclose(result["interval_upper"], [[10.0 + z]])


def test_regression_interval_covers_its_level():
    # Targets drawn from the normal the ensemble reports land inside the interval at
    # about the requested rate.
    rng = np.random.default_rng(2)
    member_preds = rng.normal(size=(5, 20000, 1))
    member_variances = rng.uniform(0.5, 1.5, size=member_preds.shape)
    result = regression_uncertainty(member_preds, member_variances, level=0.8)
    centre = member_preds.mean(axis=0)
    y = centre + np.sqrt(result["total_variance"]) * rng.normal(size=centre.shape)
    inside = (result["interval_lower"] <= y) & (y <= result["interval_upper"])
    assert inside.mean() == pytest.approx(0.8, abs=0.01)


def test_errors_name_the_problem():
    member_preds = member_probs()
    with pytest.raises(ShapeError, match="Got 2 weights for 5 members"):
        classification_uncertainty(member_preds, np.ones(2))
    with pytest.raises(ConfigError, match="non-negative and sum to more than zero"):
        classification_uncertainty(member_preds, -np.ones(5))
    with pytest.raises(ShapeError, match=r"\(n_members, n_samples, n_outputs\).*\(50, 4\)"):
        classification_uncertainty(member_preds[0])
    with pytest.raises(ShapeError, match=r"combined must have shape .* \(50, 4\).*\(50, 3\)"):
        classification_uncertainty(member_preds, combined=np.ones((50, 3)))
    with pytest.raises(ConfigError, match="interval level must be in"):
        regression_uncertainty(member_preds, level=1.0)
    with pytest.raises(ShapeError, match="member_variances must have the shape"):
        regression_uncertainty(member_preds, member_variances=np.ones((5, 50, 1)))
    with pytest.raises(DataError, match="member_variances must be non-negative"):
        regression_uncertainty(member_preds, member_variances=-np.ones_like(member_preds))
