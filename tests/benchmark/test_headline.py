"""The headline: each strategy's default combiner against the baselines, paired over repeats."""

from __future__ import annotations

import math

import pytest
from scipy.stats import t

from ensembles.benchmark.aggregate import summarize_runs
from ensembles.benchmark.gradient_boosting import HGB
from ensembles.benchmark.headline import (
    TOO_FEW_REPEATS,
    against_table,
    format_gain,
    headline,
    headline_table,
    paired_gain,
)
from ensembles.benchmark.report import markdown_report


def _results(defaults: tuple[str, ...] = ("stack",) * 3, task: str = "classification") -> dict:
    """Three repeats of one strategy: ``mean`` is best on test, ``stack`` trails best_member."""
    runs = []
    for repeat, (base, default) in enumerate(zip((0.90, 0.94, 0.92), defaults, strict=True)):
        models = {
            "mean": {"accuracy": base + 0.02, "nll": 0.28, "effective_members": 5.0},
            "stack": {"accuracy": base - 0.03 + 0.001 * repeat, "nll": 0.5},
            "best_member": {"accuracy": base, "nll": 0.30, "effective_members": 1.0},
            "single_network": {"accuracy": base - 0.05, "nll": 0.40, "effective_members": 1.0},
        }
        models["stack"]["effective_members"] = 4.0 + repeat / 2
        runs.append(
            {
                "strategy": "bagging",
                "default_combiner": default,
                "models": models,
                "diversity": {"disagreement": 0.1, "error_correlation": 0.8},
                "ensemble_size": {"accuracy": [base, base]},
            }
        )
    settings = {"repeats": 3, "interval_level": 0.9, "strategies": ["bagging"]}
    settings.update(members=5, epochs=20, seed=0)
    return {
        "task": task,
        "dataset": "toy",
        "settings": settings,
        "runs": runs,
        "summary": summarize_runs(runs),
    }


def _row(table: str, start: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(start))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_headline_is_the_default_combiner_not_the_best_on_test() -> None:
    # Observed: the summary's "best combiner" was whichever combiner scored best on the
    # test split (here mean), a choice no user can make; users get the default.
    report = markdown_report(_results())
    cells = _row(report, "| bagging | accuracy |")
    assert cells[2] == "stack"
    assert cells[4] == "0.8910 ± 0.0205"  # stack's own accuracy
    assert cells[5] == "best_member"
    assert cells[7].startswith("-0.0290")  # stack - best_member, repeat by repeat
    assert cells[-1] == "mean 0.9400"  # best on test, in the oracle column only
    header = _row(report, "| strategy | metric |")
    assert header[2] == "default" and header[-1] == "oracle: best on test"


def test_a_zero_standard_error_is_too_few_repeats_not_evidence() -> None:
    # Observed: "+0.0028 ± 0.0000 ... yes" at n = 3 (one test row in every repeat).
    result = paired_gain([0.0028, 0.0028, 0.0028])
    assert result["verdict"] == TOO_FEW_REPEATS and result["beyond_spread"] is False
    assert math.isnan(result["low"]) and math.isnan(result["high"])
    # Differences of accuracies that are the same row count apart differ only in the last
    # bits; that is still a zero standard error.
    gains = [351 / 360 - 350 / 360, 101 / 360 - 100 / 360, 3 / 360 - 2 / 360]
    assert len(set(gains)) > 1
    assert paired_gain(gains)["verdict"] == TOO_FEW_REPEATS
    results = _results()
    for run in results["runs"]:
        run["models"]["stack"]["accuracy"] = run["models"]["best_member"]["accuracy"] + 0.0028
    cells = _row(headline_table(results), "| bagging | accuracy |")
    assert cells[9] == "—" and cells[10] == TOO_FEW_REPEATS


def test_paired_gain_uses_the_standard_error_and_a_90_percent_t_interval() -> None:
    result = paired_gain([1.0, 2.0, 3.0])
    se = 1.0 / math.sqrt(3)
    quantile = t.ppf(0.95, 2)  # two-sided 90%: the 95% quantile, n - 1 = 2 dof
    assert quantile == pytest.approx(2.919986, abs=1e-6)  # the printed t table
    half = quantile * se
    assert result["gain"] == 2.0 and result["gain_std"] == 1.0 and result["n"] == 3
    assert result["gain_se"] == pytest.approx(se)
    assert (result["low"], result["high"]) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert result["beyond_spread"] is True and result["verdict"] == "yes"


