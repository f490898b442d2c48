"""Training benchmark: wall-clock time per strategy on digits, sequential and with --jobs 2.

Prints a Markdown table: total seconds (range test, training, export, combiners, publish),
the learning-rate range test's seconds, epochs trained (every member's, plus the snapshot
probe's, plus a refit's) and seconds per epoch. Without ``--epochs`` members train by the
budget rule and ``--learning-rate`` is chosen by the range test, as a user's run does by
default; independent members are refit as ``--refit`` says (``auto``: as a user's run).

    python scripts/bench_training.py [--members 5] [--epochs N] [--learning-rate R]
                                     [--hidden-sizes 128 64] [--repeats 1] [--refit auto]

``--engines`` prints instead the engines' tables (:mod:`ensembles.benchmark.engines`):
member-training seconds for K = 1, 5, 32 with the loop, packed (and, with ray installed,
ray) engines on digits with the default network and on a 20,000-row synthetic set (5
epochs a member there), each the median of ``--repeats`` runs with the engines taking
turns, and the packed engine's quality against the loop's over ``--splits`` splits of
digits.

    python scripts/bench_training.py --engines [--repeats 3] [--splits 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ensembles.markdown import format_table
from ensembles.training.config import REFITS, TrainConfig
from ensembles.training.pipeline import TrainRequest, run_training
from ensembles.training.strategies import ONE_RUN_STRATEGIES, STRATEGIES


def time_run(
    strategy: str, jobs: int, store: Path, members: int, config: TrainConfig, refit: str
) -> tuple[float, float, int]:
    """Seconds of one whole run, of its range test, and the epochs it trained."""
    request = TrainRequest(
        dataset="digits",
        strategy=strategy,
        refit=refit,
        members=members,
        store=store,
        jobs=jobs,
        config=config,
        progress=False,
    )
    start = time.perf_counter()
    report = run_training(request)
    seconds = time.perf_counter() - start
    params = report.manifest.strategy.params
    range_test = params["learning_rate"].get("seconds", 0.0)
    if strategy in ONE_RUN_STRATEGIES:
        epochs = len(report.members[-1].curves) + params.get("probe_epochs_run", 0)
    else:
        epochs = sum(len(member.curves) for member in report.members)
    if params["refit"].get("used"):
        epochs += params["refit"]["epochs"] * len(report.members)
    return seconds, range_test, epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="default: the budget rule")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="default: the range test's rate"
    )
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; the median is shown")
    parser.add_argument(
        "--refit", default="auto", choices=REFITS, help="as ensembles-train --refit"
    )
    parser.add_argument("--engines", action="store_true", help="compare the training engines")
    parser.add_argument(
        "--splits", type=int, default=5, help="with --engines: digits splits of the quality table"
    )
    args = parser.parse_args()
    if args.engines:
        compare_engines(args.repeats, args.splits)
        return
    config = TrainConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        hidden_sizes=tuple(args.hidden_sizes),
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for strategy in STRATEGIES:
            for jobs in (1,) if strategy in ONE_RUN_STRATEGIES else (1, 2):
                runs = [
                    time_run(strategy, jobs, Path(folder), args.members, config, args.refit)
                    for _ in range(args.repeats)
                ]
                total = statistics.median(run[0] for run in runs)
                range_test = statistics.median(run[1] for run in runs)
                epochs = statistics.median(run[2] for run in runs)
                rows.append((strategy, jobs, epochs, total, range_test, total / epochs))
    header = ["strategy", "jobs", "epochs trained", "total s", "range test s", "s per epoch"]
    print(format_table(header, rows))


def compare_engines(repeats: int, splits: int) -> None:
    """Print the engines' timing tables and the packed engine's quality against the loop's."""
    import importlib.util

    from ensembles.benchmark import engines as bench
    from ensembles.data import load_builtin, split_dataset

    names = ("loop", "packed") + (("ray",) if importlib.util.find_spec("ray") else ())
    header = ["engine", "K", "member training s (median)", "epochs (slowest)", "x one loop member"]
    digits = split_dataset(load_builtin("digits"), 0)
    print("digits, default network, budget rule:\n")
    timings = bench.time_engines(digits, names, (1, 5, 32), repeats=repeats)
    print(format_table(header, bench.timing_rows(timings)))
    synthetic = split_dataset(bench.synthetic_dataset(), 0)
    print("\n20,000 synthetic rows, default network, 5 epochs a member:\n")
    timings = bench.time_engines(
        synthetic, names, (1, 5, 32), TrainConfig(epochs=5), repeats=repeats
    )
    print(format_table(header, bench.timing_rows(timings)))
    print(f"\nquality, digits, 5-member repeat, mean combiner, {max(splits, 2)} splits:\n")
    results = bench.engine_quality("digits", ("loop", "packed"), max(splits, 2))
    header = ["engine", "metric", "mean", "std", "minus loop (paired)", "std error"]
    print(format_table(header, bench.quality_rows(results)))


if __name__ == "__main__":
    main()
