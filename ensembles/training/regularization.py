"""Regularization chosen from the data: the settings as given, or stronger ones, by validation.

How much regularization a small dataset wants is not a constant. Boston housing (506 rows)
reaches the published uncertainty baselines only with GELU, dropout 0.3 and input noise
0.1; the same settings cost Concrete (1,030 rows) its RMSE target and make breast cancer
and diabetes worse (``docs/benchmark.md``, "What Boston wants, the others refuse"). So,
as the learning rate is chosen by a range test, ``--regularization auto`` (the default)
chooses between the two from the data: a run on at most
:data:`~ensembles.defaults.REGULARIZATION_MAX_ROWS` training + validation rows also trains
its members with :data:`~ensembles.training.config.STRONGER_REGULARIZATION` and keeps the
ensemble whose members' equal-weight mean has the lower validation loss, each validation
row scored by a variance scale fitted on the other half of the rows
(:func:`~ensembles.evaluation.crossfit`, the loss the default combiner is chosen by). Both
ensembles stopped on the same validation rows, so neither is favoured; the test split is
never read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import numpy as np

from ensembles import defaults
from ensembles.evaluation import crossfit
from ensembles.heldout import SplitPredictions
from ensembles.training.config import STRONGER_REGULARIZATION, Regularization, TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.members import TrainedMember, TrainingData

Trained = TypeVar("Trained")
AS_GIVEN = "as given"
STRONGER = "stronger"
RULE = "the lower cross-fitted validation loss of the members' equal-weight mean"


def regularization_problem(
    rule: Regularization,
    config: TrainConfig,
    variants: list[dict[str, Any]],
    n_rows: int,
    pinned: Collection[str] = (),
) -> str | None:
    """Why a run trains only the settings as given; None when ``auto`` tries stronger ones.

    Parameters
    ----------
    rule : {"auto", "off"}
        ``--regularization``.
    config : TrainConfig
        The members' settings as the user gave them (``epochs`` None: the budget rule).
    variants : list of dict
        ``repeat`` setting variants (each member trains as its variant says).
    n_rows : int
        Training + validation rows.
    pinned : collection of str
        Settings of :data:`~ensembles.training.config.STRONGER_REGULARIZATION` the user
        gave, whatever their value (a setting away from its default counts as given too).
    """
    if rule == "off":
        return "--regularization off"
    if config.epochs is not None:
        return "--epochs given: the members train as set"
    if variants:
        return "setting variants given: each member trains as its variant says"
    default = TrainConfig()
    given = [
        name
        for name in STRONGER_REGULARIZATION
        if name in pinned or getattr(config, name) != getattr(default, name)
    ]
    if given:
        words = ", ".join(name.replace("_", " ") for name in given)
        return f"{words} given: the members train as set"
    if n_rows > defaults.REGULARIZATION_MAX_ROWS:
        return (
            f"{n_rows} training + validation rows (auto tries stronger regularization up to "
            f"{defaults.REGULARIZATION_MAX_ROWS})"
        )
    return None


def choose_regularization(
    config: TrainConfig,
    problem: str | None,
    train: Callable[[TrainConfig], Trained],
    validation_losses: Callable[[Trained], np.ndarray],
    learning_rate: Callable[[Trained], float | None] = lambda trained: None,
) -> tuple[Trained, TrainConfig, dict[str, Any]]:
    """Train with ``config``, and with stronger regularization unless ``problem``; keep the better.

    Parameters
    ----------
    config : TrainConfig
        The settings as given.
    problem : str or None
        :func:`regularization_problem`'s answer: a reason to train ``config`` only.
    train : callable
        ``train(config)``: the members (or one network) trained with those settings.
    validation_losses : callable
        ``validation_losses(trained)``: one loss per validation row, lower is better.
    learning_rate : callable, optional
        ``learning_rate(trained)``: the rate it trained at. Each candidate chose its own (a
        range test on its own settings), so the record gives both.

    Returns
    -------
    trained, config
        The kept result and the settings it was trained with.
    record : dict
        For the manifest: ``tried`` and ``reason``; when tried also ``stronger`` (the
        settings tried), ``validation_loss`` (mean per candidate), ``difference`` (stronger
        minus as given, per row, mean) and ``difference_se``, ``learning_rate`` (per
        candidate), ``chosen`` and ``seconds`` (the second training's).
    """
    given = train(config)
    if problem is not None:
        return given, config, {"tried": False, "chosen": AS_GIVEN, "reason": problem}
    start = time.perf_counter()
    stronger_config = config.with_overrides(STRONGER_REGULARIZATION)
    stronger = train(stronger_config)
    seconds = time.perf_counter() - start
    losses = {AS_GIVEN: validation_losses(given), STRONGER: validation_losses(stronger)}
    difference = losses[STRONGER] - losses[AS_GIVEN]
    se = (
        float(np.std(difference, ddof=1) / math.sqrt(len(difference)))
        if len(difference) > 1
        else math.nan
    )
    keep_stronger = bool(np.mean(difference) < 0)
    record = {
        "tried": True,
        "stronger": dict(STRONGER_REGULARIZATION),
        "validation_loss": {name: float(np.mean(rows)) for name, rows in losses.items()},
        "difference": float(np.mean(difference)),
        "difference_se": se,
        "learning_rate": {AS_GIVEN: learning_rate(given), STRONGER: learning_rate(stronger)},
        "chosen": STRONGER if keep_stronger else AS_GIVEN,
        "reason": RULE,
        "seconds": seconds,
    }
    if keep_stronger:
        return stronger, stronger_config, record
    return given, config, record


def members_validation_losses(members: list[TrainedMember], data: TrainingData) -> np.ndarray:
    """Each validation row's cross-fitted loss under the members' equal-weight mean.

    The Gaussian NLL (its variance scale fitted on the other half of the rows) for
    regression with Gaussian heads, the log loss for classification: the ranking loss of
    :func:`~ensembles.evaluation.crossfit`.
    """
    outputs = [member_outputs(member.network(data), data.X_val) for member in members]
    preds = np.stack([output[0] for output in outputs])
    variances = np.stack([output[1] for output in outputs]) if len(outputs[0]) > 1 else None
    validation = SplitPredictions(data.X_val, data.y_val, preds, variances)
    return crossfit("mean", data.task, {}, validation).row_losses
