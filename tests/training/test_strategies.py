"""Setting variants of ``repeat``: each item checked, and the settings members must share."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles.errors import ConfigError
from ensembles.training.config import TrainConfig
from ensembles.training.members import TrainingData
from ensembles.training.strategies import StrategyOptions, train_members, variant_problems

CONFIG = TrainConfig(hidden_sizes=(16,))


@pytest.mark.parametrize(
    ("variants", "same_layout", "problems"),
    [
        (
            {"hidden_sizes": [8]},
            False,
            ["--variants must be a JSON list of objects of setting overrides, got an object"],
        ),
        (
            None,
            False,
            ["--variants must be a JSON list of objects of setting overrides, got null"],
        ),
        (
            [{}, 3, "x"],
            False,
            [
                "--variants item 2 must be an object of setting overrides, got the number 3",
                "--variants item 3 must be an object of setting overrides, got a string",
            ],
        ),
        (
            [{"hidden_sizes": "64"}, {"epochs": 2.5, "hiden_sizes": [4]}],
            False,
            [
                "--variants item 1: hidden_sizes must be a list of positive integers, got '64'",
                "--variants item 2: unknown training setting 'hiden_sizes' "
                "(did you mean 'hidden_sizes'?)",
                "--variants item 2: epochs must be an integer, got 2.5",
            ],
        ),
        (
            [{"learning_rate": None}, {"learning_rate": 0.01}],
            False,
            [
                "--variants item 1: learning_rate must be a number (the range test chooses one "
                "rate for the whole run: leave the key out, or give --learning-rate auto)"
            ],
        ),
        (
            [{"gaussian_head": False}, {}, {"dropout": 0.2}],
            False,
            [
                "--variants give members different gaussian_head (false in item 1, true in "
                "items 2 and 3): every member must export the same outputs; give every item "
                "the same gaussian_head"
            ],
        ),
        (
            [{"hidden_sizes": [8]}, {}],
            True,
            [
                "--variants give members different hidden_sizes ([8] in item 1, [16] in item "
                "2): forced weight averaging needs one layer layout; give every item the same "
                "hidden_sizes or drop --force-weight-averaging"
            ],
        ),
        (
            [{"batch_norm": True}, {"learning_rate": 0.01}],
            True,
            [
                "--variants give members different batch_norm (true in item 1, false in item "
                "2): forced weight averaging needs one layer layout; give every item the same "
                "batch_norm or drop --force-weight-averaging"
            ],
        ),
    ],
)
def test_variant_problems(variants: object, same_layout: bool, problems: list[str]) -> None:
    assert variant_problems(variants, CONFIG, same_layout) == problems


def test_variants_that_only_differ_elsewhere_are_fine() -> None:
    variants = [{"hidden_sizes": [8]}, {"hidden_sizes": [32, 8], "dropout": 0.3}, {}]
    assert variant_problems(variants, CONFIG) == []
    same_layout = [{"learning_rate": 0.01}, {"dropout": 0.3, "hidden_sizes": [16]}]
    assert variant_problems(same_layout, CONFIG, same_layout=True) == []


def test_training_refuses_bad_variants_before_any_member_trains() -> None:
    X = np.zeros((10, 2), dtype=np.float32)
    y = np.arange(10) % 2
    data = TrainingData(X, y, X, y, "classification", 2)
    options = StrategyOptions(variants=[{"epochs": 2.5}, {"dropout": "0.1"}])
    with pytest.raises(ConfigError) as error:
        train_members("repeat", 2, data, CONFIG, 0, options, progress=False)
    assert str(error.value) == (
        "--variants item 1: epochs must be an integer, got 2.5; "
        "--variants item 2: dropout must be a number, got '0.1'"
    )
