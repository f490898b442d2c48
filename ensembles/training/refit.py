"""Refitting: the served members trained again on the training and validation rows.

The validation rows stop each member's training, fit the combiners and calibrate the
variance, so no member learns from them: on small data that is 10-20% of the rows. A refit
(when :func:`refit_problem` finds nothing against it) trains every independent member
again, with its own seed and its own row rule (a bootstrap sample, fold or subsample, now
drawn over training + validation rows), for the epochs the validation rows found (the
members' mean best epoch) at the rate the run chose, and those are the members exported
and served.

What was fitted on the validation rows (the combiners, the temperature, the variance
scales, the default choice, the drift baselines) was fitted on the first members'
predictions there, rows those members never saw, and it carries over to the refit members,
which differ from them by the rows they gained. The test split is never touched, and every
test figure is the served members'. The design and its figures are in ``docs/training.md``
("Using the rows").
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ensembles import defaults
from ensembles.training.budget import MIN_STEPS
from ensembles.training.config import REFITS, Engine, Refit, TrainConfig
from ensembles.training.members import TrainedMember, TrainingData
from ensembles.training.network import MemberNetwork
from ensembles.training.strategies import ONE_RUN_STRATEGIES, train_plans

if TYPE_CHECKING:  # the pipeline imports this module
    from ensembles.training.pipeline import TrainRequest

#: How the refit's epochs are chosen, as the manifest records it.
EPOCH_RULE = "the members' mean best epoch on the validation rows"
#: Settings the refit decides itself: a fixed number of epochs, no early stopping (a
#: ``--variants`` item giving either is overridden for the refit).
_REFIT_SETTINGS = ("epochs", "patience")
_AVERAGING = "the weight-averaged model is chosen and scored on the validation rows"


def refit_option_problem(refit: str, strategy: str, averaging: bool) -> str | None:
    """What is wrong with asking for ``refit`` (None when nothing).

    Parameters
    ----------
    refit : str
        The ``--refit`` value as given.
    strategy : str
        The run's strategy.
    averaging : bool
        Whether the run publishes a weight-averaged model.

    Returns
    -------
    str or None
        One line naming the problem and what to do instead.
    """
    if refit not in REFITS:
        return f"unknown --refit '{refit}': choose one of {', '.join(REFITS)}"
    if refit == "on" and strategy in ONE_RUN_STRATEGIES:
        return (
            f"--refit on applies to independent members, not --strategy {strategy} "
            "(its members are one run's checkpoints): drop --refit or pick bagging, kfold, "
            "subsample or repeat"
        )
    if refit == "on" and averaging:
        return (
            f"--refit on contradicts weight averaging: {_AVERAGING}; drop weight_average "
            "from --combiners (or --force-weight-averaging), or --refit"
        )
    return None


def refit_problem(
    refit: Refit,
    strategy: str,
    config: TrainConfig,
    n_rows: int,
    averaging: bool,
    members: Sequence[TrainedMember],
    variants: Sequence[Mapping[str, Any]] = (),
) -> str | None:
    """Why this run does not refit its members (None when it does).

    Parameters
    ----------
    refit : {"auto", "on", "off"}
        ``auto`` refits independent members trained by the budget rule on at most
        :data:`~ensembles.defaults.REFIT_MAX_ROWS` rows whose validation loss was lowest,
        on average, no earlier than the rule's :data:`~ensembles.training.budget.MIN_STEPS`
        optimizer steps; ``on`` any independent members.
    strategy : str
        The run's strategy; one-run strategies never refit.
    config : TrainConfig
        The run's settings (``epochs`` None: the budget rule).
    n_rows : int
        Training + validation rows.
    averaging : bool
        Whether the run publishes a weight-averaged model, which chooses and is scored on
        the validation rows, so they must stay out of its members.
    members : sequence of TrainedMember
        The members trained on the training rows (their best epochs and budgets).
    variants : sequence of dict
        ``repeat`` setting variants; one giving ``epochs`` leaves the budget rule as
        ``--epochs`` does.

    Notes
    -----
    The best epoch of a member whose validation loss bottomed out before ``MIN_STEPS``
    steps is the luckiest of a few noisy epochs (the budget rule refuses to stop that
    early for the same reason); a fresh network trained for that many epochs does not land
    on an equally good one. On diabetes and breast cancer, whose members peak after 25-540
    steps, refitting made the RMSE or NLL of three or four of the four independent
    strategies worse; on Concrete, digits and the regression generator (mostly after
    400-4,000 steps) better (``docs/training.md``, "Using the rows").
    """
    if refit == "off":
        return "--refit off"
    if strategy in ONE_RUN_STRATEGIES:
        return f"{strategy} members are checkpoints of one run"
    if averaging:
        return _AVERAGING
    if refit == "on":
        return None
    if config.epochs is not None:
        return "--epochs given: the members train exactly that, on the training rows"
    if any("epochs" in variant for variant in variants):
        return "a --variants item gives epochs: those members train exactly that"
    if n_rows > defaults.REFIT_MAX_ROWS:
        return (
            f"{n_rows} training + validation rows (auto refits up to "
            f"{defaults.REFIT_MAX_ROWS}: above, the validation rows are a tenth of the data)"
        )
    if any("steps_per_epoch" not in member.budget for member in members):
        return "the members' budgets were not recorded"
    steps = float(np.mean([m.epoch * m.budget["steps_per_epoch"] for m in members]))
    if steps < MIN_STEPS:
        return (
            f"the members' validation loss was lowest after {steps:.0f} optimizer steps on "
            f"average, before the budget rule's minimum of {MIN_STEPS}: an early best epoch "
            "on a noisy curve, which a retraining of that length does not reproduce"
        )
    return None


def served_members(
    request: TrainRequest,
    config: TrainConfig,
    data: TrainingData,
    members: list[TrainedMember],
    networks: list[MemberNetwork],
    learning_rate: float,
    averaging: bool,
) -> tuple[list[TrainedMember], list[MemberNetwork], dict[str, Any]]:
    """The members a run serves, their networks, and the manifest's refit record.

    Parameters
    ----------
    request : TrainRequest
        The run (its ``refit``, strategy, variants and engine options).
    config : TrainConfig
        The run's settings.
    data : TrainingData
        The training and validation rows.
    members, networks : list
        The members trained on the training rows, and their networks.
    learning_rate : float
        The rate they trained at.
    averaging : bool
        Whether the run publishes a weight-averaged model.

    Returns
    -------
    members, networks : list
        ``members`` and ``networks`` themselves when the run does not refit, else the
        members trained again on training + validation rows (:func:`refit_members`) and
        their networks.
    record : dict
        ``asked``, ``used`` and either ``reason`` or what the refit did.
    """
    n_rows = len(data.y_train) + len(data.y_val)
    variants = request.options.variants
    problem = refit_problem(
        request.refit, request.strategy, config, n_rows, averaging, members, variants
    )
    if problem is not None:
        return members, networks, {"asked": request.refit, "used": False, "reason": problem}
    refit, refit_networks, record = refit_members(
        members,
        data,
        config,
        learning_rate,
        request.engine,
        request.jobs,
        request.ray_address,
        request.progress,
    )
    return refit, refit_networks, {"asked": request.refit, **record}


def refit_data(data: TrainingData) -> TrainingData:
    """Training + validation rows to learn from; the validation rows also fill the curves.

    Those curves measure nothing held out (the members learn from the rows), and nothing
    reads them: the refit trains a fixed number of epochs.

    Returns
    -------
    TrainingData
        ``X_train`` (n_train + n_val, n_features): the training rows, then the validation
        rows (``y_train`` likewise); ``X_val`` and ``y_val`` as in ``data``.
    """
    return TrainingData(
        np.concatenate([data.X_train, data.X_val]),
        np.concatenate([data.y_train, data.y_val]),
        data.X_val,
        data.y_val,
        data.task,
        data.n_outputs,
        data.imputed,
    )


def refit_members(
    members: list[TrainedMember],
    data: TrainingData,
    config: TrainConfig,
    learning_rate: float,
    engine: Engine = "auto",
    jobs: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
) -> tuple[list[TrainedMember], list[MemberNetwork], dict[str, Any]]:
    """Train ``members`` again on training + validation rows (see the module docstring).

    Parameters
    ----------
    members : list of TrainedMember
        The members trained on the training rows; their plans and best epochs are reused.
    data : TrainingData
        The run's training and validation rows.
    config : TrainConfig
        The run's settings; the refit trains :func:`refit_epochs` epochs at
        ``learning_rate``, without early stopping, whatever a member's setting variant
        says about epochs or patience.
    learning_rate : float
        The rate the members trained at (the range test's choice, or the given one).
    engine, jobs, ray_address, progress
        As :func:`~ensembles.training.strategies.train_members`.

    Returns
    -------
    members : list of TrainedMember
        The refit members, in the same order.
    networks : list of MemberNetwork
        Their networks (standardized on their own rows of the union).
    record : dict
        For the manifest: ``used``, ``rows``, ``epochs``, ``rule``, ``seconds``, ``engine``.
    """
    start = time.perf_counter()
    epochs = refit_epochs(members)
    run = config.with_overrides(
        {"learning_rate": learning_rate, "epochs": epochs, "patience": None}
    )
    union = refit_data(data)
    plans = [
        replace(plan, settings={k: v for k, v in plan.settings.items() if k not in _REFIT_SETTINGS})
        for plan in (member.plan for member in members)
    ]
    refit, engine_record = train_plans(
        plans,
        union,
        run,
        engine,
        jobs,
        ray_address,
        progress,
        "refit on training + validation rows",
    )
    record = {
        "used": True,
        "rows": len(union.y_train),
        "epochs": epochs,
        "rule": EPOCH_RULE,
        "seconds": time.perf_counter() - start,
        "engine": engine_record,
    }
    return refit, [member.network(union) for member in refit], record


def refit_epochs(members: list[TrainedMember]) -> int:
    """The epochs a refit trains: the members' mean best epoch, rounded (at least 1).

    The count of epochs, not of optimizer steps, carries over: on training + validation
    rows an epoch has 1 / (1 - validation share) times the steps, about 1.25 times on small
    data, so a refit member takes that many more steps than its first run took to its best.
    """
    return max(1, round(float(np.mean([member.epoch for member in members]))))
