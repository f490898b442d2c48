"""The packed engine: K members as one batched network, each still its own member."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensembles.data import load_builtin, split_dataset
from ensembles.training.config import TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.members import TrainingData, build_network
from ensembles.training.packed import _dropout, _dropout_threshold, packing_problem
from ensembles.training.pipeline import train_ensemble
from ensembles.training.plans import training_rows
from ensembles.training.strategies import StrategyOptions, make_plans, train_members
from tests.conftest import tiny_request

#: Without dropout the two engines run the same arithmetic on the same batches; batched and
#: single matrix products only sum in another order (float32 rounding, ~1e-7 a step), which
#: a few epochs grow to ~1e-5 on a validation loss near 1.
CURVE_TOLERANCE = 1e-3


def _data(name: str) -> TrainingData:
    return TrainingData.from_splits(split_dataset(load_builtin(name), 0))


@pytest.mark.parametrize(
    ("dataset", "strategy", "settings"),
    [
        ("wine", "repeat", {}),
        ("wine", "repeat", {"batch_norm": True}),
        ("wine", "kfold", {}),  # folds of 70, 71 and 71 rows: the short one's extra is masked
        ("wine", "repeat", {"class_weight": "balanced", "grad_clip": 0.5}),
        ("diabetes", "repeat", {}),  # Gaussian head: beta-NLL trained, plain NLL reported
    ],
)
def test_without_dropout_packed_members_follow_the_loop_members(
    dataset: str, strategy: str, settings: dict
) -> None:
    data = _data(dataset)
    config = TrainConfig(hidden_sizes=(16,), dropout=0.0, learning_rate=3e-3, epochs=5, **settings)
    curves = {}
    for engine in ("loop", "packed"):
        members, params = train_members(strategy, 3, data, config, 0, engine=engine, progress=False)
        assert params["engine"]["used"] == engine
        curves[engine] = [[log["val_loss"] for log in m.curves] for m in members]
    np.testing.assert_allclose(curves["packed"], curves["loop"], rtol=CURVE_TOLERANCE)


def test_each_member_keeps_its_own_rows_statistics_and_seed() -> None:
    data = _data("wine")
    config = TrainConfig(hidden_sizes=(16,), learning_rate=3e-3, epochs=3)
    members, _ = train_members("bagging", 3, data, config, 0, engine="packed", progress=False)
    for member in members:
        rows = training_rows(member.plan.rows, len(data.y_train))
        own = build_network(data, member.config, rows)  # the statistics of its own rows
        for name in ("input_mean", "input_scale"):
            np.testing.assert_array_equal(member.state[name], own.state_dict()[name].numpy())
    first, second = (m.state["body.0.weight"] for m in members[:2])
    assert not np.allclose(first, second)  # own seeds, own rows: different members


def test_every_member_stops_on_its_own_and_keeps_its_best_weights() -> None:
    splits = split_dataset(load_builtin("wine"), 0)
    data = TrainingData.from_splits(splits)
    config = TrainConfig(hidden_sizes=(32,), learning_rate=1e-2, epochs=60, patience=4)
    members, _ = train_members("bagging", 4, data, config, 0, engine="packed", progress=False)
    stopped = {m.budget["epochs_run"] for m in members}
    assert len(stopped) > 1, stopped  # not one shared stopping epoch
    for member in members:
        losses = [log["val_loss"] for log in member.curves]
        assert len(losses) == member.budget["epochs_run"]
        assert member.epoch == 1 + int(np.argmin(losses)) == member.budget["best_epoch"]
        probabilities = member_outputs(member.network(data), splits.validation.X)[0]
        rows = np.arange(len(splits.validation.y))
        nll = -np.mean(np.log(probabilities[rows, splits.validation.y]))
        # its exported weights are the best epoch's: the curve's lowest validation loss
        # (float64 here against float32 in training)
        assert nll == pytest.approx(min(losses), rel=1e-4)


def test_dropout_draws_independent_masks_at_the_rounded_rate() -> None:
    torch.manual_seed(0)
    threshold = _dropout_threshold(0.2)
    assert threshold == 51  # 0.2 in 256ths: a rate of 0.1992
    assert (_dropout_threshold(0.999), _dropout_threshold(0.001)) == (255, 1)  # never 0 or all
    h = torch.ones(2, 400, 256)
    dropped = _dropout(h, threshold)
    kept = dropped > 0
    assert kept.float().mean().item() == pytest.approx(1 - 51 / 256, abs=0.005)
    np.testing.assert_allclose(dropped[kept].numpy(), 256 / 205)  # inverted: mean kept
    assert not torch.equal(kept[0], kept[1])  # each member its own mask


def test_members_that_differ_train_in_the_loop_with_the_reason_recorded(tmp_path) -> None:
    config = TrainConfig(hidden_sizes=(16,))
    plans = make_plans("repeat", 3, 0, StrategyOptions(variants=[{"hidden_sizes": [8]}, {}]))
    assert packing_problem(plans, config, 100) == "the members' settings differ (hidden_sizes)"
    manifest = train_ensemble(
        tiny_request(
            tmp_path,
            dataset="wine",
            strategy="repeat",
            options=StrategyOptions(variants=[{"hidden_sizes": [8]}, {}]),
        )
    )
    assert manifest.strategy.params["engine"] == {
        "asked": "auto",
        "used": "loop",
        "reason": "the members' settings differ (hidden_sizes)",
    }


def test_auto_packs_independent_members_unless_processes_are_asked_for(tmp_path) -> None:
    packed = train_ensemble(tiny_request(tmp_path / "a", dataset="wine", strategy="kfold"))
    assert packed.strategy.params["engine"] == {"asked": "auto", "used": "packed"}
    assert max(m.val_metrics["onnx_max_diff"] for m in packed.members) <= 1e-5
    looped = train_ensemble(tiny_request(tmp_path / "b", dataset="wine", jobs=2))
    assert looped.strategy.params["engine"]["reason"] == "--jobs 2 asks for processes"


def test_folds_whose_sizes_straddle_a_batch_train_in_the_loop() -> None:
    """Two folds of 129 rows train on 64 and 65 rows: one and two steps per epoch at batch
    64. Packed, the one-step member would take Adam steps on a batch without its rows."""
    config = TrainConfig(hidden_sizes=(16,), batch_size=64)
    plans = make_plans("kfold", 2, 0, StrategyOptions())
    assert packing_problem(plans, config, 129) == (
        "the members' row counts give different steps per epoch (1 and 2 at batch size 64)"
    )
    assert packing_problem(plans, config, 130) is None  # 65 and 65 rows
