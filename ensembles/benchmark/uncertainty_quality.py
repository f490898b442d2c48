"""How well an ensemble's reported uncertainty ranks its errors: Spearman, selective, AUROC."""

from __future__ import annotations

import math

import numpy as np

from ensembles.errors import ConfigError, ShapeError
from ensembles.metrics import mann_whitney_auc


def _check_pair(uncertainty: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uncertainty = np.asarray(uncertainty, dtype=float)
    other = np.asarray(other)
    if uncertainty.ndim != 1 or other.shape != uncertainty.shape or uncertainty.size == 0:
        raise ShapeError(
            "uncertainty and the per-row errors must both have shape (n_samples,); got "
            f"{uncertainty.shape} and {other.shape}."
        )
    return uncertainty, other


def spearman_uncertainty_error(uncertainty: np.ndarray, error: np.ndarray) -> float:
    """Spearman rank correlation between reported uncertainty and the actual error.

    Parameters
    ----------
    uncertainty : np.ndarray, shape (n_samples,)
        Per-row uncertainty (e.g. ensemble variance).
    error : np.ndarray, shape (n_samples,)
        Per-row error (e.g. negative log-likelihood of the true class, absolute error).

    Returns
    -------
    float
        In [-1, 1]; NaN when either input is constant (no ranking exists).
    """
    from scipy.stats import spearmanr

    uncertainty, error = _check_pair(uncertainty, np.asarray(error, dtype=float))
    if np.ptp(uncertainty) == 0 or np.ptp(error) == 0:
        return math.nan
    return float(spearmanr(uncertainty, error).statistic)


def selective_rows(uncertainty: np.ndarray, coverage: float = 0.8) -> np.ndarray:
    """Indices of the ``ceil(coverage * n_samples)`` rows with the lowest uncertainty.

    Ties keep the earlier row (stable sort), so the result is deterministic.

    Parameters
    ----------
    uncertainty : np.ndarray, shape (n_samples,)
    coverage : float, default 0.8
        Share of rows kept, in (0, 1].

    Returns
    -------
    np.ndarray, shape (n_kept,), sorted row indices
    """
    if not 0.0 < coverage <= 1.0:
        raise ConfigError(f"coverage must be in (0, 1], e.g. 0.8; got {coverage!r}.")
    uncertainty = np.asarray(uncertainty, dtype=float)
    if uncertainty.ndim != 1 or uncertainty.size == 0:
        raise ShapeError(f"uncertainty must have shape (n_samples,); got {uncertainty.shape}.")
    n_kept = math.ceil(coverage * len(uncertainty) - 1e-9)
    return np.sort(np.argsort(uncertainty, kind="stable")[:n_kept])


def misclassification_auroc(uncertainty: np.ndarray, misclassified: np.ndarray) -> float:
    """Area under the ROC curve of ``uncertainty`` as a detector of misclassified rows.

    Parameters
    ----------
    uncertainty : np.ndarray, shape (n_samples,)
        Higher means less sure (variance, mutual information).
    misclassified : np.ndarray of bool, shape (n_samples,)
        True where the combined prediction is wrong.

    Returns
    -------
    float
        0.5 is chance, 1.0 a perfect detector; NaN when every row is right (or wrong).
    """
    uncertainty, misclassified = _check_pair(uncertainty, np.asarray(misclassified, dtype=bool))
    if misclassified.all() or not misclassified.any():
        return math.nan
    return detection_auroc(uncertainty[~misclassified], uncertainty[misclassified])


def check_scores(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both score arrays as non-empty float vectors ``(n,)``, else ``ShapeError``."""
    in_scores = np.asarray(in_scores, dtype=float)
    out_scores = np.asarray(out_scores, dtype=float)
    if in_scores.ndim != 1 or out_scores.ndim != 1 or not in_scores.size or not out_scores.size:
        raise ShapeError(
            "in- and out-of-distribution scores must be non-empty and of shape (n_samples,); "
            f"got {in_scores.shape} and {out_scores.shape}."
        )
    return in_scores, out_scores


def detection_auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Probability that an out-of-distribution row scores above an in-distribution one.

    Parameters
    ----------
    in_scores : np.ndarray, shape (n_in,)
    out_scores : np.ndarray, shape (n_out,)
        Uncertainty of in- and out-of-distribution rows (higher: less sure).

    Returns
    -------
    float
        Ties count one half: 0.5 for a constant score, 1.0 for a perfect detector.
    """
    return mann_whitney_auc(*check_scores(in_scores, out_scores))
