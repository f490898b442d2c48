"""Mean and spread over repeats."""

from __future__ import annotations

import math

import pytest

from ensembles.benchmark.aggregate import mean_std, summarize_runs, summarize_tree


def test_mean_std_uses_the_sample_deviation_and_skips_nan() -> None:
    assert mean_std([1.0, 2.0, 3.0, math.nan]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert mean_std([5.0]) == {"mean": 5.0, "std": 0.0, "n": 1}
    empty = mean_std([math.nan])
    assert empty["n"] == 0 and math.isnan(empty["mean"])


def test_summarize_runs_groups_by_strategy() -> None:
    def run(strategy: str, accuracy: float) -> dict:
        return {
            "strategy": strategy,
            "models": {"mean": {"accuracy": accuracy}},
            "diversity": {"disagreement": accuracy / 10},
            "ensemble_size": {"accuracy": [accuracy - 0.1, accuracy]},
        }

    summary = summarize_runs([run("bagging", 0.9), run("bagging", 0.8), run("snapshot", 0.7)])
    assert list(summary) == ["bagging", "snapshot"]
    assert summary["bagging"]["models"]["mean"]["accuracy"]["mean"] == pytest.approx(0.85)
    assert summary["bagging"]["ensemble_size"]["accuracy"][0]["mean"] == pytest.approx(0.75)
    assert summary["snapshot"]["diversity"]["disagreement"]["n"] == 1


def test_summarize_tree_keeps_the_shape_and_skips_missing_keys() -> None:
    trees = [
        {"default": {"auroc": 0.9, "roc": [0.0, 1.0]}, "single": {"auroc": 0.8}},
        {"default": {"auroc": 0.7, "roc": [0.2, 1.0]}},
    ]
    summary = summarize_tree(trees)
    assert summary["default"]["auroc"] == {
        "mean": pytest.approx(0.8),
        "std": pytest.approx(math.sqrt(0.02)),
        "n": 2,
    }
    assert [point["mean"] for point in summary["default"]["roc"]] == [pytest.approx(0.1), 1.0]
    assert summary["single"]["auroc"] == {"mean": 0.8, "std": 0.0, "n": 1}


def test_summarize_runs_aggregates_shift_and_ood_when_present() -> None:
    run = {
        "strategy": "repeat",
        "models": {"mean": {"accuracy": 0.9}},
        "shift": {"strengths": [0.0, 1.0], "models": {"default": {"accuracy": [0.9, 0.6]}}},
    }
    summary = summarize_runs([run, run])["repeat"]
    assert set(summary) == {"models", "shift"}
    assert summary["shift"]["models"]["default"]["accuracy"][1]["mean"] == pytest.approx(0.6)
