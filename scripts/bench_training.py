"""Training benchmark: wall-clock time per strategy on digits, sequential and with --jobs 2.

Prints a Markdown table: total seconds (training, export, combiners, publish), epochs trained
and seconds per epoch. A snapshot or horizontal ensemble costs one run's epochs; the
independent strategies cost one run per member.

    python scripts/bench_training.py [--members 5] [--epochs 30] [--hidden-sizes 128 64]
                                     [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ensembles.markdown import format_table
from ensembles.training.config import TrainConfig
from ensembles.training.pipeline import TrainRequest, run_training
from ensembles.training.strategies import ONE_RUN_STRATEGIES, STRATEGIES


def time_run(strategy: str, jobs: int, store: Path, members: int, config: TrainConfig) -> float:
    """Wall-clock seconds of one whole run (train, export, fit combiners, publish)."""
    request = TrainRequest(
        dataset="digits",
        strategy=strategy,
        members=members,
        store=store,
        jobs=jobs,
        config=config,
        progress=False,
    )
    start = time.perf_counter()
    run_training(request)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; the median is shown")
    args = parser.parse_args()
    config = TrainConfig(epochs=args.epochs, hidden_sizes=tuple(args.hidden_sizes))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for strategy in STRATEGIES:
            one_run = strategy in ONE_RUN_STRATEGIES
            epochs_trained = args.epochs if one_run else args.epochs * args.members
            for jobs in (1,) if one_run else (1, 2):
                totals = [
                    time_run(strategy, jobs, Path(folder), args.members, config)
                    for _ in range(args.repeats)
                ]
                total = statistics.median(totals)
                rows.append((strategy, jobs, epochs_trained, total, total / epochs_trained))
    print(format_table(["strategy", "jobs", "epochs trained", "total s", "s per epoch"], rows))


if __name__ == "__main__":
    main()
