"""``ensembles-benchmark`` / ``python scripts/benchmark.py``: compare combiners and strategies."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ensembles import defaults
from ensembles.benchmark.cost import TIMING_REPEATS
from ensembles.benchmark.runner import DEFAULT_REPEATS
from ensembles.benchmark.shift import SHIFT_STRENGTHS
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
    add_regularization_option,
    add_split_options,
    config_from_args,
    pinned_settings,
)
from ensembles.training.config import REFITS
from ensembles.writable import check_report_folder

if TYPE_CHECKING:
    from ensembles.benchmark import BenchmarkRequest


def build_parser() -> argparse.ArgumentParser:
    """The benchmark command's options; the defaults finish digits in minutes on 2 cores.

    Data, member-network, learning and split options are those of ``ensembles-train``, with
    its defaults: the benchmark measures what a user's run gets.
    """
    parser = OneLineParser(
        prog="ensembles-benchmark",
        description="Train one ensemble per strategy and repeat (or read a published one), then "
        "compare each strategy's default combiner (and every other) with the best single "
        "member, the average member and one network (trained by the same budget rule, or with "
        "--epochs for the ensemble's whole epoch budget), and with scikit-learn's "
        "HistGradientBoosting fitted on the training and validation rows: accuracy, uncertainty "
        "quality, covariate shift, out-of-distribution detection (--holdout-classes), cost, "
        "diversity. Writes report.md, results.json and "
        "PNG plots. "
        f"Defaults ({defaults.MEMBERS} members trained by the budget rule, {DEFAULT_REPEATS} "
        "repeats, all strategies) finish digits in about 8 minutes on 2 cores (--repeats 2 "
        "for a quick look, without a usable paired interval; --epochs N for a fixed budget).",
        formatter_class=DefaultsHelpFormatter,
    )
    add_data_options(parser)
    bench = parser.add_argument_group("benchmark")
    bench.add_argument(
        "--strategies",
        nargs="+",
        default=None,
        metavar="STRATEGY",
        help="strategies to compare (default: bagging kfold subsample repeat horizontal snapshot)",
    )
    bench.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="runs per strategy; repeat r uses seed --seed + r for the split and members",
    )
    bench.add_argument(
        "--holdout-classes",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="train on the other classes and score these classes' rows as out-of-distribution "
        "(classification; e.g. 5 6 7 8 9 on digits)",
    )
    bench.add_argument(
        "--shift-strengths",
        nargs="+",
        type=float,
        default=SHIFT_STRENGTHS,
        metavar="K",
        help="Gaussian noise added to the test rows in the covariate-shift section, in "
        f"feature standard deviations (default: {' '.join(f'{k:g}' for k in SHIFT_STRENGTHS)})",
    )
    bench.add_argument(
        "--members",
        type=int,
        default=defaults.MEMBERS,
        help="members per ensemble: snapshot cycles, horizontal checkpoints, folds or runs",
    )
    bench.add_argument("--jobs", type=int, default=1, help="processes for independent members")
    bench.add_argument(
        "--refit",
        default="auto",
        choices=REFITS,
        help="independent members trained again on training + validation rows, as "
        "ensembles-train --refit; the single network refits when its own run passes the rule",
    )
    add_regularization_option(bench)
    bench.add_argument(
        "--calibrate",
        action="store_true",
        help="temperature-scale every classification combiner, as ensembles-train --calibrate",
    )
    bench.add_argument(
        "--store",
        default=None,
        help="keep the trained versions in this model store (default: a temporary one)",
    )
    bench.add_argument(
        "--from-store",
        default=None,
        metavar="NAME",
        help="benchmark the latest version of this published ensemble in --store, no training "
        "(one repeat; no same-budget network, no HistGradientBoosting)",
    )
    bench.add_argument(
        "--output",
        default=None,
        help="report folder (default: reports/benchmark/<dataset>)",
    )
    bench.add_argument(
        "--timing-repeats",
        type=int,
        default=TIMING_REPEATS,
        help="timed inference calls per model (the median is reported)",
    )
    add_network_options(parser)
    add_learning_options(parser)
    add_split_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for action in parser._actions:  # argparse has no public accessor for its options
        if action.dest == "epochs":
            action.help = (
                "epochs per member (one-run strategies: length of the one run); default: the "
                "budget rule, as ensembles-train"
            )
    return parser


def request_from_args(args: argparse.Namespace) -> BenchmarkRequest:
    """Translate parsed options into a :class:`~ensembles.benchmark.BenchmarkRequest`."""
    from ensembles.benchmark import ALL_STRATEGIES, BenchmarkRequest
    from ensembles.training.pipeline import TrainRequest

    if args.from_store is None:
        check_data_options(args)
    train = TrainRequest(
        dataset=None if args.csv else (args.dataset or "digits"),
        csv=Path(args.csv) if args.csv else None,
        target=args.target,
        categorical=tuple(args.categorical),
        numeric=tuple(args.numeric),
        task=args.task,
        members=args.members,
        seed=args.seed,
        jobs=args.jobs,
        refit=args.refit,
        regularization=args.regularization,
        pinned_settings=pinned_settings(args),
        calibrate=args.calibrate,
        config=config_from_args(args),
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        progress=False,
    )
    return BenchmarkRequest(
        train=train,
        strategies=tuple(args.strategies) if args.strategies else ALL_STRATEGIES,
        repeats=args.repeats,
        holdout_classes=tuple(args.holdout_classes or ()),
        shift_strengths=tuple(args.shift_strengths),
        store=Path(args.store) if args.store else None,
        from_store=args.from_store,
        timing_repeats=args.timing_repeats,
        progress=not args.quiet,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the benchmark, write the report and print its table."""
    args = build_parser().parse_args(argv)

    def benchmark() -> int:
        from ensembles.benchmark import run_benchmark
        from ensembles.benchmark.report import markdown_report, save_report

        request = request_from_args(args)
        name = args.from_store or request.train.ensemble_name
        output = Path(args.output) if args.output else Path("reports/benchmark") / name
        check_report_folder(output)
        results = run_benchmark(request)
        files = save_report(results, output)
        print(markdown_report(results))
        print(f"wrote {files[0]}, results.json and {len(files) - 2} plots")
        return 0

    writes = [args.output or "reports/benchmark", args.store or tempfile.gettempdir()]
    return run_command(benchmark, writes=writes)


if __name__ == "__main__":
    sys.exit(main())
