"""The benchmark loop: train (or read) one ensemble per strategy and repeat, score, aggregate."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensembles.benchmark.aggregate import summarize_runs
from ensembles.benchmark.class_holdout import encoded_rows
from ensembles.benchmark.cost import TIMING_REPEATS, inference_cost
from ensembles.benchmark.headline import BASELINES
from ensembles.benchmark.ood import ood_scores
from ensembles.benchmark.scoring import score_version, single_uncertainty
from ensembles.benchmark.served import ServedModel
from ensembles.benchmark.shift import SHIFT_STRENGTHS, shift_scores
from ensembles.default_choice import MIN_EFFECTIVE_MEMBERS
from ensembles.errors import ConfigError
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions
from ensembles.manifest import ONE_RUN_STRATEGIES, Manifest
from ensembles.store import ModelStore

if TYPE_CHECKING:  # the training modules import torch; this module stays torch-free
    from ensembles.training.pipeline import TrainReport, TrainRequest

logger = logging.getLogger(__name__)

ALL_STRATEGIES: tuple[str, ...] = (
    "bagging",
    "kfold",
    "subsample",
    "repeat",
    "horizontal",
    "snapshot",
)
#: Repeats per strategy: enough for a paired interval with 4 degrees of freedom.
DEFAULT_REPEATS = 5

SinglePredict = Callable[[np.ndarray], tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class BenchmarkRequest:
    """What to benchmark.

    Attributes
    ----------
    train : TrainRequest
        Template of every training run (data, members, epochs, network settings, jobs);
        its ``strategy``, ``seed``, ``name`` and ``store`` are set per run.
    strategies : tuple of str
        Strategies to compare.
    repeats : int
        Runs per strategy; repeat ``r`` uses seed ``train.seed + r`` for the split and
        every member.
    holdout_classes : tuple of str
        Class labels left out of training; their rows are scored as out-of-distribution
        (the ``ood`` part of every run). Empty: no out-of-distribution section.
    shift_strengths : tuple of float
        Noise strengths k (feature standard deviations) of the covariate-shift section
        (the ``shift`` part of every run). Empty: no shift section.
    store : Path or None
        Keep the trained versions here; None trains into a temporary store.
    from_store : str or None
        Benchmark this published ensemble (latest version in ``store``) without training.
    timing_repeats : int
        Timed inference calls per model (the median is kept).
    progress : bool
        Show a progress bar.
    """

    train: TrainRequest
    strategies: tuple[str, ...] = ALL_STRATEGIES
    repeats: int = DEFAULT_REPEATS
    holdout_classes: tuple[str, ...] = ()
    shift_strengths: tuple[float, ...] = SHIFT_STRENGTHS
    store: Path | None = None
    from_store: str | None = None
    timing_repeats: int = TIMING_REPEATS
    progress: bool = True


def check_request(request: BenchmarkRequest) -> None:
    """Reject bad benchmark options at once, one line per problem."""
    problems = []
    unknown = [s for s in request.strategies if s not in ALL_STRATEGIES]
    if unknown:
        problems.append(
            f"unknown strategy {', '.join(map(repr, unknown))}: choose from "
            f"{', '.join(ALL_STRATEGIES)}"
        )
    if not request.strategies:
        problems.append("--strategies needs at least one strategy")
    if request.repeats < 1:
        problems.append(f"--repeats must be at least 1, got {request.repeats}")
    if request.timing_repeats < 1:
        problems.append(f"--timing-repeats must be at least 1, got {request.timing_repeats}")
    if request.from_store is not None and request.store is None:
        problems.append("--from-store NAME needs --store DIR naming the model store")
    if request.from_store is not None and request.holdout_classes:
        problems.append("--holdout-classes trains on the other classes: drop --from-store")
    one_run = [s for s in request.strategies if s in ONE_RUN_STRATEGIES]
    if request.train.refit == "on" and one_run:
        problems.append(
            f"--refit on applies to independent members, not {', '.join(one_run)}: pick "
            "--strategies bagging kfold subsample repeat, or --refit auto"
        )
    bad = [k for k in request.shift_strengths if not (math.isfinite(k) and k >= 0)]
    if bad:
        problems.append(
            f"--shift-strengths must be finite and at least 0, got {', '.join(map(str, bad))}"
        )
    if not problems and request.from_store is None:
        problems += _training_problems(request)
    if problems:
        raise ConfigError("; ".join(problems))


def _training_problems(request: BenchmarkRequest) -> list[str]:
    """What every strategy's training run would refuse, found before the warm-up trains.

    Repeat ``r`` trains with seed ``--seed + r``, so the last repeat's seed must be valid too.
    """
    from ensembles.data import MAX_SEED
    from ensembles.training.preflight import validated_config

    problems: list[str] = []
    last_seed = request.train.seed + request.repeats - 1
    if request.train.seed >= 0 and last_seed > MAX_SEED:
        problems.append(
            f"--seed + --repeats - 1 must be at most {MAX_SEED} (repeat r trains with seed "
            f"--seed + r), got {last_seed}"
        )
    for strategy in request.strategies:
        try:
            validated_config(replace(request.train, strategy=strategy))
        except ConfigError as error:
            if str(error) not in problems:
                problems.append(str(error))
    return problems


def run_benchmark(request: BenchmarkRequest) -> dict[str, Any]:
    """Run every strategy and repeat, and return every number (JSON-safe).

    Returns
    -------
    dict
        ``dataset``, ``task``, ``settings``, ``runs`` (one entry per strategy and repeat
        with per-model metrics, cost, calibration and curves, HistGradientBoosting's too,
        see :func:`~ensembles.benchmark.gradient_boosting.hgb_baseline`, fitted once per
        repeat; ``shift`` and ``ood`` when
        asked for, see :func:`~ensembles.benchmark.shift.shift_scores` and
        :func:`~ensembles.benchmark.ood.ood_scores`) and ``summary`` (mean, std and count
        over repeats, by strategy; see :func:`summarize_runs`).
    """
    check_request(request)
    settings = _settings(request)
    if request.from_store is not None:
        run, published = _read_published(request)
        runs = [run]
        settings.update(published)
    else:
        runs = _train_and_score(request)
    first = runs[0]
    return {
        "dataset": first["dataset"],
        "task": first["task"],
        "settings": {**settings, "interval_level": first["interval_level"]},
        "runs": runs,
        "summary": summarize_runs(runs),
    }


def _train_and_score(request: BenchmarkRequest) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ensembles.benchmark.class_holdout import holdout_request
    from ensembles.benchmark.single_network import ensemble_epoch_budget, train_single_network
    from ensembles.training.pipeline import run_training

    template = request.train
    epochs = template.epochs or template.config.epochs
    jobs = [(strategy, r) for r in range(request.repeats) for strategy in request.strategies]
    runs = []
    single_cache: dict[tuple[int, int], tuple[dict[str, Any], SinglePredict]] = {}
    hgb_cache: dict[int, dict[str, Any]] = {}
    with (
        _store_root(request.store) as root,
        tempfile.TemporaryDirectory(prefix="ensembles-benchmark-data-") as data_folder,
        logging_redirect_tqdm(),
        _quiet_store(request),
    ):
        outside = None
        if request.holdout_classes:
            template, outside = holdout_request(
                template, request.holdout_classes, Path(data_folder)
            )
        _warm_up(template)
        bar = tqdm(jobs, desc="benchmark", unit="run", disable=not request.progress)
        for strategy, repeat in bar:
            bar.set_postfix_str(f"{strategy} repeat {repeat + 1}")
            seed = template.seed + repeat
            train = replace(
                template,
                strategy=strategy,
                seed=seed,
                store=root,
                name=_run_name(template.ensemble_name, strategy),
                progress=False,
            )
            report = run_training(train)
            manifest = report.manifest
            folder = ModelStore(root).path(manifest.name, manifest.version)
            run = _score(folder, manifest, request.timing_repeats)
            timing = training_time(report, template.jobs)
            run.update(strategy=strategy, repeat=repeat, seed=seed, **timing)
            for name in manifest.combiners:
                run["models"][name]["train_seconds"] = timing["member_seconds"]
                run["models"][name]["assemble_seconds"] = timing["assemble_seconds"]
            budget = None  # the budget rule: one network trains as long as it improves
            if epochs is not None:  # same budget as the ensemble
                budget = ensemble_epoch_budget(
                    strategy, manifest.strategy.params, manifest.n_members, epochs
                )
            key = (seed, budget)
            if key not in single_cache:
                single_cache[key] = train_single_network(train, budget)
            single, predict = single_cache[key]
            if seed not in hgb_cache:
                hgb_cache[seed] = _hgb_scores(train, folder, request.timing_repeats)
            for scores in (single, hgb_cache[seed]):  # shared by strategies: copied
                run["models"].update({name: dict(m) for name, m in scores["models"].items()})
                for part in ("calibration", "uncertainty_error"):
                    run[part].update(scores[part])
            run["models"]["single_network"].update(
                run["cost"]["single_member"], effective_members=1.0
            )
            run.pop("cost")
            X_out = None if outside is None else encoded_rows(outside, manifest.preprocessing)
            run.update(_served_sections(folder, manifest, request, seed, predict, X_out))
            if outside is not None:
                held = ", ".join(request.holdout_classes)
                run["dataset"] = f"{request.train.ensemble_name} (classes {held} held out)"
            _warn_few_members(run, strategy, repeat)
            runs.append(run)
            logger.debug("%s repeat %d done in %.1f s", strategy, repeat, report.seconds)
    return runs


def _hgb_scores(train: TrainRequest, folder: Path, timing_repeats: int) -> dict[str, Any]:
    """:func:`~ensembles.benchmark.gradient_boosting.hgb_baseline` on the run's split.

    The split is remade from the request as :func:`run_training` made it; the run fails if
    its test rows are not the version's.
    """
    from ensembles.benchmark.gradient_boosting import hgb_baseline
    from ensembles.data import split_dataset
    from ensembles.training.pipeline import load_dataset

    splits = split_dataset(
        load_dataset(train), train.seed, train.validation_fraction, train.test_fraction
    )
    if not np.array_equal(splits.test.X, HeldoutPredictions.load(folder / HELDOUT_FILE).test.X):
        raise RuntimeError(f"seed {train.seed}: the benchmark's test rows are not the version's")
    return hgb_baseline(splits, train.seed, train.interval_level, timing_repeats)


def training_time(report: TrainReport, jobs: int = 1) -> dict[str, float]:
    """Split one training run's wall clock into network training and the rest.

    Parameters
    ----------
    report : TrainReport
        The finished run: ``seconds`` (wall clock of :func:`run_training`) and its
        manifest's members (each with its own ``train_seconds``, a refit's included;
        one-run strategies split the run evenly).
    jobs : int
        Processes the members trained in; with more than one, members overlap in time and
        the rest cannot be separated from the wall clock (NaN).

    Returns
    -------
    dict of str to float
        ``wall_seconds``; ``member_seconds``: the members' training time, summed (what
        one process spends training networks, comparable with a single network's fit);
        ``assemble_seconds``: the rest (data, held-out predictions, ONNX export and parity
        checks, weight averaging, combiner fits, publishing).
    """
    member_seconds = float(
        sum(info.val_metrics["train_seconds"] for info in report.manifest.members)
    )
    rest = report.seconds - member_seconds if jobs <= 1 else math.nan
    return {
        "wall_seconds": float(report.seconds),
        "member_seconds": member_seconds,
        "assemble_seconds": rest,
    }


def _warm_up(template: TrainRequest) -> None:
    """Train and publish a throwaway 2-member, 1-epoch ensemble, so the first timed run
    does not pay for imports, first-call compilation and allocator warm-up."""
    from ensembles.training.pipeline import run_training

    logger.info("warming up (one throwaway training, not timed)")
    store_logger = logging.getLogger("ensembles.store")
    previous = store_logger.level
    store_logger.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="ensembles-benchmark-warm-up-") as folder:
            run_training(
                replace(
                    template,
                    strategy="bagging",
                    members=2,
                    epochs=1,
                    jobs=1,
                    store=Path(folder),
                    name="warm-up",
                    progress=False,
                )
            )
    finally:
        store_logger.setLevel(previous)


def _read_published(request: BenchmarkRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scored run of the latest published version, and the settings it was trained with
    (which replace the command line's in the report: nothing was trained here)."""
    store = ModelStore(request.store)
    name = request.from_store
    version = store.latest(name)
    manifest = store.load_manifest(name, version)
    folder = store.path(name, version)
    run = _score(folder, manifest, request.timing_repeats)
    seconds = sum(member.val_metrics.get("train_seconds", 0.0) for member in manifest.members)
    for model in manifest.combiners:
        run["models"][model]["train_seconds"] = seconds
        run["models"][model]["assemble_seconds"] = math.nan
    run.pop("cost")
    seed = int(manifest.split.get("seed", 0))
    run.update(_served_sections(folder, manifest, request, seed, None, None))
    run.update(
        strategy=manifest.strategy.name,
        repeat=0,
        seed=seed,
        wall_seconds=math.nan,
        member_seconds=seconds,
        assemble_seconds=math.nan,
        version=version,
    )
    config = manifest.training.get("config", {})
    published = {
        "strategies": [manifest.strategy.name],
        "members": len(manifest.members),
        "epochs": config.get("epochs"),
        "seed": seed,
        "jobs": None,
        "refit": (manifest.strategy.params.get("refit") or {}).get("asked"),
        "calibrate": bool(manifest.training.get("calibrate")),
        "config": config,
        "validation_fraction": manifest.split.get("validation_fraction"),
        "test_fraction": manifest.split.get("test_fraction"),
    }
    return run, published


