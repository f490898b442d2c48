"""``ensembles-benchmark`` / ``python scripts/benchmark.py``: compare combiners and strategies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ensembles.cli.common import OneLineParser, add_data_options, check_data_options, run_command

DEFAULT_MEMBERS = 5
DEFAULT_EPOCHS = 20
DEFAULT_REPEATS = 3


def build_parser() -> argparse.ArgumentParser:
    """The benchmark command's options; the defaults finish digits in minutes on 2 cores."""
    parser = OneLineParser(
        prog="ensembles-benchmark",
        description="Train one ensemble per strategy and repeat (or read a published one), then "
        "compare every combiner with the best single member, the average member and one "
        "network trained with the ensemble's whole epoch budget: accuracy, uncertainty "
        "quality, cost, diversity. Writes report.md, results.json and PNG plots. "
        f"Defaults ({DEFAULT_MEMBERS} members x {DEFAULT_EPOCHS} epochs, {DEFAULT_REPEATS} "
        "repeats, all strategies) finish digits in a few minutes on 2 cores; raise --epochs, "
        "--members, --repeats or --jobs to scale up.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    bench.add_argument("--members", type=int, default=DEFAULT_MEMBERS, help="members per ensemble")
    bench.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help="epochs per member (one-run strategies: length of the one run)",
    )
    bench.add_argument("--hidden-sizes", type=int, nargs="+", default=[128, 64])
    bench.add_argument("--jobs", type=int, default=1, help="processes for independent members")
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
        "(one repeat; no same-budget network)",
    )
    bench.add_argument(
        "--output",
        default=None,
        help="report folder (default: reports/benchmark/<dataset>)",
    )
    bench.add_argument(
        "--timing-repeats", type=int, default=15, help="timed inference calls per model (median)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def request_from_args(args: argparse.Namespace):
    """Translate parsed options into a :class:`~ensembles.benchmark.BenchmarkRequest`."""
    from ensembles.benchmark import ALL_STRATEGIES, BenchmarkRequest
    from ensembles.training.config import TrainConfig
    from ensembles.training.pipeline import TrainRequest

    if args.from_store is None:
        check_data_options(args)
    train = TrainRequest(
        dataset=None if args.csv else (args.dataset or "digits"),
        csv=Path(args.csv) if args.csv else None,
        target=args.target,
        task=args.task,
        members=args.members,
        seed=args.seed,
        jobs=args.jobs,
        config=TrainConfig(hidden_sizes=tuple(args.hidden_sizes), epochs=args.epochs),
        progress=False,
    )
    return BenchmarkRequest(
        train=train,
        strategies=tuple(args.strategies) if args.strategies else ALL_STRATEGIES,
        repeats=args.repeats,
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
        from ensembles.benchmark.plots import write_plots
        from ensembles.benchmark.report import markdown_report, write_report, write_results

        request = request_from_args(args)
        results = run_benchmark(request)
        name = args.from_store or request.train.ensemble_name
        output = Path(args.output) if args.output else Path("reports/benchmark") / name
        write_results(results, output)
        plots = write_plots(results, output)
        write_report(results, output, plots)
        print(markdown_report(results))
        print(f"wrote {output / 'report.md'}, results.json and {len(plots)} plots")
        return 0

    return run_command(benchmark)


if __name__ == "__main__":
    sys.exit(main())
