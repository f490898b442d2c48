"""What the registry knows of the store: one scan's listings, pointers and fingerprints.

Everything here touches the filesystem and runs in a worker thread, never on the event
loop; nothing raises out of a scan: one ensemble's trouble is logged and hides no other.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path

from ensembles.errors import EnsembleError
from ensembles.store import ModelStore
from serving.errors import NotReadyError

logger = logging.getLogger(__name__)

#: OS errors that say nothing about a version's bytes (too many open files, an I/O hiccup,
#: kernel memory pressure): the load is retried on the next poll instead of refused for good.
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
    }
)

#: ``(relative path, size, mtime_ns, mode)`` of every entry of a version folder: a refused
#: version is retried only when this changes.
Fingerprint = tuple[tuple[str, int, int, int], ...]


def is_transient(exc: BaseException) -> bool:
    """Whether a load failure may pass by itself (so the version is retried, not refused)."""
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def fingerprint(folder: Path) -> Fingerprint:
    """What identifies the state of a version folder's files, from ``stat`` alone.

    Unreadable entries are fingerprinted by what can be seen, so a permission fix changes
    the fingerprint too.
    """
    entries = []
    for path in sorted(folder.rglob("*")):
        try:
            info = path.stat()
        except OSError:
            continue
        entries.append(
            (path.relative_to(folder).as_posix(), info.st_size, info.st_mtime_ns, info.st_mode)
        )
    try:
        info = folder.stat()
        entries.append((".", 0, info.st_mtime_ns, info.st_mode))
    except OSError:
        pass
    return tuple(entries)


@dataclass(frozen=True)
class EnsembleScan:
    """One ensemble as the last store scan saw it (read in a worker thread)."""

    versions: list[int]
    latest: int | None
    latest_error: str | None
    #: Fingerprints of the versions this process refused, taken in the same scan.
    fingerprints: dict[int, Fingerprint]


class StoreScanner:
    """Scan one model store for the registry.

    Parameters
    ----------
    store : ModelStore
        The store served.

    Attributes
    ----------
    missing : bool or None
        Whether the store folder was missing at the last scan (None before the first).
    """

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.missing: bool | None = None
        root = store.root
        #: The root as configured and resolved, longest first (resolved once, here).
        self._prefixes = [
            prefix
            for prefix in sorted({str(root), str(root.resolve())}, key=len, reverse=True)
            if prefix not in ("", ".")
        ]

    def relative(self, message: str) -> str:
        """``message`` with the store root removed from paths, so answers never show them.

        A file ``<root>/toy/2/members/m000.onnx`` becomes ``toy/2/members/m000.onnx``, and
        the root itself (not followed by ``/``) becomes ``<store>``; both the root as
        configured and its resolved absolute form are removed.
        """
        for prefix in self._prefixes:
            message = message.replace(prefix + "/", "").replace(prefix, "<store>")
        return message

    def scan(self, refused: dict[str, list[int]]) -> dict[str, EnsembleScan]:
        """Every ensemble's versions and latest pointer (worker thread; never raises).

        ``refused`` names the versions this process refused, to fingerprint them.
        """
        self._check_folder()
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
        prints = {v: fingerprint(self.store.path(name, v)) for v in refused if v in versions}
        return EnsembleScan(versions, latest, latest_error, prints)

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
        try:
            missing = not self.store.root.is_dir()
        except OSError as exc:  # EACCES, EIO on a parent: as good as missing for this scan
            logger.error("cannot look at the model store folder %s: %s", self.store.root, exc)
            missing = True
        if missing and self.missing is not True:
            logger.warning(
                "model store folder %s does not exist; create one with "
                "'python scripts/train.py --store %s'. Serving nothing until it appears.",
                self.store.root,
                self.store.root,
            )
        elif not missing and self.missing:
            logger.info("model store folder %s appeared", self.store.root)
        self.missing = missing
