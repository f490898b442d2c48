"""The benchmark's written outputs: Markdown tables, ``report.md`` and ``results.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ensembles.benchmark.aggregate import mean_std
from ensembles.markdown import format_table

BASELINES: tuple[str, ...] = ("best_member", "average_member", "single_network")
#: Table columns per task: (result key, header, decimals).
COLUMNS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "classification": (
        ("accuracy", "accuracy", 3),
        ("nll", "NLL", 3),
        ("brier", "Brier", 3),
        ("ece", "ECE", 3),
        ("spearman", "ρ(var, err)", 2),
        ("selective_accuracy", "acc@80%", 3),
        ("auroc_variance", "AUROC var", 2),
        ("auroc_mi", "AUROC MI", 2),
        ("train_seconds", "train s", 2),
        ("infer_us_per_row", "µs/row", 1),
        ("size_kb", "KiB", 0),
    ),
    "regression": (
        ("rmse", "RMSE", 2),
        ("mae", "MAE", 2),
        ("gaussian_nll", "Gauss NLL", 3),
        ("coverage", "cover@90%", 3),
        ("spearman", "ρ(var, err)", 2),
        ("selective_rmse", "RMSE@80%", 2),
        ("train_seconds", "train s", 2),
        ("infer_us_per_row", "µs/row", 1),
        ("size_kb", "KiB", 0),
    ),
}
#: The headline score per task and whether higher is better.
PRIMARY: dict[str, tuple[str, bool]] = {
    "classification": ("accuracy", True),
    "regression": ("rmse", False),
}
#: The headline loss per task (lower is better).
LOSS: dict[str, str] = {"classification": "nll", "regression": "gaussian_nll"}


def format_cell(stats: dict[str, float] | None, decimals: int, repeats: int = 1) -> str:
    """``mean ± std`` with ``decimals`` decimals; an em dash when there is no number.

    A number defined in fewer than ``repeats`` repeats says so: ``0.93 (n=1)``.
    """
    if not stats or not math.isfinite(stats.get("mean", math.nan)):
        return "—"
    n = int(stats.get("n", 1))
    text = f"{stats['mean']:.{decimals}f}"
    if n > 1:
        text += f" ± {stats['std']:.{decimals}f}"
    return text + (f" (n={n})" if n < repeats else "")


def results_table(results: dict[str, Any]) -> str:
    """One row per strategy and model (combiners, then baselines), mean ± std over repeats."""
    columns = COLUMNS[results["task"]]
    repeats = results["settings"]["repeats"]
    rows = []
    for strategy, group in results["summary"].items():
        for name, metrics in _ordered(group["models"]):
            kind = "baseline" if name in BASELINES else "combiner"
            cells = [
                format_cell(metrics.get(key), decimals, repeats) for key, _, decimals in columns
            ]
            rows.append((strategy, f"{name} ({kind})" if kind == "baseline" else name, *cells))
    return format_table(["strategy", "model", *[header for _, header, _ in columns]], rows)


def diversity_table(results: dict[str, Any]) -> str:
    """Per strategy: member diversity and the mean-combiner score at 1 and at M members."""
    metric, _ = PRIMARY[results["task"]]
    rows = []
    for strategy, group in results["summary"].items():
        curve = group["ensemble_size"][metric]
        rows.append(
            (
                strategy,
                len(curve),
                format_cell(group["diversity"]["disagreement"], 3),
                format_cell(group["diversity"]["error_correlation"], 3),
                format_cell(curve[0], 3),
                format_cell(curve[-1], 3),
            )
        )
    header = [
        "strategy",
        "members",
        "disagreement",
        "error corr.",
        f"{metric} k=1",
        f"{metric} k=M",
    ]
    return format_table(header, rows)


def leaders(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per strategy and headline score: the best combiner against the best baseline, paired.

    Both are chosen by their mean over repeats; the gain is then computed repeat by repeat
    (same split, same members), so the split-to-split variation that dominates each
    column's spread cancels. A lead counts as beyond the spread when the mean paired
    gain exceeds the standard deviation of the paired gains.

    Returns
    -------
    list of dict
        ``strategy``, ``metric``, ``best``, ``best_mean``, ``baseline``, ``baseline_mean``,
        ``gain`` (mean paired gain; positive: the combiner is better), ``gain_std`` and
        ``beyond_spread``.
    """
    task = results["task"]
    primary, higher = PRIMARY[task]
    found = []
    for metric, better_high in ((primary, higher), (LOSS[task], False)):
        sign = 1.0 if better_high else -1.0
        for strategy, group in results["summary"].items():
            scored = {
                name: m[metric]["mean"]
                for name, m in group["models"].items()
                if metric in m and math.isfinite(m[metric]["mean"])
            }
            combiners = {n: v for n, v in scored.items() if n not in BASELINES}
            baselines = {n: v for n, v in scored.items() if n in BASELINES}
            if not combiners or not baselines:
                continue
            best = max(combiners, key=lambda n: sign * combiners[n])
            base = max(baselines, key=lambda n: sign * baselines[n])
            gains = [
                sign * (run["models"][best][metric] - run["models"][base][metric])
                for run in results["runs"]
                if run["strategy"] == strategy
            ]
            paired = mean_std(gains)
            found.append(
                {
                    "strategy": strategy,
                    "metric": metric,
                    "best": best,
                    "best_mean": combiners[best],
                    "baseline": base,
                    "baseline_mean": baselines[base],
                    "gain": paired["mean"],
                    "gain_std": paired["std"],
                    "beyond_spread": bool(paired["n"] > 1 and abs(paired["mean"]) > paired["std"]),
                }
            )
    return found


