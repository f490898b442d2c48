"""Training settings: every type and range problem is found, and all are reported at once."""

from __future__ import annotations

from typing import Any

import pytest

from ensembles.errors import ConfigError
from ensembles.training.config import TrainConfig


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_sizes": "64"}, "hidden_sizes must be a list of positive integers, got '64'"),
        ({"hidden_sizes": [8, 0]}, "hidden_sizes must be a list of positive integers, got [8, 0]"),
        ({"hidden_sizes": [8.0]}, "hidden_sizes must be a list of positive integers, got [8.0]"),
        ({"hidden_sizes": []}, "hidden_sizes must be a list of positive integers, got []"),
        ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
        ({"batch_size": True}, "batch_size must be an integer, got True"),
        ({"patience": 0}, "patience must be at least 1, got 0"),
        ({"dropout": "0.1"}, "dropout must be a number, got '0.1'"),
        ({"dropout": 1.5}, "dropout must be in [0, 1), got 1.5"),
        ({"weight_decay": float("nan")}, "weight_decay must be finite, got nan"),
        ({"weight_decay": -1}, "weight_decay must be >= 0, got -1"),
        ({"learning_rate": 0}, "learning_rate must be positive, got 0"),
        ({"grad_clip": -1.0}, "grad_clip must be positive, got -1.0"),
        ({"batch_norm": "yes"}, "batch_norm must be true or false, got 'yes'"),
        ({"gaussian_head": 1}, "gaussian_head must be true or false, got 1"),
        (
            {"activation": "swish"},
            "activation must be one of relu, tanh, gelu, elu, leaky_relu, got 'swish'",
        ),
        ({"optimizer": ["adam"]}, "optimizer must be one of adam, sgd, got ['adam']"),
        (
            {"hiden_sizes": [4]},
            "unknown training setting 'hiden_sizes' (did you mean 'hidden_sizes'?)",
        ),
        ({"colour": "red"}, "unknown training setting 'colour'"),
    ],
)
def test_each_bad_override_is_named(overrides: dict[str, Any], message: str) -> None:
    assert TrainConfig().override_problems(overrides) == [message]
    with pytest.raises(ConfigError) as error:
        TrainConfig().with_overrides(overrides)
    assert str(error.value) == message


def test_every_problem_is_reported_on_one_line() -> None:
    overrides = {"epochs": 2.5, "hiden_sizes": [4], "dropout": 2, "patience": None}
    with pytest.raises(ConfigError) as error:
        TrainConfig().with_overrides(overrides)
    assert str(error.value) == (
        "unknown training setting 'hiden_sizes' (did you mean 'hidden_sizes'?); "
        "epochs must be an integer, got 2.5; dropout must be in [0, 1), got 2"
    )


def test_constructor_names_the_options_as_typed() -> None:
    with pytest.raises(ConfigError) as error:
        TrainConfig(hidden_sizes=(0,), learning_rate=0.0, epochs=0)
    assert str(error.value) == (
        "--hidden-sizes must be a list of positive integers, got [0]; "
        "--learning-rate must be positive, got 0.0; --epochs must be at least 1, got 0"
    )


def test_valid_overrides_are_applied_with_json_types() -> None:
    config = TrainConfig().with_overrides(
        {"hidden_sizes": [32, 16], "learning_rate": 1, "grad_clip": None, "batch_norm": True}
    )
    assert config.hidden_sizes == (32, 16)
    assert config.learning_rate == 1 and config.grad_clip is None and config.batch_norm
    assert TrainConfig().override_problems({}) == []


def test_batch_norm_needs_batches_of_two_rows() -> None:
    """A one-row batch has no batch statistics: torch refused it after the range test and
    whatever had trained, with a traceback."""
    with pytest.raises(ConfigError, match="^--batch-norm needs --batch-size 2 or more, got 1$"):
        TrainConfig(batch_norm=True, batch_size=1)
    with pytest.raises(ConfigError, match="^--batch-norm needs --batch-size 2 or more"):
        TrainConfig(batch_size=1).with_overrides({"batch_norm": True})
    assert TrainConfig(batch_norm=True, batch_size=2).batch_size == 2
