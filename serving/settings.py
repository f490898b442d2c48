"""Serving settings: one pydantic-settings object filled from CLI flags and ``ENSEMBLES_*``."""

from __future__ import annotations

import ipaddress
import os
import socket
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ensembles.errors import StoreError
from ensembles.machine import usable_cores
from ensembles.store import ModelStore

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
#: The environment variable prometheus_client reads (at import) to share metrics across
#: worker processes through files in that folder (set by ``python -m serving --workers N``).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The most worker processes started by default: each holds every ensemble in memory and
#: polls the store, which a large machine should ask for explicitly.
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """One worker process per usable core (affinity and cgroup quota), at most
    :data:`MAX_DEFAULT_WORKERS`."""
    return min(usable_cores(), MAX_DEFAULT_WORKERS)


class ServingSettings(BaseSettings):
    """Everything the server can be told; each field also reads ``ENSEMBLES_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ENSEMBLES_", extra="forbid")

    store: str = "model_store"
    """Model store the server reads (never writes): a folder, or an fsspec URL such as
    ``s3://bucket/prefix`` (endpoint and credentials from fsspec's and the filesystem's own
    configuration, e.g. ``FSSPEC_S3_ENDPOINT_URL`` and the ``AWS_*`` variables)."""

    host: str = "127.0.0.1"
    """Interface to bind; loopback by default."""

    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port."""

    workers: int = Field(default_factory=default_workers, ge=1)
    """Uvicorn worker processes, each with every ensemble loaded; by default one per usable
    core (:func:`default_workers`), since one process keeps about one core busy."""

    token: SecretStr | None = None
    """Bearer token required by predict and admin routes when set (``ENSEMBLES_TOKEN``)."""

    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest request body accepted, after decompression too."""

    max_batch_rows: int = Field(default=4096, ge=1)
    """Largest number of rows in one request."""

    max_microbatch_rows: int = Field(default=512, ge=1)
    """Most rows coalesced into one micro-batch (one onnxruntime call); past a few hundred
    rows the cost per row no longer falls while latency grows. A larger request runs alone."""

    batching: bool = True
    """Micro-batch concurrent requests into one onnxruntime call per ensemble."""

    max_wait_ms: float = Field(default=1.0, ge=0.0)
    """Micro-batching: longest extra wait for more requests under load."""

    inline_rows: int = Field(default=128, ge=0)
    """Micro-batches of at most this many rows run on the event loop instead of the
    batcher's worker thread: with a worker process per core there is no idle core for the
    thread to use, and the hop into it and back costs as much as a small batch's own work.
    0 runs every batch in the thread."""

    max_queue_rows: int = Field(default=65536, ge=1)
    """Rows allowed in flight per ensemble (queued or running) before requests are refused
    with 503; at least ``max_batch_rows``, so one full request always fits."""

    poll_interval_s: float = Field(default=2.0, ge=0.0)
    """Seconds between store scans for new versions (0 = only on explicit reload)."""

    max_versions: int = Field(default=3, ge=1)
    """Versions kept loaded per ensemble (the current one plus the most recently asked)."""

    intra_op_threads: int = Field(default=1, ge=1)
    """onnxruntime threads inside one operator (1 is fastest for small MLPs on 2 cores)."""

    interval_level: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Probability mass of the regression prediction intervals of every version; None (the
    default) serves each version at the level it was trained and scored at (its manifest's
    ``training.interval_level``), so that served intervals are the ones its coverage
    describes."""

    log_level: LogLevel = "info"
    """Root log level of the server process."""

    log_json: bool = True
    """Write structured (JSON) log lines when started from the command line."""

    access_log: bool = False
    """Log one JSON line per request (logger ``serving.access``): route, status, latency,
    ensemble, version and request id."""

    @field_validator("store", mode="before")
    @classmethod
    def _store_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("store")
    @classmethod
    def _store_opens(cls, value: str) -> str:
        try:
            ModelStore(value)  # an unknown protocol, or its package missing
        except StoreError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("host")
    @classmethod
    def _host_resolves(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
        try:
            socket.getaddrinfo(value, None)
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ValueError(
                f"is neither an IP address nor a name this machine resolves ({reason})"
            ) from None
        return value

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(
                "is empty: an empty token would let an empty Authorization header in; set "
                "one, or unset ENSEMBLES_TOKEN to serve without"
            )
        return value

    @model_validator(mode="after")
    def _check_limits(self) -> ServingSettings:
        if self.max_queue_rows < self.max_batch_rows:
            raise ValueError(
                f"max_queue_rows ({self.max_queue_rows}) must be at least max_batch_rows "
                f"({self.max_batch_rows}), or a request of max_batch_rows rows could never run"
            )
        return self

    @property
    def exposed(self) -> bool:
        """Whether ``host`` is reachable from other machines (not a loopback address)."""
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return True


@lru_cache
def get_settings() -> ServingSettings:
    """The settings of this process, read once from the environment (tests override it)."""
    return ServingSettings()
