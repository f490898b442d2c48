"""The constructed cases end to end through ``main``: verdicts, evidence, files and --apply."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from ensembles.cli.diagnose import build_parser, main, train_command
from ensembles.cli.train import build_parser as training_parser
from ensembles.cli.train import request_from_args
from ensembles.data import load_csv, split_dataset
from ensembles.diagnosis import Thresholds, improve
from ensembles.training.config import TrainConfig
from ensembles.training.members import TrainingData
from tests.diagnosis.conftest import CASE_SPLIT

pytest.importorskip("torch")
pytest.importorskip("matplotlib")


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_learning_rate_far_too_high_is_a_learning_problem_that_apply_fixes(
    case_argv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(case_argv("learning", "--apply", "--rounds", "1")) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: learning problem")
    assert "the training loss became NaN or infinite in 3 of 3 runs" in out
    assert "learning-rate range test: suggests" in out
    assert "1. learning rate [learning_rate=" in out
    assert "| verdict | learning problem |" in out
    assert "flagged figure train_loss: nan -> " in out and "(improved)" in out
    assert "on the held-out test split, test_loss: nan -> " in out
    report = _report(tmp_path / "learning")
    assert (tmp_path / "learning" / "curves.png").stat().st_size > 10_000
    before, after = report["rounds"]
    assert before["diagnosis"]["verdict"] == "learning"
    assert after["applied"]["technique"] == "learning rate"
    new_rate = after["config"]["learning_rate"]
    assert new_rate < before["config"]["learning_rate"] / 100
    assert before["lr_range_test"]["suggested"] == new_rate
    assert after["diagnosis"]["summary"]["train_loss"] < 0.2  # constant predictor: 0.69
    assert report["comparison"] == [
        {
            "round": 1,
            "figure": "train_loss",
            "before": None,
            "after": after["diagnosis"]["summary"]["train_loss"],
            "improved": True,
            "test": {
                "figure": "test_loss",
                "before": None,
                "after": after["diagnosis"]["summary"]["test_loss"],
                "improved": True,
            },
        }
    ]


def test_large_unregularized_net_on_few_rows_overfits_and_apply_fixes_it(
    case_argv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(case_argv("generalization", "--apply", "--rounds", "1")) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: generalization problem")
    assert "validation loss rose by" in out and "while the training loss kept falling" in out
    assert "1. early stopping [patience=4]" in out
    report = _report(tmp_path / "generalization")
    before, after = (r["diagnosis"] for r in report["rounds"])
    evidence = before["findings"]["generalization"]["evidence"]
    assert evidence["best_epoch"] < 15  # of 40 epochs
    assert evidence["gap"] > 1.0  # validation loss far above the training loss
    assert evidence["val_loss_rise"] > 5 * evidence["val_loss_limit"]
    assert after["summary"]["val_loss"] < before["summary"]["val_loss"] / 2
    assert report["comparison"][0]["improved"] is True
    assert "flagged figure val_loss: " in out and "(improved)" in out
    # The held-out test rows, which early stopping never looked at, improve too.
    test = report["comparison"][0]["test"]
    assert test["figure"] == "test_loss" and test["improved"] is True
    assert test["after"] < test["before"] / 2
    assert after["summary"]["test_metric"] > before["summary"]["test_metric"]
    assert "on the held-out test split, test_loss: " in out
    # Early stopping ended every run while the training loss still fell fast: the validation
    # rows ended training, which is not under-training.
    learning = after["findings"]["learning"]
    assert learning["evidence"]["late_gain"] > learning["evidence"]["train_longer_gain"]
    assert learning["evidence"]["stopped"] == {"patience": 3} and not learning["found"]
    assert learning["notes"][0].endswith("so this is not under-training")
    # One validation row of run-to-run difference is not a prediction problem.
    prediction = after["findings"]["prediction"]
    assert not prediction["found"]
    assert prediction["evidence"]["run_spread_limit"] > 3 * prediction["evidence"]["run_spread"]
    assert "run-spread limit raised from 0.03 to" in out and "on 40 rows" in out


def test_patience_does_not_hide_a_rising_validation_curve_and_apply_tries_the_next_lever(
    case_argv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = case_argv("generalization", "--patience", "8", "--apply", "--rounds", "2")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: generalization problem")
    report = _report(tmp_path / "generalization")
    first = report["rounds"][0]
    evidence = first["diagnosis"]["findings"]["generalization"]["evidence"]
    assert evidence["val_loss_rise"] > 1.2 * evidence["val_loss_limit"]
    assert first["recommendations"][0]["technique"] == "weight decay"
    applied = [r["applied"]["technique"] for r in report["rounds"][1:]]
    assert applied[0] == "weight decay"
    assert applied[1:] in ([], ["dropout"])  # a lever is not applied twice


def test_noisy_problem_with_a_high_variance_setup_is_a_prediction_problem(
    case_argv, case_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(case_argv("prediction", "--apply")) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: prediction problem")
    assert "validation skill jumps from epoch to epoch late in training" in out
    assert "--apply stops here" in out
    command = next(line.strip() for line in out.splitlines() if "scripts/train.py" in line)
    words = shlex.split(command)
    assert words[:2] == ["python", "scripts/train.py"]
    # The late fluctuation fired, not the run spread: average the last epochs of one run.
    assert words[words.index("--strategy") + 1] == "horizontal"
    assert int(words[words.index("--members") + 1]) >= 5
    assert "--strategy repeat" in out  # the alternative
    # The command trains exactly the diagnosed setup.
    request = request_from_args(training_parser().parse_args(words[2:]))
    assert request.csv == case_files["noisy"]
    assert request.config.learning_rate == 0.1 and request.config.momentum == 0.95
    assert request.config.hidden_sizes == (16,) and request.config.dropout == 0
    assert request.config.optimizer == "sgd" and request.config.epochs == 15
    assert request.regularization == "off"  # no stronger settings tried in its place


def test_the_train_command_keeps_the_column_options() -> None:
    """A column read as categorical (or numeric) in the diagnosis is read so by train.py."""
    argv = ["--csv", "data.csv", "--target", "y", "--categorical", "a", "b", "--numeric", "c"]
    words = train_command(build_parser().parse_args(argv))
    request = request_from_args(training_parser().parse_args(words[2:]))
    assert (request.categorical, request.numeric) == (("a", "b"), ("c",))


def test_well_configured_setup_has_no_problem(
    case_argv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(case_argv("none")) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: no problem found")
    assert "recommendations:" not in out
    report = _report(tmp_path / "none")
    assert report["verdict"] == "none" and len(report["rounds"]) == 1
    assert len(report["rounds"][0]["runs"]["curves"]) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "nope"], "error: unknown dataset 'nope': choose one of digits,"),
        (["--max-run-spread", "-1"], "error: --max-run-spread must be a positive number, got -1.0"),
        (  # accepted, it crashed the report's JSON after every run had trained
            ["--max-val-loss-rise", "inf"],
            "error: --max-val-loss-rise must be a positive number, got inf",
        ),
        (["--sampling-factor", "inf"], "error: --sampling-factor must be a number >= 0, got inf"),
        (["--min-train-skill", "2"], "error: --min-train-skill must be between 0 and 1, got 2.0"),
        (["--runs", "1"], "error: --runs must be at least 2 to measure run-to-run spread, got 1"),
        (["--apply", "--rounds", "0"], "error: --rounds must be at least 1, got 0"),
        (["--rounds", "3"], "error: --rounds applies with --apply only"),
        (["--sampling-factor", "-1"], "error: --sampling-factor must be a number >= 0, got -1.0"),
        (["--plateau-skill", "1"], "error: --plateau-skill must be between 0 and 1, got 1.0"),
        (
            ["--min-late-gain", "0.2"],
            "error: --min-late-gain 0.2 must be below --train-longer-gain 0.05",
        ),
        (["--learning-rate", "0"], "error: --learning-rate must be positive, got 0.0"),
        (["--csv", "missing.csv", "--target", "y"], "error: CSV file not found: missing.csv"),
        (
            ["--dataset", "diabetes", "--class-weight", "balanced"],
            "error: --class-weight balanced applies to classification, not regression",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--quiet", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message)
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_folder_is_one_line_and_exit_status_2(
    case_argv,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = case_argv("none")
    argv[argv.index("--output") + 1] = str(blocker / "report")
    with caplog.at_level("INFO", logger="ensembles.diagnosis"):
        assert main(argv) == 2
    # refused before the runs trained, not after them all: no round was diagnosed
    assert not [record for record in caplog.records if "round 0" in record.getMessage()]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: cannot write the report to {blocker / 'report'}: Not a directory; choose "
        "another --output"
    ]


def test_a_budget_too_short_is_under_training_and_the_budget_rule_cures_it(
    case_files: dict[str, Path],
) -> None:
    dataset = load_csv(case_files["smooth"], "y")
    splits = split_dataset(dataset, seed=0, validation_fraction=0.2, test_fraction=0.2)
    data = TrainingData.from_splits(splits)
    # Five epochs of 15 steps at the range test's rate: the loss is falling fast when it ends.
    config = TrainConfig(hidden_sizes=(16,), batch_size=16, epochs=5)
    before, after = improve(
        data,
        config,
        Thresholds(),
        n_runs=2,
        seed=0,
        rounds=1,
        progress=False,
        test=(splits.test.X, splits.test.y),
    )
    assert before.diagnosis.verdict == "learning"
    [reason] = before.diagnosis.findings["learning"].reasons
    assert reason.startswith("slow: the budget is too short: every run used all of its 5 epochs")
    assert before.runs.range_test is not None  # chosen once by the range test
    assert {run["stopped"] for run in before.runs.budgets} == {"epochs"}
    first = before.recommendations[0]
    assert first.technique == "training length"
    assert first.overrides == {"epochs": None, "patience": None}
    assert after.applied is first and after.config.epochs is None
    # The budget rule ran the same rate until the validation loss stopped improving: that is
    # early stopping, which is not under-training.
    assert after.runs.config.learning_rate == before.runs.config.learning_rate
    assert {run["stopped"] for run in after.runs.budgets} == {"patience"}
    assert after.diagnosis.verdict != "learning"
    # On the held-out rows the test loss (Gaussian NLL; the constant predictor's is 1.42)
    # fell from about 1.08 to under 0.25 when this test was written, and from 1.195 to 0.516
    # on 2026-12-06 (the rate and budget rules had changed). Asking for a drop of 0.3, under
    # half of either, leaves room for other platforms' floating point and for the budget
    # constants, while still failing when training longer did not help.
    drop = before.diagnosis.summary["test_loss"] - after.diagnosis.summary["test_loss"]
    assert drop > 0.3


def test_a_short_budget_on_a_real_regression_set_is_slow_and_apply_trains_longer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--dataset", "diabetes", "--epochs", "3", "--hidden-sizes", "16", "--runs", "3"]
    argv += CASE_SPLIT
    folder = tmp_path / "diabetes"
    assert main([*argv, "--apply", "--rounds", "1", "--quiet", "--output", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: learning problem")
    assert (
        "    - slow: the budget is too short: every run used all of its 3 epochs (--epochs 3) and "
        "at its pace over the last 3 epochs the training loss would fall another "
    ) in out
    assert "  learning rate: " in out and "(auto: one tenth of the rate at the lowest" in out
    assert "  budget: --epochs 3; stopped by --epochs in 3 of 3 runs; epochs run 3" in out
    assert "  1. training length [epochs=auto, patience=auto]" in out
    assert "round 1: applied training length [epochs=auto, patience=auto]" in out
    number = r"-?\d[\d.e+-]*"
    improved = re.search(
        rf"flagged figure train_loss: {number} -> {number} \(improved\); on the held-out test "
        rf"split, test_loss: ({number}) -> ({number}) \(improved\)",
        out,
    )
    assert improved, out
    report = _report(folder)
    assert report["metric"] == "rmse" and report["data"]["task"] == "regression"
    first, second = report["rounds"]
    evidence = first["diagnosis"]["findings"]["learning"]["evidence"]
    assert evidence["late_gain"] > 2 * evidence["train_longer_gain"]
    assert evidence["used_whole_budget"] is True and evidence["budget_rule"] == "epochs"
    assert [run["stopped"] for run in first["runs"]["budgets"]] == ["epochs"] * 3
    assert first["config"]["learning_rate"] is None  # auto: the setup as given
    chosen = first["runs"]["learning_rate"]
    assert chosen["rule"] != "given" and chosen["rate"] > 0 and chosen["seconds"] > 0
    assert second["runs"]["learning_rate"]["rate"] == chosen["rate"]  # same rule, same rows
    assert second["config"]["epochs"] is None
    assert {run["rule"] for run in second["runs"]["budgets"]} == {"data"}
    # Diabetes is noisy (test skill about 0.2): the mean test loss over the three runs fell by
    # 0.054 when this test was written, each run's own by 0.007 to 0.09. A drop of 0.02 is
    # well inside that and is still no float tie.
    test = report["comparison"][0]["test"]
    assert test["improved"] is True and test["before"] - test["after"] > 0.02


def test_help_names_patience_for_diagnosis_and_states_each_default_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "independent strategies" not in out
    assert "the generalization rule still reads the epochs run past the best one" in out
    for doubled in ("(default: None)", "target) (default:", "<name>) (default:"):
        assert doubled not in out
    assert "(default: reports/diagnosis/<name>)" in out
    assert "(default: 0.03)" in out
