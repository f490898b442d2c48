"""The UCI regression protocol: random 90/10 splits, every setup through the real pipeline.

The protocol is that of Hernández-Lobato and Adams (2015), used by Lakshminarayanan et al.
(2017): split ``s`` (``s = 0, 1, ...``, 20 by default) holds out a random 10% of the rows as
test rows, with ``s`` as the seed; each setup trains on the other 90% (its own validation
rows come from them) and is scored on the test rows: RMSE, Gaussian NLL and the coverage of
the central 90% interval. Figures are reported as mean ± standard error over the splits.

A setup is data, a name plus :class:`~ensembles.training.pipeline.TrainRequest` keyword
overrides (:class:`Setup`); :func:`default_setups` gives the defaults of the day, whatever
``TrainRequest`` and ``TrainConfig`` default to when it runs. Beside them, scikit-learn's
``HistGradientBoostingRegressor`` (:data:`~ensembles.benchmark.gradient_boosting.HGB`) is
scored on the same rows (:func:`hgb_scores`).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensembles import defaults
from ensembles.benchmark.gradient_boosting import HGB, fit_hgb, hgb_interval
from ensembles.benchmark.uci_data import UCI_SPLITS
from ensembles.errors import ConfigError

if TYPE_CHECKING:  # torch is imported only when a setup trains
    from ensembles.training.pipeline import TrainRequest

TEST_FRACTION = 0.1
#: ``TrainRequest`` fields the protocol sets itself: a :class:`Setup` may not override them.
PROTOCOL_FIELDS = (
    "dataset",
    "csv",
    "target",
    "task",
    "seed",
    "test_fraction",
    "store",
    "members",
    "jobs",
    "progress",
)
METRICS = ("rmse", "gaussian_nll", "coverage")
SUMMARY_FIELDS = (*METRICS, "seconds", "epochs")
BEFORE = "before: {strategy}, 30 epochs, rate 1e-3, plain NLL, dropout 0.1, validation 20%"


@dataclass(frozen=True)
class Setup:
    """One row of the table: a name and the ``TrainRequest`` fields it sets.

    Attributes
    ----------
    name : str
        The row's label.
    overrides : mapping of str to object
        ``TrainRequest`` keywords beyond the protocol's own (:data:`PROTOCOL_FIELDS`:
        data, seed, test fraction, store, members, jobs, progress); empty means the
        defaults.
    single_network : str or None
        Also report the run's average member (``manifest.baselines["average_member"]``)
        under this label.
    targets : bool
        The issue's targets (:data:`~ensembles.benchmark.uci_report.TARGETS`) apply to it.
    """

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    single_network: str | None = None
    targets: bool = False


def default_setups(before: bool = False) -> tuple[Setup, ...]:
    """The default strategy and ``repeat`` at today's defaults; with ``before``, the old ones.

    ``repeat`` is left out when it is already the default strategy. The "before" setups pin
    what the defaults were: snapshot (or repeat), 30 epochs, learning rate 1e-3, plain
    Gaussian NLL (``nll_beta`` 0), dropout 0.1, 20% of the rows for validation; every other
    setting is left at its default.
    """
    from ensembles.training.config import TrainConfig
    from ensembles.training.pipeline import TrainRequest

    strategy = TrainRequest().strategy
    if strategy == "repeat":
        setups = [Setup("default (repeat)", {}, "one network", targets=True)]
    else:
        setups = [
            Setup(f"default ({strategy})", {}, targets=True),
            Setup("repeat", {"strategy": "repeat"}, "one network"),
        ]
    if before:
        old = {
            "epochs": 30,
            "config": TrainConfig(learning_rate=1e-3, epochs=30, nll_beta=0.0, dropout=0.1),
            "validation_fraction": 0.2,
        }
        setups += [
            Setup(BEFORE.format(strategy="snapshot"), {**old, "strategy": "snapshot"}),
            Setup(
                BEFORE.format(strategy="repeat"),
                {**old, "strategy": "repeat"},
                "before: one network",
            ),
        ]
    return tuple(setups)


def split_rows(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of split ``seed``: the 90% train part and the 10% test rows, each sorted.

    The test rows are drawn exactly as :func:`~ensembles.data.split_dataset` draws them for a
    ``test_fraction`` of 0.1, and every run checks that the pipeline scored these very rows.
    """
    from sklearn.model_selection import train_test_split

    train_part, test = train_test_split(
        np.arange(n_samples), test_size=TEST_FRACTION, random_state=seed
    )
    return np.sort(train_part), np.sort(test)


