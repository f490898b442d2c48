"""Member plans are deterministic and their rows can be regenerated from the manifest."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles.errors import ConfigError
from ensembles.training.plans import (
    bootstrap_plans,
    kfold_plans,
    out_of_sample_rows,
    repeat_plans,
    subsample_plans,
    training_rows,
)


def test_bootstrap_rows_come_back_from_the_seed() -> None:
    plans = bootstrap_plans(4, seed=7)
    assert plans == bootstrap_plans(4, seed=7)
    assert len({plan.seed for plan in plans}) == 4
    rows = training_rows(plans[0].rows, 100)
    np.testing.assert_array_equal(rows, training_rows(dict(plans[0].rows), 100))
    assert len(rows) == 100 and len(np.unique(rows)) < 100  # drawn with replacement
    out_of_bag = out_of_sample_rows(plans[0].rows, 100)
    assert set(out_of_bag).isdisjoint(rows)
    assert set(out_of_bag) | set(rows) == set(range(100))
    assert not np.array_equal(rows, training_rows(plans[1].rows, 100))


def test_kfold_members_hold_out_disjoint_folds_covering_every_row() -> None:
    plans = kfold_plans(5, seed=3)
    held_out = [out_of_sample_rows(plan.rows, 103) for plan in plans]
    assert sorted(np.concatenate(held_out)) == list(range(103))
    for plan, rows in zip(plans, held_out, strict=True):
        assert set(rows).isdisjoint(training_rows(plan.rows, 103))


def test_subsample_draws_without_replacement() -> None:
    rows = training_rows(subsample_plans(2, seed=1, fraction=0.6)[0].rows, 50)
    assert len(rows) == 30 and len(np.unique(rows)) == 30


def test_repeat_cycles_setting_variants() -> None:
    plans = repeat_plans(3, seed=0, variants=[{"learning_rate": 0.01}, {"hidden_sizes": [8]}])
    assert [plan.settings for plan in plans] == [
        {"learning_rate": 0.01},
        {"hidden_sizes": [8]},
        {"learning_rate": 0.01},
    ]
    assert all(plan.rows == {"rule": "all"} for plan in plans)


def test_bad_plan_parameters() -> None:
    with pytest.raises(ConfigError, match="kfold needs at least 2 members"):
        kfold_plans(1, seed=0)
    with pytest.raises(ConfigError, match="--subsample-fraction must be between 0 and 1, got 1.5"):
        subsample_plans(2, seed=0, fraction=1.5)
