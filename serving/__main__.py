"""Command line: ``python -m serving --store DIR`` (also the ``ensembles-serve`` command)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from serving.logs import logging_config
from serving.settings import ServingSettings

APP_FACTORY = "serving.app:create_app"


def parse_args(argv: Sequence[str] | None = None) -> ServingSettings:
    """Settings from flags, falling back to ``ENSEMBLES_*`` variables and defaults."""
    parser = argparse.ArgumentParser(
        prog="ensembles-serve", description="Serve ensembles with their uncertainty over HTTP."
    )
    parser.add_argument("--store", help="model store folder (ENSEMBLES_STORE)")
    parser.add_argument("--host", help="interface to bind, default 127.0.0.1 (ENSEMBLES_HOST)")
    parser.add_argument("--port", type=int, help="TCP port, default 8000 (ENSEMBLES_PORT)")
    parser.add_argument("--workers", type=int, help="worker processes (ENSEMBLES_WORKERS)")
    parser.add_argument(
        "--poll-interval",
        type=float,
        dest="poll_interval_s",
        help="seconds between store scans, 0 = off (ENSEMBLES_POLL_INTERVAL_S)",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        dest="max_wait_ms",
        help="micro-batching wait, 0 = off (ENSEMBLES_MAX_WAIT_MS)",
    )
    parser.add_argument(
        "--max-microbatch-rows",
        type=int,
        dest="max_microbatch_rows",
        help="most rows per micro-batch (ENSEMBLES_MAX_MICROBATCH_ROWS)",
    )
    parser.add_argument("--log-level", help="debug, info, warning (ENSEMBLES_LOG_LEVEL)")
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return ServingSettings(**given)


def main(argv: Sequence[str] | None = None) -> None:
    """Start uvicorn (uvloop + httptools) with the app factory and these settings."""
    import uvicorn

    settings = parse_args(argv)
    # Workers are separate processes that build their settings from the environment.
    for key, value in settings.model_dump(exclude={"token"}).items():
        os.environ[f"ENSEMBLES_{key.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=logging_config(settings.log_level, settings.log_json),
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
