"""Scores of combined predictions: classification and regression metrics in plain numpy."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ensembles import defaults
from ensembles.errors import ConfigError, DataError, ShapeError

#: Predicted variances are floored here before a Gaussian NLL (a zero spread is no
#: infinitely sure forecast).
VARIANCE_FLOOR = 1e-12
#: Probabilities are clipped at this floor in :func:`nll`, as log loss traditionally does.
PROB_FLOOR = 1e-15
#: The constant of the Gaussian log-likelihood per value: ``0.5 * log(2 pi)``.
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def _check_probs(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=float)
    y = np.asarray(y)
    if probs.ndim != 2 or y.shape != (len(probs),) or len(probs) == 0:
        raise ShapeError(
            "Classification metrics need probs of shape (n_samples, n_classes) and class "
            f"indices y of shape (n_samples,); got {probs.shape} and {y.shape}."
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= probs.shape[1]:
        raise DataError(
            f"y must hold integer class indices in 0..{probs.shape[1] - 1}; got dtype "
            f"{y.dtype} with values in {y.min()}..{y.max()}."
        )
    return probs, y


def _check_values(*arrays: np.ndarray) -> list[np.ndarray]:
    """Match prediction-like arrays with targets: (n_samples,) becomes (n_samples, 1)."""
    out = [np.asarray(a, dtype=float) for a in arrays]
    out = [a[:, None] if a.ndim == 1 else a for a in out]
    shapes = {a.shape for a in out}
    if len(shapes) != 1 or out[0].ndim != 2 or out[0].size == 0:
        raise ShapeError(
            "Regression metrics need arrays of one shape (n_samples, n_outputs) or "
            f"(n_samples,); got shapes {[a.shape for a in arrays]}."
        )
    return out


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Share of samples whose most probable class is the true one.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, n_classes)
        Class probabilities; the argmax (lowest index on ties) is the prediction.
    y : np.ndarray, shape (n_samples,)
        Class indices.
    """
    probs, y = _check_probs(probs, y)
    return float(np.mean(probs.argmax(axis=1) == y))