def _score(folder: Path, manifest: Manifest, timing_repeats: int) -> dict[str, Any]:
    """Scores, cost and identity of one version; baselines get one member's cost."""
    scores = score_version(folder, manifest)
    test_X = HeldoutPredictions.load(folder / HELDOUT_FILE).test.X
    cost = inference_cost(folder, manifest, test_X, timing_repeats)
    for name, metrics in scores["models"].items():
        metrics.update(cost.get(name, cost["single_member"]))
    seconds = [member.val_metrics.get("train_seconds", 0.0) for member in manifest.members]
    for name, info in manifest.combiners.items():
        effective = info.effective_members  # None in versions published before it was recorded
        scores["models"][name]["effective_members"] = math.nan if effective is None else effective
    for name in BASELINES:
        if name in scores["models"]:
            scores["models"][name]["effective_members"] = 1.0
    best = scores["models"].get("best_member")
    if best is not None:
        best["train_seconds"] = seconds[int(best.get("member_index", 0))]
    if "average_member" in scores["models"]:
        scores["models"]["average_member"]["train_seconds"] = sum(seconds) / len(seconds)
    return {
        "dataset": str(manifest.split.get("source", manifest.name)),
        "task": manifest.task,
        "name": manifest.name,
        "version": manifest.version,
        "n_members": manifest.n_members,
        "default_combiner": manifest.default_combiner,
        "regularization": manifest.strategy.params.get("regularization"),
        "cost": cost,
        **scores,
    }


