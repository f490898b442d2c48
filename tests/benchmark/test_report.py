"""Report tables, cells and the written files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ensembles.benchmark.aggregate import format_cell, summarize_runs
from ensembles.benchmark.gradient_boosting import HGB
from ensembles.benchmark.report import column_headers, results_table, save_report
from ensembles.errors import ConfigError


def _results(task: str = "classification") -> dict:
    """Two strategies, three repeats; ``mean`` beats every baseline by a steady margin."""
    runs = []
    for repeat, base in enumerate((0.90, 0.94, 0.92)):
        for strategy, lead in (("bagging", 0.02), ("snapshot", -0.01)):
            models = {
                "mean": {"accuracy": base + lead, "nll": 0.30 - lead},
                "stack": {"accuracy": base + lead - 0.05, "nll": 0.5},
                "best_member": {"accuracy": base, "nll": 0.30},
                "single_network": {"accuracy": base - 0.01 * repeat, "nll": 0.35},
            }
            runs.append(
                {
                    "strategy": strategy,
                    "default_combiner": "mean",
                    "models": models,
                    "diversity": {"disagreement": 0.1, "error_correlation": 0.8},
                    "ensemble_size": {"accuracy": [base, base + lead]},
                }
            )
    return {
        "task": task,
        "dataset": "toy",
        "settings": {
            "repeats": 3,
            "interval_level": 0.8,
            "strategies": ["bagging", "snapshot"],
            "members": 2,
            "epochs": 1,
            "seed": 0,
        },
        "runs": runs,
        "summary": summarize_runs(runs),
    }


def test_results_table_labels_baselines_and_uses_the_recorded_interval_level() -> None:
    table = results_table(_results())
    assert "| bagging | single_network (baseline) |" in table
    assert column_headers("regression", 0.8)[3] == "cover@80%"
    assert "net train s" in column_headers("classification")
    assert "export+combine s" in column_headers("classification")
    assert "eff. members" in column_headers("regression")


def test_binary_results_get_roc_auc_and_average_precision_columns() -> None:
    results = _results()
    assert "ROC AUC" not in results_table(results)  # multi-class: the columns of before
    for run in results["runs"]:
        for metrics in run["models"].values():
            metrics.update(roc_auc=0.9, average_precision=0.8)
    results["summary"] = summarize_runs(results["runs"])
    lines = results_table(results).splitlines()
    cells = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert cells == ["strategy", "model", *column_headers("classification", 0.8, binary=True)]
    assert cells[5:8] == ["ECE", "ROC AUC", "avg. precision"]
    assert "| — | 0.900 ± 0.000 | 0.800 ± 0.000 | — |" in lines[2]
    assert len(cells) == len(column_headers("classification")) + 4


def test_format_cell_marks_partial_and_missing_numbers() -> None:
    assert format_cell({"mean": 0.5, "std": 0.1, "n": 3}, 2, 3) == "0.50 ± 0.10"
    assert format_cell({"mean": 0.5, "std": 0.0, "n": 1}, 2, 3) == "0.50 (n=1)"
    assert format_cell({"mean": math.nan, "std": math.nan, "n": 0}, 2) == "—"
    assert format_cell(None, 2) == "—"


def test_an_unwritable_output_folder_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(
        ConfigError,
        match=r"cannot write the report to .*file\.txt/report: .+; choose another --output",
    ):
        save_report(_results(), blocker / "report")


def test_histgradientboosting_gets_one_row_after_every_strategy() -> None:
    # It is fitted once per repeat on the split all strategies share: one row, strategy "any".
    results = _results()
    for run in results["runs"]:
        run["models"][HGB] = {"accuracy": 0.95, "nll": 0.2, "train_seconds": 0.5}
    results["summary"] = summarize_runs(results["runs"])
    lines = results_table(results).splitlines()
    rows = [line for line in lines if HGB in line]
    assert rows == [lines[-1]]
    assert rows[0].startswith(f"| any | {HGB} (baseline) | 0.950 ± 0.000 | 0.200 ± 0.000 |")
    assert "| 0.50 ± 0.00 |" in rows[0]  # net train s
    assert sum(line.startswith("| bagging | mean |") for line in lines) == 1
