"""Fitting every applicable combiner on held-out rows and scoring it, members and baselines."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ensembles import defaults
from ensembles.combiners import build_combiner, split_rows
from ensembles.default_choice import effective_members, ranking_loss
from ensembles.errors import ConfigError, DataError, ShapeError
from ensembles.heldout import FitSet, HeldoutPredictions, SplitPredictions
from ensembles.manifest import (
    WEIGHT_AVERAGE,
    CombinerInfo,
    EnsembleOutOfSampleInfo,
    OutOfSampleInfo,
    Task,
)
from ensembles.metrics import (
    VARIANCE_FLOOR,
    classification_metrics,
    gaussian_nll_terms,
    regression_metrics,
    row_log_loss,
)
from ensembles.uncertainty import fit_variance_scale, served_uncertainty

#: Published combiner name -> (kind, constructor parameters, tasks it applies to).
COMBINER_SPECS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "mean": ("mean", {}, ("classification", "regression")),
    "vote": ("vote", {}, ("classification",)),
    "blend": ("blend", {"method": "optimize"}, ("classification", "regression")),
    "caruana": ("blend", {"method": "greedy"}, ("classification", "regression")),
    "stack": ("stack", {}, ("classification", "regression")),
}
#: Every name training can publish; ``weight_average`` is a model, built on the torch side.
COMBINER_NAMES: tuple[str, ...] = (*COMBINER_SPECS, WEIGHT_AVERAGE)


def check_combiner_names(names: tuple[str, ...] | None, task: Task) -> tuple[str, ...]:
    """The combiner names to fit: ``names`` validated, or every one that applies to ``task``."""
    if names is None:
        return tuple(name for name, spec in COMBINER_SPECS.items() if task in spec[2])
    unknown = [name for name in names if name not in COMBINER_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown combiner {', '.join(map(repr, unknown))}: "
            f"choose from {', '.join(COMBINER_NAMES)}"
        )
    wrong = [
        name for name in names if name in COMBINER_SPECS and task not in COMBINER_SPECS[name][2]
    ]
    if wrong:
        raise ConfigError(f"combiner {', '.join(wrong)} does not apply to {task}")
    return tuple(name for name in names if name in COMBINER_SPECS)


def fit_combiners(
    task: Task,
    fit_set: FitSet,
    heldout: HeldoutPredictions,
    names: tuple[str, ...] | None = None,
    calibrate: bool = False,
    level: float = defaults.INTERVAL_LEVEL,
    stack_passthrough: bool = False,
) -> tuple[dict[str, CombinerInfo], dict[str, np.ndarray]]:
    """Fit each combiner on ``fit_set``, score it by cross-fitting and on the test split.

    Parameters
    ----------
    task : {"classification", "regression"}
    fit_set : FitSet
        Rows the combiners learn from, with the record of where they came from.
    heldout : HeldoutPredictions
        Supplies the test split (test metrics); held-out metrics come from two-fold
        cross-fitting on the fit rows (see :func:`crossfit`).
    names : tuple of str, optional
        Combiner names from :data:`COMBINER_SPECS`; None fits every one that applies.
    calibrate : bool
        Temperature-scale classification outputs.
    level : float
        Central interval level for regression coverage.
    stack_passthrough : bool
        Stacking also sees the raw features.

    Returns
    -------
    results : dict of str to CombinerInfo
        Each combiner fitted on all the fit rows, with its effective members.
    losses : dict of str to np.ndarray, shape (n_rows,)
        Each combiner's cross-fitted loss on every fit row (see :func:`crossfit`).
    """
    results, losses = {}, {}
    data = fit_set.data
    for name in check_combiner_names(names, task):
        kind, params = combiner_params(name, task, calibrate, stack_passthrough)
        combiner = build_combiner(kind, task, **params).fit(data.member_preds, data.y, data.X)
        test_output = combiner.combine(heldout.test.member_preds, heldout.test.X)
        held_out = crossfit(kind, task, params, data, level)
        # Calibrated on held-out residuals: each row's output from the other half's fit.
        scale = variance_scale(data, held_out.outputs)
        results[name] = CombinerInfo(
            kind=kind,
            state=combiner.to_state(),
            fitted_on=fit_set.record,
            test_metrics=evaluate_predictions(
                heldout.test, test_output, level, variance_scale=scale or 1.0
            ),
            heldout_metrics=held_out.metrics,
            effective_members=effective_members(combiner.member_weights, len(data.member_preds)),
            variance_scale=scale,
        )
        losses[name] = held_out.row_losses
    return results, losses


def combiner_params(
    name: str, task: Task, calibrate: bool = False, stack_passthrough: bool = False
) -> tuple[str, dict[str, Any]]:
    """The kind and constructor parameters of the combiner published as ``name``."""
    kind, params, _ = COMBINER_SPECS[name]
    if task == "classification":
        params = {**params, "calibrate": calibrate}
    if kind == "stack":
        params = {**params, "passthrough": stack_passthrough}
    return kind, params


def combiner_fit_problems(
    task: Task,
    fit_set: FitSet,
    names: tuple[str, ...] | None = None,
    calibrate: bool = False,
    level: float = defaults.INTERVAL_LEVEL,
    stack_passthrough: bool = False,
) -> dict[str, str]:
    """Why each combiner :func:`fit_combiners` would fit on ``fit_set`` cannot be fitted.

    Fits every combiner on all the fit rows and on each cross-fitting half, as
    :func:`fit_combiners` does, and keeps the combiners' own refusals. Whether a combiner
    can be fitted depends on the targets alone (row counts, classes present), so placeholder
    member outputs find every such problem before any member is trained.

    Parameters
    ----------
    task, fit_set, names, calibrate, level, stack_passthrough
        As for :func:`fit_combiners`.

    Returns
    -------
    dict
        Combiner name -> one-line reason, for the combiners that cannot be fitted only.
    """
    data = fit_set.data
    problems = {}
    for name in check_combiner_names(names, task):
        kind, params = combiner_params(name, task, calibrate, stack_passthrough)
        reason = _fit_refusal(kind, task, params, data, level)
        if reason is not None:
            problems[name] = f"{name} {reason}"
    return problems


@dataclass(frozen=True)
class CrossFit:
    """Held-out scores of a combiner by two-fold cross-fitting.

    Attributes
    ----------
    metrics : dict of str to float
        The metrics of each half, averaged over the two halves; a metric undefined on one
        half (binary ROC AUC and average precision when it holds one class only) is the
        other half's.
    row_losses : np.ndarray, shape (n_rows,)
        Every fit row's ranking loss (:func:`~ensembles.default_choice.ranking_loss`),
        the row scored by the combiner fitted on the other half.
    outputs : np.ndarray, shape (n_rows, n_outputs)
        Every fit row's combined output from the combiner fitted on the other half.
    """

    metrics: dict[str, float]
    row_losses: np.ndarray
    outputs: np.ndarray


def crossfit(
    kind: str,
    task: Task,
    params: dict[str, Any],
    data: SplitPredictions,
    level: float = defaults.INTERVAL_LEVEL,
) -> CrossFit:
    """Honest held-out scores of a combiner: fitted on one half of its rows, scored on the other.

    Two seeded halves (the same for every combiner, so row losses pair up across
    combiners; stratified by class, so that a class of two fit rows is in both), each
    scored by the combiner fitted on the other half. Scoring on the rows a combiner was
    fitted on would favour the most flexible one (stacking).
    """
    halves = split_rows(data.y, task, seed=0)
    scores = []
    losses = np.empty(len(data.y))
    outputs = np.empty(data.member_preds.shape[1:])
    for fit_rows, score_rows in (halves, halves[::-1]):
        part = data.rows(fit_rows)
        combiner = build_combiner(kind, task, **params).fit(part.member_preds, part.y, part.X)
        scale = variance_scale(part, combiner.combine(part.member_preds, part.X)) or 1.0
        split = data.rows(score_rows)
        combined = combiner.combine(split.member_preds, split.X)
        outputs[score_rows] = combined
        scores.append(evaluate_predictions(split, combined, level, variance_scale=scale))
        losses[score_rows] = row_losses(split, combined, variance_scale=scale)
    keys = dict.fromkeys(key for score in scores for key in score)
    metrics = {
        key: float(np.mean([score[key] for score in scores if key in score])) for key in keys
    }
    return CrossFit(metrics, losses, outputs)


def row_losses(
    split: SplitPredictions,
    combined: np.ndarray,
    served_variance: np.ndarray | None = None,
    variance_scale: float = 1.0,
) -> np.ndarray:
    """The ranking loss of every row ``(n_samples,)`` of a served output.

    The same definitions as :func:`evaluate_predictions`, row by row, so the rows average to
    the reported metric: log loss (probabilities floored at 1e-15), squared error
    averaged over outputs (its mean is ``rmse ** 2``), or the Gaussian NLL with the served
    total variance (floored at 1e-12) averaged over outputs.
    """
    loss = ranking_loss(split)
    if loss == "nll":
        return row_log_loss(combined, split.y)
    y = np.asarray(split.y, dtype=float).reshape(combined.shape)
    if loss == "squared_error":
        return ((y - combined) ** 2).mean(axis=1)
    variance = _total_variance(split, combined, served_variance, variance_scale)
    return gaussian_nll_terms(combined, np.maximum(variance, VARIANCE_FLOOR), y).mean(axis=1)


def evaluate_predictions(
    split: SplitPredictions,
    combined: np.ndarray,
    level: float = defaults.INTERVAL_LEVEL,
    served_variance: np.ndarray | None = None,
    variance_scale: float = 1.0,
) -> dict[str, float]:
    """Metrics of a served output ``(n_samples, n_outputs)`` against ``split.y``.

    Regression scores that need a variance (Gaussian NLL, coverage) use the total variance
    of :func:`~ensembles.uncertainty.served_uncertainty`, exactly what serving returns:
    the disagreement of the whole member pool (``split.member_preds``, members weighed
    equally) plus the aleatoric variance (``served_variance`` when the served model has
    its own variance head, else the members' mean variance when they have one), times the
    combiner's ``variance_scale``, floored at 1e-12 for the NLL.

    Parameters
    ----------
    split : SplitPredictions
        Targets and the whole pool's member predictions on the scored rows.
    combined : np.ndarray, shape (n_samples, n_outputs)
        The served probabilities or values.
    level : float, default 0.9
        Central interval level of the regression coverage.
    served_variance : np.ndarray, shape (n_samples, n_outputs), optional
        The served model's own variance (the weight-averaged model's variance head).
    variance_scale : float, default 1.0
        The combiner's fitted regression variance calibration (:func:`variance_scale`).

    Returns
    -------
    dict of str to float
        :func:`~ensembles.metrics.classification_metrics` or
        :func:`~ensembles.metrics.regression_metrics` of the served output.
    """
    if split.y.ndim == 1:
        return classification_metrics(combined, split.y)
    variance = _total_variance(split, combined, served_variance, variance_scale)
    return regression_metrics(combined, split.y, np.maximum(variance, VARIANCE_FLOOR), level)


def variance_scale(
    split: SplitPredictions, combined: np.ndarray, served_variance: np.ndarray | None = None
) -> float | None:
    """The regression variance calibration fitted on ``split`` (None for classification).

    The factor that makes the served total variance the maximum-likelihood variance of the
    served errors on these rows (:func:`~ensembles.uncertainty.fit_variance_scale`).
    """
    if split.y.ndim == 1:
        return None
    total = _total_variance(split, combined, served_variance, 1.0)
    return fit_variance_scale(split.y, combined, total)


def _total_variance(
    split: SplitPredictions,
    combined: np.ndarray,
    served_variance: np.ndarray | None,
    scale: float,
) -> np.ndarray:
    """The calibrated predictive variance serving reports with a regression output."""
    return served_uncertainty(
        "regression",
        split.member_preds,
        combined,
        split.member_variances,
        served_variance,
        variance_scale=scale,
    )["total_variance"]


def baseline_metrics(
    task: Task, heldout: HeldoutPredictions, level: float = defaults.INTERVAL_LEVEL
) -> dict[str, dict[str, float]]:
    """Test metrics of the best single member (chosen on validation) and of the average member.

    A Gaussian-head member's own variance is calibrated on the validation rows, as every
    combiner's is (:func:`~ensembles.uncertainty.fit_variance_scale`), so that intervals and
    Gaussian NLL compare like with like.
    """
    per_member = []
    validation_loss = []
    for index in range(len(heldout.test.member_preds)):
        test_variance = _member_variance(heldout.test, index)
        if test_variance is not None:
            validation = heldout.validation
            test_variance = test_variance * fit_variance_scale(
                validation.y, validation.member_preds[index], _member_variance(validation, index)
            )
        per_member.append(_single_metrics(task, heldout.test, index, test_variance, level))
        validation = _single_metrics(
            task, heldout.validation, index, _member_variance(heldout.validation, index), level
        )
        validation_loss.append(
            validation["nll"] if task == "classification" else validation["rmse"]
        )
    best = int(np.argmin(validation_loss))
    keys = per_member[0].keys()
    average = {key: float(np.mean([metrics[key] for metrics in per_member])) for key in keys}
    return {
        "best_member": {**per_member[best], "member_index": float(best)},
        "average_member": average,
    }


def out_of_sample_scores(
    task: Task, train: SplitPredictions, level: float = defaults.INTERVAL_LEVEL
) -> tuple[list[OutOfSampleInfo | None], EnsembleOutOfSampleInfo | None]:
    """What out-of-bag / out-of-fold predictions honestly measure: members and the ensemble.

    Parameters
    ----------
    task : {"classification", "regression"}
    train : SplitPredictions
        ``HeldoutPredictions.train``: member predictions ``(n_members, n_train, n_outputs)``
        on the training rows, NaN wherever the member trained on the row.
    level : float
        Central interval level of a Gaussian-head member's coverage.

    Returns
    -------
    members : list of OutOfSampleInfo or None
        Each member's metrics on the training rows it did not train on (None when it
        trained on every row).
    ensemble : EnsembleOutOfSampleInfo or None
        scikit-learn's ``oob_score``: each training row scored by the mean of the members
        that did not train on it; rows every member trained on are left out (None when that
        is every row). Regression reports point metrics (RMSE, MAE): a row's variance would
        come from a different subset of members on each row.
    """
    unseen = ~np.isnan(train.member_preds).any(axis=2)  # (n_members, n_train)
    members = [
        _member_out_of_sample(task, train, index, rows, level) for index, rows in enumerate(unseen)
    ]
    return members, _ensemble_out_of_sample(task, train, unseen)


def _member_out_of_sample(
    task: Task, train: SplitPredictions, index: int, unseen: np.ndarray, level: float
) -> OutOfSampleInfo | None:
    """Member ``index`` scored on the training rows ``unseen`` (n_train,) marks."""
    if not unseen.any():
        return None
    part = train.rows(np.flatnonzero(unseen))
    metrics = _single_metrics(task, part, index, _member_variance(part, index), level)
    return OutOfSampleInfo(n_rows=len(part.y), metrics=metrics)


def _ensemble_out_of_sample(
    task: Task, train: SplitPredictions, unseen: np.ndarray
) -> EnsembleOutOfSampleInfo | None:
    """The mean of the members ``unseen`` (n_members, n_train) marks, scored row by row."""
    scored = unseen.any(axis=0)
    if not scored.any():
        return None
    counts = unseen[:, scored].sum(axis=0)
    mean = np.nansum(train.member_preds[:, scored], axis=0) / counts[:, None]
    y = train.y[scored]
    if task == "classification":
        metrics = classification_metrics(mean, y)
    else:
        metrics = regression_metrics(mean, y)
    return EnsembleOutOfSampleInfo(
        n_rows=len(y),
        metrics=metrics,
        n_rows_unscored=int((~scored).sum()),
        members_per_row=float(counts.mean()),
    )


def _fit_refusal(
    kind: str, task: Task, params: dict[str, Any], data: SplitPredictions, level: float
) -> str | None:
    """Why a combiner cannot be fitted on ``data`` or a cross-fitting half of it, or None."""
    where = f"the {len(data.y)} fit rows"
    try:
        with warnings.catch_warnings():  # placeholder outputs may score NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            build_combiner(kind, task, **params).fit(data.member_preds, data.y, data.X)
            where = f"a cross-fitting half of the {len(data.y)} fit rows"
            crossfit(kind, task, params, data, level)
    except (DataError, ShapeError) as exc:
        return f"fails on {where}: {str(exc).rstrip('.')}"
    return None


def _member_variance(split: SplitPredictions, index: int) -> np.ndarray | None:
    return None if split.member_variances is None else split.member_variances[index]


def _single_metrics(
    task: Task, split: SplitPredictions, index: int, variance: np.ndarray | None, level: float
) -> dict[str, float]:
    pred = split.member_preds[index]
    if task == "classification":
        return classification_metrics(pred, split.y)
    return regression_metrics(pred, split.y, variance, level)
