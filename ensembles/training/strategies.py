"""Strategies: turn plans (independent members) or one run (horizontal, snapshot) into members.

Resampling and model averaging differ only in their plans and train every member with the
same function, in parallel processes when asked; horizontal and snapshot ensembles are one
run of the same loop with a collecting callback.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ensembles.data import Splits
from ensembles.errors import ConfigError
from ensembles.manifest import STRATEGIES, Strategy, Task
from ensembles.training.budget import Budget, budget_from_data, explicit_budget, stop_reason
from ensembles.training.callbacks import (
    BestWindowCollector,
    CheckpointCollector,
    EarlyStopping,
    SnapshotCollector,
    align_cycles,
    horizontal_epochs,
)
from ensembles.training.config import TrainConfig
from ensembles.training.learning_rate import RangeTestResult, lr_range_test
from ensembles.training.loop import Callback, FitResult, batch_starts, fit_member
from ensembles.training.network import MemberNetwork
from ensembles.training.plans import (
    MemberPlan,
    bootstrap_plans,
    kfold_plans,
    member_seed,
    repeat_plans,
    subsample_plans,
    training_rows,
)

logger = logging.getLogger(__name__)

INDEPENDENT_STRATEGIES = frozenset({"bagging", "kfold", "subsample", "repeat"})
RESAMPLING_STRATEGIES = frozenset({"bagging", "kfold", "subsample"})
ONE_RUN_STRATEGIES = frozenset({"horizontal", "snapshot"})


@dataclass(frozen=True)
class TrainingData:
    """The rows members may learn from (train) and stop on (validation).

    Attributes
    ----------
    X_train : ndarray (n_train, n_features)
    y_train : ndarray (n_train,) class indices, or (n_train, n_outputs) values
    X_val : ndarray (n_val, n_features)
    y_val : ndarray (n_val,) or (n_val, n_outputs)
    task : {"classification", "regression"}
    n_outputs : int
        Classes, or regression targets.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    task: Task
    n_outputs: int

    @classmethod
    def from_splits(cls, splits: Splits) -> TrainingData:
        """The training and validation splits of a three-way split."""
        train, validation = splits.train, splits.validation
        return cls(train.X, train.y, validation.X, validation.y, train.task, train.n_outputs)


@dataclass
class TrainedMember:
    """One member's weights (as numpy, so they cross process boundaries) and its history.

    ``config`` is the member's resolved settings (numeric rate; ``epochs`` its budget's
    cap); ``budget`` records the rule, the epochs and steps run, the best epoch and why the
    run stopped (``patience``, ``cap``, ``epochs`` or ``diverged``).
    """

    plan: MemberPlan
    config: TrainConfig
    state: dict[str, np.ndarray]
    curves: list[dict[str, float]]
    epoch: int
    cycle: int | None = None
    seconds: float = 0.0
    budget: dict[str, Any] = field(default_factory=dict)

    def network(self, data: TrainingData) -> MemberNetwork:
        """Rebuild the torch module with this member's weights."""
        network = build_network(data, self.config, training_rows(self.plan.rows, len(data.y_train)))
        network.load_state_dict({key: torch.from_numpy(value) for key, value in self.state.items()})
        network.eval()
        return network


@dataclass(frozen=True)
class StrategyOptions:
    """Strategy parameters beyond the member count.

    Attributes
    ----------
    subsample_fraction : float
        ``subsample``: share of training rows each member sees, without replacement.
    variants : list of dict
        ``repeat``: setting overrides cycled over the members.
    spacing : int
        ``horizontal``: epochs between consecutive checkpoints.
    peak_learning_rate : float or None
        ``snapshot``: the rate each cycle restarts at; None means 10 x the configured rate.
        Huang et al. restart at a large rate so that each cycle leaves its minimum for a new
        one; with the configured rate the cycles stay in one basin and the members agree.
    """

    subsample_fraction: float = 0.7
    variants: list[dict[str, Any]] = field(default_factory=list)
    spacing: int = 1
    peak_learning_rate: float | None = None


def build_network(data: TrainingData, config: TrainConfig, rows: np.ndarray) -> MemberNetwork:
    """A fresh member network whose standardization comes from the member's own rows."""
    X = data.X_train[rows]
    mean = X.mean(axis=0) if config.standardize else np.zeros(X.shape[1])
    scale = X.std(axis=0) if config.standardize else np.ones(X.shape[1])
    scale = np.where(scale > 1e-8, scale, 1.0)
    target_mean = target_scale = None
    if data.task == "regression":
        y = data.y_train[rows]
        target_mean, target_scale = (
            y.mean(axis=0),
            np.where(y.std(axis=0) > 1e-8, y.std(axis=0), 1.0),
        )
    return MemberNetwork(
        X.shape[1], data.n_outputs, data.task, config, mean, scale, target_mean, target_scale
    )


