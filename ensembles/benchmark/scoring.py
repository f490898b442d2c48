"""Scores of one published version on its test split: accuracy, uncertainty, size, diversity."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.benchmark.calibration import coverage_by_level, reliability_bins
from ensembles.benchmark.diversity import error_correlation, pairwise_disagreement
from ensembles.benchmark.sessions import open_session, session_outputs
from ensembles.benchmark.uncertainty_quality import (
    misclassification_auroc,
    selective_rows,
    spearman_uncertainty_error,
)
from ensembles.combiners import combiner_from_state
from ensembles.evaluation import evaluate_predictions
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions
from ensembles.manifest import WEIGHT_AVERAGE, CombinerInfo, Manifest
from ensembles.metrics import VARIANCE_FLOOR, accuracy, rmse, row_log_loss
from ensembles.uncertainty import served_uncertainty

#: Share of rows kept in selective prediction (the most certain ones).
SELECTIVE_COVERAGE = 0.8
#: Quantile bins of the uncertainty-against-error curve.
N_UNCERTAINTY_BINS = 10
#: Random member orders the ensemble-size curve averages over, and their seed.
N_MEMBER_ORDERS = 20
MEMBER_ORDER_SEED = 0


def quality_keys(task: str) -> tuple[str, ...]:
    """Names of the uncertainty-quality scores of ``task``, in table order."""
    if task == "classification":
        return ("spearman", "selective_accuracy", "auroc_variance", "auroc_mi")
    return ("spearman", "selective_rmse")


def uncertainty_quality(
    task: str,
    combined: np.ndarray,
    y: np.ndarray,
    variance: np.ndarray | None,
    mutual_information: np.ndarray | None = None,
) -> dict[str, float]:
    """Uncertainty-quality scores of one model on one split.

    Parameters
    ----------
    task : {"classification", "regression"}
    combined : np.ndarray, shape (n_samples, n_outputs)
        Probabilities or predicted values.
    y : np.ndarray
        Class indices ``(n_samples,)`` or values ``(n_samples, n_outputs)``.
    variance : np.ndarray, shape (n_samples,), optional
        Per-row reported uncertainty (ensemble variance; predictive entropy for a single
        classifier, see :func:`single_uncertainty`); None gives NaN scores.
    mutual_information : np.ndarray, shape (n_samples,), optional

    Returns
    -------
    dict of str to float
        Keys of :func:`quality_keys`: Spearman of variance against per-row error (NLL of
        the true class, or absolute error), accuracy or RMSE on the 80% most certain rows
        (NaN when the variance is constant: no row is more certain than another), and
        AUROC of variance and of mutual information for misclassified rows.
    """
    scores = dict.fromkeys(quality_keys(task), math.nan)
    error = row_error(task, combined, y)
    if variance is not None:
        scores["spearman"] = spearman_uncertainty_error(variance, error)
        if np.ptp(variance) > 0:
            kept = selective_rows(variance, SELECTIVE_COVERAGE)
            if task == "classification":
                scores["selective_accuracy"] = accuracy(combined[kept], y[kept])
            else:
                scores["selective_rmse"] = rmse(combined[kept], y[kept])
    if task == "classification":
        wrong = combined.argmax(axis=1) != y
        if variance is not None:
            scores["auroc_variance"] = misclassification_auroc(variance, wrong)
        if mutual_information is not None:
            scores["auroc_mi"] = misclassification_auroc(mutual_information, wrong)
    return scores


def single_uncertainty(
    task: str, pred: np.ndarray, variance: np.ndarray | None = None
) -> np.ndarray | None:
    """The per-row uncertainty a single network reports.

    Parameters
    ----------
    task : {"classification", "regression"}
    pred : np.ndarray, shape (n_samples, n_outputs)
        Class probabilities or predicted values.
    variance : np.ndarray, shape (n_samples, n_outputs), optional
        The network's own predicted variance (regression, Gaussian head).

    Returns
    -------
    np.ndarray, shape (n_samples,), or None
        :func:`~ensembles.uncertainty.served_uncertainty` of a pool of one (no
        disagreement). Classification: the predictive entropy of ``pred`` (nats).
        Regression: the total variance (its own) averaged over outputs, None without a
        Gaussian head.
    """
    pred = np.asarray(pred, dtype=float)
    own = None if variance is None else np.asarray(variance, dtype=float)[None]
    measures = served_uncertainty(task, pred[None], pred, own)
    if task == "classification":
        return measures["predictive_entropy"]
    return None if own is None else measures["total_variance"].mean(axis=1)


def row_error(task: str, combined: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row error ``(n_samples,)``: NLL of the true class, or mean absolute error."""
    if task == "classification":
        return row_log_loss(combined, y)
    return np.abs(combined - np.asarray(y).reshape(combined.shape)).mean(axis=1)


