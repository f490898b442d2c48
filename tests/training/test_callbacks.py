"""The snapshot schedule, horizontal checkpoints and early stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ensembles.data import load_builtin, split_dataset
from ensembles.training.callbacks import (
    CosineRestartSchedule,
    EarlyStopping,
    align_cycles,
    horizontal_epochs,
)
from ensembles.training.config import TrainConfig
from ensembles.training.loop import fit_member
from ensembles.training.members import TrainingData, build_network
from ensembles.training.strategies import train_members

CONFIG = TrainConfig(hidden_sizes=(16,), epochs=6, dropout=0.0, learning_rate=0.01)


@pytest.fixture(scope="module")
def wine() -> TrainingData:
    splits = split_dataset(load_builtin("wine"))
    return TrainingData(
        splits.train.X,
        splits.train.y,
        splits.validation.X,
        splits.validation.y,
        "classification",
        3,
    )


def test_cosine_schedule_restarts_each_cycle_and_bottoms_out_at_the_snapshot() -> None:
    schedule = CosineRestartSchedule(max_rate=0.1, steps_per_cycle=10)
    rates = np.array([schedule(step) for step in range(30)])
    for cycle in range(3):
        block = rates[cycle * 10 : (cycle + 1) * 10]
        assert block[0] == pytest.approx(0.1)  # restart
        assert np.all(np.diff(block) < 0)  # annealing
        assert block[-1] == block.min() < 0.1 * (1 - math.cos(math.pi / 10))  # snapshot step


def test_uneven_epochs_are_aligned_to_whole_cycles() -> None:
    assert align_cycles(30, 5) == (6, 30)
    assert align_cycles(30, 4) == (8, 32)


def test_snapshot_members_are_taken_at_cycle_ends(wine: TrainingData) -> None:
    members, params = train_members(
        "snapshot", 3, wine, CONFIG.with_overrides({"epochs": 7}), 0, progress=False
    )
    assert params["epochs"] == 9 and params["epochs_per_cycle"] == 3
    assert params["peak_learning_rate"] == pytest.approx(10 * CONFIG.learning_rate)
    assert [(member.epoch, member.cycle) for member in members] == [(3, 1), (6, 2), (9, 3)]
    rates = np.array([log["learning_rate"] for log in members[-1].curves])  # last step's rate
    for cycle in range(3):
        block = rates[cycle * 3 : (cycle + 1) * 3]
        assert block[-1] == block.min() < 0.1 * params["peak_learning_rate"]  # near zero


def test_horizontal_members_are_exactly_the_last_epochs(wine: TrainingData) -> None:
    assert horizontal_epochs(10, 3, spacing=2) == [6, 8, 10]
    members, _ = train_members("horizontal", 3, wine, CONFIG, seed=5, progress=False)
    assert [member.epoch for member in members] == [4, 5, 6]
    # the last member is the final state of the run: retrain the same seed and compare
    torch.manual_seed(members[0].plan.seed)
    plain = build_network(wine, CONFIG, np.arange(len(wine.y_train)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the members trained: one thread, the same kernels
    try:
        fit_member(
            plain, wine.X_train, wine.y_train, wine.X_val, wine.y_val, CONFIG, members[0].plan.seed
        )
    finally:
        torch.set_num_threads(threads)  # later tests keep the session's setting
    for key, value in plain.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), members[-1].state[key])
    assert not np.array_equal(members[0].state["head.weight"], members[-1].state["head.weight"])


def test_early_stopping_stops_and_restores_the_best(wine: TrainingData) -> None:
    network = build_network(wine, CONFIG, np.arange(len(wine.y_train)))
    stopper = EarlyStopping(patience=2)
    config = CONFIG.with_overrides({"epochs": 200, "learning_rate": 0.05})
    result = fit_member(
        network, wine.X_train, wine.y_train, wine.X_val, wine.y_val, config, 0, [stopper]
    )
    assert result.epochs_run < 200
    assert result.epochs_run == stopper.best_epoch + 2


def test_snapshot_schedule_stays_on_its_cycles_when_a_batch_norm_remainder_is_folded(
    wine: TrainingData,
) -> None:
    n_train = len(wine.y_train)
    config = CONFIG.with_overrides({"batch_norm": True, "batch_size": n_train - 1, "epochs": 6})
    members, _ = train_members("snapshot", 3, wine, config, seed=0, progress=False)
    rates = [log["learning_rate"] for log in members[-1].curves]
    # one step per epoch (the one-row remainder joins the batch): 2-step cycles end at the low
    assert rates[0::2] == pytest.approx([0.1] * 3)
    assert rates[1::2] == pytest.approx([0.05] * 3)
    assert [member.epoch for member in members] == [2, 4, 6]
