"""Refit: independent members trained again on training + validation rows, then served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ensembles import defaults
from ensembles.errors import ConfigError
from ensembles.heldout import HeldoutPredictions
from ensembles.store import ModelStore
from ensembles.training.config import TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.members import TrainingData
from ensembles.training.pipeline import load_dataset, run_training
from ensembles.training.plans import training_rows
from ensembles.training.refit import refit_data, refit_problem
from ensembles.data import split_dataset
from tests.conftest import tiny_request
from tests.training.test_pipeline import verify_version

BUDGET_RULE = TrainConfig()
GIVEN_EPOCHS = TrainConfig(epochs=20)


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
    problem = refit_problem(refit, strategy, config, n_rows, averaging)  # type: ignore[arg-type]
    assert (problem is None) is refits, problem


def test_refit_on_is_refused_for_one_run_strategies(tmp_path: Path) -> None:
    request = tiny_request(tmp_path, dataset="diabetes", strategy="snapshot", refit="on")
    with pytest.raises(ConfigError, match="--refit on applies to independent members"):
        run_training(request)
    assert not (tmp_path / "store").exists()  # refused before anything trained


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
    """The served members learned the validation rows; the combiners were fitted on the
    first members' predictions there, which never saw them; the test figures are the
    served members'."""
    request = tiny_request(
        tmp_path, dataset="diabetes", strategy=strategy, refit="on", config={"patience": 2}
    )
    report = run_training(request)
    manifest = report.manifest
    verify_version(request.store, "diabetes")  # served ONNX == stored test predictions
    splits = split_dataset(load_dataset(request), request.seed)
    data = TrainingData.from_splits(splits)
    n_rows = len(data.y_train) + len(data.y_val)
    refit = manifest.strategy.params["refit"]
    assert refit["used"] and refit["rows"] == n_rows
    assert refit["epochs"] == max(1, round(np.mean([m.epoch for m in report.members])))
    for info in manifest.members:
        assert info.rows["n_rows"] == len(training_rows(info.rows, n_rows))
    trained_on = set(training_rows(manifest.members[0].rows, n_rows).tolist())
    assert trained_on & set(range(len(data.y_train), n_rows))  # validation rows learned

    folder = ModelStore(request.store).path("diabetes", manifest.version)
    heldout = HeldoutPredictions.load(folder / "heldout.npz")
    first = [member.network(data) for member in report.members]
    for index, (network, info) in enumerate(zip(first, manifest.members, strict=True)):
        # the fit rows' predictions are the first members', out of sample (float32 forward
        # passes of one network in one process: equal to rounding)
        np.testing.assert_allclose(
            heldout.validation.member_preds[index],
            member_outputs(network, splits.validation.X)[0],
            rtol=1e-6,
            atol=1e-6,
        )
        session = ort.InferenceSession(
            str(folder / info.file), providers=["CPUExecutionProvider"]
        )
        served = session.run(None, {"input": splits.validation.X.astype(np.float32)})[0]
        # the served member is another network: it trained on these rows (far beyond the
        # 1e-5 an export may differ by)
        assert np.abs(served - heldout.validation.member_preds[index]).max() > 1e-3


def test_the_default_path_refits_small_data(tmp_path: Path) -> None:
    """No --epochs: the budget rule stops the members, and the refit trains their mean
    best epoch on training + validation rows; the summary says so."""
    from ensembles.cli.train import summary

    request = tiny_request(tmp_path, dataset="diabetes", config={"epochs": None})
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
