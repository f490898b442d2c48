"""The benchmark command: a tiny run writes every file, CSVs work, bad input fails in one line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ensembles.benchmark.report import COLUMNS, column_headers
from ensembles.cli.benchmark import build_parser, main, request_from_args

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--members", "2", "--epochs", "2", "--hidden-sizes", "8", "--repeats", "1"]
TINY += ["--timing-repeats", "2", "--quiet"]
PLOTS = {"ensemble_size.png", "uncertainty_error.png", "shift.png"}


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One tiny classification benchmark kept in a store, with its stdout."""
    root = tmp_path_factory.mktemp("wine")
    result = subprocess.run(
        [
            sys.executable,
            "scripts/benchmark.py",
            "--dataset",
            "wine",
            "--strategies",
            "snapshot",
            "repeat",
            "--store",
            str(root / "store"),
            "--output",
            str(root / "report"),
            *TINY,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return root / "report", root / "store", result.stdout


def test_tiny_run_writes_every_file(wine_run: tuple[Path, Path, str]) -> None:
    report, store, _ = wine_run
    names = {path.name for path in report.iterdir()}
    expected = {"report.md", "results.json", "reliability_snapshot.png", "reliability_repeat.png"}
    assert expected | PLOTS <= names
    assert all((report / name).stat().st_size > 1000 for name in expected | PLOTS - {"report.md"})
    # The throwaway warm-up training never lands in the user's store.
    assert {path.name for path in store.iterdir() if path.is_dir()} == {
        "wine-snapshot",
        "wine-repeat",
    }


def test_results_json_holds_every_number(wine_run: tuple[Path, Path, str]) -> None:
    results = json.loads((wine_run[0] / "results.json").read_text())
    assert results["task"] == "classification"
    assert set(results) == {"dataset", "task", "settings", "runs", "summary"}
    run = results["runs"][0]
    assert {"calibration", "uncertainty_error", "ensemble_size", "diversity"} <= set(run)
    models = results["summary"]["snapshot"]["models"]
    assert {"mean", "stack", "weight_average", "best_member", "single_network"} <= set(models)
    for key, _, _ in COLUMNS["classification"]:
        assert set(models["mean"][key]) == {"mean", "std", "n"}
    assert "weight_average" not in results["summary"]["repeat"]["models"]
    assert run["ensemble_size"]["n_members"] == [1, 2]
    # Single classifiers report an uncertainty (predictive entropy) like the combiners.
    for baseline in ("best_member", "average_member", "single_network"):
        assert models[baseline]["auroc_variance"]["n"] == 1, baseline
    # The single network has a reliability panel; bins are those of the ECE (15).
    assert "single_network" in run["calibration"]
    assert len(run["calibration"]["single_network"]["count"]) == 15
    # Ensemble time splits into network training and the rest, both measured.
    assert run["wall_seconds"] == pytest.approx(run["member_seconds"] + run["assemble_seconds"])
    assert models["mean"]["assemble_seconds"]["n"] == 1
    assert "assemble_seconds" not in models["single_network"]
    assert results["settings"]["interval_level"] == 0.9


def test_table_has_the_expected_columns(wine_run: tuple[Path, Path, str]) -> None:
    _, _, stdout = wine_run
    start = "| strategy | model | accuracy |"
    header = next(line for line in stdout.splitlines() if line.startswith(start))
    cells = [cell.strip() for cell in header.strip("|").split("|")]
    assert cells == ["strategy", "model", *column_headers("classification")]
    assert "| snapshot | single_network (baseline) |" in stdout
    assert "| any | HistGradientBoosting (baseline) |" in stdout
    assert "paired gain" in stdout and "oracle: best on test" in stdout
    blocks = [
        block.splitlines() for block in stdout.split("\n\n") if block.startswith("| strategy")
    ]
    # headline, against HistGradientBoosting, three shift metrics, every model, diversity
    assert len(blocks) == 7
    for block in blocks:
        assert len({line.count("|") for line in block}) == 1, block[0]


def test_from_store_benchmarks_a_published_version(
    wine_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, store, _ = wine_run
    output = tmp_path / "published"
    code = main(
        [
            "--from-store",
            "wine-snapshot",
            "--store",
            str(store),
            "--output",
            str(output),
            *TINY[-3:],
        ]
    )
    assert code == 0
    results = json.loads((output / "results.json").read_text())
    settings = results["settings"]
    assert settings["repeats"] == 1
    # the published version's settings (TINY's), not this command line's defaults
    assert (settings["strategies"], settings["members"], settings["epochs"]) == (["snapshot"], 2, 2)
    assert settings["config"]["hidden_sizes"] == [8]
    assert "single_network" not in results["summary"]["snapshot"]["models"]
    report = (output / "report.md").read_text()
    assert "Strategies snapshot; 2 members, 2 epochs each" in report


def test_an_unwritable_output_folder_is_refused_before_anything_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = tmp_path / "store"
    argv = ["--dataset", "wine", "--strategies", "repeat", "--store", str(store), *TINY]
    assert main([*argv, "--output", str(blocker / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: cannot write the report to {blocker / 'report'}: Not a directory; choose "
        "another --output"
    ]
    assert not store.exists()  # nothing trained: a run publishes into the store first


def test_held_out_classes_are_scored_as_out_of_distribution(tmp_path: Path) -> None:
    output = tmp_path / "ood"
    argv = ["--dataset", "digits", "--holdout-classes", "8", "9", "--strategies", "repeat"]
    argv += ["--shift-strengths", "0", "1", "--output", str(output)]
    assert main([*argv, *TINY]) == 0
    results = json.loads((output / "results.json").read_text())
    assert results["dataset"] == "digits (classes 8, 9 held out)"
    assert results["settings"]["holdout_classes"] == ["8", "9"]
    run = results["runs"][0]
    assert run["ood"]["n_out"] == 354  # every row of digits 8 and 9
    assert run["ood"]["n_in"] == math.ceil(0.2 * (1797 - 354))  # the rest's test split
    detection = run["ood"]["detection"]
    assert {"mutual_information", "variance", "predictive_entropy"} <= set(detection["default"])
    assert (
        set(detection["single_network"]) == set(detection["best_member"]) == {"predictive_entropy"}
    )
    for scores in detection["default"].values():
        assert 0.0 <= scores["auroc"] <= 1.0 and 0.0 <= scores["fpr95"] <= 1.0
    assert len(run["ood"]["roc"]["default"]["mutual_information"]) == 51
    summary = results["summary"]["repeat"]
    assert summary["ood"]["detection"]["default"]["variance"]["auroc"]["n"] == 1
    assert run["shift"]["strengths"] == [0.0, 1.0]
    report = (output / "report.md").read_text()
    assert "## Out-of-distribution detection" in report and "## Covariate shift" in report
    assert "| strategy | default | eff. members | variance |" in report
    assert {"ood_roc.png", "shift.png"} <= {path.name for path in output.iterdir()}


def test_user_csv_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=120)
    lines = ["a,b,c,price"] + [
        ",".join(f"{v:.4f}" for v in (*row, t)) for row, t in zip(X, y, strict=True)
    ]
    csv = tmp_path / "houses.csv"
    csv.write_text("\n".join(lines) + "\n")
    output = tmp_path / "report"
    argv = ["--csv", str(csv), "--target", "price", "--strategies", "bagging", "--output"]
    assert main([*argv, str(output), *TINY]) == 0
    out = capsys.readouterr().out
    assert "| bagging | mean |" in out and "RMSE@80%" in out
    results = json.loads((output / "results.json").read_text())
    assert results["task"] == "regression"
    assert {"reliability_bagging.png", *PLOTS} <= {p.name for p in output.iterdir()}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strategies", "boosting"], "error: unknown strategy 'boosting': choose from bagging"),
        (["--repeats", "0"], "error: --repeats must be at least 1, got 0"),
        (["--timing-repeats", "0"], "error: --timing-repeats must be at least 1, got 0"),
        (["--csv", "missing.csv", "--target", "y"], "error: CSV file not found: missing.csv"),
        (["--from-store", "digits"], "error: --from-store NAME needs --store DIR"),
        (["--target", "y"], "error: --target only applies with --csv PATH"),
        (
            ["--dataset", "wine", "--holdout-classes", "7"],
            "error: unknown class '7' in --holdout-classes: wine has classes class_0, class_1",
        ),
        (["--shift-strengths", "-1"], "error: --shift-strengths must be finite and at least 0"),
    ],
)
def test_bad_input_gives_one_line_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "--output", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_unknown_published_ensemble_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--from-store", "nothing", "--store", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_defaults_and_shared_training_options() -> None:
    args = build_parser().parse_args([])
    # What a user's run gets: the budget rule and the range test's rate.
    assert (args.members, args.epochs, args.learning_rate, args.repeats) == (5, None, None, 5)
    assert args.shift_strengths == (0.0, 0.25, 0.5, 1.0, 2.0) and args.holdout_classes is None
    argv = ["--learning-rate", "0.01", "--dropout", "0", "--validation-fraction", "0.3"]
    request = request_from_args(build_parser().parse_args([*argv, "--epochs", "7"]))
    config = request.train.config
    assert (config.learning_rate, config.dropout, config.epochs) == (0.01, 0.0, 7)
    assert request.train.validation_fraction == 0.3
    assert not request.train.calibrate
    assert request_from_args(build_parser().parse_args(["--calibrate"])).train.calibrate


def test_every_option_has_help_and_states_its_default_once() -> None:
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    text = parser.format_help()
    assert "(default: None)" not in text
    blocks = text.split("\n  --")
    assert all(block.count("(default") <= 1 for block in blocks)
    assert "default: the budget rule" in text and "(default: 5)" in text
    assert "(default: 0 0.25 0.5 1 2)" in text
