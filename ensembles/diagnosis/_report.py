"""The diagnosis outputs: the JSON report, the learning-curve figure and the stdout summary."""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.diagnosis._rounds import Round, flagged_change
from ensembles.markdown import format_table
from ensembles.training.learning_rate import RULE
from ensembles.writable import report_write_error

REPORT_FILE = "report.json"
CURVES_FILE = "curves.png"
_FIGURES = (
    ("verdict", "verdict"),
    ("train loss", "train_loss"),
    ("val loss", "val_loss"),
    ("train {metric}", "train_metric"),
    ("val {metric}", "val_metric"),
    ("train skill", "train_skill"),
    ("val skill", "val_skill"),
    ("gap (val - train loss)", "gap"),
    ("best val epoch", "best_epoch"),
    ("run spread (skill std)", "run_spread"),
    ("late fluctuation", "late_fluctuation"),
    ("averaged runs val {metric}", "ensemble_val_metric"),
    ("test loss (held out)", "test_loss"),
    ("test {metric} (held out)", "test_metric"),
    ("test skill (held out)", "test_skill"),
    ("averaged runs test {metric}", "ensemble_test_metric"),
)

_STOPPED = {
    "patience": "early stopping",
    "cap": "the cap",
    "epochs": "--epochs",
    "diverged": "divergence",
}


def metric_name(task: str) -> str:
    """``accuracy`` or ``rmse``."""
    return "accuracy" if task == "classification" else "rmse"


def build_report(rounds: list[Round], context: dict[str, Any]) -> dict[str, Any]:
    """The JSON report: context (data, options, thresholds), every round and the comparison.

    Parameters
    ----------
    rounds : list of Round
    context : dict
        JSON-safe description of the command: data, split, runs, thresholds.
    """
    first, last = rounds[0], rounds[-1]
    return {
        "schema_version": 1,
        **context,
        "verdict": first.diagnosis.verdict,
        "final_verdict": last.diagnosis.verdict,
        "metric": metric_name(first.runs.scale.task),
        "comparison": [{"round": r.index, **flagged_change(first, r)} for r in rounds[1:]],
        "rounds": [r.to_dict() for r in rounds],
    }


