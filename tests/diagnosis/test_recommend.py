"""Recommendations per verdict, how --apply picks one, and the exact training flags."""

from __future__ import annotations

import math

import pytest

from ensembles import diagnosis as diagnosis_package
from ensembles.cli.train import build_parser as training_parser
from ensembles.cli.train import request_from_args
from ensembles.diagnosis import (
    Diagnosis,
    Finding,
    RangeTestResult,
    Recommendation,
    Round,
    Thresholds,
    recommend,
    train_flags,
)
from ensembles.diagnosis._rounds import next_change
from ensembles.training import learning_rate
from ensembles.training.budget import budget_from_data
from ensembles.training.config import TrainConfig


def _diagnosis(verdict: str, **evidence: float) -> Diagnosis:
    findings = {
        name: Finding(name, name == verdict, [], dict(evidence))
        for name in ("learning", "generalization", "prediction")
    }
    return Diagnosis(verdict, findings, {})


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(),
        TrainConfig(
            hidden_sizes=(16, 8),
            activation="tanh",
            dropout=0.0,
            batch_norm=True,
            standardize=False,
            gaussian_head=False,
            optimizer="sgd",
            learning_rate=0.05,
            momentum=0.95,
            weight_decay=1e-4,
            batch_size=8,
            epochs=7,
            grad_clip=1.5,
            patience=3,
            input_noise=0.2,
        ),
    ],
)
def test_train_flags_reproduce_the_config_through_the_training_command(
    config: TrainConfig,
) -> None:
    args = training_parser().parse_args(["--dataset", "wine", *train_flags(config)])
    assert request_from_args(args).config == config


def test_train_flags_leave_the_automatic_rate_and_budget_to_the_defaults() -> None:
    assert train_flags(TrainConfig()) == []
    assert train_flags(TrainConfig(learning_rate=0.05, epochs=7)) == [
        "--learning-rate",
        "0.05",
        "--epochs",
        "7",
    ]


def test_the_range_test_moved_to_training_and_is_still_exported_here() -> None:
    assert diagnosis_package.ExponentialRateCallback is learning_rate.ExponentialRateCallback
    assert diagnosis_package.RangeTestResult is learning_rate.RangeTestResult


def test_generalization_recommends_early_stopping_first_then_regularization() -> None:
    diagnosis = _diagnosis("generalization", best_epoch=6)
    found = recommend(diagnosis, TrainConfig(epochs=40), Thresholds())
    techniques = [r.technique for r in found]
    assert techniques == ["early stopping", "weight decay", "dropout", "input noise"]
    assert found[0].overrides == {"patience": 4}  # 10% of the 40 epochs
    stopped = recommend(diagnosis, TrainConfig(epochs=40, patience=3), Thresholds())
    assert stopped[0].technique == "weight decay" and stopped[0].overrides == {"weight_decay": 0.01}
    # The budget rule (epochs auto) already stops early and keeps the best weights.
    budget_rule = recommend(diagnosis, TrainConfig(), Thresholds())
    assert budget_rule[0].technique == "weight decay"


def test_learning_compares_the_range_test_with_the_rate_the_runs_used() -> None:
    # The setup's rate is auto (None); the runs used 1e-3, which the evidence records.
    diagnosis = _diagnosis("learning", diverged_runs=0, learning_rate=1e-3)
    agreeing = RangeTestResult([1e-3], [0.5], suggested=1.2e-3)
    first = recommend(diagnosis, TrainConfig(standardize=False), Thresholds(), agreeing)[0]
    assert first.technique == "input scaling" and first.overrides == {"standardize": True}
    lower = RangeTestResult([1e-3], [0.5], suggested=1e-4)
    first = recommend(diagnosis, TrainConfig(), Thresholds(), lower)[0]
    assert first.overrides == {"learning_rate": 1e-4}
    assert "a lower rate of 0.0001 (the runs used 0.001)" in first.reason


def test_under_training_recommends_the_budget_rule_first_for_explicit_epochs() -> None:
    diagnosis = _diagnosis(
        "learning", diverged_runs=0, still_improving=True, budget_rule="epochs", max_epochs=5
    )
    lower = RangeTestResult([1e-3], [0.5], suggested=1e-5)
    config = TrainConfig(epochs=5, learning_rate=1e-3)
    first, second = recommend(diagnosis, config, Thresholds(), lower)[:2]
    assert first.technique == "training length"
    assert first.overrides == {"epochs": None, "patience": None}
    assert first.reason.startswith(
        "train longer: let the budget rule decide (train until the validation loss stops improving)"
    )
    assert first.change == "epochs=auto, patience=auto"
    assert second.technique == "learning rate"  # the rate comes after the length


