"""The numbers behind reliability diagrams: confidence bins and interval coverage by level."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

#: Confidence bins of a classification reliability diagram: those of the reported ECE.
N_CONFIDENCE_BINS = 15
#: Nominal levels of the central intervals in a regression reliability diagram.
COVERAGE_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def reliability_bins(
    probs: np.ndarray, y: np.ndarray, n_bins: int = N_CONFIDENCE_BINS
) -> dict[str, list]:
    """Confidence histogram of a classifier: count, confidence sum and correct count per bin.

    Bins are equal-width on the top-class probability, ``(k / n_bins, (k + 1) / n_bins]``
    (the first also holds 0), as in :func:`ensembles.metrics.expected_calibration_error`,
    with the same default of 15 bins, so the diagram shows the gaps the ECE column sums.
    Sums rather than means are kept, so bins from several repeats add up.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, n_classes)
    y : np.ndarray, shape (n_samples,)
    n_bins : int, default 15

    Returns
    -------
    dict
        ``edges`` (n_bins + 1,), ``count``, ``confidence_sum``, ``correct`` (n_bins,) each.
    """
    probs = np.asarray(probs, dtype=float)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y)).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    return {
        "edges": edges.tolist(),
        "count": np.bincount(bins, minlength=n_bins).astype(int).tolist(),
        "confidence_sum": np.bincount(bins, confidence, minlength=n_bins).tolist(),
        "correct": np.bincount(bins, correct, minlength=n_bins).tolist(),
    }


def coverage_by_level(
    pred: np.ndarray,
    variance: np.ndarray,
    y: np.ndarray,
    levels: tuple[float, ...] = COVERAGE_LEVELS,
) -> dict[str, list[float]]:
    """Observed coverage of central normal intervals at several nominal levels.

    Parameters
    ----------
    pred, variance, y : np.ndarray, shape (n_samples, n_outputs)
        Predicted means, predicted variances and true values.
    levels : tuple of float
        Nominal levels in (0, 1).

    Returns
    -------
    dict
        ``level`` and ``coverage``: lists of the same length; a calibrated model lies on
        the diagonal.
    """
    pred, variance = np.asarray(pred, dtype=float), np.asarray(variance, dtype=float)
    y = np.asarray(y, dtype=float).reshape(pred.shape)
    scale = np.sqrt(np.maximum(variance, 0.0))
    coverage = []
    for level in levels:
        half = NormalDist().inv_cdf(0.5 + level / 2.0) * scale
        coverage.append(float(np.mean(np.abs(y - pred) <= half)))
    return {"level": list(levels), "coverage": coverage}
