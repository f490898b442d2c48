"""The constructed cases end to end through ``main``: verdicts, evidence, files and --apply."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from ensembles.cli.diagnose import main
from ensembles.cli.train import build_parser as training_parser
from ensembles.cli.train import request_from_args

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
    assert words[words.index("--strategy") + 1] == "repeat"
    assert int(words[words.index("--members") + 1]) >= 5
    # The command trains exactly the diagnosed setup.
    request = request_from_args(training_parser().parse_args(words[2:]))
    assert request.csv == case_files["noisy"]
    assert request.config.learning_rate == 0.1 and request.config.momentum == 0.95
    assert request.config.hidden_sizes == (16,) and request.config.dropout == 0
    assert request.config.optimizer == "sgd" and request.config.epochs == 15


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
        (["--max-run-spread", "-1"], "error: --max-run-spread must be positive, got -1.0"),
        (["--min-train-skill", "2"], "error: --min-train-skill must be between 0 and 1, got 2.0"),
        (["--runs", "1"], "error: --runs must be at least 2 to measure run-to-run spread, got 1"),
        (["--learning-rate", "0"], "error: learning-rate must be positive, got 0.0"),
        (["--csv", "missing.csv", "--target", "y"], "error: CSV file not found: missing.csv"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--quiet", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message)
    assert not (tmp_path / "out").exists()