def row_log_loss(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Every row's log loss ``(n_samples,)``: ``-log p[y]``, probabilities clipped at 1e-15.

    Unchecked: ``probs`` (n_samples, n_classes) and integer ``y`` (n_samples,) as
    :func:`nll` validates them.
    """
    picked = probs[np.arange(len(y)), y]
    return -np.log(np.clip(picked, PROB_FLOOR, 1.0))


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood (log loss), probabilities clipped at 1e-15.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, n_classes)
        Class probabilities.
    y : np.ndarray, shape (n_samples,)
        Class indices.
    """
    probs, y = _check_probs(probs, y)
    return float(np.mean(row_log_loss(probs, y)))


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Brier score: mean over samples of the summed squared error over classes.

    One definition for every number of classes, in [0, 2]. For two classes it is twice
    scikit-learn's ``brier_score_loss(y, probs[:, 1])`` (the positive class only, in
    [0, 1]) and equals ``brier_score_loss(y, probs, scale_by_half=False)``.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, n_classes)
        Class probabilities.
    y : np.ndarray, shape (n_samples,)
        Class indices.
    """
    probs, y = _check_probs(probs, y)
    one_hot = np.arange(probs.shape[1]) == y[:, None]
    return float(np.mean(((probs - one_hot) ** 2).sum(axis=1)))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence.

    Confidence is the max probability; samples fall into ``n_bins`` equal-width bins
    ``(k / n_bins, (k + 1) / n_bins]`` (the first also holds 0); the score is the
    sample-weighted mean over bins of ``|accuracy - mean confidence|``.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, n_classes)
        Class probabilities.
    y : np.ndarray, shape (n_samples,)
        Class indices.
    n_bins : int, default 15
        Number of bins.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins must be an int >= 1; got {n_bins!r}.")
    probs, y = _check_probs(probs, y)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=correct, minlength=n_bins)
        - np.bincount(bins, weights=confidence, minlength=n_bins)
    )
    # Per bin |sum(correct) - sum(conf)| / n equals (n_b / n) * |acc_b - conf_b|.
    return float(gap[counts > 0].sum() / len(y))


def mann_whitney_auc(negative_scores: np.ndarray, positive_scores: np.ndarray) -> float:
    """Probability that a positive row scores above a negative one, ties counting one half.

    The Mann-Whitney U statistic over ``n_negative * n_positive`` with average ranks: the
    area under the ROC curve, ties as scikit-learn's ``roc_auc_score`` draws them.

    Parameters
    ----------
    negative_scores : np.ndarray, shape (n_negative,)
    positive_scores : np.ndarray, shape (n_positive,)
        Scores of the negative and of the positive rows (higher: more likely positive);
        both non-empty.

    Returns
    -------
    float
        In [0, 1]: 0.5 for a constant score, 1.0 when every positive scores above every
        negative.
    """
    negative_scores = np.asarray(negative_scores, dtype=float)
    positive_scores = np.asarray(positive_scores, dtype=float)
    _, inverse, counts = np.unique(
        np.concatenate([negative_scores, positive_scores]), return_inverse=True, return_counts=True
    )
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks, from 1
    n_negative, n_positive = len(negative_scores), len(positive_scores)
    positive_rank_sum = ranks[n_negative:].sum()
    return float(
        (positive_rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_negative * n_positive)
    )


def roc_auc(probs: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve of a binary forecast, the positive class being index 1.

    Ties count one half (:func:`mann_whitney_auc`), as in scikit-learn's
    ``roc_auc_score(y, probs[:, 1])``.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, 2)
        Class probabilities; ``probs[:, 1]`` ranks the rows.
    y : np.ndarray, shape (n_samples,)
        Class indices 0 and 1.

    Returns
    -------
    float
        0.5 is chance, 1.0 a perfect ranking; NaN when ``y`` holds one class only.
    """
    score, positive = _binary_scores(probs, y, "roc_auc")
    if positive.all() or not positive.any():
        return float("nan")
    return mann_whitney_auc(score[~positive], score[positive])