def uncertainty_error_curve(
    variance: np.ndarray, error: np.ndarray, n_bins: int = N_UNCERTAINTY_BINS
) -> dict[str, list[float]]:
    """Mean error in quantile bins of the reported variance, most certain bin first.

    Parameters
    ----------
    variance, error : np.ndarray, shape (n_samples,)
        Reported variance and per-row error (0/1 misclassification, absolute error).
    n_bins : int
        Quantile bins (fewer when there are fewer rows).

    Returns
    -------
    dict
        ``variance`` and ``error``: bin means, lists of length n_bins.
    """
    order = np.argsort(variance, kind="stable")
    groups = [group for group in np.array_split(order, n_bins) if len(group)]
    return {
        "variance": [float(variance[group].mean()) for group in groups],
        "error": [float(error[group].mean()) for group in groups],
    }


def score_version(folder: Path, manifest: Manifest) -> dict[str, Any]:
    """Score every combiner and single-member baseline of a published version.

    Parameters
    ----------
    folder : Path
        The version folder (``manifest.json``, ``members/``, ``heldout.npz``, ...).
    manifest : Manifest

    Returns
    -------
    dict
        ``models``: name -> test metrics plus uncertainty quality; ``calibration``: name ->
        reliability bins (classification) or coverage by level (regression);
        ``uncertainty_error``: name -> binned curve; ``ensemble_size``: metrics of the
        mean of k members, k = 1..M, averaged over random member orders (see
        :func:`ensemble_size_curve`); ``diversity``: disagreement and error correlation of
        the members; ``interval_level``: the manifest's interval level.
    """
    test = HeldoutPredictions.load(folder / HELDOUT_FILE).test
    level = manifest.interval_level
    task = manifest.task
    scores: dict[str, Any] = {"models": {}, "calibration": {}, "uncertainty_error": {}}
    for name, info in manifest.combiners.items():
        combined, measures = model_uncertainty(folder, task, info, test, level)
        variance, mi = ranking_uncertainty(task, measures)
        record_model(scores, name, dict(info.test_metrics), task, combined, test.y, variance, mi)
    for name, metrics in manifest.baselines.items():
        index = int(metrics.get("member_index", -1))
        indices = [index] if index >= 0 else list(range(len(test.member_preds)))
        quality = [_member_quality(task, test, i) for i in indices]
        merged = {key: _finite_mean([q[key] for q in quality]) for key in quality[0]}
        scores["models"][name] = {**metrics, **merged}
    scores["ensemble_size"] = ensemble_size_curve(task, test, level)
    scores["diversity"] = {
        "disagreement": pairwise_disagreement(test.member_preds, task),
        "error_correlation": error_correlation(test.member_preds, test.y, task),
    }
    scores["interval_level"] = level
    return scores


def member_orders(
    n_members: int, n_orders: int = N_MEMBER_ORDERS, seed: int = MEMBER_ORDER_SEED
) -> np.ndarray:
    """``n_orders`` random permutations of the member indices, reproducible from ``seed``.

    Returns
    -------
    np.ndarray of int, shape (n_orders, n_members)
    """
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n_members) for _ in range(n_orders)])


def ensemble_size_curve(
    task: str,
    test: SplitPredictions,
    level: float,
    n_orders: int = N_MEMBER_ORDERS,
    seed: int = MEMBER_ORDER_SEED,
) -> dict[str, list]:
    """Test metrics of the plain mean of k members, k = 1..n_members, over member orders.

    Members are added in each of the :func:`member_orders` (random permutations, so the
    curve does not depend on which member happens to come first, e.g. an early snapshot);
    each point is the metric averaged over the orders.

    Parameters
    ----------
    task : {"classification", "regression"}
    test : SplitPredictions
        Member predictions ``(n_members, n_samples, n_outputs)`` and targets.
    level : float
        Interval level of the regression coverage.
    n_orders : int
        Random member orders to average over.
    seed : int
        Seed of the orders.

    Returns
    -------
    dict
        ``n_members`` (1..M) and, per metric, a list of M averages.
    """
    orders = member_orders(len(test.member_preds), n_orders, seed)
    curve: dict[str, list] = {"n_members": []}
    for k in range(1, len(test.member_preds) + 1):
        points: dict[str, list[float]] = {}
        for order in orders:
            chosen = [int(i) for i in order[:k]]
            variances = test.member_variances
            pool = SplitPredictions(  # the k chosen members are this ensemble's pool
                test.X,
                test.y,
                test.member_preds[chosen],
                None if variances is None else variances[chosen],
            )
            metrics = evaluate_predictions(pool, pool.member_preds.mean(axis=0), level=level)
            for key, value in metrics.items():
                points.setdefault(key, []).append(float(value))
        curve["n_members"].append(k)
        for key, values in points.items():
            curve.setdefault(key, []).append(float(np.mean(values)))
    return curve


