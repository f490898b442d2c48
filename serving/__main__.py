"""Command line: ``python -m serving --store DIR_OR_URL`` (also the ``ensembles-serve`` command)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from serving.logs import logging_config
from serving.settings import MULTIPROC_ENV, ServingSettings

APP_FACTORY = "serving.app:create_app"


class SettingsError(Exception):
    """The settings are invalid; ``str()`` holds one line per problem."""


@cache
def _flags() -> dict[str, str]:
    """Settings field -> its command-line flag, for the fields that have one."""
    return {
        action.dest: action.option_strings[-1]
        for action in build_parser()._actions
        if action.option_strings and action.dest != "help"
    }


def _field_label(field: str) -> str:
    flag = _flags().get(field)
    env = f"ENSEMBLES_{field.upper()}"
    return f"{field} ({flag} / {env})" if flag else f"{field} ({env}; env only)"


def settings_problems(exc: ValidationError) -> list[str]:
    """One line per problem, naming the field, its flag (if any) and environment variable."""
    lines = []
    for error in exc.errors(include_url=False):
        location = [str(part) for part in error.get("loc", ())]
        message = error["msg"].removeprefix("Value error, ")
        if location:
            field = location[0]
            got = error.get("input")
            shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
            lines.append(f"{_field_label(field)}: {message}{shown}")
        else:
            lines.append(message)
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; each flag's ``dest`` is the settings field it sets."""
    parser = argparse.ArgumentParser(
        prog="ensembles-serve", description="Serve ensembles with their uncertainty over HTTP."
    )
    parser.add_argument(
        "--store",
        help="model store folder or fsspec URL, e.g. s3://bucket/prefix (ENSEMBLES_STORE)",
    )
    parser.add_argument("--host", help="interface to bind, default 127.0.0.1 (ENSEMBLES_HOST)")
    parser.add_argument("--port", help="TCP port, default 8000 (ENSEMBLES_PORT)")
    parser.add_argument("--workers", help="worker processes (ENSEMBLES_WORKERS)")
    parser.add_argument(
        "--poll-interval",
        dest="poll_interval_s",
        help="seconds between store scans, 0 = off (ENSEMBLES_POLL_INTERVAL_S)",
    )
    parser.add_argument(
        "--max-wait-ms",
        dest="max_wait_ms",
        help="micro-batching wait, 0 = off (ENSEMBLES_MAX_WAIT_MS)",
    )
    parser.add_argument(
        "--max-microbatch-rows",
        dest="max_microbatch_rows",
        help="most rows per micro-batch (ENSEMBLES_MAX_MICROBATCH_ROWS)",
    )
    parser.add_argument(
        "--log-level", help="debug, info, warning, error, critical (ENSEMBLES_LOG_LEVEL)"
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="one JSON line per request (ENSEMBLES_ACCESS_LOG)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> ServingSettings:
    """Settings from flags, falling back to ``ENSEMBLES_*`` variables and defaults.

    Raises
    ------
    SettingsError
        One line per invalid field (flag or environment variable).
    """
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return ServingSettings(**given)
    except ValidationError as exc:
        raise SettingsError("\n".join(settings_problems(exc))) from None


def _share_metrics_across_workers(workers: int) -> str | None:
    """With several workers, point prometheus_client at a fresh folder (unless one is set).

    Returns the folder this call created (to remove at exit), or None.
    """
    if workers <= 1 or os.environ.get(MULTIPROC_ENV):
        return None
    folder = tempfile.mkdtemp(prefix="ensembles-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    return folder


def metrics_folder_problem() -> str | None:
    """Why a preset ``PROMETHEUS_MULTIPROC_DIR`` cannot hold the workers' metrics, or None.

    prometheus_client writes every worker's values into that folder from the first metric
    on; one that does not exist or cannot be written makes every load and scrape fail.
    """
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return None
    if not Path(folder).is_dir():
        return f"{MULTIPROC_ENV}={folder} is not a folder: create it, or unset the variable"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{MULTIPROC_ENV}={folder} is not writable by this user"
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Start uvicorn (uvloop + httptools) with the app factory and these settings.

    Several workers each listen on their own socket (``serving.workers``), so the kernel
    spreads connections evenly over them.

    Invalid settings print one line per problem to stderr and exit with status 2.
    """
    import uvicorn

    from serving.workers import SPREADS_CONNECTIONS, run_workers

    try:
        settings = parse_args(argv)
        problem = metrics_folder_problem()
        if problem is not None:
            raise SettingsError(problem)
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"ensembles-serve: error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    # Workers are separate processes that build their settings from the environment.
    for key, value in settings.model_dump(exclude={"token"}, exclude_none=True).items():
        os.environ[f"ENSEMBLES_{key.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    metrics_dir = _share_metrics_across_workers(settings.workers)
    options = {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_config": logging_config(settings.log_level, settings.log_json),
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": 10,
    }
    try:
        if settings.workers > 1 and SPREADS_CONNECTIONS:
            run_workers(uvicorn.Config(APP_FACTORY, **options))
        else:
            uvicorn.run(APP_FACTORY, **options)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
