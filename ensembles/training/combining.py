"""Everything a version says about its combiners, computed before anything is written.

The combiners are fitted on rows no member trained on (:func:`~ensembles.heldout.combiner_fit_set`),
the default is chosen by cross-fitting on the same rows, and out-of-bag / out-of-fold
scores come from the training rows each member left out. The store's write step only
exports and records what :func:`combine` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ensembles.default_choice import choose_default, mean_mistakes, ranking_loss
from ensembles.evaluation import (
    baseline_metrics,
    evaluate_predictions,
    fit_combiners,
    out_of_sample_scores,
    row_losses,
    variance_scale,
)
from ensembles.heldout import HeldoutPredictions, SplitPredictions, combiner_fit_set
from ensembles.manifest import (
    CombinerInfo,
    DefaultChoiceInfo,
    EnsembleOutOfSampleInfo,
    OutOfSampleInfo,
    Task,
)
from ensembles.reproduction import WEIGHT_AVERAGE, combiner_test_outputs
from ensembles.training.loop import member_outputs
from ensembles.training.members import TrainedMember
from ensembles.training.network import MemberNetwork
from ensembles.training.strategies import INDEPENDENT_STRATEGIES

if TYPE_CHECKING:  # the pipeline imports this module
    from ensembles.training.pipeline import TrainRequest

#: The averaged model's file in a version folder.
AVERAGED_FILE = "averaged.onnx"


@dataclass(frozen=True)
class CombinedEnsemble:
    """The fitted combiners, the default among them and the held-out scores of a run.

    Attributes
    ----------
    combiners : every fitted combiner (and the averaged model) by name.
    default : the name served when a request names none.
    choice : the comparison behind ``default``, as the manifest records it.
    baselines : best, average and single members' held-out metrics.
    member_out_of_sample : each member's out-of-bag / out-of-fold score (None without
        resampling).
    ensemble_out_of_sample : the out-of-bag ensemble score (None without resampling).
    test_outputs : each combiner's outputs on the test rows, saved so that a version can
        be checked against what serving computes.
    """

    combiners: dict[str, CombinerInfo]
    default: str
    choice: DefaultChoiceInfo
    baselines: dict[str, dict[str, float]]
    member_out_of_sample: list[OutOfSampleInfo | None]
    ensemble_out_of_sample: EnsembleOutOfSampleInfo | None
    test_outputs: dict[str, np.ndarray]


def combine(
    request: TrainRequest,
    task: Task,
    heldout: HeldoutPredictions,
    members: list[TrainedMember],
    averaged: tuple[MemberNetwork, list[int]] | None,
    names: tuple[str, ...],
) -> CombinedEnsemble:
    """Fit the combiners, choose the default and score the members out of sample.

    Parameters
    ----------
    request : TrainRequest
        The run's request (calibration, interval level, default override).
    task : {"classification", "regression"}
    heldout : HeldoutPredictions
        Member predictions on validation and test rows (and out-of-sample ones on training
        rows for resampling strategies).
    members : list of TrainedMember
        The members trained on the training rows.
    averaged : (MemberNetwork, list of int) or None
        The weight-averaged network and the indices of the members in it, if any.
    names : tuple of str
        The combiners to fit (what the preflight kept of ``request.combiners``).

    Returns
    -------
    CombinedEnsemble
    """
    fit_set = combiner_fit_set(heldout)
    combiners, losses = fit_combiners(
        task,
        fit_set,
        heldout,
        names,
        request.calibrate,
        request.interval_level,
        request.stack_passthrough,
    )
    if averaged is not None:  # scored on the validation rows, which are the fit rows
        combiners[WEIGHT_AVERAGE], losses[WEIGHT_AVERAGE] = _averaged_result(
            request, averaged, heldout, members
        )
    default, choice = choose_default(
        combiners,
        losses,
        ranking_loss(fit_set.data),
        len(members),
        request.default_combiner,
        mean_mistakes(fit_set.data),
    )
    member_oob, ensemble_oob = _out_of_sample(request, task, heldout, len(members))
    test_outputs = combiner_test_outputs(combiners, heldout.test)
    if averaged is not None:
        test_outputs[WEIGHT_AVERAGE] = member_outputs(averaged[0], heldout.test.X)[0]
    return CombinedEnsemble(
        combiners=combiners,
        default=default,
        choice=choice,
        baselines=baseline_metrics(task, heldout, request.interval_level),
        member_out_of_sample=member_oob,
        ensemble_out_of_sample=ensemble_oob,
        test_outputs=test_outputs,
    )


def _out_of_sample(
    request: TrainRequest, task: Task, heldout: HeldoutPredictions, n_members: int
) -> tuple[list[OutOfSampleInfo | None], EnsembleOutOfSampleInfo | None]:
    """Out-of-bag / out-of-fold scores of members and ensemble; None without resampling."""
    if heldout.train is None:
        return [None] * n_members, None
    return out_of_sample_scores(task, heldout.train, request.interval_level)


def _averaged_result(
    request: TrainRequest,
    averaged: tuple[MemberNetwork, list[int]],
    heldout: HeldoutPredictions,
    members: list[TrainedMember],
) -> tuple[CombinerInfo, np.ndarray]:
    """The averaged model as a combiner entry, and its loss on every validation row.

    One network, so its effective members are 1. It learned nothing from the validation
    rows (unless a greedy soup chose its members there, as ``fitted_on`` records), so they
    score it as held out.
    """
    network, chosen = averaged
    ids = [members[i].plan.member_id for i in chosen]
    level = request.interval_level

    def outputs(split: SplitPredictions) -> tuple[np.ndarray, np.ndarray | None]:
        output = member_outputs(network, split.X)
        return output[0], output[1] if len(output) > 1 else None

    test_pred, test_variance = outputs(heldout.test)
    pred, variance = outputs(heldout.validation)
    scale = variance_scale(heldout.validation, pred, variance)  # fitted on nothing else

    state = {
        "kind": WEIGHT_AVERAGE,
        "file": AVERAGED_FILE,
        "members": ids,
        "method": request.weight_averaging,
        "forced": request.strategy in INDEPENDENT_STRATEGIES,
    }
    fitted_on = {
        "source": "training rows (the members' own trajectory)",
        "selection": "validation" if request.weight_averaging == "greedy" else None,
    }
    info = CombinerInfo(
        kind=WEIGHT_AVERAGE,
        state=state,
        fitted_on=fitted_on,
        test_metrics=evaluate_predictions(
            heldout.test, test_pred, level, test_variance, scale or 1.0
        ),
        heldout_metrics=evaluate_predictions(
            heldout.validation, pred, level, variance, scale or 1.0
        ),
        effective_members=1.0,
        variance_scale=scale,
    )
    return info, row_losses(heldout.validation, pred, variance, scale or 1.0)
