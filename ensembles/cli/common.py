"""What every command shares: one-line errors, the help formatter and the data options."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import NoReturn

from ensembles.data import BUILTIN_DATASETS
from ensembles.errors import ConfigError, EnsembleError


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: ...)`` only where it informs: not when the help already states
    the default, not for a None default, and not for on/off flags (off unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        flag = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if "default" in text or action.default in (None, argparse.SUPPRESS) or flag:
            return text
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: message`` and exit 2 (argparse prints the whole usage otherwise)."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--dataset | --csv PATH --target COL``, ``--task`` and ``--seed``."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default=None,
        help=f"built-in dataset: {', '.join(BUILTIN_DATASETS)} (default: digits)",
    )
    group.add_argument("--csv", default=None, help="CSV file with a header row")
    group.add_argument("--target", default=None, help="target column of --csv")
    group.add_argument(
        "--task",
        choices=["classification", "regression"],
        default=None,
        help="force the task of a CSV (default: inferred from the target)",
    )
    group.add_argument("--seed", type=int, default=0, help="seeds the split and every member")


def check_data_options(args: argparse.Namespace) -> None:
    """Reject contradictory data options with a :class:`~ensembles.errors.ConfigError`."""
    if args.csv and args.dataset:
        raise ConfigError("--dataset and --csv contradict each other: give one of them")
    if args.target and not args.csv:
        raise ConfigError("--target only applies with --csv PATH")
    if args.csv and not args.target:
        raise ConfigError("--csv needs --target COLUMN naming the column to predict")


def run_command(main: Callable[[], int]) -> int:
    """Run ``main``, turning our errors into one line on stderr and a non-zero exit."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return main()
    except EnsembleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was published", file=sys.stderr)
        return 130
