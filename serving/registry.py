"""The registry of loaded versions: background loading, polling, atomic swaps, refusals."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ensembles.errors import EnsembleError, NotFoundError
from ensembles.store import ModelStore, validate_name
from serving.errors import NotReadyError, VersionRefusedError
from serving.metrics import ServingMetrics
from serving.runtime import EnsembleRuntime
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)

LoadState = Literal["loading", "loaded", "refused", "unloaded"]


@dataclass
class VersionState:
    """What happened to one version in this process."""

    version: int
    state: LoadState
    reason: str | None = None
    since: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def to_dict(self, current: int | None) -> dict[str, Any]:
        """JSON-ready form, flagging the version being served."""
        return {
            "version": self.version,
            "state": self.state,
            "current": self.version == current,
            "reason": self.reason,
            "since": self.since,
        }


@dataclass
class _Entry:
    current: int | None = None
    runtimes: dict[int, EnsembleRuntime] = field(default_factory=dict)
    states: dict[int, VersionState] = field(default_factory=dict)
    #: Loads in progress: every caller asking for the same version awaits the one task.
    loading: dict[int, asyncio.Task[EnsembleRuntime | None]] = field(default_factory=dict)
    #: ``time.monotonic()`` of the last request served by each loaded version (for LRU).
    last_used: dict[int, float] = field(default_factory=dict)
    #: Why the ``latest`` pointer cannot be read, while it cannot.
    latest_error: str | None = None


def relative_message(message: str, root: Path) -> str:
    """``message`` with the store root removed from paths, so answers never show server paths.

    Both the root as configured and its resolved absolute form are removed: a file
    ``<root>/toy/2/members/m000.onnx`` becomes ``toy/2/members/m000.onnx``, and the root
    itself (not followed by ``/``) becomes ``<store>``.

    Parameters
    ----------
    message : str
        A message that may name files under the store.
    root : Path
        The store root, as configured (relative or absolute).

    Returns
    -------
    str
        The message with paths relative to the store root.
    """
    for prefix in sorted({str(root), str(root.resolve())}, key=len, reverse=True):
        if prefix in ("", "."):
            continue
        message = message.replace(prefix + "/", "").replace(prefix, "<store>")
    return message


class EnsembleRegistry:
    """Load the latest version of every ensemble and keep it current.

    Parameters
    ----------
    settings : ServingSettings
        Store folder, poll interval, runtime options.
    metrics : ServingMetrics, optional
        Receives loaded versions, refusals and batch sizes.

    Notes
    -----
    Loading (checksums, signatures, sessions, warm-up) runs in a worker thread; the swap of
    the current version is a single assignment in the event loop, so a request sees either
    the old or the new runtime, and the old one is closed only when its in-flight requests
    are done. A refused version is recorded with its reason and never retried (versions are
    immutable); the previous version keeps serving.

    At most ``max_versions`` versions stay loaded per ensemble: the current one and the most
    recently used others; the least recently used is unloaded first, never the current one
    nor the one a request just asked for. Concurrent requests for a version that is not
    loaded share one load.
    """

    def __init__(self, settings: ServingSettings, metrics: ServingMetrics | None = None) -> None:
        self.settings = settings
        self.store = ModelStore(settings.store)
        self.metrics = metrics
        self.ready = False
        self._entries: dict[str, _Entry] = {}
        self._refresh_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._store_missing: bool | None = None
        self._loads = 0

    # -- lookups -----------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of the ensembles known to this process, sorted."""
        return sorted(self._entries)

    def current(self, name: str) -> EnsembleRuntime | None:
        """The runtime serving ``name`` by default, or None."""
        entry = self._entries.get(name)
        return None if entry is None or entry.current is None else entry.runtimes[entry.current]

    def loaded(self, name: str, version: int | None = None) -> EnsembleRuntime | None:
        """A loaded runtime (the current one when ``version`` is None), without loading."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        return self.current(name) if version is None else entry.runtimes.get(version)

    def latest_error(self, name: str) -> str | None:
        """Why ``name``'s ``latest`` pointer cannot be read, or None when it can."""
        entry = self._entries.get(name)
        return None if entry is None else entry.latest_error

    def store_info(self) -> dict[str, Any]:
        """Whether the store folder exists (without its server path), and what to do if not."""
        exists = self.store.root.is_dir()
        info: dict[str, Any] = {"exists": exists, "ensembles": len(self.store.names())}
        if not exists:
            info["hint"] = (
                "the model store folder does not exist yet; create one with "
                "'python scripts/train.py --store DIR' (the server picks it up when it appears)"
            )
        return info

    def version_states(self, name: str) -> list[dict[str, Any]]:
        """Every version in the store and in memory with its load state, oldest first."""
        entry = self._entries.get(name) or _Entry()
        states = dict(entry.states)
        for version in self.store.versions(name) if self._exists(name) else []:
            states.setdefault(version, VersionState(version, "unloaded", "not loaded"))
        return [states[v].to_dict(entry.current) for v in sorted(states)]

    async def get(self, name: str, version: int | None = None) -> EnsembleRuntime:
        """The runtime for a request, loading an asked-for older version on demand.

        Raises
        ------
        StoreError
            When the name is invalid.
        NotFoundError
            When the ensemble or version does not exist.
        VersionRefusedError
            When the version was refused at load time.
        NotReadyError
            When the ensemble has no loaded version yet.
        """
        validate_name(name)
        entry = self._entries.get(name)
        if version is None:
            if entry is not None and entry.current is not None:
                return entry.runtimes[entry.current]
            if not self._exists(name):
                raise NotFoundError(self.unknown_message(name))
            refused = [s for s in (entry.states.values() if entry else []) if s.state == "refused"]
            if refused:
                raise VersionRefusedError(
                    f"'{name}' has no servable version: version {refused[-1].version} was "
                    f"refused: {refused[-1].reason}"
                )
            raise NotReadyError(f"'{name}' is not loaded yet; retry shortly")
        if entry is not None and version in entry.runtimes:
            entry.last_used[version] = time.monotonic()
            return entry.runtimes[version]
        state = entry.states.get(version) if entry else None
        if state is not None and state.state == "refused":
            raise VersionRefusedError(f"'{name}' version {version} was refused: {state.reason}")
        available = self.store.versions(name) if self._exists(name) else []
        if not available:
            raise NotFoundError(self.unknown_message(name))
        if version not in available:
            raise NotFoundError(
                f"ensemble '{name}' has no version {version}; available versions: {available}"
            )
        runtime = await self._load(name, version, make_current=False)
        if runtime is None:
            state = self._entries[name].states[version]
            raise VersionRefusedError(f"'{name}' version {version} was refused: {state.reason}")
        return runtime

    @property
    def loads(self) -> int:
        """Versions loaded (or refused) by this registry so far: one per load attempt."""
        return self._loads

    # -- loading -----------------------------------------------------------------------
    async def refresh(self) -> dict[str, Any]:
        """Scan the store once and load every new latest version.

        Returns
        -------
        dict
            ``{name: {"current": version or None, "versions": [...]}}`` after the scan.
        """
        async with self._refresh_lock:
            self._check_store_folder()
            latest = await asyncio.to_thread(self._scan)
            for name, found in latest.items():
                entry = self._entries.setdefault(name, _Entry())
                version = self._note_latest(name, entry, found)
                state = entry.states.get(version) if version is not None else None
                if version is None or (state is not None and state.state == "refused"):
                    continue
                await self._load(name, version, make_current=True)
            self.ready = True
        return {n: {"current": self._entries[n].current} for n in self.names()}

    async def poll_forever(self) -> None:
        """Refresh every ``poll_interval_s`` seconds until cancelled."""
        interval = self.settings.poll_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # keep polling whatever one scan hit
                logger.exception("store scan failed")

    async def close(self) -> None:
        """Close every runtime (waiting for in-flight requests)."""
        runtimes = [rt for entry in self._entries.values() for rt in entry.runtimes.values()]
        await asyncio.gather(*(rt.aclose() for rt in runtimes), *self._closing)

    def _check_store_folder(self) -> None:
        missing = not self.store.root.is_dir()
        if missing and self._store_missing is not True:
            logger.warning(
                "model store folder %s does not exist; create one with "
                "'python scripts/train.py --store %s'. Serving nothing until it appears.",
                self.store.root,
                self.store.root,
            )
        elif not missing and self._store_missing:
            logger.info("model store folder %s appeared", self.store.root)
        self._store_missing = missing

    def _scan(self) -> dict[str, int | EnsembleError]:
        """Every ensemble's latest version, or why it cannot be read (worker thread)."""
        latest: dict[str, int | EnsembleError] = {}
        for name in self.store.names():
            try:
                latest[name] = self.store.latest(name)
            except EnsembleError as exc:
                latest[name] = exc
        return latest

    def _note_latest(self, name: str, entry: _Entry, found: int | EnsembleError) -> int | None:
        """Record a garbage ``latest`` pointer, logging once per change rather than per poll."""
        if isinstance(found, int):
            if entry.latest_error is not None:
                logger.info("the latest pointer of %s is readable again", name)
            entry.latest_error = None
            return found
        reason = relative_message(str(found), self.store.root)
        if reason != entry.latest_error:
            logger.error(
                "cannot read the latest version of %s: %s (still serving version %s)",
                name,
                reason,
                entry.current,
                extra={"ensemble": name},
            )
        entry.latest_error = reason
        return None

    async def _load(self, name: str, version: int, *, make_current: bool) -> EnsembleRuntime | None:
        """Load one version, or join the load of it already in progress."""
        entry = self._entries.setdefault(name, _Entry())
        if version in entry.runtimes:
            entry.last_used[version] = time.monotonic()
            if make_current and entry.current != version:
                self._swap(name, version)
            return entry.runtimes[version]
        task = entry.loading.get(version)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load_once(name, version))
            entry.loading[version] = task
            task.add_done_callback(lambda _: entry.loading.pop(version, None))
        # Shielded: a caller that goes away must not cancel the load others wait for.
        runtime = await asyncio.shield(task)
        if runtime is not None:
            entry.last_used[version] = time.monotonic()
            if make_current and entry.current != version:
                self._swap(name, version)
            self._evict(name, keep_version=version)
        return runtime

    async def _load_once(self, name: str, version: int) -> EnsembleRuntime | None:
        entry = self._entries[name]
        self._loads += 1
        entry.states[version] = VersionState(version, "loading")
        logger.info("loading %s version %d", name, version, extra={"ensemble": name})
        options = self._runtime_options(name)
        try:
            runtime = await asyncio.to_thread(
                EnsembleRuntime.load, self.store, name, version, **options
            )
        except (EnsembleError, OSError) as exc:
            reason = relative_message(str(exc), self.store.root)
            entry.states[version] = VersionState(version, "refused", reason)
            logger.error(
                "refused %s version %d: %s (still serving version %s)",
                name,
                version,
                reason,
                entry.current,
                extra={"ensemble": name, "version": version},
            )
            if self.metrics is not None:
                self.metrics.refusals.labels(name).inc()
            return None
        entry.runtimes[version] = runtime
        entry.states[version] = VersionState(version, "loaded")
        return runtime

    def _swap(self, name: str, version: int) -> None:
        entry = self._entries[name]
        previous, entry.current = entry.current, version
        logger.info(
            "%s now serves version %d (was %s)",
            name,
            version,
            previous,
            extra={"ensemble": name, "version": version},
        )
        if self.metrics is not None:
            self.metrics.loaded_version.labels(name).set(version)
            self.metrics.reset_drift(name)

    def _evict(self, name: str, keep_version: int | None = None) -> None:
        """Unload least recently used versions beyond ``max_versions``.

        Never the current version, nor ``keep_version`` (the one a caller is about to use).
        """
        entry = self._entries[name]
        protected = {entry.current, keep_version} - {None}
        candidates = sorted(
            (v for v in entry.runtimes if v not in protected),
            key=lambda v: entry.last_used.get(v, 0.0),
        )
        while len(entry.runtimes) > self.settings.max_versions and candidates:
            version = candidates.pop(0)
            runtime = entry.runtimes.pop(version)
            entry.last_used.pop(version, None)
            entry.states[version] = VersionState(
                version, "unloaded", "evicted: least recently used"
            )
            logger.info(
                "unloaded %s version %d (least recently used)",
                name,
                version,
                extra={"ensemble": name, "version": version},
            )
            task = asyncio.get_running_loop().create_task(runtime.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if self.metrics is not None:
            self.metrics.versions_loaded.labels(name).set(len(entry.runtimes))

    def _runtime_options(self, name: str) -> dict[str, Any]:
        s = self.settings
        return {
            "intra_op_threads": s.intra_op_threads,
            "interval_level": s.interval_level,
            "batching": s.batching,
            "max_wait_ms": s.max_wait_ms,
            "max_batch_rows": s.max_batch_rows,
            "max_microbatch_rows": s.max_microbatch_rows,
            "max_queue_rows": s.max_queue_rows,
            "on_batch": self.metrics.batch_hook(name) if self.metrics else None,
            "on_prediction": self.metrics.observe_batch if self.metrics else None,
        }

    def _exists(self, name: str) -> bool:
        return bool(self.store.versions(name))

    def unknown_message(self, name: str) -> str:
        """The 404 message for ``name``: the known ensembles, never the store's server path."""
        return self.store.not_found_message(name, show_root=False)
