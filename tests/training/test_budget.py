"""The training budget from the data: the rule, how runs stop, and what the manifest records."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ensembles.data import load_builtin, split_dataset
from ensembles.training import budget as rule
from ensembles.training.budget import Budget, budget_from_data, explicit_budget, stop_reason
from ensembles.training.callbacks import BestWindowCollector, EarlyStopping
from ensembles.training.config import TrainConfig
from ensembles.training.loop import _beta_nll, fit_member, loss_function
from ensembles.training.members import TrainingData, build_network, member_budget
from ensembles.training.pipeline import train_ensemble
from ensembles.training.strategies import train_members
from tests.conftest import tiny_request

CONFIG = TrainConfig(hidden_sizes=(16,), dropout=0.0, learning_rate=0.01)


@pytest.fixture(scope="module")
def wine() -> TrainingData:
    splits = split_dataset(load_builtin("wine"))
    train, validation = splits.train, splits.validation
    return TrainingData(train.X, train.y, validation.X, validation.y, "classification", 3)


@pytest.mark.parametrize("steps_per_epoch", [1, 7, 13, 20, 400, 5_000])
def test_the_rule_counts_optimizer_steps_whatever_the_epoch_size(steps_per_epoch: int) -> None:
    found = budget_from_data(steps_per_epoch)
    patience_steps = found.patience * steps_per_epoch
    assert patience_steps >= rule.PATIENCE_STEPS or found.patience == rule.MIN_PATIENCE_EPOCHS
    assert found.patience >= rule.MIN_PATIENCE_EPOCHS
    # At most one epoch more than the step counts ask for (epochs are whole).
    assert patience_steps < rule.PATIENCE_STEPS + steps_per_epoch or found.patience == 3
    assert found.min_epochs * steps_per_epoch >= rule.MIN_STEPS
    assert found.max_epochs <= max(rule.MAX_EPOCHS, found.min_epochs + found.patience)
    assert found.max_epochs >= found.min_epochs + found.patience
    assert found.rule == "data" and found.steps_per_epoch == steps_per_epoch


def test_small_data_gets_many_epochs_and_large_data_few() -> None:
    boston = budget_from_data(math.ceil(410 / 64))  # 7 steps an epoch
    large = budget_from_data(math.ceil(400_000 / 64))  # 6,250 steps an epoch
    assert boston.patience == math.ceil(rule.PATIENCE_STEPS / 7) > 100
    assert large.patience == rule.MIN_PATIENCE_EPOCHS
    assert boston.max_epochs == rule.MAX_EPOCHS
    assert large.max_epochs == max(
        large.min_epochs + large.patience, math.ceil(rule.MAX_STEPS / 6_250)
    )


def test_explicit_epochs_keep_todays_behaviour_and_patience_replaces_the_rules() -> None:
    explicit = member_budget(CONFIG.with_overrides({"epochs": 12}), n_rows=100)
    assert explicit == Budget(12, None, 0, 2, "epochs")
    with_patience = member_budget(CONFIG.with_overrides({"epochs": 12, "patience": 4}), 100)
    assert with_patience.patience == 4 and with_patience.max_epochs == 12
    ruled = member_budget(CONFIG.with_overrides({"patience": 9}), n_rows=100)
    assert ruled.rule == "data" and ruled.patience == 9
    assert ruled.max_epochs == budget_from_data(2).max_epochs


def test_why_a_run_stopped() -> None:
    data_rule = budget_from_data(10)
    assert stop_reason(data_rule.max_epochs - 1, data_rule, diverged=False) == "patience"
    assert stop_reason(data_rule.max_epochs, data_rule, diverged=False) == "cap"
    assert stop_reason(30, explicit_budget(30, None, 10), diverged=False) == "epochs"
    assert stop_reason(3, explicit_budget(30, None, 10), diverged=True) == "diverged"


def test_early_stopping_waits_for_the_minimum_then_restores_the_best(wine: TrainingData) -> None:
    stopper = EarlyStopping(patience=1, min_epochs=5)
    # The validation loss only gets worse after epoch 1: without the minimum it would stop
    # at epoch 2; with it, at epoch 5.
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    network = build_network(wine, CONFIG.with_overrides({"epochs": 1}), np.arange(10))
    stops = [stopper.on_epoch_end(i + 1, network, {"val_loss": v}) for i, v in enumerate(losses)]
    assert stops == [False, False, False, False, True, True]
    assert stopper.best_epoch == 1


def test_independent_members_train_until_validation_stops_improving(wine: TrainingData) -> None:
    members, params = train_members("repeat", 2, wine, CONFIG, seed=0, progress=False)
    assert params["learning_rate"] == {"rate": 0.01, "rule": "given"}
    for member in members:
        budget = member.budget
        assert budget["rule"] == "data" and budget["stopped"] in ("patience", "cap")
        assert budget["epochs_run"] == len(member.curves) >= budget["min_epochs"]
        if budget["stopped"] == "patience":
            assert budget["epochs_run"] - budget["best_epoch"] >= budget["patience"]
        losses = [log["val_loss"] for log in member.curves]
        assert member.epoch == budget["best_epoch"] == 1 + int(np.argmin(losses))


def test_the_auto_rate_is_chosen_once_and_recorded(wine: TrainingData) -> None:
    config = CONFIG.with_overrides({"learning_rate": None, "epochs": 3})
    members, params = train_members("repeat", 2, wine, config, seed=0, progress=False)
    record = params["learning_rate"]
    assert record["rule"].startswith("one tenth of the rate")
    assert record["seconds"] > 0 and len(record["rates"]) == len(record["losses"])
    assert {member.config.learning_rate for member in members} == {record["rate"]}


def test_horizontal_members_end_at_the_best_validation_epoch(wine: TrainingData) -> None:
    members, params = train_members(
        "horizontal", 3, wine, CONFIG, seed=0, options=None, progress=False
    )
    epochs = [member.epoch for member in members]
    curves = members[-1].curves
    best = min(range(2, len(curves)), key=lambda i: curves[i]["val_loss"]) + 1  # full windows
    assert epochs == [best - 2, best - 1, best] == params["member_epochs"]
    assert members[0].budget["stopped"] in ("patience", "cap")


def test_snapshot_cycles_share_the_epochs_the_probe_needed(wine: TrainingData) -> None:
    members, params = train_members("snapshot", 3, wine, CONFIG, seed=0, progress=False)
    per_cycle, best = params["epochs_per_cycle"], params["probe_best_epoch"]
    assert per_cycle == math.ceil(best / 3) and params["epochs"] == 3 * per_cycle
    assert params["probe_epochs_run"] > best  # the probe ran on past its best, by patience
    assert f"({best} epochs" in params["cycle_rule"]
    assert [member.epoch for member in members] == [per_cycle, 2 * per_cycle, 3 * per_cycle]


def test_collector_without_a_full_window_keeps_the_last_one(wine: TrainingData) -> None:
    collector = BestWindowCollector(n_members=3, spacing=2, patience=2, min_epochs=0)
    network = build_network(wine, CONFIG.with_overrides({"epochs": 1}), np.arange(10))
    for epoch in range(1, 5):  # 4 epochs: a window of 5 never fills
        collector.on_epoch_end(epoch, network, {"val_loss": 1.0 / epoch})
    collector.on_train_end(network)
    assert [item.epoch for item in collector.collected] == [1, 3]


def test_the_manifest_records_every_members_budget(tmp_path: Path) -> None:
    request = tiny_request(
        tmp_path, dataset="diabetes", strategy="repeat", members=2, config={"epochs": None}
    )
    manifest = train_ensemble(request)
    assert manifest.training["config"]["epochs"] is None
    for member in manifest.members:
        assert member.budget is not None and member.budget["rule"] == "data"
        assert member.epoch == member.budget["best_epoch"] <= member.budget["epochs_run"]


def test_beta_nll_weighs_rows_by_their_variance_without_a_gradient_through_the_weight() -> None:
    network = build_network(
        TrainingData(
            np.zeros((4, 1)), np.zeros((4, 1)), np.zeros((2, 1)), np.zeros((2, 1)), "regression", 1
        ),
        CONFIG.with_overrides({"epochs": 1}),
        np.arange(4),
    )
    target = torch.zeros(2, 1)
    output = torch.tensor([[1.0, math.log(4.0)], [1.0, 0.0]], requires_grad=True)
    plain = loss_function(network)(output, target)
    zero = _beta_nll(network, 0.0)(output, target).mean()
    assert zero.item() == pytest.approx(plain.item(), rel=1e-6)  # beta 0 is the plain NLL
    one = _beta_nll(network, 1.0)(output, target).mean()
    (gradient,) = torch.autograd.grad(one, output)
    # beta 1: the mean's gradient is that of squared error, (mean - target) / n_rows, for a
    # row of variance 4 as for a row of variance 1.
    assert gradient[:, 0].tolist() == pytest.approx([0.5, 0.5])


def test_curves_report_the_plain_nll_when_training_on_beta_nll() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = (X[:, :1] + 0.1 * rng.normal(size=(80, 1))).astype(np.float32)
    data = TrainingData(X[:60], y[:60], X[60:], y[60:], "regression", 1)
    config = CONFIG.with_overrides({"epochs": 2, "nll_beta": 0.5})
    network = build_network(data, config, np.arange(60))
    result = fit_member(network, data.X_train, data.y_train, data.X_val, data.y_val, config, 0)
    network.eval()
    with torch.no_grad():
        z = network.standardize(torch.as_tensor(data.X_val, dtype=torch.float32))
        target = (torch.as_tensor(data.y_val) - network.target_mean) / network.target_scale
        plain = float(loss_function(network)(network(z), target))
    # The logged validation loss is the plain NLL of the final weights (float32 both ways).
    assert result.curves[-1]["val_loss"] == pytest.approx(plain, rel=1e-5)


def test_the_summary_names_the_budget_each_member_had(tmp_path: Path) -> None:
    """Members of different budgets are not summarized as the first one's; a snapshot's
    requested epochs are the ones called given."""
    from ensembles.cli.train import summary
    from ensembles.training.pipeline import run_training
    from ensembles.training.strategies import StrategyOptions

    variants = StrategyOptions(variants=[{"epochs": 3}, {}])
    mixed = tiny_request(
        tmp_path, dataset="wine", strategy="repeat", members=2, options=variants, name="mixed"
    )
    text = summary(run_training(replace(mixed, config=replace(mixed.config, epochs=None))))
    assert "budget: per member, in the table below" in text
    assert "epochs (given)" not in text
    snapshot = tiny_request(tmp_path, dataset="wine", strategy="snapshot", members=2, epochs=5)
    text = summary(run_training(replace(snapshot, name="cycles")))
    assert "budget: 5 epochs (given), 6 run to end on a whole cycle" in text
