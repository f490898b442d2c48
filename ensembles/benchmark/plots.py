"""PNG plots of a benchmark: reliability per combiner, ensemble size, uncertainty against error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.benchmark.report import BASELINES, PRIMARY
from ensembles.benchmark.scoring import N_MEMBER_ORDERS


def write_plots(results: dict[str, Any], folder: Path) -> list[str]:
    """Draw every plot into ``folder``; return the file names written.

    Files: ``reliability_<strategy>.png`` (a panel per combiner and one for the
    same-budget single network, pooled over repeats), ``ensemble_size.png`` and
    ``uncertainty_error.png`` (a panel per strategy).
    """
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for strategy in results["summary"]:
        runs = [run for run in results["runs"] if run["strategy"] == strategy]
        written.append(_reliability(results["task"], strategy, runs, folder))
    written.append(_ensemble_size(results, folder))
    written.append(_uncertainty_error(results, folder))
    return written


def _grid(n_panels: int) -> tuple[Any, np.ndarray]:
    import matplotlib.pyplot as plt

    columns = min(n_panels, 3)
    rows = math.ceil(n_panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.6 * rows), squeeze=False)
    for axis in axes.flat[n_panels:]:
        axis.set_visible(False)
    return figure, axes.flat


def _save(figure: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path.name


def _reliability(task: str, strategy: str, runs: list[dict], folder: Path) -> str:
    names = list(runs[0]["calibration"])
    figure, axes = _grid(max(len(names), 1))
    for axis, name in zip(axes, names, strict=False):
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="ideal")
        if task == "classification":
            count = np.sum([run["calibration"][name]["count"] for run in runs], axis=0)
            confidence = np.sum([run["calibration"][name]["confidence_sum"] for run in runs], 0)
            correct = np.sum([run["calibration"][name]["correct"] for run in runs], axis=0)
            edges = np.asarray(runs[0]["calibration"][name]["edges"])
            seen = count > 0
            accuracy = np.divide(correct, count, out=np.zeros_like(correct), where=seen)
            axis.bar(
                edges[:-1],
                accuracy,
                width=np.diff(edges),
                align="edge",
                alpha=0.6,
                edgecolor="black",
                label="accuracy",
            )
            axis.plot(
                (confidence / np.maximum(count, 1))[seen],
                accuracy[seen],
                "o-",
                color="tab:red",
                markersize=3,
                label="mean confidence",
            )
            axis.set_xlabel("confidence")
            axis.set_ylabel("accuracy")
        else:
            level = runs[0]["calibration"][name]["level"]
            coverage = np.mean([run["calibration"][name]["coverage"] for run in runs], axis=0)
            axis.plot(level, coverage, "o-", markersize=3, label="observed coverage")
            axis.set_xlabel("nominal interval level")
            axis.set_ylabel("observed coverage")
        axis.set_title(f"{name} (baseline)" if name in BASELINES else name, fontsize=10)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"Reliability: {strategy}", fontsize=11)
    return _save(figure, folder / f"reliability_{strategy}.png")


def _ensemble_size(results: dict[str, Any], folder: Path) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metric, _ = PRIMARY[results["task"]]
    figure, axis = plt.subplots(figsize=(6, 4))
    for strategy, group in results["summary"].items():
        curve = group["ensemble_size"][metric]
        mean = np.array([point["mean"] for point in curve])
        std = np.array([point["std"] for point in curve])
        k = np.arange(1, len(curve) + 1)
        axis.plot(k, mean, "o-", markersize=3, label=strategy)
        axis.fill_between(k, mean - std, mean + std, alpha=0.15)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel(f"members combined (mean over {N_MEMBER_ORDERS} random orders)")
    axis.set_ylabel(f"test {metric}")
    axis.set_title("Ensemble size")
    axis.legend(fontsize=8)
    return _save(figure, folder / "ensemble_size.png")


def _uncertainty_error(results: dict[str, Any], folder: Path) -> str:
    strategies = list(results["summary"])
    figure, axes = _grid(len(strategies))
    for axis, strategy in zip(axes, strategies, strict=False):
        runs = [run for run in results["runs"] if run["strategy"] == strategy]
        for name in runs[0]["uncertainty_error"]:
            curves = [
                run["uncertainty_error"][name] for run in runs if name in run["uncertainty_error"]
            ]
            error = np.mean([c["error"] for c in curves], axis=0)
            axis.plot(np.arange(1, len(error) + 1), error, "o-", markersize=3, label=name)
        axis.set_xlabel("uncertainty decile (1 = most certain)")
        axis.set_ylabel("error rate" if results["task"] == "classification" else "absolute error")
        axis.set_title(strategy, fontsize=10)
        axis.legend(fontsize=7)
    figure.suptitle("Uncertainty against error (10 quantile bins)", fontsize=11)
    return _save(figure, folder / "uncertainty_error.png")
