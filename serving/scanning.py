"""What the registry knows of the store: one scan's listings, pointers and fingerprints.

Everything here touches the filesystem and runs in a worker thread, never on the event
loop; nothing raises out of a scan: one ensemble's trouble is logged and hides no other.
"""

from __future__ import annotations

import errno
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ensembles.errors import EnsembleError
from ensembles.store import CHECKSUM_FILE, MANIFEST_FILE, Fingerprint, ModelStore
from serving.errors import NotReadyError

logger = logging.getLogger(__name__)

#: OS errors that say nothing about a version's bytes (too many open files, an I/O hiccup,
#: kernel memory pressure, an object store out of reach: the store reports a filesystem
#: error that is no OSError as EIO): the load is retried on the next poll, not refused.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.EIO,
        errno.EAGAIN,
        errno.EINTR,
        errno.ENOMEM,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether a load failure may pass by itself (so the version is retried, not refused)."""
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def _spelled_alone(prefix: str, then: str = "") -> re.Pattern[str]:
    """``prefix`` (then ``then``) where it is a whole path: not inside a word or a longer
    path, so a store named ``m`` leaves the m of "match" alone."""
    edge = r"[\w.\-/<>]"  # < and >: the <store> a longer spelling left
    # after it, a dot or dash goes on the path only when more of the name follows
    ending = "" if then else r"(?![\w/<>]|[.\-][\w])"
    return re.compile(f"(?<!{edge}){re.escape(prefix + then)}{ending}")


@dataclass(frozen=True)
class EnsembleScan:
    """One ensemble as the last store scan saw it (read in a worker thread)."""

    versions: list[int]
    #: The newest version wanted: what ``latest`` names, or the newest version below it
    #: when it names one that does not exist (None: every version is wanted).
    latest: int | None
    latest_error: str | None
    #: Fingerprints of the versions this process refused, taken in the same scan (None
    #: where the filesystem could not say).
    fingerprints: dict[int, Fingerprint | None]


class StoreScanner:
    """Scan one model store for the registry.

    Parameters
    ----------
    store : ModelStore
        The store served.

    Attributes
    ----------
    missing : bool or None
        Whether the store folder was missing (or could not be reached) at the last scan
        (None before the first).
    unreachable : str or None
        Why the store could not be looked at, at the last scan (an object store's endpoint
        down, access denied, no such bucket); None when it could.
    not_a_folder : bool
        Whether the store's path was a file (or anything but a folder) at the last scan.
    """

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.missing: bool | None = None
        self.unreachable: str | None = None
        self.not_a_folder = False
        #: How messages may spell the root (as configured, resolved, or the filesystem's
        #: own path), longest first (resolved once, here): each as the start of a path
        #: (removed) and alone (shown as ``<store>``).
        self._spellings = [
            (_spelled_alone(prefix, "/"), _spelled_alone(prefix))
            for prefix in sorted(store.root_names(), key=len, reverse=True)
            if prefix not in ("", ".", "/")
        ]

    def relative(self, message: str) -> str:
        """``message`` with the store root removed from paths, so answers never show them.

        A file ``<root>/toy/2/members/m000.onnx`` becomes ``toy/2/members/m000.onnx``, and
        the root itself (not followed by ``/``) becomes ``<store>``; both the root as
        configured and its resolved absolute form are removed.
        """
        for as_parent, alone in self._spellings:
            message = alone.sub("<store>", as_parent.sub("", message))
        return message

    def scan(self, refused: dict[str, list[int]]) -> dict[str, EnsembleScan]:
        """Every ensemble's versions and latest pointer (worker thread; never raises).

        ``refused`` names the versions this process refused, to fingerprint them. While the
        store is missing or cannot be reached, nothing is listed (the loaded versions keep
        serving).
        """
        self._check_folder()
        if self.missing:
            return {}
        try:
            names = self.store.names()
        except OSError as exc:
            logger.error("cannot list the model store: %s", exc)
            return {}
        scans = {}
        for name in names:
            try:
                scans[name] = self._scan_one(name, refused.get(name, []))
            except Exception as exc:  # the listing of one ensemble must not hide the others
                logger.error("cannot scan %s: %s", name, exc, extra={"ensemble": name})
        return scans

    def _scan_one(self, name: str, refused: list[int]) -> EnsembleScan:
        versions = self.store.versions(name)
        latest, latest_error = None, None
        try:
            latest = self.store.latest(name)
        except (EnsembleError, OSError, ValueError) as exc:
            latest_error = self.relative(str(exc))
        if latest is not None and latest not in versions:
            versions = self.store.versions(name)  # a publish may have finished meanwhile
            if latest not in versions:  # deleted, never there, or damaged
                latest_error = f"latest names version {latest}, {self._not_listed(name, latest)}"
                # A rollback to a version deleted since stays a rollback: the newest one
                # below it is wanted; with none below, every version (never go dark).
                below = [v for v in versions if v < latest]
                latest = below[-1] if below else None
        prints = {v: self.fingerprint(name, v) for v in refused if v in versions}
        return EnsembleScan(versions, latest, latest_error, prints)

    def _not_listed(self, name: str, version: int) -> str:
        """Why ``version`` is no version: it has no manifest, or (on an object store) it
        was committed but its manifest or checksum changed since."""
        try:
            damaged = not self.store.is_local and version in self.store.unlisted_versions(name)
        except OSError:  # out of reach right now: the plain reason, and the scan goes on
            damaged = False
        if damaged:
            return (
                f"which no longer verifies: its {MANIFEST_FILE} or {CHECKSUM_FILE} changed "
                "since it was published (ensembles-store check names the problem)"
            )
        return "which has no manifest"

    def fingerprint(self, name: str, version: int) -> Fingerprint | None:
        """The version's fingerprint (worker thread), or None when the filesystem cannot
        say right now (an object store out of reach)."""
        try:
            return self.store.fingerprint(name, version)
        except OSError as exc:
            logger.warning("cannot fingerprint %s version %d: %s", name, version, exc)
            return None

    def listing(self, name: str) -> list[int]:
        """The versions of ``name`` in the store now (worker thread).

        Raises
        ------
        NotReadyError
            When the folder cannot be listed right now (an OS error).
        """
        try:
            return self.store.versions(name)
        except OSError as exc:
            reason = self.relative(str(exc))
            raise NotReadyError(
                f"cannot list '{name}' right now ({reason}); retry shortly"
            ) from exc

    def _check_folder(self) -> None:
        unreachable = None
        try:
            missing = not self.store.exists()
        except OSError as exc:  # EACCES, EIO on a parent; an endpoint down: as good as missing
            missing, unreachable = True, exc.strerror or str(exc)
            if exc.filename is not None and str(exc.filename) != str(self.store.root):
                unreachable += f" ({exc.filename})"
        root = self.store.root
        not_a_folder = missing and unreachable is None and self._is_a_file()
        if unreachable is not None:
            if unreachable != self.unreachable:
                logger.warning(
                    "cannot look at the model store %s: %s. Serving what is loaded; trying "
                    "again at every poll.",
                    root,
                    unreachable,
                )
        elif missing and (self.missing is not True or self.unreachable is not None):
            if not_a_folder:
                logger.warning(
                    "model store %s is a file, not a folder: give --store the folder that "
                    "training published into. Serving nothing until it is a folder.",
                    root,
                )
            else:
                logger.warning(
                    "model store folder %s does not exist; create one with "
                    "'python scripts/train.py --store %s'. Serving nothing until it appears.",
                    root,
                    root,
                )
        elif not missing and self.missing:
            logger.info("model store folder %s appeared", root)
        self.missing, self.unreachable, self.not_a_folder = missing, unreachable, not_a_folder

    def _is_a_file(self) -> bool:
        return self.store.is_local and Path(self.store.root).exists()
