"""The benchmark's written outputs: Markdown tables, ``report.md`` and ``results.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ensembles import defaults
from ensembles.benchmark.aggregate import format_cell
from ensembles.benchmark.gradient_boosting import HGB, VARIANCE_FOLDS
from ensembles.benchmark.headline import (
    BASELINES,
    GAIN_CONFIDENCE,
    OTHER_MODELS,
    against_table,
    headline_table,
    is_combiner,
)
from ensembles.benchmark.ood import TARGET_TPR, ood_table
from ensembles.benchmark.scoring import N_MEMBER_ORDERS
from ensembles.benchmark.shift import shift_tables
from ensembles.markdown import format_table
from ensembles.writable import report_write_error

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
        ("effective_members", "eff. members", 1),
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
        ("effective_members", "eff. members", 1),
        ("train_seconds", "net train s", 2),
        ("assemble_seconds", "export+combine s", 2),
        ("infer_us_per_row", "µs/row", 1),
        ("size_kb", "KiB", 0),
    ),
}
#: Columns of binary classification only (the metrics record them for two classes),
#: placed after ECE.
BINARY_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("roc_auc", "ROC AUC", 3),
    ("average_precision", "avg. precision", 3),
)
#: The headline score per task and whether higher is better.
PRIMARY: dict[str, tuple[str, bool]] = {
    "classification": ("accuracy", True),
    "regression": ("rmse", False),
}


def table_columns(task: str, binary: bool = False) -> tuple[tuple[str, str, int], ...]:
    """The :func:`results_table` columns after strategy and model: (key, header, decimals).

    ``binary`` (a two-class problem) adds :data:`BINARY_COLUMNS` after ECE.
    """
    columns = COLUMNS[task]
    if not binary:
        return columns
    after = [key for key, _, _ in columns].index("ece") + 1
    return columns[:after] + BINARY_COLUMNS + columns[after:]


def column_headers(
    task: str, level: float = defaults.INTERVAL_LEVEL, binary: bool = False
) -> list[str]:
    """Headers of the :func:`results_table` columns after strategy and model."""
    return [header.format(level=f"{level:.0%}") for _, header, _ in table_columns(task, binary)]


def is_binary(results: dict[str, Any]) -> bool:
    """Whether the benchmarked problem has two classes: some model scored a ROC AUC."""
    return any(
        BINARY_COLUMNS[0][0] in metrics
        for group in results["summary"].values()
        for metrics in group["models"].values()
    )


def results_table(results: dict[str, Any]) -> str:
    """One row per strategy and model (combiners, then baselines), mean ± std over repeats.

    Then one row per :data:`~ensembles.benchmark.headline.OTHER_MODELS` model, strategy
    ``any``: it is fitted once per repeat, on the split every strategy of that repeat
    shares. Binary problems get the ROC AUC and average precision columns
    (:data:`BINARY_COLUMNS`).
    """
    binary = is_binary(results)
    columns = table_columns(results["task"], binary)
    level = float(results["settings"].get("interval_level", defaults.INTERVAL_LEVEL))
    repeats = results["settings"]["repeats"]

    def cells(metrics: dict[str, Any]) -> list[str]:
        return [format_cell(metrics.get(key), decimals, repeats) for key, _, decimals in columns]

    rows = []
    for strategy, group in results["summary"].items():
        for name, metrics in _ordered(group["models"]):
            label = name if is_combiner(name) else f"{name} (baseline)"
            rows.append((strategy, label, *cells(metrics)))
    first = next(iter(results["summary"].values()))["models"]
    for name in OTHER_MODELS:
        if name in first:
            rows.append(("any", f"{name} (baseline)", *cells(first[name])))
    headers = column_headers(results["task"], level, binary)
    return format_table(["strategy", "model", *headers], rows)


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


def _budget_words(epochs: int | None) -> str:
    """How long members trained, as the report's settings line says it."""
    if epochs is None:
        return (
            "each trained by the budget rule (until its validation loss stopped improving; "
            "the single network likewise)"
        )
    return f"{epochs} epochs each (one-run strategies: one run of that length)"