def make_plans(
    strategy: str, n_members: int, seed: int, options: StrategyOptions
) -> list[MemberPlan]:
    """Plans of an independent strategy."""
    if strategy == "bagging":
        return bootstrap_plans(n_members, seed)
    if strategy == "kfold":
        return kfold_plans(n_members, seed)
    if strategy == "subsample":
        return subsample_plans(n_members, seed, options.subsample_fraction)
    if strategy == "repeat":
        return repeat_plans(n_members, seed, options.variants)
    raise ConfigError(f"unknown strategy '{strategy}': choose one of {', '.join(STRATEGIES)}")


def variant_problems(variants: object, config: TrainConfig, same_layout: bool = False) -> list[str]:
    """Every problem of ``repeat`` setting variants, one line each (empty when valid).

    Parameters
    ----------
    variants : object
        Should be a list of dicts of setting overrides (``--variants``).
    config : TrainConfig
        The settings the variants override.
    same_layout : bool
        The members' weights will be averaged (``--force-weight-averaging``): parameters
        can only be averaged between networks of one layer layout.

    Returns
    -------
    list of str
        The type, key and value problems of each item (numbered from 1), then the settings
        the members must share: ``gaussian_head`` (every member exports the same outputs)
        and, with ``same_layout``, ``hidden_sizes`` and ``batch_norm``.
    """
    if not isinstance(variants, list):
        return [
            "--variants must be a JSON list of objects of setting overrides, "
            f"got {_json_kind(variants)}"
        ]
    problems = []
    configs: dict[int, TrainConfig] = {}
    for number, variant in enumerate(variants, 1):
        if not isinstance(variant, dict):
            problems.append(
                f"--variants item {number} must be an object of setting overrides, "
                f"got {_json_kind(variant)}"
            )
            continue
        found = config.override_problems(variant)
        problems += [f"--variants item {number}: {problem}" for problem in found]
        if not found:
            configs[number] = config.with_overrides(variant)
    for name in ("gaussian_head", *(("hidden_sizes", "batch_norm") if same_layout else ())):
        spread = _spread(name, configs)
        if spread:
            why, fix = "every member must export the same outputs", ""
            if name != "gaussian_head":
                why = "forced weight averaging needs one layer layout"
                fix = " or drop --force-weight-averaging"
            problems.append(
                f"--variants give members different {name} ({spread}): {why}; "
                f"give every item the same {name}{fix}"
            )
    return problems


