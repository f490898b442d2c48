"""Refit: independent members trained again on training + validation rows, then served."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ensembles import defaults
from ensembles.cli.train import build_parser, request_from_args
from ensembles.data import split_dataset
from ensembles.errors import ConfigError
from ensembles.heldout import HeldoutPredictions
from ensembles.store import ModelStore
from ensembles.training.budget import MIN_STEPS
from ensembles.training.config import TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.members import TrainedMember, TrainingData, train_planned_member
from ensembles.training.pipeline import load_dataset, run_training
from ensembles.training.plans import MemberPlan, training_rows
from ensembles.training.refit import refit_data, refit_epochs, refit_members, refit_problem
from ensembles.training.strategies import StrategyOptions, train_members
from tests.conftest import tiny_request
from tests.training.test_pipeline import verify_version

BUDGET_RULE = TrainConfig()
GIVEN_EPOCHS = TrainConfig(epochs=20)


def peaked_after(steps: int, n_members: int = 3) -> list[TrainedMember]:
    """Members (weights left out) whose validation loss was lowest after ``steps`` steps."""
    budget = {"steps_per_epoch": 10, "min_epochs": MIN_STEPS // 10}
    return [
        TrainedMember(MemberPlan(i, i), BUDGET_RULE, {}, [], steps // 10, budget=budget)
        for i in range(n_members)
    ]


LATE = peaked_after(2 * MIN_STEPS)


@pytest.mark.parametrize(
    ("refit", "strategy", "config", "n_rows", "averaging", "refits"),
    [
        ("auto", "repeat", BUDGET_RULE, 500, False, True),
        ("auto", "bagging", BUDGET_RULE, defaults.REFIT_MAX_ROWS, False, True),
        ("auto", "repeat", BUDGET_RULE, defaults.REFIT_MAX_ROWS + 1, False, False),
        ("auto", "repeat", GIVEN_EPOCHS, 500, False, False),  # --epochs keeps its meaning
        ("auto", "snapshot", BUDGET_RULE, 500, False, False),
        ("auto", "repeat", BUDGET_RULE, 500, True, False),  # averaging scores on validation
        ("on", "kfold", GIVEN_EPOCHS, 10 * defaults.REFIT_MAX_ROWS, False, True),
        ("off", "repeat", BUDGET_RULE, 500, False, False),
    ],
)
def test_when_a_run_refits(
    refit: str, strategy: str, config: TrainConfig, n_rows: int, averaging: bool, refits: bool
) -> None:
    problem = refit_problem(refit, strategy, config, n_rows, averaging, LATE)  # type: ignore[arg-type]
    assert (problem is None) is refits, problem


@pytest.mark.parametrize(
    ("refit", "strategy", "config", "n_rows", "averaging", "members", "variants", "reason"),
    [
        ("off", "repeat", BUDGET_RULE, 500, False, LATE, [], "--refit off"),
        (
            "auto",
            "snapshot",
            BUDGET_RULE,
            500,
            False,
            LATE,
            [],
            "snapshot members are checkpoints of one run",
        ),
        (
            "auto",
            "repeat",
            BUDGET_RULE,
            500,
            True,
            LATE,
            [],
            "the weight-averaged model is chosen and scored on the validation rows",
        ),
        (
            "auto",
            "repeat",
            GIVEN_EPOCHS,
            500,
            False,
            LATE,
            [],
            "--epochs given: the members train exactly that, on the training rows",
        ),
        (
            "auto",
            "repeat",
            BUDGET_RULE,
            500,
            False,
            LATE,
            [{"epochs": 7}],
            "a --variants item gives epochs: those members train exactly that",
        ),
        (
            "auto",
            "repeat",
            BUDGET_RULE,
            10_001,
            False,
            LATE,
            [],
            "10001 training + validation rows (auto refits up to 10000: above, the validation "
            "rows are a tenth of the data)",
        ),
        (
            "auto",
            "repeat",
            BUDGET_RULE,
            500,
            False,
            peaked_after(120),
            [],
            "the members' validation loss was lowest after 120 optimizer steps on average, "
            "before the budget rule's minimum of 500: an early best epoch on a noisy curve, "
            "which a retraining of that length does not reproduce",
        ),
        (
            "auto",
            "repeat",
            BUDGET_RULE,
            500,
            False,
            [TrainedMember(MemberPlan(0, 0), BUDGET_RULE, {}, [], 9)],
            [],
            "the members' budgets were not recorded",
        ),
    ],
)
def test_the_manifest_says_why_a_run_was_not_refit(
    refit: str,
    strategy: str,
    config: TrainConfig,
    n_rows: int,
    averaging: bool,
    members: list[TrainedMember],
    variants: list[dict],
    reason: str,
) -> None:
    assert refit_problem(refit, strategy, config, n_rows, averaging, members, variants) == reason  # type: ignore[arg-type]


def test_a_variant_giving_epochs_leaves_the_budget_rule_so_auto_does_not_refit() -> None:
    variants = [{"epochs": 7}, {}]
    assert refit_problem("auto", "repeat", BUDGET_RULE, 500, False, LATE, variants) is not None
    assert refit_problem("on", "repeat", BUDGET_RULE, 500, False, LATE, variants) is None


def test_members_that_peaked_before_the_budget_minimum_are_not_refit_by_auto() -> None:
    """Their best epoch is the luckiest of a few noisy ones (diabetes, breast cancer)."""
    early = peaked_after(MIN_STEPS // 2)
    problem = refit_problem("auto", "repeat", BUDGET_RULE, 500, False, early)
    assert problem is not None and f"after {MIN_STEPS // 2} optimizer steps" in problem
    assert refit_problem("auto", "repeat", BUDGET_RULE, 500, False, peaked_after(MIN_STEPS)) is None
    assert refit_problem("on", "repeat", BUDGET_RULE, 500, False, early) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"refit": "maybe"}, "unknown --refit 'maybe': choose one of auto, on, off"),
        (
            {"refit": "on", "strategy": "snapshot"},
            "--refit on applies to independent members, not --strategy snapshot (its members "
            "are one run's checkpoints): drop --refit or pick bagging, kfold, subsample or "
            "repeat",
        ),
        (
            {"refit": "on", "force_weight_averaging": True},
            "--refit on contradicts weight averaging: the weight-averaged model is chosen and "
            "scored on the validation rows; drop weight_average from --combiners (or "
            "--force-weight-averaging), or --refit",
        ),
    ],
)
def test_refit_options_are_refused_before_training(
    tmp_path: Path, changes: dict, message: str
) -> None:
    request = tiny_request(tmp_path, dataset="diabetes", **changes)
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        run_training(request)
    assert not (tmp_path / "store").exists()  # refused before anything trained


def test_the_command_line_asks_for_a_refit(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--dataset", "diabetes", "--refit", "off"])
    assert request_from_args(args).refit == "off"
    assert request_from_args(build_parser().parse_args([])).refit == "auto"


def test_a_refit_trains_every_member_its_epochs_whatever_its_variant_says(
    tmp_path: Path,
) -> None:
    """Variants may set epochs or patience; the refit trains the epochs it chose, with no
    early stopping on rows it now learns from."""
    request = tiny_request(tmp_path, dataset="diabetes")
    data = TrainingData.from_splits(split_dataset(load_dataset(request), request.seed))
    options = StrategyOptions(variants=[{"patience": 1}, {"epochs": 2}, {}])
    members, _ = train_members("repeat", 3, data, request.config, 0, options, progress=False)
    refit, _, record = refit_members(members, data, request.config, 1e-3, progress=False)
    assert record["epochs"] == refit_epochs(members)
    assert [len(member.curves) for member in refit] == [record["epochs"]] * 3


def test_the_union_is_training_then_validation_rows_and_no_test_row(tmp_path: Path) -> None:
    request = tiny_request(tmp_path, dataset="diabetes")
    splits = split_dataset(load_dataset(request), request.seed)
    data = TrainingData.from_splits(splits)
    union = refit_data(data)
    np.testing.assert_array_equal(union.X_train, np.concatenate([data.X_train, data.X_val]))
    np.testing.assert_array_equal(union.y_train, np.concatenate([data.y_train, data.y_val]))
    test_rows = {row.tobytes() for row in splits.test.X}
    assert not any(row.tobytes() in test_rows for row in union.X_train)


@pytest.mark.parametrize("strategy", ["repeat", "bagging", "kfold"])
def test_served_members_are_refit_and_combiners_keep_held_out_rows(
    tmp_path: Path, strategy: str
) -> None:
    """The served members are the first members' plans trained again on training +
    validation rows; the combiners' fit rows hold the first members' predictions, which
    never saw them; the test figures are the served members'."""
    request = tiny_request(
        tmp_path,
        dataset="diabetes",
        strategy=strategy,
        refit="on",
        engine="loop",  # deterministic, so one member can be retrained by hand below
        config={"patience": 2},
    )
    report = run_training(request)
    manifest = report.manifest
    verify_version(request.store, "diabetes")  # served ONNX == stored test predictions
    splits = split_dataset(load_dataset(request), request.seed)
    data = TrainingData.from_splits(splits)
    union = refit_data(data)
    n_rows = len(union.y_train)
    refit = manifest.strategy.params["refit"]
    assert refit["used"] and refit["rows"] == n_rows == len(data.y_train) + len(data.y_val)
    assert refit["epochs"] == refit_epochs(report.members)
    for info in manifest.members:
        assert info.rows["of"] == "training + validation"
        assert info.rows["n_rows"] == len(training_rows(info.rows, n_rows))

    folder = ModelStore(request.store).path("diabetes", manifest.version)
    heldout = HeldoutPredictions.load(folder / "heldout.npz")
    rate = manifest.strategy.params["learning_rate"]["rate"]
    run = request.config.with_overrides(
        {"learning_rate": rate, "epochs": refit["epochs"], "patience": None}
    )
    by_hand = train_planned_member(report.members[0].plan, union, run).network(union)
    for index, (member, info) in enumerate(zip(report.members, manifest.members, strict=True)):
        # the fit rows' predictions are the first members', out of sample (float32 forward
        # passes of one network in one process: equal to rounding)
        np.testing.assert_allclose(
            heldout.validation.member_preds[index],
            member_outputs(member.network(data), splits.validation.X)[0],
            rtol=1e-6,
            atol=1e-6,
        )
        if index == 0:  # the served member is that plan retrained on the union: ONNX
            # against torch within the export's parity limit (1e-5 relative to the target)
            session = ort.InferenceSession(
                str(folder / info.file), providers=["CPUExecutionProvider"]
            )
            served = session.run(None, {"input": splits.test.X.astype(np.float32)})[0]
            expected = member_outputs(by_hand, splits.test.X)[0]
            np.testing.assert_allclose(
                served, expected, rtol=1e-5, atol=1e-5 * np.ptp(data.y_train)
            )


def test_the_default_path_refits_small_data(tmp_path: Path) -> None:
    """No --epochs: the budget rule stops the members, and the refit trains their mean
    best epoch on training + validation rows; the summary says so. (The generator's
    members peak late: thousands of steps, far above the budget rule's minimum.)"""
    from ensembles.cli.train import summary

    request = tiny_request(tmp_path, dataset="regression", config={"epochs": None})
    report = run_training(request)
    refit = report.manifest.strategy.params["refit"]
    assert refit["asked"] == "auto" and refit["used"]
    assert refit["epochs"] == max(1, round(np.mean([m.epoch for m in report.members])))
    assert "refit on training + validation rows" in summary(report)
    off = run_training(tiny_request(tmp_path, dataset="diabetes", refit="off"))
    assert off.manifest.strategy.params["refit"] == {
        "asked": "off",
        "used": False,
        "reason": "--refit off",
    }
