"""Regression variance calibration: fitted on held-out residuals only, for combiners and
baselines alike, so that intervals compare like with like."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles.evaluation import (
    baseline_metrics,
    evaluate_predictions,
    fit_combiners,
    variance_scale,
)
from ensembles.heldout import FitSet, HeldoutPredictions, SplitPredictions
from ensembles.uncertainty import fit_variance_scale


def _split(rng: np.random.Generator, n: int, spread: float) -> SplitPredictions:
    """Members whose own variance heads claim 1.0 while their errors have variance ``spread``."""
    y = rng.normal(size=(n, 1))
    preds = y[None] + rng.normal(0, np.sqrt(spread), size=(3, n, 1))
    return SplitPredictions(rng.normal(size=(n, 2)), y, preds, np.ones_like(preds))


def test_the_scale_corrects_a_misstated_variance_on_the_test_rows() -> None:
    rng = np.random.default_rng(0)
    validation, test = _split(rng, 2000, 4.0), _split(rng, 2000, 4.0)
    heldout = HeldoutPredictions(validation, test)
    results, _ = fit_combiners(
        "regression", FitSet(validation, {"source": "validation"}), heldout, ("mean",)
    )
    mean = results["mean"]
    # mean learns nothing, so its cross-fitted outputs are the pool mean on every row.
    assert mean.variance_scale == pytest.approx(
        variance_scale(validation, validation.member_preds.mean(axis=0)), rel=1e-12
    )
    # Uncalibrated, heads (1) plus pool spread (8/3) overstate the mean's error variance (4/3).
    raw = evaluate_predictions(test, test.member_preds.mean(axis=0))
    assert raw["coverage"] > 0.95 and mean.variance_scale < 0.6
    assert mean.test_metrics["coverage"] == pytest.approx(0.9, abs=0.02)  # 2000 test rows


def test_baseline_members_are_calibrated_the_same_way() -> None:
    rng = np.random.default_rng(1)
    heldout = HeldoutPredictions(_split(rng, 2000, 4.0), _split(rng, 2000, 4.0))
    best = baseline_metrics("regression", heldout)["best_member"]
    index = int(best["member_index"])
    scale = fit_variance_scale(
        heldout.validation.y, heldout.validation.member_preds[index], np.ones((2000, 1))
    )
    assert scale == pytest.approx(4.0, rel=0.1)  # by hand: errors of variance 4, claimed 1
    assert best["coverage"] == pytest.approx(0.9, abs=0.02)
