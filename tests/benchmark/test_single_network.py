"""The same-budget baseline's epoch budget."""

from __future__ import annotations

import pytest

from ensembles.benchmark.single_network import ensemble_epoch_budget


@pytest.mark.parametrize("strategy", ["bagging", "kfold", "subsample", "repeat"])
def test_independent_strategies_spend_members_times_epochs(strategy: str) -> None:
    assert ensemble_epoch_budget(strategy, {"epochs": 99}, 5, 20) == 100


@pytest.mark.parametrize("strategy", ["horizontal", "snapshot"])
def test_one_run_strategies_spend_the_recorded_run_length(strategy: str) -> None:
    assert ensemble_epoch_budget(strategy, {"epochs": 20, "cycles": 5}, 5, 4) == 20


def test_one_run_strategy_without_a_recorded_length_falls_back() -> None:
    assert ensemble_epoch_budget("snapshot", {}, 3, 7) == 21
