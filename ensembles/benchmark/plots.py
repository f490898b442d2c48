"""PNG plots of a benchmark: reliability, ensemble size, uncertainty against error, OOD, shift."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.benchmark.headline import is_combiner
from ensembles.benchmark.ood import REFERENCES, ROC_GRID, TARGET_TPR, measure_label
from ensembles.benchmark.report import PRIMARY
from ensembles.benchmark.scoring import N_MEMBER_ORDERS
from ensembles.benchmark.shift import SHIFT_METRICS


def write_plots(results: dict[str, Any], folder: Path) -> list[str]:
    """Draw every plot into ``folder``; return the file names written.

    Files: ``reliability_<strategy>.png`` (a panel per combiner and one each for the
    same-budget single network and, for classification, HistGradientBoosting, pooled over
    repeats), ``ensemble_size.png``, ``uncertainty_error.png`` and, when the runs have
    them, ``ood_roc.png`` (a panel per strategy) and ``shift.png`` (a panel per metric).
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
    if all("ood" in run for run in results["runs"]):
        written.append(_ood_roc(results, folder))
    if all("shift" in run for run in results["runs"]):
        written.append(_shift(results, folder))
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
        axis.set_title(name if is_combiner(name) else f"{name} (baseline)", fontsize=10)
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


def _ood_roc(results: dict[str, Any], folder: Path) -> str:
    strategies = list(results["summary"])
    figure, axes = _grid(len(strategies))
    for axis, strategy in zip(axes, strategies, strict=False):
        ood = results["summary"][strategy]["ood"]
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        styles = dict(zip(REFERENCES, ("--", ":"), strict=True))
        for model, measures in ood["roc"].items():
            for name, curve in measures.items():
                auroc = ood["detection"][model][name]["auroc"]["mean"]
                label = measure_label(name) if model == "default" else f"{model} entropy"
                axis.plot(
                    ROC_GRID,
                    _means(curve),
                    linestyle=styles.get(model, "-"),
                    color="black" if model in styles else None,
                    label=f"{label} ({auroc:.3f})",
                )
        axis.axhline(TARGET_TPR, color="grey", linewidth=0.5)
        axis.set_xlabel("false-positive rate (in-distribution rows)")
        axis.set_ylabel("true-positive rate (held-out classes)")
        axis.set_title(strategy, fontsize=10)
        axis.legend(fontsize=6, loc="lower right")
    figure.suptitle("Out-of-distribution detection (mean ROC over repeats; AUROC)", fontsize=11)
    return _save(figure, folder / "ood_roc.png")


def _shift(results: dict[str, Any], folder: Path) -> str:
    metrics = SHIFT_METRICS[results["task"]]
    strengths = results["runs"][0]["shift"]["strengths"]
    figure, axes = _grid(len(metrics))
    for axis, metric in zip(axes, metrics, strict=False):
        singles: dict[float, list[float]] = {}
        for strategy, group in results["summary"].items():
            models = group["shift"]["models"]
            axis.plot(
                strengths, _means(models["default"][metric]), "o-", markersize=3, label=strategy
            )
            if "single_network" in models:
                epochs = group["models"]["single_network"]["epochs"]["mean"]
                singles.setdefault(epochs, _means(models["single_network"][metric]))
        for (epochs, values), style in zip(singles.items(), ("--", ":", "-."), strict=False):
            axis.plot(
                strengths, values, style, color="black", label=f"single network ({epochs:.0f} ep.)"
            )
        axis.set_xlabel("noise (feature standard deviations)")
        axis.set_ylabel(f"test {metric}")
        axis.set_title(metric, fontsize=10)
        axis.legend(fontsize=7)
    figure.suptitle("Covariate shift: default combiner per strategy", fontsize=11)
    return _save(figure, folder / "shift.png")


def _means(points: list[dict[str, float]]) -> list[float]:
    return [point["mean"] for point in points]
