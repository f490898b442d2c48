"""Report tables and the paired comparison of the best combiner with the best baseline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from scipy.stats import t

from ensembles.benchmark.aggregate import summarize_runs
from ensembles.benchmark.report import (
    column_headers,
    format_cell,
    leaders,
    leaders_table,
    paired_gain,
    results_table,
    save_report,
)
from ensembles.errors import ConfigError


def test_paired_gain_uses_the_standard_error_and_a_90_percent_t_interval() -> None:
    result = paired_gain([1.0, 2.0, 3.0])
    se = 1.0 / math.sqrt(3)
    quantile = t.ppf(0.95, 2)  # two-sided 90%: the 95% quantile, n - 1 = 2 dof
    assert quantile == pytest.approx(2.919986, abs=1e-6)  # the printed t table
    half = quantile * se
    assert result["gain"] == 2.0 and result["gain_std"] == 1.0 and result["n"] == 3
    assert result["gain_se"] == pytest.approx(se)
    assert (result["low"], result["high"]) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert result["beyond_spread"] is True


def test_a_mean_gain_inside_the_interval_is_not_beyond_the_spread() -> None:
    # Mean 1.0 > std 0.9 passed the old rule (|mean| > std); the 90% t interval over three
    # repeats, 1.0 +- 2.92 * 0.9 / sqrt(3), still holds zero.
    result = paired_gain([0.1, 1.0, 1.9])
    assert result["gain"] == pytest.approx(1.0) and result["gain_std"] == pytest.approx(0.9)
    assert result["low"] < 0 < result["high"]
    assert result["beyond_spread"] is False


def test_a_negative_gain_can_be_beyond_the_spread() -> None:
    assert paired_gain([-0.2, -0.21, -0.19])["beyond_spread"] is True


def test_one_repeat_has_no_spread() -> None:
    result = paired_gain([0.5, math.nan])
    assert result["n"] == 1 and result["beyond_spread"] is False
    assert math.isnan(result["gain_se"]) and math.isnan(result["low"])


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
                    "models": models,
                    "diversity": {"disagreement": 0.1, "error_correlation": 0.8},
                    "ensemble_size": {"accuracy": [base, base + lead]},
                }
            )
    return {
        "task": task,
        "dataset": "toy",
        "settings": {"repeats": 3, "interval_level": 0.8},
        "runs": runs,
        "summary": summarize_runs(runs),
    }


def test_leaders_pair_the_best_combiner_with_the_best_baseline() -> None:
    found = {(item["strategy"], item["metric"]): item for item in leaders(_results())}
    bagging = found[("bagging", "accuracy")]
    assert (bagging["best"], bagging["baseline"]) == ("mean", "best_member")
    assert bagging["best_mean"] == pytest.approx(0.94)
    assert bagging["gain"] == pytest.approx(0.02) and bagging["n"] == 3
    assert bagging["beyond_spread"] is True
    snapshot = found[("snapshot", "accuracy")]
    assert snapshot["gain"] == pytest.approx(-0.01) and snapshot["beyond_spread"] is True
    # NLL: lower is better, so the gain is baseline minus combiner.
    assert found[("bagging", "nll")]["gain"] == pytest.approx(0.02)
    assert found[("bagging", "nll")]["best"] == "mean"


def test_leaders_table_shows_the_standard_error_n_and_interval() -> None:
    table = leaders_table(_results())
    header = table.splitlines()[0]
    assert "paired gain ± se" in header and "| n |" in header and "90% t interval" in header
    assert "| bagging | accuracy | mean | 0.9400 ± 0.0200 | best_member |" in table
    assert "| +0.0200 ± 0.0000 | 3 | [+0.0200, +0.0200] | yes |" in table


def test_results_table_labels_baselines_and_uses_the_recorded_interval_level() -> None:
    table = results_table(_results())
    assert "| bagging | single_network (baseline) |" in table
    assert column_headers("regression", 0.8)[3] == "cover@80%"
    assert "net train s" in column_headers("classification")
    assert "export+combine s" in column_headers("classification")


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
