"""Recommendations per verdict, the exact training flags and the learning-rate range test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ensembles.cli.train import build_parser as training_parser
from ensembles.cli.train import request_from_args
from ensembles.diagnosis import (
    Diagnosis,
    ExponentialRateCallback,
    Finding,
    Thresholds,
    lr_range_test,
    recommend,
    train_flags,
)
from ensembles.training.config import TrainConfig
from ensembles.training.strategies import TrainingData


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


def test_the_range_test_rate_grows_geometrically_from_min_to_max() -> None:
    callback = ExponentialRateCallback(1e-4, 1.0, total_steps=5)
    rates = [callback.learning_rate(step, steps_per_epoch=5) for step in range(5)]
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert callback.on_epoch_end(1, None, {"train_loss": 1.0}) is False
    assert callback.on_epoch_end(2, None, {"train_loss": 4.5}) is True  # over 4x the best


def test_range_test_suggests_a_finite_rate_well_below_a_diverging_one() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    data = TrainingData(X[:90], y[:90], X[90:], y[90:], "classification", 2)
    result = lr_range_test(data, TrainConfig(hidden_sizes=(8,), optimizer="sgd"), seed=0)
    assert 1e-5 < result.suggested < 1.0
    assert len(result.rates) == len(result.losses)
    assert all(b > a for a, b in zip(result.rates, result.rates[1:], strict=False))
    assert result.to_dict()["suggested"] == result.suggested


def test_generalization_recommends_early_stopping_first_then_regularization() -> None:
    diagnosis = _diagnosis("generalization", best_epoch=6)
    techniques = [r.technique for r in recommend(diagnosis, TrainConfig(), Thresholds())]
    assert techniques == ["early stopping", "weight decay", "dropout", "input noise"]
    stopped = recommend(diagnosis, TrainConfig(patience=3), Thresholds())
    assert stopped[0].technique == "weight decay" and stopped[0].overrides == {"weight_decay": 0.01}


def test_learning_skips_the_rate_when_the_range_test_agrees_with_it() -> None:
    from ensembles.diagnosis import RangeTestResult

    diagnosis = _diagnosis("learning", diverged_runs=0)
    agreeing = RangeTestResult([1e-3], [0.5], suggested=1.2e-3)
    first = recommend(diagnosis, TrainConfig(standardize=False), Thresholds(), agreeing)[0]
    assert first.technique == "input scaling" and first.overrides == {"standardize": True}
    lower = RangeTestResult([1e-3], [0.5], suggested=1e-4)
    assert recommend(diagnosis, TrainConfig(), Thresholds(), lower)[0].overrides == {
        "learning_rate": 1e-4
    }


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
        f"--strategy repeat --members {math.ceil((0.09 / 0.03) ** 2)}"
    )
    assert "0.85 against 0.8 for one run" in first.reason
    assert second.technique == "ensemble (horizontal)"
    assert recommend(_diagnosis("none"), config, Thresholds()) == []