def test_a_mean_gain_inside_the_interval_is_not_beyond_the_spread() -> None:
    # 1.0 +- 2.92 * 0.9 / sqrt(3) holds zero.
    result = paired_gain([0.1, 1.0, 1.9])
    assert result["low"] < 0 < result["high"]
    assert result["beyond_spread"] is False and result["verdict"] == "no"


def test_a_negative_gain_can_be_beyond_the_spread() -> None:
    assert paired_gain([-0.2, -0.21, -0.19])["verdict"] == "yes"


def test_one_repeat_is_too_few() -> None:
    result = paired_gain([0.5, math.nan])
    assert result["n"] == 1 and result["verdict"] == TOO_FEW_REPEATS
    assert math.isnan(result["gain_se"]) and math.isnan(result["low"])


def test_defaults_that_differ_across_repeats_are_each_paired_with_their_repeat() -> None:
    found = headline(_results(("stack", "mean", "stack")))
    accuracy = next(item for item in found if item["metric"] == "accuracy")
    assert accuracy["default"] == "stack ×2, mean ×1"
    # Repeat 1 served mean (+0.02 over best_member), the others stack (-0.03, -0.028).
    assert accuracy["gain"] == pytest.approx((-0.03 + 0.02 - 0.028) / 3)
    assert accuracy["default_mean"] == pytest.approx((0.87 + 0.96 + 0.892) / 3)


def test_effective_members_of_the_default_show_their_smallest_value() -> None:
    cells = _row(headline_table(_results()), "| bagging | accuracy |")
    assert cells[3] == "4.5 (min 4.0)"


def test_coverage_gains_are_closeness_to_the_nominal_level() -> None:
    runs = []
    for coverage in (0.86, 0.88, 0.87):
        models = {
            "mean": {"rmse": 1.0, "gaussian_nll": 1.0, "coverage": coverage},
            "best_member": {"rmse": 1.1, "gaussian_nll": 1.2, "coverage": 0.75},
            "single_network": {"rmse": 1.2, "gaussian_nll": 1.3, "coverage": 0.97},
        }
        runs.append({"strategy": "kfold", "default_combiner": "mean", "models": models})
    results = {
        "task": "regression",
        "settings": {"interval_level": 0.9},
        "runs": runs,
        "summary": summarize_runs(runs),
    }
    found = {item["metric"]: item for item in headline(results)}
    coverage = found["coverage"]
    # 0.97 is 0.07 from 0.90, 0.75 is 0.15 away: the single network is the best baseline.
    assert coverage["baseline"] == "single_network"
    assert coverage["gain"] == pytest.approx(0.07 - 0.03)
    assert found["rmse"]["baseline"] == "best_member"
    assert found["rmse"]["gain"] == pytest.approx(0.1)


def test_a_gain_without_spread_says_too_few_repeats_wherever_it_is_shown() -> None:
    """The OOD table shows the gain alone: a zero standard error must not read as ± 0."""
    assert format_gain(paired_gain([0.0028] * 3), 4) == "+0.0028 (too few repeats)"
    assert format_gain(paired_gain([0.001, 0.003, 0.002]), 4) == "+0.0020 ± 0.0006"


def test_histgradientboosting_is_compared_in_its_own_table_and_nowhere_else() -> None:
    # It beats every combiner and baseline here, yet it is neither the best baseline nor
    # the oracle: those stay within the ensemble's own models.
    results = _results()
    for repeat, run in enumerate(results["runs"]):
        run["models"][HGB] = {"accuracy": 0.99 - 0.01 * repeat, "nll": 0.1}
    results["summary"] = summarize_runs(results["runs"])
    accuracy = next(item for item in headline(results) if item["metric"] == "accuracy")
    assert accuracy["baseline"] == "best_member" and accuracy["oracle"] == "mean"
    cells = _row(against_table(results, HGB), "| bagging | accuracy |")
    # Paired with the default (stack): (0.87 - 0.99), (0.911 - 0.98), (0.892 - 0.97).
    gains = [0.87 - 0.99, 0.911 - 0.98, 0.892 - 0.97]
    mean = sum(gains) / 3
    se = math.sqrt(sum((g - mean) ** 2 for g in gains) / 2) / math.sqrt(3)
    assert cells[:5] == ["bagging", "accuracy", "stack", "0.8910 ± 0.0205", "0.9800 ± 0.0100"]
    assert cells[5] == f"{mean:+.4f} ± {se:.4f}" and cells[8] == "yes"
    assert "HistGradientBoosting" in markdown_report(results)


def test_without_histgradientboosting_there_is_no_table() -> None:
    assert against_table(_results(), HGB) == ""
    assert "HistGradientBoosting" not in markdown_report(_results())