def _served_sections(
    folder: Path,
    manifest: Manifest,
    request: BenchmarkRequest,
    seed: int,
    single: SinglePredict | None,
    X_out: np.ndarray | None,
) -> dict[str, Any]:
    """The ``shift`` and ``ood`` parts of a run: the default combiner as serving runs it."""
    served = ServedModel(folder, manifest)
    heldout = HeldoutPredictions.load(folder / HELDOUT_FILE)
    sections: dict[str, Any] = {}
    if request.shift_strengths:
        sections["shift"] = shift_scores(served, heldout, seed, request.shift_strengths, single)
    if X_out is not None:
        references = {}
        best = manifest.baselines.get("best_member", {}).get("member_index")
        if best is not None:
            references["best_member"] = partial(_entropy, partial(served.member_outputs, int(best)))
        if single is not None:
            references["single_network"] = partial(_entropy, single)
        sections["ood"] = ood_scores(served, heldout.test.X, X_out, references)
    return sections


def _entropy(network: SinglePredict, X: np.ndarray) -> np.ndarray:
    """One network's predictive entropy on ``X``: its detector of out-of-distribution rows."""
    return single_uncertainty("classification", network(X)[0])


def _warn_few_members(run: dict[str, Any], strategy: str, repeat: int) -> None:
    name = run["default_combiner"]
    effective = run["models"][name]["effective_members"]
    if effective < MIN_EFFECTIVE_MEMBERS:
        logger.warning(
            "%s repeat %d: default combiner '%s' keeps %.1f effective members (1/sum of "
            "squared member weights): its output is about one network's",
            strategy,
            repeat + 1,
            name,
            effective,
        )


