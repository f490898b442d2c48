"""``ensembles-diagnose`` / ``python scripts/diagnose.py``: diagnose a setup before ensembling."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from ensembles import defaults
from ensembles.cli.common import (
    DefaultsHelpFormatter,
    OneLineParser,
    add_data_options,
    check_data_options,
    run_command,
)
from ensembles.cli.options import (
    add_learning_options,
    add_network_options,
    add_split_options,
    config_from_args,
)
from ensembles.errors import ConfigError
from ensembles.training.config import BALANCED_REGRESSION
from ensembles.writable import check_report_folder

#: Rounds of ``--apply`` when ``--rounds`` is not given.
DEFAULT_ROUNDS = 2
_PATIENCE_HELP = (
    "early stopping patience in epochs; the generalization rule still reads the epochs run "
    "past the best one"
)

_THRESHOLD_HELP = {
    "min_train_skill": "learning: lowest acceptable training skill (0 = constant predictor)",
    "plateau_skill": "learning: below this training skill a plateau (a training loss that no "
    "longer falls) is a learning problem",
    "min_late_gain": "learning: a late gain (the training-loss fall, in constant-loss units, "
    "that as many epochs again would bring at the late pace) below this is a plateau",
    "train_longer_gain": "learning: a late gain of at least this, in runs that used their whole "
    "budget (--epochs or the budget rule's cap, not early stopping) while the validation loss "
    "was still at its best late, is under-training: the budget is too short",
    "max_val_loss_rise": "generalization: validation-loss rise after its best epoch, in units "
    "of the constant predictor's loss",
    "max_val_skill_drop": "generalization: validation-skill drop after its best epoch",
    "max_run_spread": "prediction: std of the final validation skill across runs",
    "sampling_factor": "prediction: the run-spread limit is at least this many times the "
    "validation metric's sampling error (skill units)",
    "max_late_fluctuation": "prediction: epoch-to-epoch validation-skill fluctuation late in runs",
    "noise_factor": "generalization: a rise must also exceed this many times the curve's noise",
    "smoothing": "epochs of the moving average applied to the curves",
    "late_fraction": "share of the epochs that counts as late",
}


def build_parser() -> argparse.ArgumentParser:
    """The diagnosis options: the training command's data, network, learning and split
    options, plus runs, --apply and the documented thresholds."""
    from ensembles.diagnosis import Thresholds

    parser = OneLineParser(
        prog="ensembles-diagnose",
        description="Train the configured network several times, classify its learning curves "
        "as a learning, generalization or prediction problem, recommend the matching "
        "techniques and optionally apply them.",
        formatter_class=DefaultsHelpFormatter,
    )
    add_data_options(parser)
    add_network_options(parser)
    add_learning_options(parser)
    add_split_options(parser)
    for action in parser._actions:
        if action.dest == "patience":  # the shared help speaks of ensemble strategies
            action.help = _PATIENCE_HELP
    diagnosis = parser.add_argument_group("diagnosis")
    diagnosis.add_argument("--runs", type=int, default=5, help="training runs (seeds), >= 2")
    diagnosis.add_argument(
        "--apply",
        action="store_true",
        help="apply the top recommendation and diagnose again",
    )
    diagnosis.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"--apply: at most this many (default: {DEFAULT_ROUNDS})",
    )
    diagnosis.add_argument(
        "--output", default=None, help="report folder (default: reports/diagnosis/<name>)"
    )
    thresholds = parser.add_argument_group("thresholds (see docs/diagnosis.md)")
    threshold_defaults = Thresholds()
    for item in fields(Thresholds):
        thresholds.add_argument(
            "--" + item.name.replace("_", "-"),
            type=int if item.name == "smoothing" else float,
            default=getattr(threshold_defaults, item.name),
            help=_THRESHOLD_HELP[item.name],
        )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def train_command(args: argparse.Namespace) -> list[str]:
    """``python scripts/train.py`` with the same data, column and split options as ``args``."""
    words = ["python", "scripts/train.py"]
    if args.csv:
        words += ["--csv", args.csv, "--target", args.target]
    else:
        words += ["--dataset", args.dataset or "digits"]
    if args.task:
        words += ["--task", args.task]
    for option in ("categorical", "numeric"):
        if getattr(args, option):
            words += [f"--{option}", *getattr(args, option)]
    words += ["--seed", str(args.seed)]
    split = {"validation_fraction": None, "test_fraction": defaults.TEST_FRACTION}
    for option, default in split.items():
        if getattr(args, option) not in (None, default):
            words += ["--" + option.replace("_", "-"), f"{getattr(args, option):g}"]
    return words


def run_diagnosis(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any], Path]:
    """Load the data, diagnose (and improve) the setup; returns rounds, report and folder."""
    from ensembles.data import load_data, split_dataset
    from ensembles.diagnosis import Thresholds, build_report, improve
    from ensembles.training.members import TrainingData

    thresholds = Thresholds(**{name: getattr(args, name) for name in Thresholds.names()})
    problems = []
    if args.runs < 2:
        problems.append(f"--runs must be at least 2 to measure run-to-run spread, got {args.runs}")
    if args.rounds is not None and not args.apply:
        problems.append("--rounds applies with --apply only")
    elif args.rounds is not None and args.rounds < 1:
        problems.append(f"--rounds must be at least 1, got {args.rounds}")
    if problems:
        raise ConfigError("; ".join(problems))
    check_data_options(args)
    config = config_from_args(args)
    dataset = load_data(
        args.dataset,
        args.csv,
        args.target,
        args.task,
        args.seed,
        tuple(args.categorical),
        tuple(args.numeric),
    )
    if dataset.task == "regression" and config.class_weight == "balanced":
        raise ConfigError(BALANCED_REGRESSION.format(setting="--class-weight"))
    splits = split_dataset(dataset, args.seed, args.validation_fraction, args.test_fraction)
    data = TrainingData.from_splits(splits)
    test = (splits.test.X, splits.test.y)
    name = Path(args.csv).stem if args.csv else (args.dataset or "digits")
    folder = Path(args.output) if args.output else Path("reports") / "diagnosis" / name
    check_report_folder(folder)
    rounds = improve(
        data,
        config,
        thresholds,
        args.runs,
        args.seed,
        rounds=(DEFAULT_ROUNDS if args.rounds is None else args.rounds) if args.apply else 0,
        progress=not args.quiet,
        train_command=train_command(args),
        test=test,
    )
    context = {
        "name": name,
        "data": {"source": dataset.source, "task": dataset.task, **splits.record},
        "n_runs": args.runs,
        "apply": args.apply,
        "thresholds": thresholds.to_dict(),
        "train_command": train_command(args),
    }
    return rounds, build_report(rounds, context), folder


def render(rounds: list[Any], files: list[Path], apply: bool = False) -> str:
    """The stdout summary: each round's diagnosis, the side-by-side table and the files."""
    from ensembles.diagnosis import flagged_change, format_comparison, format_round

    parts = [format_round(rounds[0])]
    for item in rounds[1:]:
        applied = item.applied
        parts.append(f"round {item.index}: applied {applied.technique} [{applied.change}]")
        parts.append(format_round(item))
    if len(rounds) > 1:
        parts.append(format_comparison(rounds))
        change = flagged_change(rounds[0], rounds[-1])
        line = f"flagged figure {_moved(change)}"
        if "test" in change:
            line += f"; on the held-out test split, {_moved(change['test'])}"
        parts.append(line)
    if apply and rounds[-1].diagnosis.verdict == "prediction":
        parts.append(
            "--apply stops here: a prediction problem is cured by an ensemble, not by a "
            "training setting; run the ensemble command above"
        )
    parts.append("wrote " + ", ".join(str(path) for path in files))
    return "\n\n".join(parts)


def _moved(change: dict[str, Any]) -> str:
    word = "improved" if change["improved"] else "did not improve"
    return f"{change['figure']}: {_number(change['before'])} -> {_number(change['after'])} ({word})"


def _number(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4g}"


def main(argv: list[str] | None = None) -> int:
    """Parse options, diagnose, write the report and print the summary; returns exit status."""
    args = build_parser().parse_args(argv)

    def diagnose() -> int:
        from ensembles.diagnosis import write_report

        rounds, report, folder = run_diagnosis(args)
        files = write_report(folder, report, rounds)
        print(render(rounds, files, args.apply))
        return 0

    return run_command(diagnose, writes=[args.output or "reports/diagnosis"])


if __name__ == "__main__":
    sys.exit(main())