def model_uncertainty(
    folder: Path, task: str, info: CombinerInfo, split: SplitPredictions, level: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """What serving returns for one published combiner on a split: output and uncertainty.

    Parameters
    ----------
    folder : Path
        The version folder (for the weight-averaged model's ONNX file).
    task : {"classification", "regression"}
    info : CombinerInfo
        The combiner's manifest entry (``weight_average`` included).
    split : SplitPredictions
        Rows and the whole pool's member predictions (and variances) on them.
    level : float
        Central interval level.

    Returns
    -------
    served : np.ndarray, shape (n_samples, n_outputs)
        The combiner's output, or the weight-averaged model's own output (run in float32
        by onnxruntime, as serving runs it).
    measures : dict of str to np.ndarray
        :func:`~ensembles.uncertainty.served_uncertainty` of it: the weight-averaged
        model's own variance head is its aleatoric part; disagreement is the pool's.
    """
    served_variance = None
    if info.kind == WEIGHT_AVERAGE:
        outputs = session_outputs(open_session(folder / info.state["file"]), split.X)
        served = outputs[0]
        served_variance = outputs[1] if len(outputs) > 1 else None
    else:
        served = combiner_from_state(info.state).combine(split.member_preds, split.X)
    measures = served_uncertainty(
        task,
        split.member_preds,
        served,
        split.member_variances,
        served_variance,
        level,
        info.variance_scale or 1.0,
    )
    return served, measures


def ranking_uncertainty(
    task: str, measures: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The per-row scores the uncertainty-quality metrics rank rows by.

    Parameters
    ----------
    task : {"classification", "regression"}
    measures : dict of str to np.ndarray
        :func:`~ensembles.uncertainty.served_uncertainty` of one model.

    Returns
    -------
    variance : np.ndarray, shape (n_samples,)
        Classification: the member variance summed over classes. Regression: the total
        variance (the epistemic one without an aleatoric part) averaged over outputs,
        floored at 1e-12.
    mutual_information : np.ndarray, shape (n_samples,), or None
        Classification only.
    """
    if task == "classification":
        return measures["variance"].sum(axis=1), measures["mutual_information"]
    return np.maximum(measures["total_variance"], VARIANCE_FLOOR).mean(axis=1), None


def record_model(
    scores: dict[str, Any],
    name: str,
    metrics: dict[str, float],
    task: str,
    combined: np.ndarray,
    y: np.ndarray,
    variance: np.ndarray | None,
    mi: np.ndarray | None,
) -> None:
    """Store one model's metrics, uncertainty quality, calibration and error curve."""
    scores["models"][name] = {
        **metrics,
        **uncertainty_quality(task, combined, y, variance, mi),
    }
    if task == "classification":
        scores["calibration"][name] = reliability_bins(combined, y)
    elif variance is not None:
        scores["calibration"][name] = coverage_by_level(
            combined, np.repeat(variance[:, None], combined.shape[1], axis=1), y
        )
    if variance is not None:
        if task == "classification":
            error = (combined.argmax(axis=1) != y).astype(float)
        else:
            error = row_error(task, combined, y)
        scores["uncertainty_error"][name] = uncertainty_error_curve(variance, error)


def _finite_mean(values: list[float]) -> float:
    finite = [value for value in values if math.isfinite(value)]
    return float(np.mean(finite)) if finite else math.nan


def _member_quality(task: str, test: SplitPredictions, index: int) -> dict[str, float]:
    pred = test.member_preds[index]
    variances = test.member_variances
    variance = single_uncertainty(task, pred, None if variances is None else variances[index])
    return uncertainty_quality(task, pred, test.y, variance)