def write_report(folder: Path, report: dict[str, Any], rounds: list[Round]) -> list[Path]:
    """Write ``report.json`` and ``curves.png`` into ``folder`` (created when missing).

    Raises
    ------
    ConfigError
        When ``folder`` cannot be created or written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        json_path = folder / REPORT_FILE
        json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        png_path = folder / CURVES_FILE
        plot_curves(png_path, rounds)
    except OSError as exc:
        raise report_write_error(folder, exc) from exc
    return [json_path, png_path]


def plot_curves(path: Path, rounds: list[Round]) -> None:
    """Learning curves, one row per round: loss and metric, mean and min-max band over runs.

    Training is drawn against validation; the dotted line marks the best validation epoch.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = metric_name(rounds[0].runs.scale.task)
    figure, axes = plt.subplots(len(rounds), 2, figsize=(11, 3.6 * len(rounds)), squeeze=False)
    for row, item in zip(axes, rounds, strict=True):
        title = f"round {item.index}: {item.diagnosis.text}"
        if item.applied is not None:
            title += f" (after {item.applied.technique})"
        for axis, key, label in ((row[0], "loss", "loss"), (row[1], "metric", metric)):
            for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
                epochs, mean, low, high = _band(item.runs.curves, f"{split}_{key}")
                axis.plot(epochs, mean, color=color, label=f"{split} (mean of {item.runs.n_runs})")
                axis.fill_between(epochs, low, high, color=color, alpha=0.25, linewidth=0)
            axis.axvline(item.diagnosis.summary["best_epoch"], color="grey", linestyle=":")
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
            axis.legend(loc="best", fontsize="small")
        row[0].set_title(title, loc="left", fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _band(
    curves: list[list[dict[str, float]]], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs (n_epochs,) and mean, min and max over the runs still going at each epoch."""
    n_epochs = max(len(run) for run in curves)
    values = np.full((len(curves), n_epochs), np.nan)
    for i, run in enumerate(curves):
        values[i, : len(run)] = [row[key] for row in run]
    values[~np.isfinite(values)] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (
            np.arange(1, n_epochs + 1),
            np.nanmean(values, axis=0),
            np.nanmin(values, axis=0),
            np.nanmax(values, axis=0),
        )


def format_round(item: Round) -> str:
    """The readable diagnosis of one round: verdict, evidence and recommendations."""
    diagnosis = item.diagnosis
    lines = [f"verdict: {diagnosis.text}"]
    for finding in diagnosis.findings.values():
        mark = "FOUND" if finding.found else "ok"
        lines.append(f"  {finding.problem:<15} {mark}")
        lines += [f"    - {reason}" for reason in finding.reasons]
        lines += [f"    note: {note}" for note in finding.notes]
    summary = diagnosis.summary
    metric = metric_name(item.runs.scale.task)
    lines.append(
        f"  evidence: train loss {_cell(summary['train_loss'])}, val loss "
        f"{_cell(summary['val_loss'])}, gap {_cell(summary['gap'])}, best val epoch "
        f"{_cell(summary['best_epoch'])}, val {metric} {_cell(summary['val_metric'])}, "
        f"run spread {_cell(summary['run_spread'])}, late fluctuation "
        f"{_cell(summary['late_fluctuation'])}"
    )
    if item.runs.test:
        lines.append(
            f"  held-out test split: loss {_cell(summary['test_loss'])}, {metric} "
            f"{_cell(summary['test_metric'])}, averaged runs {metric} "
            f"{_cell(summary['ensemble_test_metric'])}"
        )
    lines.append(f"  {rate_line(item)}")
    lines.append(f"  {budget_line(item)}")
    if item.range_test is not None and item.runs.range_test is None:
        lines.append(
            f"  learning-rate range test: suggests {item.range_test.suggested:.2g} "
            f"(the runs used {item.runs.config.learning_rate:.3g}; {item.range_test.seconds:.1f} s)"
        )
    if item.recommendations:
        lines.append("recommendations:")
        for number, rec in enumerate(item.recommendations, start=1):
            change = rec.change
            lines.append(f"  {number}. {rec.technique}" + (f" [{change}]" if change else ""))
            lines.append(f"     {rec.reason}")
            if rec.command:
                lines.append(f"     {rec.command}")
    return "\n".join(lines)


def rate_line(item: Round) -> str:
    """The learning rate every run used and how it was chosen."""
    chosen_by = item.runs.range_test
    rate = item.runs.config.learning_rate
    if rate is None:
        return "learning rate: not recorded"
    if chosen_by is None:
        return f"learning rate: {rate:.3g} (given)"
    return f"learning rate: {rate:.3g} (auto: {RULE}; {chosen_by.seconds:.1f} s)"


def budget_line(item: Round) -> str:
    """What the runs' budget allowed, why they stopped and the epochs they ran."""
    budgets = item.runs.budgets
    if not budgets:
        return "budget: unknown"
    first = budgets[0]
    if first["rule"] == "data":
        allowed = (
            f"budget rule (patience {first['patience']} epochs, at least {first['min_epochs']}, "
            f"cap {first['max_epochs']} epochs = {first['max_epochs'] * first['steps_per_epoch']} "
            f"steps of {first['steps_per_epoch']} per epoch)"
        )
    else:
        allowed = f"--epochs {first['max_epochs']}" + (
            f" with --patience {first['patience']}" if first["patience"] is not None else ""
        )
    stopped = Counter(budget["stopped"] for budget in budgets)
    reasons = ", ".join(
        f"{_STOPPED[name]} in {count} of {len(budgets)} runs"
        for name, count in sorted(stopped.items())
    )
    ran = [budget["epochs_run"] for budget in budgets]
    span = f"{min(ran)}" if min(ran) == max(ran) else f"{min(ran)}-{max(ran)}"
    return f"budget: {allowed}; stopped by {reasons}; epochs run {span}"


def format_comparison(rounds: list[Round]) -> str:
    """Before and after side by side: one column per round, one row per figure."""
    metric = metric_name(rounds[0].runs.scale.task)
    header = ["figure", "before"] + [
        f"after {r.index}: {r.applied.technique if r.applied else ''}" for r in rounds[1:]
    ]
    change = flagged_change(rounds[0], rounds[-1])
    flagged = {change.get("figure"), change.get("test", {}).get("figure")}
    rows = []
    for label, key in _FIGURES:
        if "test" in key and not rounds[0].runs.test:
            continue
        name = label.format(metric=metric) + (" (flagged)" if key in flagged else "")
        if key == "verdict":
            rows.append([name, *(r.diagnosis.text for r in rounds)])
        else:
            rows.append([name, *(_cell(r.diagnosis.summary[key]) for r in rounds)])
    return format_table(header, rows)


def _cell(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan"
    return f"{value:.4g}"
