"""Fitting every applicable combiner on held-out rows and scoring it, members and baselines."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ensembles.combiners import Combiner, build_combiner
from ensembles.errors import ConfigError, DataError, ShapeError
from ensembles.heldout import FitSet, HeldoutPredictions, SplitPredictions
from ensembles.manifest import CombinerInfo, Task
from ensembles.metrics import classification_metrics, regression_metrics
from ensembles.uncertainty import regression_uncertainty

#: Published combiner name -> (kind, constructor parameters, tasks it applies to).
COMBINER_SPECS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "mean": ("mean", {}, ("classification", "regression")),
    "vote": ("vote", {}, ("classification",)),
    "blend": ("blend", {"method": "optimize"}, ("classification", "regression")),
    "caruana": ("blend", {"method": "greedy"}, ("classification", "regression")),
    "stack": ("stack", {}, ("classification", "regression")),
}
#: Every name training can publish; ``weight_average`` is a model, built on the torch side.
COMBINER_NAMES: tuple[str, ...] = (*COMBINER_SPECS, "weight_average")
_MIN_VARIANCE = 1e-12


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
    level: float = 0.9,
    stack_passthrough: bool = False,
) -> dict[str, CombinerInfo]:
    """Fit each combiner on ``fit_set``, score it by cross-fitting and on the test split.

    Parameters
    ----------
    task : {"classification", "regression"}
    fit_set : FitSet
        Rows the combiners learn from, with the record of where they came from.
    heldout : HeldoutPredictions
        Supplies the test split (test metrics); held-out metrics come from two-fold
        cross-fitting on the fit rows (see :func:`crossfit_metrics`).
    names : tuple of str, optional
        Combiner names from :data:`COMBINER_SPECS`; None fits every one that applies.
    calibrate : bool
        Temperature-scale classification outputs.
    level : float
        Central interval level for regression coverage.
    stack_passthrough : bool
        Stacking also sees the raw features.
    """
    results = {}
    data = fit_set.data
    for name in check_combiner_names(names, task):
        kind, params = combiner_params(name, task, calibrate, stack_passthrough)
        combiner = build_combiner(kind, task, **params).fit(data.member_preds, data.y, data.X)
        test_output = combiner.combine(heldout.test.member_preds, heldout.test.X)
        info = CombinerInfo(
            kind=kind,
            state=combiner.to_state(),
            fitted_on=fit_set.record,
            test_metrics=evaluate_predictions(
                heldout.test, test_output, combiner.member_weights, level
            ),
            heldout_metrics=crossfit_metrics(kind, task, params, data, level),
        )
        results[name] = info
    return results


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
    level: float = 0.9,
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


def crossfit_metrics(
    kind: str, task: Task, params: dict[str, Any], data: SplitPredictions, level: float = 0.9
) -> dict[str, float]:
    """Honest held-out metrics of a combiner: fitted on one half of its rows, scored on the other.

    Two folds, each scored by the combiner fitted on the other fold, metrics averaged. Scoring
    on the rows a combiner was fitted on would favour the most flexible one (stacking).
    """
    order = np.random.default_rng(0).permutation(len(data.y))
    halves = np.array_split(order, 2)
    scores = []
    for fit_rows, score_rows in (halves, halves[::-1]):
        part = data.rows(fit_rows)
        combiner = build_combiner(kind, task, **params).fit(part.member_preds, part.y, part.X)
        scores.append(score_combiner(combiner, data.rows(score_rows), level))
    return {key: float(np.mean([score[key] for score in scores])) for key in scores[0]}


def score_combiner(
    combiner: Combiner, split: SplitPredictions, level: float = 0.9
) -> dict[str, float]:
    """Metrics of a fitted combiner's output on one split."""
    combined = combiner.combine(split.member_preds, split.X)
    return evaluate_predictions(split, combined, combiner.member_weights, level)


def evaluate_predictions(
    split: SplitPredictions,
    combined: np.ndarray,
    weights: np.ndarray | list[int] | None = None,
    level: float = 0.9,
    aleatoric: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of a combined output ``(n_samples, n_outputs)`` against ``split.y``.

    For regression the variance is the ensemble's (weighted) spread plus the members'
    aleatoric variance when they have a Gaussian head; ``weights`` may also be a list of
    member indices (the members a weight-averaged model came from), and ``aleatoric``
    the model's own variance, used instead of the members' mean.
    """
    if split.y.ndim == 1:
        return classification_metrics(combined, split.y)
    preds, variances = split.member_preds, split.member_variances
    member_weights = weights
    if isinstance(weights, list):
        preds = preds[weights]
        variances = None if variances is None else variances[weights]
        member_weights = None
    uncertainty = regression_uncertainty(preds, variances, member_weights, level, combined)
    variance = uncertainty["variance"] if aleatoric is None else uncertainty["variance"] + aleatoric
    if aleatoric is None and "total_variance" in uncertainty:
        variance = uncertainty["total_variance"]
    return regression_metrics(combined, split.y, np.maximum(variance, _MIN_VARIANCE), level)


def baseline_metrics(
    task: Task, heldout: HeldoutPredictions, level: float = 0.9
) -> dict[str, dict[str, float]]:
    """Test metrics of the best single member (chosen on validation) and of the average member."""
    per_member = []
    validation_loss = []
    for index in range(len(heldout.test.member_preds)):
        test_variance = _member_variance(heldout.test, index)
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


def choose_default(results: dict[str, CombinerInfo], override: str | None) -> str:
    """The default combiner: ``override`` when given, else the best held-out loss.

    The loss is NLL for classification and Gaussian NLL for regression (with the ensemble's
    total variance), else RMSE. A greedy soup, whose members were chosen on the validation
    rows, is only chosen when asked for.
    """
    if override is not None:
        if override not in results:
            raise ConfigError(
                f"--default-combiner '{override}' was not fitted; fitted: {', '.join(results)}"
            )
        return override

    def loss(name: str) -> float:
        metrics = results[name].heldout_metrics
        return metrics.get("nll", metrics.get("gaussian_nll", metrics.get("rmse", np.inf)))

    # a greedy soup chose its members on these rows, so its score there is optimistic
    fair = [name for name, info in results.items() if not info.fitted_on.get("selection")]
    return min(fair or results, key=loss)


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
            crossfit_metrics(kind, task, params, data, level)
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
