"""Training engines compared: member-training time for K members, and the packed engine's
quality against the loop's over repeats (``python scripts/bench_training.py --engines``).

Time is that of :func:`~ensembles.training.strategies.train_members` after the learning
rate was chosen once (the range test is the same for every engine), for ``repeat``
members trained by the budget rule, so each engine's members stop where their validation
loss says. Quality is the ``mean`` combiner's test accuracy and NLL of a 5-member
``repeat`` ensemble, per engine, on the same split of each repeat.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from ensembles import defaults
from ensembles.data import Dataset, Splits, load_builtin, split_dataset
from ensembles.metrics import classification_metrics
from ensembles.training.config import TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.members import TrainingData, resolve_learning_rate
from ensembles.training.strategies import train_members


@dataclass(frozen=True)
class EngineTiming:
    """Seconds of one engine training K members (the median over repeats), and the
    epochs its slowest member ran (the same in every repeat: one seed)."""

    engine: str
    n_members: int
    seconds: float
    epochs: int


def synthetic_dataset(n_rows: int = 20_000, seed: int = 0) -> Dataset:
    """A 20-feature, 5-class problem of ``n_rows`` rows (scikit-learn's generator)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_rows,
        n_features=20,
        n_informative=12,
        n_classes=5,
        random_state=seed,
    )
    names = [f"x{i}" for i in range(X.shape[1])]
    classes = [f"class_{i}" for i in range(5)]
    return Dataset(
        X.astype(np.float32), y.astype(np.int64), "classification", names, classes, "synthetic"
    )


def time_engines(
    splits: Splits,
    engines: tuple[str, ...],
    sizes: tuple[int, ...],
    config: TrainConfig | None = None,
    seed: int = 0,
    repeats: int = 1,
) -> list[EngineTiming]:
    """Member-training seconds of every engine for every K, the rate chosen once.

    Each cell is the median of ``repeats`` runs, the engines taking turns within each
    repeat, so that a machine slowing down or speeding up weighs on every engine alike.
    """
    data = TrainingData.from_splits(splits)
    config, _ = resolve_learning_rate(data, config or TrainConfig(), seed)
    timings = []
    for n_members in sizes:
        runs: dict[str, list[float]] = {engine: [] for engine in engines}
        epochs = {}
        for _ in range(repeats):
            for engine in engines:
                start = time.perf_counter()
                members, _ = train_members(
                    "repeat", n_members, data, config, seed, engine=engine, progress=False
                )
                runs[engine].append(time.perf_counter() - start)
                epochs[engine] = max(member.budget["epochs_run"] for member in members)
        timings.extend(
            EngineTiming(engine, n_members, statistics.median(runs[engine]), epochs[engine])
            for engine in engines
        )
    return timings


def engine_quality(
    dataset: str, engines: tuple[str, ...], repeats: int, n_members: int = defaults.MEMBERS
) -> dict[str, list[dict[str, float]]]:
    """Test metrics of the ``mean`` of ``n_members`` repeat members, per engine and repeat."""
    results: dict[str, list[dict[str, float]]] = {engine: [] for engine in engines}
    for repeat in range(repeats):
        splits = split_dataset(load_builtin(dataset, repeat), repeat)
        data = TrainingData.from_splits(splits)
        config, _ = resolve_learning_rate(data, TrainConfig(), repeat)
        for engine in engines:
            members, _ = train_members(
                "repeat", n_members, data, config, repeat, engine=engine, progress=False
            )
            outputs = [member_outputs(m.network(data), splits.test.X)[0] for m in members]
            mean = np.mean(outputs, axis=0)
            results[engine].append(classification_metrics(mean, splits.test.y))
    return results


def timing_rows(timings: list[EngineTiming]) -> list[tuple]:
    """Table rows: engine, K, seconds, epochs of the slowest member, ratio to one member."""
    one = {t.engine: t.seconds for t in timings if t.n_members == 1}
    base = one.get("loop") or min(one.values(), default=None)
    return [
        (t.engine, t.n_members, t.seconds, t.epochs, t.seconds / base if base else float("nan"))
        for t in timings
    ]


def quality_rows(results: dict[str, list[dict[str, float]]], reference: str = "loop") -> list:
    """Table rows: engine, metric, mean ± std over repeats, paired difference to ``reference``."""
    rows = []
    for engine, runs in results.items():
        for metric in ("accuracy", "nll", "ece"):
            values = [run[metric] for run in runs]
            paired = [
                run[metric] - base[metric]
                for run, base in zip(runs, results[reference], strict=True)
            ]
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            error = statistics.stdev(paired) / len(paired) ** 0.5 if len(paired) > 1 else 0.0
            rows.append(
                (engine, metric, statistics.mean(values), spread, statistics.mean(paired), error)
            )
    return rows
