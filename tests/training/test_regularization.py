"""Regularization chosen from the data: the settings as given or stronger, by validation loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensembles import defaults
from ensembles.cli.train import build_parser, request_from_args
from ensembles.evaluation import crossfit
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions
from ensembles.store import ModelStore
from ensembles.training.config import STRONGER_REGULARIZATION, TrainConfig
from ensembles.training.pipeline import run_training
from ensembles.training.regularization import (
    AS_GIVEN,
    STRONGER,
    choose_regularization,
    regularization_problem,
)
from tests.conftest import tiny_request

DEFAULTS = TrainConfig()
#: The tiny network, with every setting the choice reads at its default (TINY's dropout 0
#: and explicit epochs would each turn the choice off).
CHOOSING = {"epochs": None, "dropout": DEFAULTS.dropout}


@pytest.mark.parametrize(
    ("rule", "config", "variants", "n_rows", "reason"),
    [
        ("auto", DEFAULTS, [], 500, None),
        ("auto", DEFAULTS, [], defaults.REGULARIZATION_MAX_ROWS, None),
        ("auto", TrainConfig(hidden_sizes=(16,), learning_rate=1e-3), [], 500, None),
        ("off", DEFAULTS, [], 500, "--regularization off"),
        ("auto", TrainConfig(epochs=20), [], 500, "--epochs given"),
        ("auto", DEFAULTS, [{"dropout": 0.1}], 500, "setting variants given"),
        ("auto", TrainConfig(dropout=0.1), [], 500, "dropout given"),
        (
            "auto",
            TrainConfig(activation="gelu", input_noise=0.05),
            [],
            500,
            "activation, input noise given",
        ),
        ("auto", DEFAULTS, [], defaults.REGULARIZATION_MAX_ROWS + 1, "training + validation rows"),
    ],
)
def test_when_auto_tries_stronger_regularization(
    rule: str, config: TrainConfig, variants: list, n_rows: int, reason: str | None
) -> None:
    problem = regularization_problem(rule, config, variants, n_rows)
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and reason in problem


@pytest.mark.parametrize(("stronger_is_better", "chosen"), [(True, STRONGER), (False, AS_GIVEN)])
def test_the_settings_with_the_lower_validation_loss_are_kept(
    stronger_is_better: bool, chosen: str
) -> None:
    """The rule itself: each candidate's row losses decide, and the record says by how much."""
    rows = np.linspace(1.0, 2.0, 40)

    def losses(config: TrainConfig) -> np.ndarray:
        stronger = config.dropout == STRONGER_REGULARIZATION["dropout"]
        return rows - 0.1 if stronger == stronger_is_better else rows

    trained, config, record = choose_regularization(DEFAULTS, None, lambda c: c, losses)
    assert trained is config
    assert record["tried"] and record["chosen"] == chosen
    assert (config == DEFAULTS.with_overrides(STRONGER_REGULARIZATION)) == stronger_is_better
    assert record["difference"] == pytest.approx(-0.1 if stronger_is_better else 0.1)
    assert record["difference_se"] == pytest.approx(0.0, abs=1e-12)
    assert record["seconds"] >= 0.0


def test_a_reason_not_to_choose_trains_once() -> None:
    calls = []
    trained, config, record = choose_regularization(
        DEFAULTS, "--regularization off", lambda c: calls.append(c) or c, lambda c: np.zeros(3)
    )
    assert calls == [DEFAULTS] and trained is DEFAULTS and config is DEFAULTS
    assert record == {"tried": False, "chosen": AS_GIVEN, "reason": "--regularization off"}


def test_the_kept_members_are_the_ones_served_and_their_loss_is_the_recorded_one(
    tmp_path: Path,
) -> None:
    """A real run on small data tries both; the manifest's settings are the kept ensemble's,
    and its members' validation predictions (saved with the version) reproduce the kept
    candidate's recorded loss: the record describes the members that were published."""
    from ensembles.cli.train import summary

    request = tiny_request(tmp_path, dataset="diabetes", config=CHOOSING)
    report = run_training(request)
    manifest = report.manifest
    record = manifest.strategy.params["regularization"]
    assert f"regularization: {record['chosen']} kept" in summary(report)
    assert record["tried"] and record["chosen"] in (AS_GIVEN, STRONGER)
    assert all(np.isfinite(loss) for loss in record["validation_loss"].values())
    losses = record["validation_loss"]
    assert record["difference"] == pytest.approx(losses[STRONGER] - losses[AS_GIVEN])
    assert (losses[STRONGER] < losses[AS_GIVEN]) == (record["chosen"] == STRONGER)
    # each candidate ran its own range test; the kept one's rate is the run's
    rates = record["learning_rate"]
    assert all(rate > 0 for rate in rates.values())
    assert rates[record["chosen"]] == manifest.strategy.params["learning_rate"]["rate"]
    settings = manifest.training["config"]
    expected = (
        STRONGER_REGULARIZATION
        if record["chosen"] == STRONGER
        else {name: getattr(DEFAULTS, name) for name in STRONGER_REGULARIZATION}
    )
    assert {name: settings[name] for name in expected} == expected
    folder = ModelStore(request.store).path(manifest.name, manifest.version)
    validation = HeldoutPredictions.load(folder / HELDOUT_FILE).validation
    kept = crossfit("mean", "regression", {}, validation).row_losses.mean()
    # the same networks predicting the same rows, in onnx-free torch both times: only
    # float32 summation order may differ
    assert kept == pytest.approx(losses[record["chosen"]], rel=1e-4)


def test_off_trains_the_settings_as_given(tmp_path: Path) -> None:
    request = tiny_request(tmp_path, dataset="diabetes", config=CHOOSING, regularization="off")
    manifest = run_training(request).manifest
    assert manifest.strategy.params["regularization"] == {
        "tried": False,
        "chosen": AS_GIVEN,
        "reason": "--regularization off",
    }
    assert manifest.training["config"]["dropout"] == DEFAULTS.dropout


def test_the_command_line_turns_the_choice_off() -> None:
    parser = build_parser()
    assert request_from_args(parser.parse_args([])).regularization == "auto"
    off = request_from_args(parser.parse_args(["--regularization", "off"]))
    assert off.regularization == "off"
    with pytest.raises(SystemExit):
        parser.parse_args(["--regularization", "strong"])
