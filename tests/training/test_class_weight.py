"""``class_weight="balanced"``: scikit-learn's weights, a better minority recall, plain curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from ensembles.errors import ConfigError
from ensembles.metrics import nll
from ensembles.training.config import TrainConfig
from ensembles.training.learning_rate import lr_range_test
from ensembles.training.loop import (
    FitResult,
    balanced_class_weights,
    fit_member,
    member_outputs,
)
from ensembles.training.members import TrainingData, build_network
from ensembles.training.network import MemberNetwork

SETUP = {"hidden_sizes": (16,), "dropout": 0.0, "epochs": 20, "learning_rate": 0.01}


def imbalanced(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """About 5% positives, their two features shifted by 1.5: the classes overlap."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n_rows) < 0.05).astype(np.int64)
    X = rng.standard_normal((n_rows, 2)) + 1.5 * y[:, None]
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def data() -> TrainingData:
    X, y = imbalanced(600, 0)
    X_val, y_val = imbalanced(200, 1)
    return TrainingData(X, y, X_val, y_val, "classification", 2)


def train(data: TrainingData, class_weight: str, seed: int = 0) -> tuple[MemberNetwork, FitResult]:
    config = TrainConfig(**SETUP, class_weight=class_weight)
    network = build_network(data, config, np.arange(len(data.y_train)))
    result = fit_member(network, data.X_train, data.y_train, data.X_val, data.y_val, config, seed)
    return network, result


def test_weights_are_sklearns_balanced_rule() -> None:
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(balanced_class_weights(y, 3), expected, rtol=1e-12)
    assert balanced_class_weights(y, 3) @ np.bincount(y) == pytest.approx(len(y))
    # A class absent from the member's rows: the rule over the classes present, 0 for it.
    y = np.array([0, 0, 0, 2])
    expected = compute_class_weight("balanced", classes=np.array([0, 2]), y=y)
    np.testing.assert_allclose(balanced_class_weights(y, 3), [expected[0], 0.0, expected[1]])


def test_balanced_raises_the_minority_recall(data: TrainingData) -> None:
    X_test, y_test = imbalanced(4000, 2)
    recall = {}
    for class_weight in ("none", "balanced"):
        network, _ = train(data, class_weight)
        predicted = member_outputs(network, X_test)[0].argmax(axis=1)
        recall[class_weight] = float(np.mean(predicted[y_test == 1] == 1))
    # About 0.35 against 0.8 on this problem; the margin leaves room for other platforms.
    assert recall["balanced"] > recall["none"] + 0.25, recall


def test_the_reported_validation_loss_stays_the_unweighted_nll(data: TrainingData) -> None:
    network, result = train(data, "balanced")
    probs = member_outputs(network, data.X_val)[0]
    assert result.curves[-1]["val_loss"] == pytest.approx(nll(probs, data.y_val), rel=1e-4)


def test_the_range_test_trains_on_the_weighted_loss(data: TrainingData) -> None:
    def run(class_weight: str) -> list[float]:
        config = TrainConfig(**{**SETUP, "learning_rate": None}, class_weight=class_weight)
        return lr_range_test(
            data.X_train,
            data.y_train,
            lambda rows, test_config: build_network(data, test_config, rows),
            config,
            seed=0,
        ).losses

    plain, weighted = run("none"), run("balanced")
    assert not np.allclose(plain[10:], weighted[10:], rtol=1e-2)


def test_regression_is_refused_and_the_setting_is_validated() -> None:
    config = TrainConfig(**SETUP, class_weight="balanced")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 1))
    data = TrainingData(X, y, X, y, "regression", 1)
    network = build_network(data, config, np.arange(20))
    with pytest.raises(ConfigError, match=r"^class_weight balanced applies to classification"):
        fit_member(network, X, y, X, y, config, seed=0)
    assert TrainConfig().override_problems({"class_weight": "equal"}) == [
        "class_weight must be one of none, balanced, got 'equal'"
    ]
    assert config.to_dict()["class_weight"] == "balanced"
