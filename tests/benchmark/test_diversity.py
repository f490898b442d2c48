"""Disagreement and error correlation against hand-computed values."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from ensembles.benchmark.diversity import (
    error_correlation,
    member_errors,
    pairwise_disagreement,
)
from ensembles.errors import ShapeError


def one_hot_probs(votes: list[list[int]], n_classes: int = 3) -> np.ndarray:
    """(n_members, n_samples, n_classes) probabilities peaked on each vote."""
    probs = np.full((len(votes), len(votes[0]), n_classes), 0.1)
    for m, row in enumerate(votes):
        probs[m, np.arange(len(row)), row] = 0.8
    return probs


def test_disagreement_hand_computed() -> None:
    # Pairs: (0,1) differ on 1 of 4 rows, (0,2) on 2, (1,2) on 3 -> mean 6 / 12.
    probs = one_hot_probs([[0, 1, 2, 0], [0, 1, 2, 1], [1, 0, 2, 0]])
    assert pairwise_disagreement(probs, "classification") == pytest.approx(0.5)


def test_regression_disagreement_is_rms_difference() -> None:
    preds = np.array([[[0.0], [0.0]], [[1.0], [3.0]]])
    assert pairwise_disagreement(preds, "regression") == pytest.approx(np.sqrt(5.0))


def test_identical_members_do_not_disagree() -> None:
    probs = one_hot_probs([[0, 1, 2], [0, 1, 2]])
    assert pairwise_disagreement(probs, "classification") == 0.0


def test_error_correlation_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(30, 1))
    shared = rng.normal(size=(30, 1))
    preds = np.stack([y + shared + rng.normal(scale=s, size=(30, 1)) for s in (0.1, 0.5, 1.0)])
    errors = (preds - y[None])[:, :, 0]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = np.mean([np.corrcoef(errors[i], errors[j])[0, 1] for i, j in pairs])
    assert error_correlation(preds, y, "regression") == pytest.approx(expected)


def test_classification_errors_are_one_minus_true_probability() -> None:
    probs = np.array([[[0.7, 0.3], [0.4, 0.6]]])
    assert member_errors(probs, np.array([0, 0]), "classification").tolist() == [
        pytest.approx([0.3, 0.6])
    ]


def test_single_member_gives_nan() -> None:
    probs = one_hot_probs([[0, 1]])
    assert math.isnan(pairwise_disagreement(probs, "classification"))
    assert math.isnan(error_correlation(probs, np.array([0, 1]), "classification"))


@pytest.mark.parametrize("shape", [(3, 4), (0, 4, 2), (2, 0, 2)])
def test_member_preds_of_the_wrong_shape_are_refused(shape: tuple[int, ...]) -> None:
    message = r"member_preds must have shape \(n_members, n_samples, n_outputs\) with no empty "
    with pytest.raises(ShapeError, match=message + r"axis; got shape " + re.escape(str(shape))):
        pairwise_disagreement(np.zeros(shape), "classification")
    with pytest.raises(ShapeError, match=message):
        error_correlation(np.zeros(shape), np.zeros(4, dtype=int), "classification")
