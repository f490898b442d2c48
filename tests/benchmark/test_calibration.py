"""Reliability bins and coverage by level: consistent with ECE and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles.benchmark.calibration import coverage_by_level, reliability_bins
from ensembles.benchmark.scoring import uncertainty_error_curve
from ensembles.metrics import expected_calibration_error


def test_reliability_bins_hand_computed() -> None:
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 1, 1, 1])
    bins = reliability_bins(probs, y, n_bins=5)
    # Confidences 0.95, 0.85 -> bin 4; 0.7 -> bin 3; 0.6 -> bin 2.
    assert bins["count"] == [0, 0, 1, 1, 2]
    assert bins["correct"] == [0, 0, 0, 1, 1]
    assert bins["confidence_sum"] == pytest.approx([0, 0, 0.6, 0.7, 1.8])


def test_bins_reproduce_the_expected_calibration_error() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=200)
    y = rng.integers(0, 4, 200)
    bins = reliability_bins(probs, y)  # the default bins are those of the ECE column
    assert len(bins["count"]) == 15
    gap = np.abs(np.array(bins["correct"]) - np.array(bins["confidence_sum"])).sum() / 200
    assert gap == pytest.approx(expected_calibration_error(probs, y))


def test_coverage_by_level_hand_computed() -> None:
    pred = np.zeros((4, 1))
    variance = np.ones((4, 1))
    y = np.array([[0.1], [0.5], [1.0], [3.0]])
    # Half widths: level 0.5 -> 0.674, level 0.9 -> 1.645.
    result = coverage_by_level(pred, variance, y, levels=(0.5, 0.9))
    assert result == {"level": [0.5, 0.9], "coverage": [0.5, 0.75]}


def test_uncertainty_error_curve_bins_by_variance() -> None:
    variance = np.array([0.4, 0.1, 0.3, 0.2])
    error = np.array([1.0, 0.0, 1.0, 0.0])
    curve = uncertainty_error_curve(variance, error, n_bins=2)
    assert curve == {"variance": [pytest.approx(0.15), pytest.approx(0.35)], "error": [0.0, 1.0]}