def run_protocol(
    dataset: str,
    csv: Path,
    target: str,
    *,
    splits: int = UCI_SPLITS,
    members: int = defaults.MEMBERS,
    jobs: int = 1,
    setups: Sequence[Setup] | None = None,
    hgb: bool = True,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every setup (and HistGradientBoosting) on every split of one dataset.

    Parameters
    ----------
    dataset : str
        Its name in the report (and the key of its published results and targets).
    csv, target : Path, str
        The data and its target column.
    splits, members, jobs : int
        Random splits (seeds ``0 .. splits - 1``), members per ensemble, processes.
    setups : sequence of Setup, optional
        Default: :func:`default_setups`.
    hgb : bool
        Also score HistGradientBoosting.
    on_run : callable, optional
        Called with each run's record as it finishes (progress).

    Returns
    -------
    dict
        ``dataset``, ``n_rows``, ``members``, ``setups`` (row names in order), ``targets``
        (the rows the targets apply to), ``splits`` (per split: ``seed``, ``test_rows``),
        ``overrides`` (setup name -> its TrainRequest overrides, JSON-safe), ``runs`` (one
        record per setup and split: ``setup``, ``split``, the metrics,
        ``seconds``, ...) and ``summary`` (row name -> field -> ``mean``, ``se``, ``n``).
    """
    from ensembles.data import load_csv

    setups = tuple(default_setups() if setups is None else setups)
    names = [name for s in setups for name in (s.name, s.single_network) if name]
    names += [HGB] if hgb else []
    if splits < 1:
        raise ConfigError(f"--splits must be at least 1, got {splits}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"setup names must differ: {', '.join(map(repr, twice))} used twice")
    data = load_csv(csv, target, task="regression")
    runs: list[dict[str, Any]] = []
    split_records = []
    for seed in range(splits):
        train_part, test = split_rows(len(data.y), seed)
        split_records.append({"seed": seed, "test_rows": test.tolist()})
        records = []
        for setup in setups:
            records += run_setup(setup, csv, target, seed, members, jobs, data.X[test])
        if hgb:
            scores = hgb_scores(
                data.X[train_part], data.y[train_part], data.X[test], data.y[test], seed
            )
            records.append({"setup": HGB, "split": seed, **scores, "epochs": math.nan})
        for record in records:
            runs.append(record)
            if on_run is not None:
                on_run(record)
    return {
        "dataset": dataset,
        "n_rows": len(data.y),
        "members": members,
        "setups": names,
        "targets": [setup.name for setup in setups if setup.targets],
        "overrides": {setup.name: _plain(setup.overrides) for setup in setups},
        "splits": split_records,
        "runs": runs,
        "summary": summarize(runs, names),
    }


def protocol_request(
    setup: Setup, csv: Path, target: str, seed: int, members: int, jobs: int, store: Path
) -> TrainRequest:
    """The training run of ``setup`` on split ``seed``: the protocol's fields, then the setup's."""
    from ensembles.training.pipeline import TrainRequest

    fields = {"dataset": None, "csv": Path(csv), "target": target, "task": "regression"}
    fields |= {"seed": seed, "test_fraction": TEST_FRACTION, "store": store}
    fields |= {"members": members, "jobs": jobs, "progress": False}
    return TrainRequest(**{**fields, **setup.overrides})


def setup_problems(setup: Setup, members: int, jobs: int) -> list[str]:
    """What would make ``setup`` fail only once training has begun (empty when nothing).

    Its overrides must be ``TrainRequest`` fields the protocol leaves open
    (:data:`PROTOCOL_FIELDS` are its own), with values the training options accept for a
    regression task.
    """
    from ensembles.training.pipeline import TrainRequest
    from ensembles.training.preflight import check_task_options, validated_config

    open_fields = {item.name for item in fields(TrainRequest)} - set(PROTOCOL_FIELDS)
    owned = sorted(set(setup.overrides) & set(PROTOCOL_FIELDS))
    unknown = sorted(set(setup.overrides) - open_fields - set(owned))
    problems = []
    if owned:
        flags = [f"--{name}" for name in owned if name in ("members", "jobs")]
        hint = f" (give {' and '.join(flags)} to the command)" if flags else ""
        problems.append(f"the protocol sets {', '.join(owned)} itself{hint}")
    if unknown:
        problems.append(
            f"no training setting is called {', '.join(unknown)}; the settings are "
            f"{', '.join(sorted(open_fields))}"
        )
    if problems:
        return problems
    request = protocol_request(setup, Path("data.csv"), "target", 0, members, jobs, Path("store"))
    try:
        validated_config(request)
        check_task_options(request, "regression")
    except ConfigError as error:
        return [str(error)]
    return []


def run_setup(
    setup: Setup, csv: Path, target: str, seed: int, members: int, jobs: int, test_X: np.ndarray
) -> list[dict[str, Any]]:
    """Train one setup on split ``seed`` into a throwaway store; its record(s).

    ``test_X`` is the split's test rows; the run fails if the pipeline scored others.
    """
    from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions
    from ensembles.store import ModelStore
    from ensembles.training.pipeline import run_training
    from ensembles.training.strategies import ONE_RUN_STRATEGIES

    with tempfile.TemporaryDirectory(prefix="ensembles-uci-") as store:
        request = protocol_request(setup, csv, target, seed, members, jobs, Path(store))
        start = time.perf_counter()
        manifest = run_training(request).manifest
        seconds = time.perf_counter() - start
        folder = ModelStore(store).path(manifest.name, manifest.version)
        scored = HeldoutPredictions.load(folder / HELDOUT_FILE).test.X
    if not np.array_equal(scored, test_X):
        raise RuntimeError(f"split {seed}: the pipeline's test rows are not the protocol's")
    epochs = [member.epoch for member in manifest.members]  # a one-run member's is cumulative
    one_run = manifest.strategy.name in ONE_RUN_STRATEGIES
    common = {
        "split": seed,
        "validation_fraction": manifest.split.get("validation_fraction"),
        "epochs": float(max(epochs) if one_run else np.mean(epochs)),
        "config": manifest.training.get("config"),
        "regularization": manifest.strategy.params.get("regularization"),
    }
    default = manifest.combiners[manifest.default_combiner]
    # The cross-fitted scores on the validation rows: what a choice between setups may read.
    validation = {
        f"validation_{key}": value for key, value in _metrics(default.heldout_metrics).items()
    }
    records = [
        {"setup": setup.name, **_metrics(default.test_metrics), "seconds": seconds, **common}
        | {"combiner": manifest.default_combiner, "strategy": manifest.strategy.name}
        | validation
    ]
    if setup.single_network:
        member_seconds = [member.val_metrics["train_seconds"] for member in manifest.members]
        average = manifest.baselines["average_member"]
        records.append(
            {"setup": setup.single_network, **_metrics(average)}
            | {
                "seconds": float(np.mean(member_seconds)),
                **common,
                "epochs": float(np.mean(epochs)),
            }
        )
    return records


def hgb_scores(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    seed: int,
    level: float = defaults.INTERVAL_LEVEL,
) -> dict[str, float]:
    """HistGradientBoostingRegressor on the train part, scored on the test rows.

    The point model is scikit-learn's default with ``early_stopping=True``; its Gaussian
    variance and its quantile interval are those of
    :func:`~ensembles.benchmark.gradient_boosting.hgb_interval` (5-fold out-of-fold
    residuals on the train part, two quantile models), every fit on one OpenMP thread.

    Parameters
    ----------
    X_train, X_test : np.ndarray, shape (n_samples, n_features)
    y_train, y_test : np.ndarray, shape (n_samples, 1) or (n_samples,)
    seed : int
        ``random_state`` of every model and of the folds.
    level : float
        Central interval level.

    Returns
    -------
    dict of str to float
        ``rmse``, ``gaussian_nll``, ``coverage`` (the quantile interval's),
        ``gaussian_coverage`` (the Gaussian interval's), ``residual_variance``, ``seconds``.
    """
    from threadpoolctl import threadpool_limits

    from ensembles.metrics import interval_coverage, regression_metrics

    y_fit = np.ravel(y_train).astype(np.float64)
    y_true = np.ravel(y_test).astype(np.float64)[:, None]
    model, fit_seconds = fit_hgb("regression", X_train, y_fit, seed, early_stopping=True)
    with threadpool_limits(1, user_api="openmp"):
        pred = model.predict(X_test)[:, None]
    variance, lower, upper, interval_seconds = hgb_interval(
        X_train, y_fit, X_test, seed, level, early_stopping=True
    )
    scores = regression_metrics(pred, y_true, np.full_like(pred, variance), level)
    return {
        "rmse": scores["rmse"],
        "gaussian_nll": scores["gaussian_nll"],
        "coverage": interval_coverage(lower[:, None], upper[:, None], y_true),
        "gaussian_coverage": scores["coverage"],
        "residual_variance": variance,
        "seconds": fit_seconds + interval_seconds,
    }


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error ``std(ddof=1) / sqrt(n)``; the error is NaN below two values."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    se = float(array.std(ddof=1) / math.sqrt(array.size)) if array.size > 1 else math.nan
    return float(array.mean()), se


def summarize(runs: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Row name -> field -> ``{"mean", "se", "n"}`` over the splits' records."""
    summary = {}
    for name in names:
        rows = [run for run in runs if run["setup"] == name]
        summary[name] = {}
        for key in SUMMARY_FIELDS:
            mean, se = mean_se([run.get(key, math.nan) for run in rows])
            summary[name][key] = {"mean": mean, "se": se, "n": len(rows)}
    return summary


def _metrics(scores: Mapping[str, float]) -> dict[str, float]:
    return {key: float(scores.get(key, math.nan)) for key in METRICS}


def _plain(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe overrides: a TrainConfig as its settings, a path as text."""
    plain = {}
    for key, value in overrides.items():
        plain[key] = value.to_dict() if hasattr(value, "to_dict") else value
        plain[key] = str(value) if isinstance(value, Path) else plain[key]
    return plain
