"""The registry of loaded versions: which version serves, background loading, polling, swaps."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ensembles.errors import EnsembleError, NotFoundError
from ensembles.store import Fingerprint, ModelStore, validate_name
from serving.errors import NotReadyError, UnknownVersionError, VersionRefusedError
from serving.metrics import ServingMetrics
from serving.runtime import EnsembleRuntime
from serving.scanning import EnsembleScan, StoreScanner, is_transient
from serving.settings import ServingSettings

logger = logging.getLogger(__name__)

LoadState = Literal["loading", "loaded", "refused", "retrying", "unloaded"]
#: A fallback's reason gives at most this many reasons (the newest versions first), so
#: that it stays one readable line however many refused versions pile up in the store.
MAX_REASONS = 3


@dataclass
class VersionState:
    """What happened to one version in this process."""

    version: int
    state: LoadState
    reason: str | None = None
    since: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    #: The version's fingerprint when it was refused (it is retried when that changes).
    fingerprint: Fingerprint | None = field(default=None, repr=False)

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
    #: Versions with a manifest, as of the last scan.
    listed: list[int] = field(default_factory=list)
    #: While the newest wanted version is not the one served: which it is, and why.
    fallback: dict[str, Any] | None = None


class EnsembleRegistry:
    """Load the newest intact version of every ensemble and keep it current.

    Parameters
    ----------
    settings : ServingSettings
        Store folder, poll interval, runtime options.
    metrics : ServingMetrics, optional
        Receives loaded versions, refusals and batch sizes.

    Notes
    -----
    Every filesystem call (scans, checksums, signatures, sessions, warm-up) runs in a worker
    thread; the swap of the current version is a single assignment in the event loop, so a
    request sees either the old or the new runtime, and the old one is closed only when its
    in-flight requests are done.

    The ensemble never goes dark when it could serve: at start and at every poll the
    versions up to the ``latest`` pointer (every version when the pointer is unreadable)
    are tried newest first, and the newest that loads is served. A refused version is
    recorded with its reason and retried only when its files change (versions are
    immutable); a transient OS error (EMFILE, EIO, ...) is retried at the next poll. While
    an older version serves because a newer one was refused, :meth:`fallback` says which and
    why, and the logs say it once per change. Any exception while reading one version
    refuses that version alone.

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
        self._scanner = StoreScanner(self.store)
        self._loads = 0

    # -- lookups (no filesystem calls: they answer from the last scan) -----------------
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

    def fallback(self, name: str) -> dict[str, Any] | None:
        """While ``name`` serves an older version than the newest one wanted: why.

        Returns
        -------
        dict or None
            ``{"serving": version or None, "newest": version, "reason": str}``; None when the
            newest wanted version is the one served.
        """
        entry = self._entries.get(name)
        return None if entry is None else entry.fallback

    def store_info(self) -> dict[str, Any]:
        """Whether the store folder exists (without its server path), and what to do if not."""
        exists = self._scanner.missing is not True
        listed = sum(1 for entry in self._entries.values() if entry.listed)
        info: dict[str, Any] = {"exists": exists, "ensembles": listed}
        if self._scanner.unreachable is not None:
            info["hint"] = (
                "the model store cannot be reached right now (see the server's log); the "
                "versions loaded keep serving and the store is tried again at every poll"
            )
        elif self._scanner.not_a_folder:
            info["hint"] = (
                "the model store path is a file, not a folder: start the server with the "
                "folder that training published into (--store DIR)"
            )
        elif not exists:
            info["hint"] = (
                "the model store folder does not exist yet; create one with "
                "'python scripts/train.py --store DIR' (the server picks it up when it appears)"
            )
        return info

    def version_states(self, name: str) -> list[dict[str, Any]]:
        """Every version in the store (last scan) and in memory with its state, oldest first."""
        entry = self._entries.get(name) or _Entry()
        states = dict(entry.states)
        for version in entry.listed:
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
            listed = entry.listed if entry else await asyncio.to_thread(self._scanner.listing, name)
            if not listed:
                raise NotFoundError(self.unknown_message(name))
            if entry is not None and entry.fallback is not None and not entry.loading:
                reason = entry.fallback["reason"]
                if any(state.state == "retrying" for state in entry.states.values()):
                    raise NotReadyError(f"'{name}' is not loaded yet ({reason}); retry shortly")
                raise VersionRefusedError(f"'{name}' has no servable version: {reason}")
            raise NotReadyError(f"'{name}' is not loaded yet; retry shortly")
        if entry is not None and version in entry.runtimes:
            entry.last_used[version] = time.monotonic()
            return entry.runtimes[version]
        state = entry.states.get(version) if entry else None
        if state is not None and state.state == "refused":
            raise VersionRefusedError(f"'{name}' version {version} was refused: {state.reason}")
        available = entry.listed if entry is not None and version in entry.listed else None
        if available is None:  # not seen by the last scan: look now
            available = await asyncio.to_thread(self._scanner.listing, name)
        if not available:
            raise NotFoundError(self.unknown_message(name))
        if version not in available:
            raise UnknownVersionError(
                f"ensemble '{name}' has no version {version}; available versions: {available}"
            )
        runtime = await self._load(name, version, make_current=False)
        if runtime is None:
            state = self._entries[name].states[version]
            if state.state == "retrying":
                raise NotReadyError(
                    f"'{name}' version {version} could not be loaded ({state.reason}); "
                    "retry shortly"
                )
            raise VersionRefusedError(f"'{name}' version {version} was refused: {state.reason}")
        return runtime

    @property
    def loads(self) -> int:
        """Versions loaded (or refused) by this registry so far: one per load attempt."""
        return self._loads

    def unknown_message(self, name: str) -> str:
        """The 404 message for ``name``: the known ensembles, never the store's server path."""
        known = [n for n, entry in sorted(self._entries.items()) if entry.listed]
        return self.store.not_found_message(name, show_root=False, known=known)

    # -- loading -----------------------------------------------------------------------
    async def refresh(self) -> dict[str, Any]:
        """Scan the store once and serve the newest intact version of every ensemble.

        Returns
        -------
        dict
            ``{name: {"current": version or None}}`` after the scan.
        """
        async with self._refresh_lock:
            refused = {
                name: [v for v, state in entry.states.items() if state.state == "refused"]
                for name, entry in self._entries.items()
            }
            scans = await asyncio.to_thread(self._scanner.scan, refused)
            for name, scan in scans.items():
                entry = self._entries.setdefault(name, _Entry())
                entry.listed = scan.versions
                self._note_latest(name, entry, scan.latest_error)
                try:
                    await self._serve_newest(name, entry, scan)
                except Exception:  # one ensemble's trouble never stops the others
                    logger.exception("could not refresh %s", name, extra={"ensemble": name})
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

    async def _serve_newest(self, name: str, entry: _Entry, scan: EnsembleScan) -> None:
        """Try the wanted versions newest first; serve the first that loads.

        Wanted are the versions up to the ``latest`` pointer. While the pointer cannot be
        read, a version already serving keeps serving (an operator's rollback stays rolled
        back); only an ensemble serving nothing tries every version.
        """
        ceiling = scan.latest if scan.latest is not None else entry.current
        wanted = sorted((v for v in scan.versions if ceiling is None or v <= ceiling), reverse=True)
        skipped: list[str] = []
        self._forget_repaired(name, entry, scan)
        for version in wanted:
            if version == entry.current:
                break
            state = entry.states.get(version)
            if state is not None and state.state == "refused":
                skipped.append(_why_not_served(state))
                continue
            if await self._load(name, version, make_current=True) is not None:
                break
            skipped.append(_why_not_served(entry.states[version]))
        newest = scan.latest if scan.latest is not None else (wanted[0] if wanted else None)
        self._note_fallback(name, entry, newest, skipped)

    def _forget_repaired(self, name: str, entry: _Entry, scan: EnsembleScan) -> None:
        """Make refused versions whose files changed since loadable again, older ones too.

        A newer one is then tried by this scan; an older one loads when a request asks for
        it, as any version not loaded does.
        """
        for version, prints in scan.fingerprints.items():
            state = entry.states.get(version)
            if state is None or state.state != "refused":
                continue
            if prints is None or prints == state.fingerprint:  # None: cannot tell now
                continue
            logger.info("files of refused %s version %d changed; trying it again", name, version)
            entry.states[version] = VersionState(
                version, "unloaded", "its files changed since it was refused"
            )

    def _note_fallback(
        self, name: str, entry: _Entry, newest: int | None, skipped: list[str]
    ) -> None:
        """Record (and log once per change) why the newest wanted version is not served."""
        if newest is None or entry.current == newest:
            if entry.fallback is not None:
                logger.info("%s serves its newest version %s again", name, entry.current)
            entry.fallback = None
            return
        fallback = {"serving": entry.current, "newest": newest, "reason": _reason(skipped)}
        if fallback != entry.fallback:
            logger.error(
                "%s serves version %s instead of version %d: %s",
                name,
                entry.current,
                newest,
                fallback["reason"],
                extra={"ensemble": name, "version": entry.current},
            )
        entry.fallback = fallback

    def _note_latest(self, name: str, entry: _Entry, error: str | None) -> None:
        """Record a garbage ``latest`` pointer, logging once per change rather than per poll."""
        if error is None:
            if entry.latest_error is not None:
                logger.info("the latest pointer of %s is readable again", name)
        elif error != entry.latest_error:
            logger.error(
                "cannot read the latest version of %s: %s (the version serving keeps serving; "
                "with none, every version is tried newest first)",
                name,
                error,
                extra={"ensemble": name},
            )
        entry.latest_error = error

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
        prints: Fingerprint | None = None
        try:
            options = self._runtime_options(name)
            prints = await asyncio.to_thread(self.store.fingerprint, name, version)
            runtime = await asyncio.to_thread(
                EnsembleRuntime.load, self.store, name, version, **options
            )
        except Exception as exc:  # whatever one version's bytes do, only it is refused
            self._refuse(name, version, exc, prints)
            return None
        entry.runtimes[version] = runtime
        entry.states[version] = VersionState(version, "loaded")
        return runtime

    def _refuse(self, name: str, version: int, exc: Exception, prints: Fingerprint | None) -> None:
        """Record why a version failed to load: for good (refused) or until the next poll."""
        entry = self._entries[name]
        reason = self._scanner.relative(str(exc) or type(exc).__name__)
        if not isinstance(exc, EnsembleError | OSError):
            reason = f"{type(exc).__name__}: {reason}"
        transient = is_transient(exc)
        state: LoadState = "retrying" if transient else "refused"
        entry.states[version] = VersionState(version, state, reason, fingerprint=prints)
        logger.error(
            "%s %s version %d: %s (serving version %s)",
            "could not load (will retry)" if transient else "refused",
            name,
            version,
            reason,
            entry.current,
            extra={"ensemble": name, "version": version},
        )
        if self.metrics is not None and not transient:
            self.metrics.refusals.labels(name).inc()

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
            self.metrics.now_serving(name, entry.runtimes[version])

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
            "inline_rows": s.inline_rows,
            "on_batch": self.metrics.batch_hook(name) if self.metrics else None,
            "on_prediction": self.metrics.observe_batch if self.metrics else None,
        }


def _reason(skipped: list[str]) -> str:
    """Why the newest versions are not served: the first reasons, newest first, the rest
    counted."""
    shown = "; ".join(skipped[:MAX_REASONS])
    rest = len(skipped) - MAX_REASONS
    return f"{shown}; and {rest} more" if rest > 0 else shown


def _why_not_served(state: VersionState) -> str:
    """One clause of a fallback's reason: a version refused, or waiting for a retry."""
    if state.state == "retrying":
        return f"version {state.version} could not be loaded (retrying): {state.reason}"
    return f"version {state.version} was refused: {state.reason}"
