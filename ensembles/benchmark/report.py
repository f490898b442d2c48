"""The benchmark's written outputs: Markdown tables, ``report.md`` and ``results.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ensembles.benchmark.aggregate import mean_std
from ensembles.benchmark.scoring import N_MEMBER_ORDERS
from ensembles.errors import ConfigError
from ensembles.markdown import format_table

BASELINES: tuple[str, ...] = ("best_member", "average_member", "single_network")
#: Confidence of the two-sided t interval of the mean paired gain in :func:`leaders`.
GAIN_CONFIDENCE = 0.90
#: Table columns per task: (result key, header, decimals); ``{level}`` is the interval
#: level recorded in the manifests.
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
        ("train_seconds", "net train s", 2),
        ("assemble_seconds", "export+combine s", 2),
        ("infer_us_per_row", "µs/row", 1),
        ("size_kb", "KiB", 0),
    ),
    "regression": (
        ("rmse", "RMSE", 2),
        ("mae", "MAE", 2),
        ("gaussian_nll", "Gauss NLL", 3),
        ("coverage", "cover@{level}", 3),
        ("spearman", "ρ(var, err)", 2),
        ("selective_rmse", "RMSE@80%", 2),
        ("train_seconds", "net train s", 2),
        ("assemble_seconds", "export+combine s", 2),
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


def column_headers(task: str, level: float = 0.9) -> list[str]:
    """Headers of the :func:`results_table` columns after strategy and model."""
    return [header.format(level=f"{level:.0%}") for _, header, _ in COLUMNS[task]]


def results_table(results: dict[str, Any]) -> str:
    """One row per strategy and model (combiners, then baselines), mean ± std over repeats."""
    columns = COLUMNS[results["task"]]
    level = float(results["settings"].get("interval_level", 0.9))
    repeats = results["settings"]["repeats"]
    rows = []
    for strategy, group in results["summary"].items():
        for name, metrics in _ordered(group["models"]):
            kind = "baseline" if name in BASELINES else "combiner"
            cells = [
                format_cell(metrics.get(key), decimals, repeats) for key, _, decimals in columns
            ]
            rows.append((strategy, f"{name} ({kind})" if kind == "baseline" else name, *cells))
    return format_table(["strategy", "model", *column_headers(results["task"], level)], rows)


def diversity_table(results: dict[str, Any]) -> str:
    """Per strategy: member diversity and the mean-combiner score at 1 and at M members.

    Scores at k members are averaged over random member orders (see
    :func:`~ensembles.benchmark.scoring.ensemble_size_curve`), so k=1 is the score of a
    typical member, not of member 0.
    """
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


def paired_gain(gains: list[float], confidence: float = GAIN_CONFIDENCE) -> dict[str, Any]:
    """Mean paired gain, its standard error and a two-sided t interval.

    Parameters
    ----------
    gains : list of float, length n_repeats
        Per-repeat gains (positive: the combiner is better); NaN values are skipped.
    confidence : float
        Confidence of the two-sided interval, 0.90 by default (the mean plus or minus the
        0.95 quantile of Student's t with n - 1 degrees of freedom times the standard error).

    Returns
    -------
    dict
        ``gain`` (mean), ``gain_std``, ``gain_se`` (std / sqrt(n)), ``n``, ``low``,
        ``high`` and ``beyond_spread``: True when n > 1 and the interval excludes zero. With
        a few repeats this is a screening rule, not a significance test: repeats share
        the dataset, so they are not independent samples.
    """
    from scipy.stats import t

    stats = mean_std(gains)
    n = int(stats["n"])
    if n < 2:
        return {
            "gain": stats["mean"],
            "gain_std": math.nan,
            "gain_se": math.nan,
            "n": n,
            "low": math.nan,
            "high": math.nan,
            "beyond_spread": False,
        }
    se = stats["std"] / math.sqrt(n)
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * se
    low, high = stats["mean"] - half, stats["mean"] + half
    return {
        "gain": stats["mean"],
        "gain_std": stats["std"],
        "gain_se": se,
        "n": n,
        "low": low,
        "high": high,
        "beyond_spread": bool(low > 0 or high < 0),
    }


def leaders(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per strategy and headline score: the best combiner against the best baseline, paired.

    Both are chosen by their mean over repeats; the gain is then computed repeat by repeat
    (same split, same members), so the split-to-split variation that dominates each
    column's spread cancels. A lead counts as beyond the spread when the two-sided 90% t
    interval of the mean paired gain excludes zero (see :func:`paired_gain`).

    Returns
    -------
    list of dict
        ``strategy``, ``metric``, ``best``, ``best_mean``, ``best_std``, ``baseline``,
        ``baseline_mean``, ``baseline_std`` and the :func:`paired_gain` keys (positive
        gain: the combiner is better).
    """
    task = results["task"]
    primary, higher = PRIMARY[task]
    found = []
    for metric, better_high in ((primary, higher), (LOSS[task], False)):
        sign = 1.0 if better_high else -1.0
        for strategy, group in results["summary"].items():
            scored = {
                name: m[metric]
                for name, m in group["models"].items()
                if metric in m and math.isfinite(m[metric]["mean"])
            }
            combiners = {n: v for n, v in scored.items() if n not in BASELINES}
            baselines = {n: v for n, v in scored.items() if n in BASELINES}
            if not combiners or not baselines:
                continue
            best = max(combiners, key=lambda n: sign * combiners[n]["mean"])
            base = max(baselines, key=lambda n: sign * baselines[n]["mean"])
            gains = [
                sign * (run["models"][best][metric] - run["models"][base][metric])
                for run in results["runs"]
                if run["strategy"] == strategy
            ]
            found.append(
                {
                    "strategy": strategy,
                    "metric": metric,
                    "best": best,
                    "best_mean": combiners[best]["mean"],
                    "best_std": combiners[best]["std"],
                    "baseline": base,
                    "baseline_mean": baselines[base]["mean"],
                    "baseline_std": baselines[base]["std"],
                    **paired_gain(gains),
                }
            )
    return found


def leaders_table(results: dict[str, Any]) -> str:
    """:func:`leaders` as a Markdown table."""
    rows = []
    for item in leaders(results):
        interval = "—"
        if math.isfinite(item["low"]):
            interval = f"[{item['low']:+.4f}, {item['high']:+.4f}]"
        gain = f"{item['gain']:+.4f}"
        if math.isfinite(item["gain_se"]):
            gain += f" ± {item['gain_se']:.4f}"
        n = item["n"]
        rows.append(
            (
                item["strategy"],
                item["metric"],
                item["best"],
                format_cell({"mean": item["best_mean"], "std": item["best_std"], "n": n}, 4),
                item["baseline"],
                format_cell(
                    {"mean": item["baseline_mean"], "std": item["baseline_std"], "n": n}, 4
                ),
                gain,
                item["n"],
                interval,
                "yes" if item["beyond_spread"] else "no",
            )
        )
    header = [
        "strategy",
        "metric",
        "best combiner",
        "mean ± std",
        "best baseline",
        "mean ± std",
        "paired gain ± se",
        "n",
        f"{GAIN_CONFIDENCE:.0%} t interval",
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
        "Paired gain: mean ± standard error over the n repeats of (combiner - baseline) on "
        "the same split, signed so that positive favours the combiner. Beyond spread: the "
        f"two-sided {GAIN_CONFIDENCE:.0%} Student-t interval of the mean gain excludes zero "
        "(a screening rule, not a significance test).",
        "",
        leaders_table(results),
        "",
        "## Diversity and ensemble size (mean combiner)",
        "",
        f"Score of the plain mean of k members, averaged over {N_MEMBER_ORDERS} random member "
        "orders.",
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


def save_report(results: dict[str, Any], folder: Path) -> list[Path]:
    """Write ``results.json``, the PNG plots and ``report.md`` into ``folder``.

    Returns
    -------
    list of Path
        ``report.md``, ``results.json``, then the plots.

    Raises
    ------
    ConfigError
        When ``folder`` cannot be created or written.
    """
    from ensembles.benchmark.plots import write_plots

    try:
        results_path = write_results(results, folder)
        plots = write_plots(results, folder)
        report_path = write_report(results, folder, plots)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot write the report to {folder}: {reason}; choose another --output"
        ) from exc
    return [report_path, results_path, *[folder / name for name in plots]]


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
