"""The same-budget baseline: one network trained for as many epochs as the whole ensemble."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ensembles.benchmark.scoring import record_model, single_uncertainty
from ensembles.data import split_dataset
from ensembles.evaluation import evaluate_predictions
from ensembles.heldout import SplitPredictions
from ensembles.training.config import TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.members import (
    TrainedMember,
    TrainingData,
    resolve_learning_rate,
    train_planned_member,
)
from ensembles.training.pipeline import TrainRequest, load_dataset
from ensembles.training.plans import MemberPlan, member_seed
from ensembles.training.refit import refit_members, refit_problem
from ensembles.training.regularization import (
    choose_regularization,
    members_validation_losses,
    regularization_problem,
)
from ensembles.uncertainty import fit_variance_scale


def ensemble_epoch_budget(
    strategy: str, params: dict[str, Any], n_members: int, epochs: int
) -> int:
    """Epochs the ensemble trained in total: one run's length, or members x epochs.

    Parameters
    ----------
    strategy : str
    params : dict
        The manifest's strategy parameters (one-run strategies record ``epochs``).
    n_members, epochs : int
        Members and epochs per member of independent strategies.
    """
    if strategy in {"horizontal", "snapshot"} and "epochs" in params:
        return int(params["epochs"])
    return n_members * epochs


def train_single_network(
    request: TrainRequest, epochs: int | None
) -> tuple[dict[str, Any], Callable[[np.ndarray], tuple[np.ndarray, ...]]]:
    """Train one member network on the request's split for ``epochs`` epochs and score it.

    The split, network settings, learning rate and seed rule are those of
    :func:`run_training` with the same request; like the ensemble, it also tries stronger
    regularization and keeps the better network on validation
    (:mod:`ensembles.training.regularization`). ``epochs`` None trains by the budget rule,
    as a member does (the network stops when its validation loss stops improving, whatever
    the ensemble spent). It is one independent network, so it refits on training +
    validation rows when its own run passes the rule an independent member's would
    (:func:`~ensembles.training.refit.refit_problem`), whatever strategy it is compared
    with: against horizontal and snapshot ensembles, which never refit, it may have learned
    from the validation rows when they have not, and near the rule's step threshold it may
    refit when an ensemble's members do not (or the other way round).
    Its ``train_seconds`` covers building and fitting the network, as a member's does.

    Returns
    -------
    scores : dict
        ``models``, ``calibration`` and ``uncertainty_error``, each with one entry
        ``single_network`` shaped like a combiner's (see :func:`score_version`): test
        metrics, uncertainty quality (its "variance" is the predictive entropy for
        classification, the Gaussian head's variance for regression), ``train_seconds`` and
        ``epochs`` (those it ran).
    predict : callable
        ``predict(X)`` with ``X`` of shape (n_samples, n_features): the network's outputs
        (probabilities, or values and variances), each (n_samples, n_outputs).
    """
    splits = split_dataset(
        load_dataset(request), request.seed, request.validation_fraction, request.test_fraction
    )
    train, validation, test = splits.train, splits.validation, splits.test
    data = TrainingData.from_splits(splits)
    plan = MemberPlan(0, member_seed(request.seed, 0))
    n_rows = len(data.y_train) + len(data.y_val)

    def train_with(settings: TrainConfig) -> TrainedMember:
        resolved, _ = resolve_learning_rate(data, settings, request.seed)
        return train_planned_member(plan, data, resolved)

    given = request.config.with_overrides({"epochs": epochs})
    problem = regularization_problem(
        request.regularization, given, [], n_rows, request.pinned_settings
    )
    member, chosen, _ = choose_regularization(
        given, problem, train_with, lambda trained: members_validation_losses([trained], data)
    )
    config = chosen.with_overrides({"learning_rate": member.config.learning_rate})
    network = member.network(data)
    scale = _variance_scale(network, validation.X, validation.y)
    seconds = member.seconds
    if refit_problem(request.refit, "repeat", config, n_rows, False, [member]) is None:
        # as the ensemble's members are: trained again on training + validation rows, the
        # variance calibrated on the first network's held-out errors
        (refit,), (network,), _ = refit_members(
            [member], data, config, config.learning_rate, "loop", progress=False
        )
        seconds += refit.seconds

    def predict(X: np.ndarray) -> tuple[np.ndarray, ...]:
        """Its outputs, the variance head calibrated on validation as the combiners' are."""
        outputs = member_outputs(network, X)
        return outputs if len(outputs) == 1 else (outputs[0], scale * outputs[1])

    outputs = predict(test.X)
    own_variance = outputs[1] if len(outputs) > 1 else None
    split = SplitPredictions(
        test.X, test.y, outputs[0][None], None if own_variance is None else own_variance[None]
    )
    metrics = evaluate_predictions(split, outputs[0], request.interval_level)
    scores: dict[str, Any] = {"models": {}, "calibration": {}, "uncertainty_error": {}}
    variance = single_uncertainty(train.task, outputs[0], own_variance)
    record_model(scores, "single_network", metrics, train.task, outputs[0], test.y, variance, None)
    scores["models"]["single_network"]["train_seconds"] = seconds
    scores["models"]["single_network"]["epochs"] = float(len(member.curves))
    return scores, predict


def _variance_scale(network: Any, X: np.ndarray, y: np.ndarray) -> float:
    """The network's own variance calibration on the validation rows (1 without a head)."""
    outputs = member_outputs(network, X)
    return 1.0 if len(outputs) == 1 else fit_variance_scale(y, outputs[0], outputs[1])