def average_precision(probs: np.ndarray, y: np.ndarray) -> float:
    """Average precision of a binary forecast, the positive class being index 1.

    The step-wise area under the precision-recall curve of scikit-learn's
    ``average_precision_score(y, probs[:, 1])``: ``sum_k (R_k - R_{k-1}) P_k`` over the
    distinct scores ``k`` from the highest down, rows of one score entering together
    (no interpolation).

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, 2)
        Class probabilities; ``probs[:, 1]`` ranks the rows.
    y : np.ndarray, shape (n_samples,)
        Class indices 0 and 1.

    Returns
    -------
    float
        In (0, 1], the positive rate for an uninformative score; NaN when ``y`` holds one
        class only.
    """
    score, positive = _binary_scores(probs, y, "average_precision")
    if positive.all() or not positive.any():
        return float("nan")
    order = np.argsort(-score, kind="stable")
    score, positive = score[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # last row of each score
    true_positives = np.cumsum(positive)[last]
    precision = true_positives / (last + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _binary_scores(probs: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The positive-class score ``(n_samples,)`` and the mask of positive rows."""
    probs, y = _check_probs(probs, y)
    if probs.shape[1] != 2:
        raise ShapeError(
            f"{name} needs the probabilities of a binary task, shape (n_samples, 2); got "
            f"{probs.shape}."
        )
    return probs[:, 1], y == 1


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """Root mean squared error over all samples and outputs.

    Parameters
    ----------
    pred, y : np.ndarray, shape (n_samples, n_outputs) or (n_samples,)
        Predicted and true values.
    """
    pred, y = _check_values(pred, y)
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def mae(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error over all samples and outputs.

    Parameters
    ----------
    pred, y : np.ndarray, shape (n_samples, n_outputs) or (n_samples,)
        Predicted and true values.
    """
    pred, y = _check_values(pred, y)
    return float(np.mean(np.abs(pred - y)))


def gaussian_nll(pred: np.ndarray, variance: np.ndarray, y: np.ndarray) -> float:
    """Mean Gaussian negative log-likelihood ``0.5 * (log(2 pi s2) + (y - mu)^2 / s2)``.

    Parameters
    ----------
    pred, variance, y : np.ndarray, shape (n_samples, n_outputs) or (n_samples,)
        Predicted means, predicted variances (> 0) and true values.
    """
    pred, variance, y = _check_values(pred, variance, y)
    if not variance.min() > 0:
        raise DataError(f"gaussian_nll needs variances > 0; got a minimum of {variance.min()}.")
    return float(np.mean(gaussian_nll_terms(pred, variance, y)))


def gaussian_nll_terms(pred: np.ndarray, variance: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise ``0.5 * (log(2 pi s2) + (y - mu)^2 / s2)``, unchecked (same shapes)."""
    return 0.5 * (np.log(2 * np.pi * variance) + (y - pred) ** 2 / variance)


def interval_coverage(lower: np.ndarray, upper: np.ndarray, y: np.ndarray) -> float:
    """Share of true values inside ``[lower, upper]`` (bounds included).

    Parameters
    ----------
    lower, upper, y : np.ndarray, shape (n_samples, n_outputs) or (n_samples,)
        Interval bounds and true values.
    """
    lower, upper, y = _check_values(lower, upper, y)
    return float(np.mean((lower <= y) & (y <= upper)))


def classification_metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """All classification scores at once.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, n_classes)
        Class probabilities.
    y : np.ndarray, shape (n_samples,)
        Class indices.

    Returns
    -------
    dict of str to float
        ``accuracy``, ``nll``, ``brier`` and ``ece``; for two classes also ``roc_auc``
        and ``average_precision`` (positive class: index 1), both left out when ``y``
        holds one class only (they are undefined then, and every value stays finite for
        the manifest's JSON).
    """
    scores = {
        "accuracy": accuracy(probs, y),
        "nll": nll(probs, y),
        "brier": brier(probs, y),
        "ece": expected_calibration_error(probs, y),
    }
    if np.shape(probs)[1] == 2 and len(np.unique(y)) == 2:
        scores["roc_auc"] = roc_auc(probs, y)
        scores["average_precision"] = average_precision(probs, y)
    return scores


def regression_metrics(
    pred: np.ndarray,
    y: np.ndarray,
    variance: np.ndarray | None = None,
    level: float = defaults.INTERVAL_LEVEL,
) -> dict[str, float]:
    """All regression scores at once.

    Parameters
    ----------
    pred, y : np.ndarray, shape (n_samples, n_outputs) or (n_samples,)
        Predicted and true values.
    variance : np.ndarray, same shape as ``pred``, optional
        Predicted variance (e.g. an ensemble's total variance).
    level : float, default 0.9
        Mass of the central normal interval whose coverage is reported.

    Returns
    -------
    dict of str to float
        ``rmse`` and ``mae``; with ``variance`` also ``gaussian_nll`` and ``coverage``
        (share of ``y`` inside ``pred -/+ z sqrt(variance)``, ``z`` the normal quantile
        at ``(1 + level) / 2``).
    """
    scores = {"rmse": rmse(pred, y), "mae": mae(pred, y)}
    if variance is not None:
        if not 0.0 < level < 1.0:
            raise ConfigError(f"The interval level must be in (0, 1), e.g. 0.9; got {level!r}.")
        pred_2d, variance_2d, y_2d = _check_values(pred, variance, y)
        half_width = NormalDist().inv_cdf(0.5 + level / 2.0) * np.sqrt(variance_2d)
        scores["gaussian_nll"] = gaussian_nll(pred_2d, variance_2d, y_2d)
        scores["coverage"] = interval_coverage(pred_2d - half_width, pred_2d + half_width, y_2d)
    return scores