def markdown_report(results: dict[str, Any], plots: list[str] | None = None) -> str:
    """The whole report: settings, what users get, OOD and shift, every model, diversity."""
    settings = results["settings"]
    lines = [
        f"# Benchmark: {results['dataset']} ({results['task']})",
        "",
        f"Strategies {', '.join(settings['strategies'])}; {settings['members']} members, "
        + _budget_words(settings["epochs"])
        + "; "
        f"{settings['repeats']} repeat(s) with seeds {settings['seed']}.."
        f"{settings['seed'] + settings['repeats'] - 1} (split and members)"
        + ("; every combiner temperature-scaled (--calibrate)" if settings.get("calibrate") else "")
        + ". Cells are mean ± standard deviation over repeats, on the test split.",
        "",
        "## What users get: the default combiner against the baselines",
        "",
        "Default: the combiner each version serves when a request names none, chosen "
        "without the test split; eff. members: 1 / Σw² of its member weights. Best "
        "baseline: the best of best member, average member and same-budget single network "
        "by test mean. Paired gain: mean ± standard error over the n repeats of (default - "
        "baseline) on the same split, signed so that positive favours the default "
        "(coverage: closeness to the nominal level). Beyond spread: the two-sided "
        f"{GAIN_CONFIDENCE:.0%} Student-t interval of the mean gain excludes zero (a "
        "screening rule, not a significance test); too few repeats: n < 2 or every repeat "
        "gave the same gain. The last column is an oracle: the combiner with the best test "
        "mean, which no user could have chosen.",
        "",
        headline_table(results),
    ]
    against = against_table(results, HGB)
    if against:
        lines += ["", _hgb_words(results["task"]), "", against]
    runs = results["runs"]
    if all("ood" in run for run in runs):
        first = runs[0]["ood"]
        lines += [
            "",
            "## Out-of-distribution detection",
            "",
            f"Rows of the held-out classes ({first['n_out']}) against the "
            f"{first['n_in']} in-distribution test rows, scored by every uncertainty measure "
            "the default combiner serves (variance averaged over classes; 1−x for measures "
            "of sureness) and by the predictive entropy of one network: the best member "
            "(chosen on validation) and the same-budget single network. MI − x: the "
            "default's mutual information minus that entropy, paired over repeats (mean ± "
            "standard error; positive favours the ensemble). AUROC (higher is better):",
            "",
            ood_table(results, "auroc"),
            "",
            f"False-positive rate at {TARGET_TPR:.0%} true-positive rate (lower is better):",
            "",
            ood_table(results, "fpr95"),
        ]
    if all("shift" in run for run in runs):
        lines += [
            "",
            "## Covariate shift",
            "",
            "Test rows plus Gaussian noise of k validation standard deviations per feature "
            "(the same draws for every strategy of a repeat), scored for the default "
            "combiner and the same-budget single network. On a table only the numeric "
            "columns move: boolean, one-hot and missing-indicator columns, and missing "
            "cells, stay as they were.",
        ]
        for metric, table in shift_tables(results):
            lines += ["", f"**{metric}**:", "", table]
    lines += [
        "",
        "## Every model",
        "",
        results_table(results),
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
    path.write_text(json.dumps(json_safe(results), indent=1) + "\n")
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
        raise report_write_error(folder, exc) from exc
    return [report_path, results_path, *[folder / name for name in plots]]


def _hgb_words(task: str) -> str:
    """What the HistGradientBoosting table compares, for the report."""
    words = (
        f"Against scikit-learn's {HGB}: the same default, paired repeat by repeat with "
        f"{HGB}{'Classifier' if task == 'classification' else 'Regressor'} at "
        "scikit-learn's defaults (random_state: the repeat's seed), fitted on the training "
        "and validation rows together (every row the ensemble learned or chose from) and "
        "scored on the same test rows; a table goes in natively (categorical columns as "
        "categories, missing cells as NaN). Gains and verdicts as above."
    )
    if task == "regression":
        words += (
            f" It has no per-row variance: its Gaussian NLL and coverage use one constant, "
            f"the mean squared out-of-fold residual of {VARIANCE_FOLDS}-fold "
            "cross-validation on its fit rows."
        )
    return words


def _ordered(models: dict[str, Any]) -> list[tuple[str, Any]]:
    combiners = [(n, m) for n, m in models.items() if is_combiner(n)]
    return combiners + [(n, models[n]) for n in BASELINES if n in models]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth, as None (JSON has no NaN), keys
    as strings and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
