"""What every command shares: one-line errors, the help formatter and the data options."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from ensembles.data import BUILTIN_DATASETS
from ensembles.errors import ConfigError, EnsembleError
from ensembles.writable import check_can_create

#: Who speaks when torch's CPU allocator fails (a RuntimeError, not a MemoryError): "can't
#: allocate memory" on Linux and macOS, "not enough memory" on Windows.
_CPU_ALLOCATOR_FAILED = "DefaultCPUAllocator"
#: The line printed when a command runs out of memory.
OUT_OF_MEMORY = (
    "out of memory: train fewer or smaller members (--members, --hidden-sizes), fewer at "
    "once (--jobs), or on fewer rows"
)


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
    """``--dataset | --csv PATH --target COL``, column kinds, ``--task`` and ``--seed``."""
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
    group.add_argument(
        "--categorical",
        nargs="+",
        default=(),
        metavar="COL",
        help="CSV columns to treat as categorical (default: string columns)",
    )
    group.add_argument(
        "--numeric",
        nargs="+",
        default=(),
        metavar="COL",
        help="CSV columns to treat as numeric (default: columns of numbers)",
    )
    group.add_argument("--seed", type=int, default=0, help="seeds the split and every member")


def data_option_problems(args: argparse.Namespace) -> list[str]:
    """Every contradiction among the data options, one line each (empty when none)."""
    problems = []
    if args.csv and args.dataset:
        problems.append("--dataset and --csv contradict each other: give one of them")
    if args.target and not args.csv:
        problems.append("--target only applies with --csv PATH")
    if args.csv and not args.target:
        problems.append("--csv needs --target COLUMN naming the column to predict")
    if (args.categorical or args.numeric) and not args.csv:
        problems.append("--categorical and --numeric apply to --csv files only")
    return problems


def check_data_options(args: argparse.Namespace) -> None:
    """Reject contradictory data options with a :class:`~ensembles.errors.ConfigError`."""
    if problems := data_option_problems(args):
        raise ConfigError("; ".join(problems))


def run_command(
    main: Callable[[], int], writes: Sequence[str | Path] = (), interrupted: str = "interrupted"
) -> int:
    """Run ``main``, turning errors into one line on stderr and a non-zero exit status.

    Parameters
    ----------
    main : callable
        The command; returns its exit status.
    writes : sequence of str or Path
        Where the command writes, named when an operating-system error carries no file
        name (a full disk reports none).
    interrupted : str
        The line Ctrl-C prints after ``error:`` (what was, or was not, left behind).

    Returns
    -------
    int
        ``main``'s status; 2 for our errors (bad options or data), 1 for operating-system
        errors (permission denied, disk full, read-only file system, a folder where a file
        belongs) and for running out of memory, 130 for Ctrl-C.
    """
    if not logging.getLogger().handlers:  # not where the caller configured logging
        # Our own progress at INFO; other libraries' only from WARNING (botocore announces
        # "Found credentials in environment variables" on every S3 command otherwise).
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("ensembles").setLevel(logging.INFO)
    try:
        return main()
    except EnsembleError as exc:
        print(_error_line(str(exc), exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(_error_line(os_error_message(exc, writes), exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        # A note says what was left behind after all (a version published in full).
        print(_error_line("interrupted" if _notes(exc) else interrupted, exc), file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError) and _CPU_ALLOCATOR_FAILED not in str(exc):
            raise
        print(_error_line(OUT_OF_MEMORY, exc), file=sys.stderr)
        return 1


def _notes(exc: BaseException) -> list[str]:
    """The notes added to ``exc`` on its way up (:pep:`678`), each on one line."""
    return [" ".join(str(note).split()) for note in getattr(exc, "__notes__", ())]


def _error_line(message: str, exc: BaseException) -> str:
    """``error: message``, then the exception's notes, on one line."""
    return "; ".join([f"error: {message}", *_notes(exc)])


def check_output_file(path: str | Path) -> None:
    """Raise, before any work, the error that writing the file ``path`` later would meet
    (nothing is created here; see :func:`~ensembles.writable.check_can_create`).

    Raises
    ------
    OSError
        With the path, as the write would raise it (:func:`run_command` prints one line).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    check_can_create(path.parent)


def os_error_message(exc: OSError, writes: Sequence[str | Path] = ()) -> str:
    """One line for an operating-system error: the path, the reason and what to do next.

    Parameters
    ----------
    exc : OSError
    writes : sequence of str or Path
        Where the command writes; named instead of the path when ``exc`` has none.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = _OS_ADVICE.get(exc.errno) if exc.errno is not None else None
    tail = f"; {advice}" if advice else ""
    if exc.filename is not None:
        path = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            path += f" -> {os.fsdecode(exc.filename2)}"
        return f"{path}: {reason}{tail}"
    if writes and exc.errno in _WRITE_ERRNOS:
        return f"{reason} while writing under {' or '.join(map(str, writes))}{tail}"
    return f"{reason}{tail}"


#: What to do next, by errno, for the operating-system errors users meet.
_OS_ADVICE = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "that file system is read-only: choose a path on a writable one",
    errno.ENOSPC: "free some disk space or choose a path on another disk",
    errno.EDQUOT: "free some of your disk quota or choose a path on another disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "that is a folder: give a file",
}
#: Errors only writing raises: without a file name, the places the command writes are named.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
