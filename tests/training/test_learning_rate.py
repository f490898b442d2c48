"""The learning-rate range test: the per-step rate, the explosion stop, smoothing and the rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ensembles.training.config import TrainConfig
from ensembles.training.learning_rate import (
    EXPLOSION_FACTOR,
    MAX_RATE,
    MIN_RATE,
    RULE,
    ExponentialRateCallback,
    lr_range_test,
    smooth_losses,
)
from ensembles.training.members import TrainingData, build_network


def test_the_rate_grows_geometrically_per_step_from_min_to_max() -> None:
    callback = ExponentialRateCallback(1e-4, 1.0, total_steps=5)
    rates = [callback.learning_rate(step, steps_per_epoch=2) for step in range(5)]
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert callback.learning_rate(9, steps_per_epoch=2) == pytest.approx(1.0)  # held at max


def test_every_step_is_recorded_and_the_test_stops_when_the_smoothed_loss_explodes() -> None:
    callback = ExponentialRateCallback(1e-4, 1.0, total_steps=100)
    assert not any(callback.on_step_end(step, 1.0) for step in range(10))
    assert callback.rates == pytest.approx([callback.rate(step) for step in range(10)])
    assert callback.on_step_end(10, 100.0) is True
    assert len(callback.losses) == 11
    # The centred average of the last 8 steps (7 of 1.0 and one of 100) is 13.4, over 4 x 1.0.
    assert smooth_losses(callback.losses)[-1] == pytest.approx(107 / 8)
    smoothed = smooth_losses(callback.losses)
    assert smoothed[-1] > EXPLOSION_FACTOR * min(smoothed)
    assert ExponentialRateCallback(1e-4, 1.0, 10).on_step_end(0, math.nan) is True


def test_smoothing_is_a_centred_average_narrower_at_the_ends() -> None:
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, math.inf]
    smoothed = smooth_losses(losses, width=3)
    # Non-finite steps are left out of each window: the last window is [5, inf] -> 5.
    assert smoothed == pytest.approx([1.5, 2.0, 3.0, 4.0, 4.5, 5.0])
    assert np.isnan(smooth_losses([math.nan, math.nan], width=3)).all()


def test_the_rule_takes_a_tenth_of_the_rate_at_the_lowest_smoothed_loss_not_a_lucky_step() -> None:
    # A constructed range test: the loss falls to its valley around step 20, then rises; one
    # lucky step (step 33) is lower than the valley, but on its own.
    rates = [1e-5 * 1.4**step for step in range(40)]
    losses = [1.0 + 0.002 * (step - 20) ** 2 for step in range(40)]
    losses[33] = 0.5
    raw_best = int(np.argmin(losses))
    smoothed_best = int(np.nanargmin(smooth_losses(losses)))
    assert raw_best == 33
    assert smoothed_best == 20  # the valley: the lucky step weighs 1/15 in its windows
    # 1e-5 x 1.4^20 = 8.37e-3 at the valley: the rule suggests a tenth, to two digits.
    assert float(f"{rates[smoothed_best] / 10:.2g}") == 8.4e-4


def _data() -> TrainingData:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    return TrainingData(X[:90], y[:90], X[90:], y[90:], "classification", 2)


def test_the_range_test_suggests_the_rule_s_rate_on_its_own_smoothed_curve() -> None:
    data = _data()
    config = TrainConfig(hidden_sizes=(8,), optimizer="sgd")  # auto rate and epochs

    def build(rows: np.ndarray, test_config: TrainConfig):
        return build_network(data, test_config, rows)

    result = lr_range_test(data.X_train, data.y_train, build, config, seed=0)
    assert MIN_RATE <= result.rates[0] < result.rates[-1] <= MAX_RATE
    assert all(b > a for a, b in zip(result.rates, result.rates[1:], strict=False))
    assert len(result.rates) == len(result.losses)
    best = int(np.nanargmin(result.losses))  # the losses are the smoothed ones
    assert result.suggested == float(f"{result.rates[best] / 10:.2g}")
    assert 1e-5 < result.suggested < 1.0
    assert result.seconds > 0
    record = result.to_dict()
    assert record["suggested"] == result.suggested and record["rule"] == RULE