def train_members(
    strategy: Strategy,
    n_members: int,
    data: TrainingData,
    config: TrainConfig,
    seed: int,
    options: StrategyOptions | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> tuple[list[TrainedMember], dict[str, Any]]:
    """Train every member of an ensemble.

    Parameters
    ----------
    strategy : {"bagging", "kfold", "subsample", "repeat", "horizontal", "snapshot"}
    n_members : int
        Members: bootstrap samples, folds, subsamples, runs, checkpoints or cycles.
    data : TrainingData
    config : TrainConfig
        Settings shared by every member (``repeat`` variants override some per member).
    seed : int
        Base seed; every member's seed and row rule derive from it.
    options : StrategyOptions, optional
    jobs : int
        Processes for independent members; results equal ``jobs=1``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    members : list of TrainedMember, in member order
    params : dict
        The strategy's parameters as they were applied (for the manifest).
    """
    options = options or StrategyOptions()
    problems = variant_problems(options.variants, config) if strategy == "repeat" else []
    if problems:
        raise ConfigError("; ".join(problems))  # before any member trains
    config, rate = resolve_learning_rate(data, config, seed)
    if strategy in ONE_RUN_STRATEGIES:
        members, params = _train_one_run(strategy, n_members, data, config, seed, options, progress)
        return members, {**params, "learning_rate": rate}
    plans = make_plans(strategy, n_members, seed, options)
    params: dict[str, Any] = {"n_members": n_members, "seed": seed, "jobs": jobs}
    params["learning_rate"] = rate
    if strategy == "subsample":
        params["subsample_fraction"] = options.subsample_fraction
    if strategy == "repeat" and options.variants:
        params["variants"] = options.variants
    bar = tqdm(total=len(plans), desc=f"{strategy} members", unit="member", disable=not progress)
    with bar:
        if jobs <= 1:
            members = []
            for plan in plans:
                members.append(train_planned_member(plan, data, config))
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = [pool.submit(train_planned_member, plan, data, config) for plan in plans]
                for future in futures:
                    future.add_done_callback(lambda _: bar.update())
                members = [future.result() for future in futures]
    return members, params


def resolve_learning_rate(
    data: TrainingData, config: TrainConfig, seed: int
) -> tuple[TrainConfig, dict[str, Any]]:
    """``config`` with a numeric rate, and how it was chosen (for the manifest).

    ``learning_rate=None`` (``--learning-rate auto``) runs the learning-rate range test on
    the training rows (:func:`~ensembles.training.learning_rate.lr_range_test`); a given rate
    is kept as it is.

    Returns
    -------
    config : TrainConfig
    record : dict
        ``rate``, ``rule`` ("given" or the range test's rule) and, after a range test, its
        ``seconds`` and its smoothed ``losses`` at ``rates``.
    """
    if config.learning_rate is not None:
        return config, {"rate": config.learning_rate, "rule": "given"}
    result = range_test(data, config, seed)
    record = {"rate": result.suggested, **result.to_dict()}
    del record["suggested"]
    return config.with_overrides({"learning_rate": result.suggested}), record


def range_test(data: TrainingData, config: TrainConfig, seed: int) -> RangeTestResult:
    """The learning-rate range test of ``config`` on the training rows of ``data``."""
    with _single_thread():
        return lr_range_test(
            data.X_train,
            data.y_train,
            lambda rows, test_config: build_network(data, test_config, rows),
            config,
            seed,
        )


def member_budget(config: TrainConfig, n_rows: int) -> Budget:
    """The budget of a run on ``n_rows`` rows: the explicit ``epochs``, or the data rule.

    An explicit ``patience`` replaces the rule's patience (``epochs`` None) or adds early
    stopping to the explicit epochs.
    """
    steps = len(batch_starts(n_rows, config.batch_size, config.batch_norm))
    if config.epochs is not None:
        return explicit_budget(config.epochs, config.patience, steps)
    budget = budget_from_data(steps)
    if config.patience is not None:
        budget = replace(budget, patience=config.patience)
    return budget


def train_planned_member(
    plan: MemberPlan, data: TrainingData, config: TrainConfig, allow_diverged: bool = False
) -> TrainedMember:
    """Train one member of an independent strategy (a pure function: safe in a process pool).

    ``config`` must have a numeric rate (:func:`resolve_learning_rate`); the member trains
    for :func:`member_budget` and keeps its best weights when it stops early. A run whose
    training loss becomes NaN or infinite raises ``ConfigError`` unless ``allow_diverged``
    (diagnosis keeps such runs: divergence is its evidence).
    """
    start = time.perf_counter()
    member_config = config.with_overrides(plan.settings)
    rows = training_rows(plan.rows, len(data.y_train))
    budget = member_budget(member_config, len(rows))
    run_config = member_config.with_overrides({"epochs": budget.max_epochs})
    with _single_thread():
        torch.manual_seed(plan.seed)
        network = build_network(data, run_config, rows)
        callbacks: list[Callback] = []
        if budget.patience is not None:
            callbacks.append(EarlyStopping(budget.patience, budget.min_epochs))
        result = fit_member(
            network,
            data.X_train[rows],
            data.y_train[rows],
            data.X_val,
            data.y_val,
            run_config,
            plan.seed,
            callbacks,
        )
    if not allow_diverged:
        _check_converged(result, plan.member_id)
    epoch = _final_epoch(result, callbacks)
    return TrainedMember(
        plan,
        run_config,
        _numpy_state(network),
        result.curves,
        epoch,
        seconds=time.perf_counter() - start,
        budget=_budget_record(budget, result, epoch),
    )


def _train_one_run(
    strategy: str,
    n_members: int,
    data: TrainingData,
    config: TrainConfig,
    seed: int,
    options: StrategyOptions,
    progress: bool,
) -> tuple[list[TrainedMember], dict[str, Any]]:
    if config.patience is not None:
        raise ConfigError(
            f"--patience (early stopping) contradicts --strategy {strategy}: its members are "
            "taken at epochs the strategy chooses; drop --patience"
        )
    if options.variants:
        raise ConfigError(f"setting variants apply to --strategy repeat, not {strategy}")
    if options.spacing < 1:
        raise ConfigError(f"--spacing must be at least 1, got {options.spacing}")
    params: dict[str, Any] = {"n_members": n_members, "seed": seed}
    plan = MemberPlan(0, member_seed(seed, 0))
    budget = member_budget(config, len(data.y_train))
    probe: TrainedMember | None = None
    if strategy == "horizontal":
        collector: Callback = _horizontal_collector(n_members, options.spacing, budget)
        params.update(spacing=options.spacing, epochs=budget.max_epochs)
    else:
        if budget.rule == "data":  # one early-stopped probe run measures the cycle length
            probe = train_planned_member(MemberPlan(0, member_seed(seed, 10_001)), data, config)
            per_cycle, total = max(1, probe.epoch), max(1, probe.epoch) * n_members
        else:
            per_cycle, total = align_cycles(budget.max_epochs, n_members)
            if total != budget.max_epochs:
                logger.warning(
                    "%d epochs do not divide into %d cycles: training %d epochs (%d cycles of %d)",
                    budget.max_epochs,
                    n_members,
                    total,
                    n_members,
                    per_cycle,
                )
        peak = options.peak_learning_rate
        if peak is None:
            peak = 10 * (config.learning_rate or 0.0)
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
            params["cycle_rule"] = (
                "each cycle is as long as one early-stopped probe run needed to reach its best "
                f"validation loss ({probe.epoch} epochs, {probe.seconds:.1f} s)"
            )
        else:
            params["requested_epochs"] = budget.max_epochs
        budget = explicit_budget(total, None, budget.steps_per_epoch)
        collector = SnapshotCollector(peak, per_cycle)
    run_config = config.with_overrides({"epochs": budget.max_epochs})
    start = time.perf_counter()
    bar = tqdm(total=budget.max_epochs, desc=f"{strategy} run", unit="epoch", disable=not progress)
    with bar, _single_thread():
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
    _check_converged(result, f"the {strategy} run")
    collected = collector.collected  # type: ignore[attr-defined]
    if strategy == "horizontal":
        params["member_epochs"] = [item.epoch for item in collected]
    seconds = (time.perf_counter() - start + (probe.seconds if probe else 0)) / len(collected)
    record = _budget_record(budget, result, collected[-1].epoch)
    members = [
        TrainedMember(
            MemberPlan(i, plan.seed),
            run_config,
            {key: value.numpy().copy() for key, value in item.state.items()},
            result.curves[: item.epoch],
            item.epoch,
            item.cycle,
            seconds,
            record,
        )
        for i, item in enumerate(collected)
    ]
    return members, params


def _horizontal_collector(n_members: int, spacing: int, budget: Budget) -> Callback:
    """Checkpoints ending at the best epoch (budget rule), or the final epochs (``--epochs``)."""
    needed = (n_members - 1) * spacing + 1
    if budget.patience is not None:
        return BestWindowCollector(n_members, spacing, budget.patience, budget.min_epochs)
    epochs = horizontal_epochs(budget.max_epochs, n_members, spacing)
    if epochs[0] < 1:
        raise ConfigError(
            f"horizontal needs at least {n_members} x spacing {spacing} epochs ({needed}), got "
            f"--epochs {budget.max_epochs}"
        )
    return CheckpointCollector(epochs)


def _budget_record(budget: Budget, result: FitResult, best_epoch: int) -> dict[str, Any]:
    """What the manifest says of a run's budget: the rule, what it used and why it stopped."""
    return {
        **budget.to_dict(),
        "epochs_run": result.epochs_run,
        "best_epoch": best_epoch,
        "steps_run": result.epochs_run * budget.steps_per_epoch,
        "stopped": stop_reason(result.epochs_run, budget, result.diverged),
    }


class _ProgressCallback(Callback):
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def on_epoch_end(self, epoch: int, network: MemberNetwork, log: dict[str, float]) -> bool:
        self.bar.update()
        return False


def _check_converged(result: FitResult, who: str) -> None:
    """Refuse a run whose training loss became NaN or infinite."""
    if result.diverged:
        loss = result.curves[-1]["train_loss"]
        raise ConfigError(
            f"{who} diverged at epoch {result.epochs_run} (training loss {loss}); "
            "lower --learning-rate or add --grad-clip"
        )


def _final_epoch(result: FitResult, callbacks: list[Callback]) -> int:
    for callback in callbacks:
        if isinstance(callback, EarlyStopping) and callback.best_epoch:
            return callback.best_epoch
    return result.epochs_run


def _spread(name: str, configs: dict[int, TrainConfig]) -> str | None:
    """``"false in item 1, true in items 2 and 3"`` when the configs differ in ``name``."""
    items: dict[str, list[str]] = {}
    for number, config in configs.items():
        items.setdefault(json.dumps(config.to_dict()[name]), []).append(str(number))
    if len(items) < 2:
        return None
    return ", ".join(
        f"{value} in item{'s' if len(numbers) > 1 else ''} {' and '.join(numbers)}"
        for value, numbers in items.items()
    )


def _json_kind(value: object) -> str:
    """How JSON would name the type of ``value``, for messages about parsed JSON."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"the number {value}"
    return kinds.get(type(value), f"a {type(value).__name__}")


def _numpy_state(network: MemberNetwork) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy().copy() for key, value in network.state_dict().items()}


@contextmanager
def _single_thread() -> Iterator[None]:
    """One torch thread while a member trains: identical results in and out of a pool."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