def test_under_training_at_the_budget_rule_s_cap_doubles_the_cap() -> None:
    diagnosis = _diagnosis(
        "learning",
        diverged_runs=0,
        still_improving=True,
        budget_rule="data",
        max_epochs=2000,
        budget_patience=80,
    )
    first = recommend(diagnosis, TrainConfig(), Thresholds())[0]
    assert first.technique == "training length"
    # Twice the cap, still stopping early with the rule's patience and keeping the best weights.
    assert first.overrides == {"epochs": 4000, "patience": 80}
    assert "cap of 2000 epochs" in first.reason


def test_under_training_at_epochs_past_the_rule_s_cap_doubles_them() -> None:
    """--epochs 4000 (an applied doubling) still too short: handing the length to the rule,
    whose cap for these rows is 2000 epochs, would train less, not longer."""
    steps = 1  # one mini-batch an epoch: the rule's cap is MAX_EPOCHS
    cap = budget_from_data(steps).max_epochs
    diagnosis = _diagnosis(
        "learning",
        diverged_runs=0,
        still_improving=True,
        budget_rule="epochs",
        max_epochs=2 * cap,
        steps_per_epoch=steps,
        budget_patience=1000,
    )
    first = recommend(diagnosis, TrainConfig(epochs=2 * cap, patience=1000), Thresholds())[0]
    assert first.technique == "training length"
    assert first.overrides == {"epochs": 4 * cap}
    assert first.reason.startswith(f"train longer: the runs reached --epochs {2 * cap} with")
    shorter = _diagnosis(  # below the rule's cap: the rule decides, as above
        "learning",
        diverged_runs=0,
        still_improving=True,
        budget_rule="epochs",
        max_epochs=5,
        steps_per_epoch=steps,
    )
    assert recommend(shorter, TrainConfig(epochs=5), Thresholds())[0].overrides == {
        "epochs": None,
        "patience": None,
    }


def test_a_batch_of_every_training_row_is_cut_to_the_smallest_size_suggested() -> None:
    """--batch-size 100000 on 106 training rows: a quarter of it is one step an epoch still."""
    one_step = _diagnosis("learning", diverged_runs=0, steps_per_epoch=1)
    found = recommend(one_step, TrainConfig(batch_size=100_000), Thresholds())
    sizes = [r.overrides for r in found if r.technique == "batch size"]
    assert sizes == [{"batch_size": 16}]
    many = _diagnosis("learning", diverged_runs=0, steps_per_epoch=12)
    found = recommend(many, TrainConfig(batch_size=256), Thresholds())
    assert [r.overrides for r in found if r.technique == "batch size"] == [{"batch_size": 64}]


def _round(config: TrainConfig, *recommendations: Recommendation) -> Round:
    # next_change reads only the setup and its recommendations.
    return Round(0, config, None, None, list(recommendations))  # type: ignore[arg-type]


def test_apply_takes_an_override_back_to_auto_only_when_it_changes_the_setup() -> None:
    longer = Recommendation("training length", "", {"epochs": None, "patience": None})
    decay = Recommendation("weight decay", "", {"weight_decay": 0.01})
    explicit = TrainConfig(epochs=5, patience=2, learning_rate=1e-3)
    assert next_change(_round(explicit, longer, decay)) is longer
    changed = explicit.with_overrides(longer.overrides)
    assert changed.epochs is None and changed.patience is None and changed.learning_rate == 1e-3
    assert next_change(_round(TrainConfig(), longer, decay)) is decay  # already automatic
    assert next_change(_round(explicit, longer, decay), {"training length"}) is decay


def test_prediction_recommends_an_ensemble_with_the_exact_command() -> None:
    diagnosis = _diagnosis(
        "prediction", run_spread=0.09, val_metric_mean=0.8, ensemble_val_metric=0.85
    )
    config = TrainConfig(hidden_sizes=(16,), learning_rate=0.1)
    prefix = ["python", "scripts/train.py", "--dataset", "wine", "--seed", "3"]
    first, second = recommend(diagnosis, config, Thresholds(), train_command=prefix)
    assert first.technique == "ensemble (repeat)" and first.overrides == {}
    assert first.command == (
        "python scripts/train.py --dataset wine --seed 3 --hidden-sizes 16 --learning-rate 0.1 "
        f"--regularization off --strategy repeat --members {math.ceil((0.09 / 0.03) ** 2)}"
    )
    assert "0.85 against 0.8 for one run" in first.reason
    assert second.technique == "ensemble (horizontal)"
    assert recommend(_diagnosis("none"), config, Thresholds()) == []
