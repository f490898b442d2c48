"""Diversity of an ensemble's members: pairwise disagreement and correlation of their errors."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from ensembles.uncertainty import check_member_preds


def pairwise_disagreement(member_preds: np.ndarray, task: str) -> float:
    """Mean over member pairs of how much two members' predictions differ.

    Parameters
    ----------
    member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
        Class probabilities (classification) or values (regression).
    task : {"classification", "regression"}
        Classification: share of rows where the two members' top classes differ.
        Regression: root mean squared difference of the two members' values.

    Returns
    -------
    float
        NaN for a single member.
    """
    member_preds = check_member_preds(member_preds)
    pairs = list(combinations(range(len(member_preds)), 2))
    if not pairs:
        return math.nan
    if task == "classification":
        votes = member_preds.argmax(axis=2)
        return float(np.mean([np.mean(votes[i] != votes[j]) for i, j in pairs]))
    return float(
        np.mean([np.sqrt(np.mean((member_preds[i] - member_preds[j]) ** 2)) for i, j in pairs])
    )


def member_errors(member_preds: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Per-row error of every member.

    Parameters
    ----------
    member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
    y : np.ndarray
        Class indices ``(n_samples,)`` or values ``(n_samples, n_outputs)``.
    task : {"classification", "regression"}
        Classification: one minus the probability of the true class. Regression: the
        residual ``pred - y`` averaged over outputs (signed, so correlated misses show).

    Returns
    -------
    np.ndarray, shape (n_members, n_samples)
    """
    member_preds = check_member_preds(member_preds)
    if task == "classification":
        rows = np.arange(member_preds.shape[1])
        return 1.0 - member_preds[:, rows, np.asarray(y, dtype=int)]
    values = np.asarray(y, dtype=float).reshape(member_preds.shape[1], -1)
    return (member_preds - values[None]).mean(axis=2)


def error_correlation(member_preds: np.ndarray, y: np.ndarray, task: str) -> float:
    """Mean Pearson correlation of member errors over member pairs.

    Parameters
    ----------
    member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
    y : np.ndarray
        Class indices ``(n_samples,)`` or values ``(n_samples, n_outputs)``.
    task : {"classification", "regression"}
        Errors as defined by :func:`member_errors`.

    Returns
    -------
    float
        1 means the members make the same mistakes; NaN for a single member or when
        every pair has a constant error.
    """
    errors = member_errors(member_preds, y, task)
    values = []
    for i, j in combinations(range(len(errors)), 2):
        if np.ptp(errors[i]) > 0 and np.ptp(errors[j]) > 0:
            values.append(np.corrcoef(errors[i], errors[j])[0, 1])
    return float(np.mean(values)) if values else math.nan
