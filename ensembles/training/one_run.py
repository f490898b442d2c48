"""The one-run strategies: horizontal and snapshot members from a single training run."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ensembles.errors import ConfigError
from ensembles.training.budget import Budget, explicit_budget
from ensembles.training.callbacks import (
    BestWindowCollector,
    CheckpointCollector,
    SnapshotCollector,
    align_cycles,
    horizontal_epochs,
)
from ensembles.training.config import TrainConfig
from ensembles.training.loop import Callback, fit_member
from ensembles.training.members import (
    TrainedMember,
    TrainingData,
    budget_record,
    build_network,
    check_converged,
    member_budget,
    single_thread,
    train_planned_member,
)
from ensembles.training.network import MemberNetwork
from ensembles.training.plans import MemberPlan, member_seed

logger = logging.getLogger(__name__)


def one_run_option_problems(
    strategy: str, config: TrainConfig, spacing: int, peak_learning_rate: float | None
) -> list[str]:
    """What in the options rules a one-run ``strategy`` out (checked before any training).

    Parameters
    ----------
    strategy : {"horizontal", "snapshot"}
    config : TrainConfig
    spacing : int
        ``horizontal``: epochs between checkpoints.
    peak_learning_rate : float or None
        ``snapshot``: the rate each cycle restarts at (None: 10 x the configured rate).
    """
    problems = []
    if config.patience is not None:
        problems.append(
            f"--patience (early stopping) contradicts --strategy {strategy}: its members are "
            "taken at epochs the strategy chooses; drop --patience"
        )
    if strategy == "horizontal" and spacing < 1:
        problems.append(f"--spacing must be at least 1, got {spacing}")
    peak = peak_learning_rate
    if strategy == "snapshot" and peak is not None and not (math.isfinite(peak) and peak > 0):
        problems.append(f"--peak-learning-rate must be a positive finite number, got {peak}")
    return problems


def train_one_run(
    strategy: str,
    n_members: int,
    data: TrainingData,
    config: TrainConfig,
    seed: int,
    spacing: int = 1,
    peak_learning_rate: float | None = None,
    progress: bool = True,
) -> tuple[list[TrainedMember], dict[str, Any]]:
    """Train one run and take its members: checkpoints (horizontal) or cycle ends (snapshot).

    Parameters
    ----------
    strategy : {"horizontal", "snapshot"}
    n_members : int
        Checkpoints or cycles.
    data : TrainingData
    config : TrainConfig
        With a numeric learning rate; ``epochs`` None uses the budget rule: horizontal
        stops early and takes the checkpoints ending at the best epoch; snapshot splits the
        epochs an early-stopped probe run needed into its cycles (Huang et al.: M members for
        the budget of one network).
    seed : int
    spacing : int
        horizontal: epochs between checkpoints.
    peak_learning_rate : float or None
        snapshot: each cycle's starting rate (None: 10 x the configured rate).
    progress : bool

    Returns
    -------
    members : list of TrainedMember
    params : dict
        The strategy's parameters as applied (for the manifest).
    """
    if problems := one_run_option_problems(strategy, config, spacing, peak_learning_rate):
        raise ConfigError("; ".join(problems))
    params: dict[str, Any] = {"n_members": n_members, "seed": seed}
    plan = MemberPlan(0, member_seed(seed, 0))
    budget = member_budget(config, len(data.y_train))
    probe: TrainedMember | None = None
    if strategy == "horizontal":
        collector: Callback = _horizontal_collector(n_members, spacing, budget)
        params.update(spacing=spacing, max_epochs=budget.max_epochs)
    else:
        if budget.rule == "data":  # one early-stopped probe run measures one network's budget
            probe = train_planned_member(MemberPlan(0, member_seed(seed, 10_001)), data, config)
        collector, budget = _snapshot_cycles(
            n_members, config, budget, peak_learning_rate, probe, params
        )
    run_config = config.with_overrides({"epochs": budget.max_epochs})
    start = time.perf_counter()
    bar = tqdm(total=budget.max_epochs, desc=f"{strategy} run", unit="epoch", disable=not progress)
    with bar, single_thread():
        torch.manual_seed(plan.seed)
        network = build_network(data, run_config, np.arange(len(data.y_train)))
        result = fit_member(
            network,
            data.X_train,
            data.y_train,
            data.X_val,
            data.y_val,
            run_config,
            plan.seed,
            [collector, _ProgressCallback(bar)],
        )
    check_converged(result, f"the {strategy} run")
    collected = collector.collected  # type: ignore[attr-defined]
    if strategy == "horizontal":
        params.update(epochs=result.epochs_run, member_epochs=[item.epoch for item in collected])
    seconds = (time.perf_counter() - start + (probe.seconds if probe else 0)) / len(collected)
    members = [
        TrainedMember(
            MemberPlan(i, plan.seed),
            run_config,
            {key: value.numpy().copy() for key, value in item.state.items()},
            result.curves[: item.epoch],
            item.epoch,
            item.cycle,
            seconds,
            budget_record(budget, result, item.epoch),  # the epoch its weights come from
        )
        for i, item in enumerate(collected)
    ]
    return members, params


def _snapshot_cycles(
    n_members: int,
    config: TrainConfig,
    budget: Budget,
    peak_learning_rate: float | None,
    probe: TrainedMember | None,
    params: dict[str, Any],
) -> tuple[SnapshotCollector, Budget]:
    """The snapshot schedule and the run's budget; records both in ``params``.

    With a probe (budget rule) the cycles share the probe's best epoch count; with explicit
    epochs they share those, rounded up to whole cycles.
    """
    epochs = probe.epoch if probe is not None else budget.max_epochs
    per_cycle, total = align_cycles(epochs, n_members)
    if probe is None and total != epochs:
        logger.warning(
            "%d epochs do not divide into %d cycles: training %d epochs (%d cycles of %d)",
            epochs,
            n_members,
            total,
            n_members,
            per_cycle,
        )
    peak = 10 * (config.learning_rate or 0.0) if peak_learning_rate is None else peak_learning_rate
    if not peak > 0:
        raise ConfigError(f"--peak-learning-rate must be positive, got {peak}")
    params.update(
        cycles=n_members,
        epochs_per_cycle=per_cycle,
        epochs=total,
        peak_learning_rate=peak,
        schedule="cosine annealing restarted every cycle, per optimizer step, down to 0",
    )
    if probe is not None:
        params["probe_epochs_run"] = len(probe.curves)
        params["probe_best_epoch"] = probe.epoch
        params["cycle_rule"] = (
            "the cycles share the epochs one early-stopped probe run needed to reach its "
            f"best validation loss ({probe.epoch} epochs, {probe.seconds:.1f} s)"
        )
    else:
        params["requested_epochs"] = epochs
    return SnapshotCollector(peak, per_cycle), explicit_budget(total, None, budget.steps_per_epoch)


def horizontal_window_problem(n_members: int, spacing: int, budget: Budget) -> str | None:
    """Why a horizontal run under ``budget`` cannot take ``n_members`` checkpoints ``spacing``
    epochs apart (None when it can): the window is longer than the epochs it may run.

    Under the budget rule a window longer than the cap would be cut short and the run would
    publish fewer members than asked, so it is refused as an explicit ``--epochs`` is.
    """
    needed = (n_members - 1) * spacing + 1
    if budget.max_epochs >= needed:
        return None
    span = f"(members - 1) x spacing + 1 = {needed} epochs for {n_members} checkpoints"
    if budget.rule == "epochs":
        return (
            f"horizontal needs {span}, got --epochs {budget.max_epochs}: raise --epochs or "
            "lower --members or --spacing"
        )
    return (
        f"horizontal needs {span}, more than the budget rule's cap of {budget.max_epochs} "
        f"epochs ({budget.steps_per_epoch} steps each) on these rows: lower --members or "
        "--spacing, or give --epochs"
    )


def _horizontal_collector(n_members: int, spacing: int, budget: Budget) -> Callback:
    """Checkpoints ending at the best epoch (budget rule), or the final epochs (``--epochs``)."""
    if problem := horizontal_window_problem(n_members, spacing, budget):
        raise ConfigError(problem)
    if budget.patience is not None:
        return BestWindowCollector(n_members, spacing, budget.patience, budget.min_epochs)
    return CheckpointCollector(horizontal_epochs(budget.max_epochs, n_members, spacing))


class _ProgressCallback(Callback):
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def on_epoch_end(self, epoch: int, network: MemberNetwork, log: dict[str, float]) -> bool:
        self.bar.update()
        return False