def leaders_table(results: dict[str, Any]) -> str:
    """:func:`leaders` as a Markdown table."""
    rows = [
        (
            item["strategy"],
            item["metric"],
            item["best"],
            f"{item['best_mean']:.4f}",
            item["baseline"],
            f"{item['baseline_mean']:.4f}",
            f"{item['gain']:+.4f} ± {item['gain_std']:.4f}",
            "yes" if item["beyond_spread"] else "no",
        )
        for item in leaders(results)
    ]
    header = [
        "strategy",
        "metric",
        "best combiner",
        "score",
        "best baseline",
        "score",
        "paired gain",
        "beyond spread",
    ]
    return format_table(header, rows)


def markdown_report(results: dict[str, Any], plots: list[str] | None = None) -> str:
    """The whole report: settings, the results table, leaders, diversity and plot links."""
    settings = results["settings"]
    lines = [
        f"# Benchmark: {results['dataset']} ({results['task']})",
        "",
        f"Strategies {', '.join(settings['strategies'])}; {settings['members']} members, "
        f"{settings['epochs']} epochs each (one-run strategies: one run of that length); "
        f"{settings['repeats']} repeat(s) with seeds {settings['seed']}.."
        f"{settings['seed'] + settings['repeats'] - 1} (split and members). Cells are "
        "mean ± standard deviation over repeats, on the test split.",
        "",
        results_table(results),
        "",
        "## Best combiner against the best baseline",
        "",
        "Paired gain: mean ± std over repeats of (combiner - baseline) on the same split, "
        "signed so that positive favours the combiner; beyond spread when |mean| > std.",
        "",
        leaders_table(results),
        "",
        "## Diversity and ensemble size (mean combiner)",
        "",
        diversity_table(results),
    ]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], folder: Path) -> Path:
    """Write ``results.json`` (NaN as ``null``) into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(json.dumps(_finite(results), indent=1) + "\n")
    return path


def write_report(results: dict[str, Any], folder: Path, plots: list[str]) -> Path:
    """Write ``report.md`` into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.md"
    path.write_text(markdown_report(results, plots))
    return path


def _ordered(models: dict[str, Any]) -> list[tuple[str, Any]]:
    combiners = [(n, m) for n, m in models.items() if n not in BASELINES]
    return combiners + [(n, models[n]) for n in BASELINES if n in models]


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
