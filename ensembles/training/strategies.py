"""Strategies: turn plans (independent members) or one run (horizontal, snapshot) into members.

Resampling and model averaging differ only in their plans and train every member with the
same function (:func:`~ensembles.training.members.train_planned_member`), in parallel
processes when asked; horizontal and snapshot ensembles are one run of the same loop with a
collecting callback (:mod:`ensembles.training.one_run`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from ensembles.errors import ConfigError
from ensembles.manifest import ONE_RUN_STRATEGIES, STRATEGIES, Strategy
from ensembles.training.config import ENGINES, Engine, TrainConfig
from ensembles.training.members import (
    TrainedMember,
    TrainingData,
    rate_record,
    resolve_learning_rate,
    train_planned_member,
)
from ensembles.training.one_run import train_one_run
from ensembles.training.packed import packing_problem, train_packed
from ensembles.training.plans import (
    MemberPlan,
    bootstrap_plans,
    kfold_plans,
    repeat_plans,
    subsample_plans,
)

logger = logging.getLogger(__name__)

INDEPENDENT_STRATEGIES = frozenset({"bagging", "kfold", "subsample", "repeat"})
RESAMPLING_STRATEGIES = frozenset({"bagging", "kfold", "subsample"})


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
        if "learning_rate" in variant and variant["learning_rate"] is None:
            found.append(
                "learning_rate must be a number (the range test chooses one rate for the "
                "whole run: leave the key out, or give --learning-rate auto)"
            )
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
    engine: Engine = "auto",
    ray_address: str | None = None,
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
        Processes for independent members (loop engine); results equal ``jobs=1``.
    progress : bool
        Show a progress bar.
    engine : {"auto", "loop", "packed", "ray"}
        Where independent members train (:data:`Engine`); one-run strategies ignore it.
    ray_address : str, optional
        The Ray cluster of ``engine="ray"``; None starts a local one.

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
    if strategy in ONE_RUN_STRATEGIES and options.variants:
        raise ConfigError(f"setting variants apply to --strategy repeat, not {strategy}")
    config, chosen_by = resolve_learning_rate(data, config, seed)
    rate = rate_record(config, chosen_by)
    if strategy in ONE_RUN_STRATEGIES:
        members, params = train_one_run(
            strategy,
            n_members,
            data,
            config,
            seed,
            options.spacing,
            options.peak_learning_rate,
            progress,
        )
        return members, {**params, "learning_rate": rate}
    plans = make_plans(strategy, n_members, seed, options)
    params: dict[str, Any] = {"n_members": n_members, "seed": seed, "jobs": jobs}
    params["learning_rate"] = rate
    if strategy == "subsample":
        params["subsample_fraction"] = options.subsample_fraction
    if strategy == "repeat" and options.variants:
        params["variants"] = options.variants
    members, params["engine"] = train_plans(
        plans, data, config, engine, jobs, ray_address, progress, f"{strategy} members"
    )
    return members, params


def train_plans(
    plans: list[MemberPlan],
    data: TrainingData,
    config: TrainConfig,
    engine: Engine = "auto",
    jobs: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
    description: str = "members",
) -> tuple[list[TrainedMember], dict[str, Any]]:
    """Train independent members of given plans on the engine :func:`resolve_engine` picks.

    Parameters
    ----------
    plans : list of MemberPlan
    data : TrainingData
    config : TrainConfig
        With a numeric learning rate; each plan's settings apply on top.
    engine, jobs, ray_address, progress
        As :func:`train_members`.
    description : str
        The progress bar's label.

    Returns
    -------
    members : list of TrainedMember, in plan order
    engine : dict
        ``{"asked", "used", "reason"?}``, for the manifest.
    """
    chosen, reason = resolve_engine(engine, plans, config, len(data.y_train), jobs)
    record = {"asked": engine, "used": chosen, **({"reason": reason} if reason else {})}
    bar = tqdm(total=len(plans), desc=description, unit="member", disable=not progress)
    with bar:
        if chosen == "ray":
            from ensembles.training.ray_engine import train_on_ray

            members = train_on_ray(plans, data, config, ray_address, lambda: bar.update())
        elif chosen == "packed":
            members = train_packed(plans, data, config, lambda: bar.update())
        else:
            members = _train_in_loop(plans, data, config, jobs, bar)
    return members, record


def resolve_engine(
    engine: Engine, plans: list[MemberPlan], config: TrainConfig, n_rows: int, jobs: int = 1
) -> tuple[str, str | None]:
    """The engine that will run, and why it is not the one asked for (None when it is).

    ``auto`` is ``packed`` when the members can be packed (one layout, one optimizer
    setting, one number of steps per epoch over their rows, drawn from ``n_rows``:
    :func:`~ensembles.training.packed.packing_problem`) and no ``jobs`` processes
    were asked for, else ``loop``; ``packed`` falls back to ``loop`` the same way, logged.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine '{engine}': choose one of {', '.join(ENGINES)}")
    if engine in ("loop", "ray"):
        return engine, None
    problem = packing_problem(plans, config, n_rows)
    if problem is None and jobs > 1:
        problem = f"--jobs {jobs} asks for processes"
    if problem is None:
        return "packed", None
    if engine == "packed":
        logger.warning("training members one after another: %s", problem)
    return "loop", problem


def _train_in_loop(
    plans: list[MemberPlan], data: TrainingData, config: TrainConfig, jobs: int, bar: tqdm
) -> list[TrainedMember]:
    """Members one after another, or in ``jobs`` spawned processes."""
    if jobs <= 1:
        members = []
        for plan in plans:
            members.append(train_planned_member(plan, data, config))
            bar.update()
        return members
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(train_planned_member, plan, data, config) for plan in plans]
        for future in futures:
            future.add_done_callback(lambda _: bar.update())
        return [future.result() for future in futures]


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
