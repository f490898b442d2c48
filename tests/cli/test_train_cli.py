"""The train command: it works on defaults, prints its summary, and fails in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ensembles.cli.common import OUT_OF_MEMORY
from ensembles.cli.train import main
from ensembles.store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--hidden-sizes", "16", "--quiet"]
REPEAT = ["--strategy", "repeat"]


def test_script_trains_and_publishes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/train.py",
            "--dataset",
            "wine",
            "--strategy",
            "snapshot",
            "--members",
            "3",
            "--epochs",
            "6",
            "--store",
            str(store),
            *TINY,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert "| m002 | 6 | 6 | epochs | 3 |" in result.stdout  # epoch, of, stopped, cycle
    assert "learning rate" in result.stdout and "(range test, " in result.stdout
    assert "published wine version 1" in result.stdout
    assert "weight_average" in result.stdout and "best_member" in result.stdout
    assert ModelStore(store).versions("wine") == [1]


def test_summary_shows_out_of_bag_scores_and_why_the_default_was_chosen(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--dataset", "wine", "--strategy", "bagging", "--members", "3", "--epochs", "3"]
    assert main([*args, "--store", str(tmp_path / "store"), *TINY]) == 0
    out = capsys.readouterr().out
    manifest = ModelStore(tmp_path / "store").load_manifest("wine")
    oob = manifest.out_of_sample
    assert "| val_loss | val_accuracy | seconds | oob_rows | oob_accuracy |" in out
    first = manifest.members[0].out_of_sample
    assert f"| {first.n_rows} | {first.metrics['accuracy']:.4g} |" in out
    assert (
        f"out-of-bag ensemble ({oob.n_rows} training rows, each scored by the mean of the "
        f"members that did not train on it, {oob.members_per_row:.3g} on average; "
        f"{oob.n_rows_unscored} rows every member trained on left out): accuracy "
        f"{oob.metrics['accuracy']:.4g}, nll {oob.metrics['nll']:.4g}, "
    ) in out
    choice = manifest.default_choice
    header = (
        f"| held out ({choice.n_rows} rows) | nll | minus mean | std error | eff. members | note |"
    )
    assert header in out
    assert "| vote |" in out and "| hard votes are not a proper probability forecast |" in out
    assert f"\n\ndefault: {choice.reason}\n\npublished wine version 1" in out


def test_csv_with_string_labels_trains(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lines = ["a,b,label"] + [
        f"{i % 7},{(i * 3) % 11},{'yes' if (i % 7) > 3 else 'no'}" for i in range(90)
    ]
    (tmp_path / "my data.csv").write_text("\n".join(lines))
    status = main(
        [
            "--csv",
            str(tmp_path / "my data.csv"),
            "--target",
            "label",
            "--strategy",
            "repeat",
            "--members",
            "2",
            "--epochs",
            "3",
            "--store",
            str(tmp_path / "store"),
            *TINY,
        ]
    )
    assert status == 0
    manifest = ModelStore(tmp_path / "store").load_manifest("my-data")
    assert manifest.classes == ["no", "yes"]
    assert manifest.input.feature_names == ["a", "b"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--csv", "missing.csv", "--target", "y"], "error: CSV file not found: missing.csv"),
        (
            ["--dataset", "wine", "--csv", "x.csv", "--target", "y"],
            "error: --dataset and --csv contradict each other",
        ),
        (["--target", "y"], "error: --target only applies with --csv PATH"),
        (["--csv", "x.csv"], "error: --csv needs --target COLUMN"),
        (
            ["--dataset", "wine", "--strategy", "bagging", "--spacing", "2"],
            "error: --spacing applies to --strategy horizontal, not bagging",
        ),
        (
            ["--dataset", "wine", "--strategy", "repeat", "--variants", "[{"],
            "error: --variants is not valid JSON",
        ),
        (
            ["--dataset", "wine", "--strategy", "repeat", "--variants", '[{"hiden_sizes": [4]}]'],
            "^error: --variants item 1: unknown training setting 'hiden_sizes' "
            "\\(did you mean 'hidden_sizes'\\?\\)$",
        ),
        (
            ["--dataset", "wine", "--strategy", "repeat", "--variants", '[{"hidden_sizes": "64"}]'],
            "^error: --variants item 1: hidden_sizes must be a list of positive integers, "
            "got '64'$",
        ),
        (
            ["--dataset", "wine", "--strategy", "repeat", "--variants", '[{"epochs": 2.5}]'],
            "^error: --variants item 1: epochs must be an integer, got 2.5$",
        ),
        (
            ["--dataset", "wine", "--strategy", "repeat", "--variants", '{"epochs": 2}'],
            "^error: --variants must be a JSON list of objects of setting overrides, "
            "got an object$",
        ),
        (
            ["--dataset", "wine", "--strategy", "repeat", "--variants", "[{}, [1]]"],
            "^error: --variants item 2 must be an object of setting overrides, got a list$",
        ),
        (
            ["--dataset", "diabetes", *REPEAT, "--variants", '[{"gaussian_head": false}, {}]'],
            "^error: --variants give members different gaussian_head \\(false in item 1, true "
            "in item 2\\): every member must export the same outputs; give every item the same "
            "gaussian_head$",
        ),
        (
            [
                "--dataset",
                "wine",
                *REPEAT,
                "--force-weight-averaging",
                "--variants",
                '[{"hidden_sizes": [8]}, {}]',
            ],
            "^error: --variants give members different hidden_sizes \\(\\[8\\] in item 1, "
            "\\[16\\] in item 2\\): forced weight averaging needs one layer layout; give every "
            "item the same hidden_sizes or drop --force-weight-averaging$",
        ),
        (
            [
                "--dataset",
                "wine",
                *REPEAT,
                "--members",
                "0",
                "--variants",
                '[{"epochs": 2.5, "dropout": "x"}]',
            ],
            "^error: --members must be at least 1 for repeat, got 0; --variants item 1: epochs "
            "must be an integer, got 2.5; --variants item 1: dropout must be a number, got 'x'$",
        ),
        (  # every group of options at once: data, strategy-only, settings, counts, shares
            [
                *("--dataset", "wine", "--target", "y", "--spacing", "3", "--dropout", "1.5"),
                *("--members", "-1", "--jobs", "0", "--test-fraction", "1.5"),
            ],
            "^error: --target only applies with --csv PATH; --spacing applies to --strategy "
            "horizontal, not repeat; --dropout must be in \\[0, 1\\), got 1.5; --members must "
            "be at least 1 for repeat, got -1; --jobs must be at least 1, got 0; "
            "--test-fraction must be between 0 and 1, got 1.5$",
        ),
        (
            [
                *("--dataset", "wine", "--strategy", "repeat", "--validation-fraction", "0.03"),
                *("--combiners", "mean", "vote", "blend", "stack"),
            ],
            "^error: the validation rows are too few to fit every combiner: blend fails on a "
            "cross-fitting half of the 6 fit rows: .*; add rows or raise --validation-fraction, "
            "or fit only --combiners mean vote stack$",
        ),
        (
            ["--dataset", "wine", "--combiners", "blend", "stack"],
            "^error: --combiners without mean needs --default-combiner NAME: the default is mean "
            "unless a learned combiner beats it on held-out rows; add mean to --combiners or name "
            "the default$",
        ),
        (  # combiners learn from the validation rows only: there is nothing left to choose
            ["--dataset", "wine", "--combiner-fit", "in_sample"],
            "^error: unrecognized arguments: --combiner-fit in_sample "
            "\\(see ensembles-train --help\\)$",
        ),
        (
            ["--dataset", "wine", "--dropout", "1.5"],
            "error: --dropout must be in \\[0, 1\\), got 1.5",
        ),
        (  # momentum of 1 or more diverges: it used to publish a val loss of 1734
            ["--dataset", "wine", "--optimizer", "sgd", "--momentum", "5"],
            "^error: --momentum must be in \\[0, 1\\), got 5.0$",
        ),
        (  # a million members trained for a minute, then the blend fit asked for 76 TiB
            ["--dataset", "wine", "--members", "1001"],
            "^error: --members must be at most 1000, got 1001$",
        ),
        (  # the split seeds scikit-learn with seed and seed + 1 (a traceback before)
            ["--dataset", "wine", "--seed", "-1"],
            "^error: --seed must be in \\[0, 4294967294\\], got -1$",
        ),
        (
            ["--dataset", "wine", "--seed", "4294967295"],
            "^error: --seed must be in \\[0, 4294967294\\], got 4294967295$",
        ),
        (["--dataset", "wine", "--name", "../x"], "error: invalid ensemble name '../x'"),
        (
            ["--dataset", "wine", "--members", "many"],
            "error: argument --members: invalid int value: 'many'",
        ),
        (
            ["--dataset", "wine", "--learning-rate", "fast"],
            "error: argument --learning-rate: expected a number or auto, got 'fast'",
        ),
        (["--dataset", "wine", "--learning-rate", "0"], "error: --learning-rate must be positive"),
        (
            ["--dataset", "wine", "--nll-beta", "2"],
            "error: --nll-beta must be in \\[0, 1\\], got 2",
        ),
        (
            ["--dataset", "diabetes", "--class-weight", "balanced"],
            "^error: --class-weight balanced applies to classification, not regression$",
        ),
        (
            ["--dataset", "diabetes", *REPEAT, "--variants", '[{}, {"class_weight": "balanced"}]'],
            "^error: --variants item 2: class_weight balanced applies to classification, "
            "not regression$",
        ),
        (
            ["--dataset", "wine", "--class-weight", "equal"],
            "error: argument --class-weight: invalid choice: 'equal'",
        ),
    ],
)
def test_bad_input_gets_one_line_and_leaves_the_store_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    store = tmp_path / "store"
    try:
        status = main([*args, "--store", str(store), *TINY])
    except SystemExit as exit_:  # argparse's own usage errors
        status = exit_.code
    assert status == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert re.search(message, error), error
    assert not store.exists() or ModelStore(store).names() == []


def test_a_header_that_repeats_a_column_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv = tmp_path / "dup.csv"
    csv.write_text("a,b,a,label\n" + "".join(f"{i},{i % 3},{i % 5},{i % 2}\n" for i in range(40)))
    status = main(["--csv", str(csv), "--target", "label", "--store", str(tmp_path / "s"), *TINY])
    assert status == 2
    error = capsys.readouterr().err
    assert error == "error: the header of dup.csv repeats 'a' (2 times): name each column once\n"
    assert not (tmp_path / "s").exists()


def test_empty_header_cells_are_not_a_repeated_name(tmp_path: Path) -> None:
    csv = tmp_path / "blank.csv"
    csv.write_text(",,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    status = main(["--csv", str(csv), "--target", "label", "--store", str(tmp_path / "s"), *TINY])
    assert status == 0
    names = ModelStore(tmp_path / "s").load_manifest("blank").input.feature_names
    assert names == ["Unnamed: 1"]  # pandas' names; a first unnamed column is row labels


def test_an_empty_store_location_is_refused_not_the_current_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--dataset", "wine", "--store", "", *TINY]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: the model store location is empty"), error
    assert list(tmp_path.iterdir()) == []


def test_running_out_of_memory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # 13 features x 1e15 units of float32 is 52 PB, beyond any address space: the
    # allocator refuses it at once, whatever the machine overcommits.
    args = ["--dataset", "wine", "--hidden-sizes", str(10**15), "--store", str(tmp_path / "s")]
    assert main([*TINY, *args]) == 1
    assert capsys.readouterr().err == f"error: {OUT_OF_MEMORY}\n"
    assert not (tmp_path / "s").exists() or ModelStore(tmp_path / "s").names() == []


def test_ctrl_c_is_one_line_and_a_distinct_status(capsys: pytest.CaptureFixture) -> None:
    from ensembles.cli.common import run_command

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_command(interrupted) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    assert run_command(interrupted, interrupted="interrupted; nothing was published") == 130
    assert capsys.readouterr().err == "error: interrupted; nothing was published\n"


def test_what_an_error_notes_is_on_its_line(capsys: pytest.CaptureFixture) -> None:
    """A store notes a version published in full before the failure: the line says so
    instead of "nothing was published"."""
    from ensembles.cli.common import run_command

    note = "model_store/toy/2 was published in full, but latest was not moved to it"

    def failing(error: BaseException) -> Callable[[], int]:
        def command() -> int:
            error.add_note(note)
            raise error

        return command

    nothing = "interrupted; nothing was published"
    assert run_command(failing(KeyboardInterrupt()), interrupted=nothing) == 130
    assert capsys.readouterr().err == f"error: interrupted; {note}\n"
    full = OSError(28, "No space left on device", "model_store/toy/latest")
    assert run_command(failing(full)) == 1
    assert capsys.readouterr().err == (
        "error: model_store/toy/latest: No space left on device; free some disk space or "
        f"choose a path on another disk; {note}\n"
    )


def test_learning_rate_and_epochs_default_to_auto_and_take_numbers() -> None:
    from ensembles.cli.train import build_parser, request_from_args

    defaults = request_from_args(build_parser().parse_args([]))
    assert defaults.config.learning_rate is None and defaults.config.epochs is None
    assert defaults.validation_fraction is None and defaults.strategy == "repeat"
    given = ["--learning-rate", "0.003", "--epochs", "12", "--validation-fraction", "0.15"]
    request = request_from_args(build_parser().parse_args(given))
    assert (request.config.learning_rate, request.config.epochs) == (0.003, 12)
    assert request.validation_fraction == 0.15
    assert request_from_args(build_parser().parse_args(["--learning-rate", "AUTO"])).config == (
        defaults.config
    )


def test_a_regularization_setting_given_at_its_default_value_is_still_pinned() -> None:
    from ensembles.cli.train import build_parser, request_from_args
    from ensembles.training.regularization import regularization_problem

    left_out = request_from_args(build_parser().parse_args([]))
    given = ["--dropout", "0.2", "--activation", "relu", "--input-noise", "0"]
    pinned = request_from_args(build_parser().parse_args(given))
    assert pinned.config == left_out.config  # the values are the defaults ...
    assert left_out.pinned_settings == ()
    assert set(pinned.pinned_settings) == {"dropout", "activation", "input_noise"}
    # ... and still the stronger settings are not tried over them.
    assert regularization_problem("auto", left_out.config, [], 500) is None
    problem = regularization_problem("auto", pinned.config, [], 500, pinned.pinned_settings)
    assert problem is not None and "dropout" in problem and "given" in problem