def _run_name(base: str, strategy: str) -> str:
    return f"{base[: 63 - len(strategy)]}-{strategy}"


def _settings(request: BenchmarkRequest) -> dict[str, Any]:
    train = request.train
    return {
        "strategies": list(request.strategies),
        "repeats": 1 if request.from_store else request.repeats,
        "members": train.members,
        "epochs": train.epochs or train.config.epochs,
        "seed": train.seed,
        "jobs": train.jobs,
        "refit": train.refit,
        "calibrate": train.calibrate,
        "config": train.config.to_dict(),
        "validation_fraction": train.validation_fraction,
        "test_fraction": train.test_fraction,
        "from_store": request.from_store,
        "holdout_classes": list(request.holdout_classes),
        "shift_strengths": list(request.shift_strengths),
        "store": str(request.store) if request.store else None,
        "timing_repeats": request.timing_repeats,
    }


@contextmanager
def _store_root(store: Path | None) -> Iterator[Path]:
    if store is not None:
        yield Path(store)
        return
    with tempfile.TemporaryDirectory(prefix="ensembles-benchmark-") as folder:
        yield Path(folder)


@contextmanager
def _quiet_store(request: BenchmarkRequest) -> Iterator[None]:
    """Silence "published ..." lines for versions in a temporary store nobody will serve."""
    store_logger = logging.getLogger("ensembles.store")
    previous = store_logger.level
    if request.store is None:
        store_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        store_logger.setLevel(previous)
