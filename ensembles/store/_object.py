"""The store on an fsspec filesystem (``s3://``, ``memory://``, ...), where nothing renames.

A publish first claims its version number by creating ``<version>/manifest.sha256``
exclusively (S3's ``If-None-Match``) with a placeholder, builds the files in a local
temporary folder, uploads them with ``manifest.json`` (none of them is a commit), then
replaces the placeholder with the manifest's sha256 (the commit), reads both back, and
moves ``latest`` last. A version counts only once its checksum verifies; a prefix still
holding the claim (a killed publish) is never read as a version, and its number is never
reused while it is there; a committed prefix that no longer verifies is a damaged version.
Listings are read fresh every time (no listings cache), so every process sees a new version
at its next scan.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

from ensembles.errors import StoreError
from ensembles.manifest import Manifest
from ensembles.store._layout import (
    CHECKSUM_FILE,
    CLAIM_PREFIX,
    COMMITTED_NOTE,
    LATEST_FILE,
    MANIFEST_FILE,
    NAME_PATTERN,
    VERSION_PATTERN,
    Fingerprint,
    checksum_matches,
    next_version,
    noting_committed,
    sha256_bytes,
)

logger = logging.getLogger(__name__)

#: A claim younger than this may be a publish still running (writing a version takes
#: seconds to minutes): ``remove_leftovers`` leaves it alone.
LEFTOVER_AGE = dt.timedelta(hours=1)
#: Claims a publish tries before it gives up (each lost claim means another publish took
#: that number between the listing and the claim).
_CLAIM_TRIES = 20


class ObjectBackend:
    """A model store on any fsspec filesystem (names are validated by :class:`ModelStore`).

    Parameters
    ----------
    url : str
        ``protocol://bucket/prefix``; the endpoint, credentials and other options come from
        fsspec's configuration (``FSSPEC_S3_ENDPOINT_URL``, ``~/.config/fsspec/``) and the
        filesystem's own (for S3: the ``AWS_*`` variables and files).

    Raises
    ------
    StoreError
        When fsspec knows no such protocol or its package is not installed, or the URL
        names no bucket or folder.
    """

    is_local = False

    def __init__(self, url: str) -> None:
        self.root = url.rstrip("/")
        try:
            self.fs, self._path = fsspec.core.url_to_fs(url)
        except ImportError as exc:
            raise StoreError(
                f"cannot open the model store {self.root}: {exc} (for s3:// URLs: pip install "
                "s3fs, or pip install -e '.[s3]' in the checkout)"
            ) from None
        except ValueError as exc:
            raise StoreError(f"cannot open the model store {self.root}: {exc}") from None
        self._path = self._path.rstrip("/")
        if not self._path.strip("/"):
            raise StoreError(
                f"the model store {url} names no bucket or folder: give one, e.g. "
                "s3://bucket/prefix"
            )
        #: Versions whose checksum verified (versions are immutable: checked once).
        self._complete: set[tuple[str, int]] = set()

    # -- reading -----------------------------------------------------------------
    def exists(self) -> bool:
        """Whether anything is stored under the root.

        Raises
        ------
        OSError
            When the filesystem cannot be reached, access is denied, or the bucket of the
            URL does not exist (the message names the URL).
        """
        if self._children():
            return True
        # Nothing there: a store not written yet, or a bucket that does not exist. On
        # filesystems with buckets (paths without a leading '/'), the first part is one.
        bucket = self._path.split("/", 1)[0]
        if bucket and not self._path.startswith("/"):
            with self._translated():
                found = self.fs.exists(bucket)
            if not found:
                raise FileNotFoundError(
                    errno.ENOENT,
                    f"there is no bucket {bucket!r}: create it, or correct the URL",
                    self.root,
                )
        return False

    def root_names(self) -> set[str]:
        """The root as a URL and as the filesystem's own path (how messages may spell it)."""
        return {self.root, self._path}

    def location(self, *parts: str | int) -> str:
        """The URL of ``root/part/...``, for messages."""
        return "/".join([self.root, *map(str, parts)])

    def folder(self, name: str, version: int) -> str:
        """The URL of one version."""
        return self.location(name, version)

    def folder_names(self) -> list[str]:
        """Every prefix with an ensemble's name, whether or not it holds a version."""
        return sorted(n for n in self._children() if NAME_PATTERN.fullmatch(n))

    def versions(self, name: str) -> list[int]:
        """Versions of ``name`` whose manifest and checksum are there and verify."""
        return [v for v in self._numbers(name) if self._is_complete(name, v)]

    def unlisted_versions(self, name: str) -> list[int]:
        """Version prefixes that are neither a version nor a publish's claim: committed once
        (their checksum is no claim) but their manifest or checksum no longer verifies."""
        return [
            v
            for v in self._numbers(name)
            if not self._is_complete(name, v) and not self._is_unfinished(name, v)
        ]

    def read(self, *parts: str | int) -> bytes:
        """The bytes of ``root/part/...`` (``FileNotFoundError`` when absent)."""
        with self._translated(*parts):
            return self.fs.cat_file(self._key(*parts))

    def version_exists(self, name: str, version: int) -> bool:
        """Whether anything is stored under the version's prefix (complete or not)."""
        return version in self._numbers(name)

    def version_files(self, name: str, version: int) -> tuple[set[str], list[str]]:
        """Every object under the version's prefix (relative paths); an object store holds
        no links or devices, so the second list is always empty."""
        return set(self._files(name, version)), []

    def fingerprint(self, name: str, version: int) -> Fingerprint:
        """``(relative path, size, ETag or modification time)`` of every object."""
        return tuple(
            (relative, int(info.get("size") or 0), _stamp(info))
            for relative, info in sorted(self._files(name, version).items())
        )

    # -- leftovers ---------------------------------------------------------------
    def leftovers(self, name: str) -> list[PurePosixPath]:
        """Version prefixes a publish claimed and never committed: killed (or running) ones.

        A prefix whose checksum is no claim was committed: if it no longer verifies it is a
        damaged version (:meth:`unlisted_versions`), never a leftover to remove.
        """
        return [
            PurePosixPath(self._key(name, version))
            for version in self._numbers(name)
            if not self._is_complete(name, version) and self._is_unfinished(name, version)
        ]

    def publishing(self, name: str) -> bool:
        """Always False: an object store has no lock to ask (one publisher at a time)."""
        return False

    def remove_leftovers(self, name: str) -> list[PurePosixPath]:
        """Remove the incomplete version prefixes of ``name`` claimed over
        :data:`LEFTOVER_AGE` ago (younger ones may be running publishes); return them."""
        removed = []
        for leftover in self.leftovers(name):
            url = self.location(name, leftover.name)
            claimed = self._claimed_at(name, int(leftover.name))
            if claimed is not None and dt.datetime.now(dt.UTC) - claimed < LEFTOVER_AGE:
                logger.warning(
                    "left %s alone: claimed at %s, it may be a publish still running",
                    url,
                    claimed.isoformat(timespec="seconds"),
                )
                continue
            try:
                with self._translated(name, leftover.name):
                    self.fs.rm(str(leftover), recursive=True)
            except OSError as exc:
                logger.warning("cannot remove %s, left by a killed publish: %s", url, exc)
                continue
            logger.warning("removed %s, left by a publish that was killed", url)
            removed.append(leftover)
        return removed

    def _is_unfinished(self, name: str, version: int) -> bool:
        """Whether the prefix is a publish that never committed: its checksum is a claim, or
        it has neither checksum nor manifest (the removal of an abandoned publish stopped
        half-way). A manifest without its checksum is a committed version that lost it."""
        try:
            checksum = self.read(name, version, CHECKSUM_FILE)
        except FileNotFoundError:
            return MANIFEST_FILE not in self._files(name, version)
        return checksum.startswith(CLAIM_PREFIX.encode())

    def _claimed_at(self, name: str, version: int) -> dt.datetime | None:
        """When the version's claim was written; None without a readable claim."""
        try:
            text = self.read(name, version, CHECKSUM_FILE).decode("utf-8", errors="replace")
        except OSError:
            return None
        if not text.startswith(CLAIM_PREFIX):
            return None
        try:
            return dt.datetime.fromisoformat(text[len(CLAIM_PREFIX) :].split(" ", 1)[0])
        except ValueError:
            return None

    # -- writing -----------------------------------------------------------------
    def publish(self, name: str, write: Callable[[Path, int], Manifest]) -> Manifest:
        """Publish a new version of ``name``: claim a number, upload, commit, move ``latest``.

        ``write`` fills a local temporary folder. Any exception before the commit (Ctrl-C
        included) removes what was uploaded, as far as the filesystem can still be reached;
        what a killed process leaves is no version, and :meth:`leftovers` lists it.
        """
        version = 0
        try:
            version = self._claim(name)
            with tempfile.TemporaryDirectory(prefix=f"ensembles-{name}-{version}-") as staging:
                manifest = write(Path(staging), version)
                files = _read_files(Path(staging))
            files_sha = {relative: sha256_bytes(data) for relative, data in files.items()}
            manifest = manifest.model_copy(update={"files": files_sha, "version": version})
            data = manifest.to_json().encode("utf-8")
            self._upload(name, version, {**files, MANIFEST_FILE: data})
            self._commit(name, version, data)
        except BaseException as exc:
            # 0: the claim itself failed, or was interrupted before its answer came back
            # (a claim left then is a leftover that 'store check' lists)
            if version and self._landed(name, version):  # the commit's answer was lost
                exc.add_note(COMMITTED_NOTE.format(location=self.location(name, version)))
            elif version:
                self._abandon(name, version)
            raise
        location = self.location(name, version)
        with noting_committed(location, unless=(StoreError,)):  # StoreError: it changed
            self._check_published(name, version, data, set(files))
        with noting_committed(location):
            self._move_latest(name, version)
        logger.info("published %s version %d to %s", name, version, self.root)
        return manifest

    def _claim(self, name: str) -> int:
        """Create ``<next version>/manifest.sha256`` exclusively; return that version.

        The next version is above every version prefix, complete or not, and above what
        ``latest`` names, so a killed publish's number is never reused while it is there.
        """
        taken = [*self._numbers(name), self._pointer(name) or 0]
        version = next_version(self.location(name), taken)
        claim = (
            f"{CLAIM_PREFIX}{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} by "
            f"{socket.gethostname()} pid {os.getpid()}: a publish in progress, or killed; "
            "not a version until this file holds the manifest's sha256\n"
        ).encode()
        for _ in range(_CLAIM_TRIES):
            try:
                with self._translated(name, version, CHECKSUM_FILE):
                    self.fs.pipe_file(self._key(name, version, CHECKSUM_FILE), claim, mode="create")
            except FileExistsError:
                version += 1
                continue
            return version
        raise StoreError(
            f"cannot claim a version number under {self.location(name)}: other publishes took "
            f"{_CLAIM_TRIES} in a row; publish one at a time"
        )

    def _upload(self, name: str, version: int, files: dict[str, bytes]) -> None:
        """Write every file of a version (their order does not matter: none is a commit)."""
        with self._translated(name, version):
            self.fs.pipe({self._key(name, version, rel): data for rel, data in files.items()})

    def _commit(self, name: str, version: int, manifest: bytes) -> None:
        """Replace the claim with the manifest's sha256: from now on the version counts."""
        checksum = f"{sha256_bytes(manifest)}\n".encode()
        with self._translated(name, version, CHECKSUM_FILE):
            self.fs.pipe_file(self._key(name, version, CHECKSUM_FILE), checksum)

    def _landed(self, name: str, version: int) -> bool:
        """Whether the version verifies after all (False when that cannot be known)."""
        try:
            return self._is_complete(name, version)
        except Exception:  # out of reach: it cannot be removed either
            return False

    def _abandon(self, name: str, version: int) -> None:
        """Remove a version prefix whose publish failed before its commit (best effort)."""
        try:
            with self._translated(name, version):
                self.fs.rm(self._key(name, version), recursive=True)
        except OSError as exc:
            logger.warning(
                "cannot remove %s after a failed publish (%s); it is no version, and "
                "'ensembles-store check --remove-leftovers' removes it once it is an hour old",
                self.location(name, version),
                exc,
            )

    def _check_published(self, name: str, version: int, manifest: bytes, files: set[str]) -> None:
        """Read the committed version back: exactly its files, its manifest, its checksum."""
        found = set(self._files(name, version))
        back = self.read(name, version, MANIFEST_FILE)
        if (
            back != manifest
            or not checksum_matches(manifest, self.read(name, version, CHECKSUM_FILE))
            or found != files | {MANIFEST_FILE, CHECKSUM_FILE}
        ):
            raise StoreError(
                f"{self.location(name, version)} changed while it was published (another "
                f"publish of '{name}', or a removal of leftovers, at the same time); latest "
                "was not moved: publish again, one publisher per ensemble at a time"
            )
        self._complete.add((name, version))

    def _move_latest(self, name: str, version: int) -> None:
        """Point ``latest`` at ``version``, unless it already names a newer one."""
        current = self._pointer(name)
        if current is not None and current > version:
            logger.warning(
                "%s names version %d, newer than %d: left as it is",
                self.location(name, LATEST_FILE),
                current,
                version,
            )
            return
        with self._translated(name, LATEST_FILE):
            self.fs.pipe_file(self._key(name, LATEST_FILE), f"{version}\n".encode())

    # -- the filesystem ----------------------------------------------------------
    def _key(self, *parts: str | int) -> str:
        return "/".join([self._path, *map(str, parts)])

    def _children(self, *parts: str | int) -> list[str]:
        """Names of the folders (prefixes) right under ``root/part/...``; none when empty."""
        path = self._key(*parts)
        with self._translated(*parts):
            self.fs.invalidate_cache(path)
            try:
                entries = self.fs.ls(path, detail=True)
            except FileNotFoundError:
                return []
        return [
            str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            for entry in entries
            if entry.get("type") == "directory"
        ]

    def _numbers(self, name: str) -> list[int]:
        """Every version number with something stored under it, sorted."""
        return sorted(int(n) for n in self._children(name) if VERSION_PATTERN.fullmatch(n))

    def _files(self, name: str, version: int) -> dict[str, dict[str, Any]]:
        """Relative path -> the filesystem's details, for every object of a version."""
        prefix = self._key(name, version)
        with self._translated(name, version):
            self.fs.invalidate_cache(prefix)
            found = self.fs.find(prefix, detail=True)
        return {path[len(prefix) + 1 :]: info for path, info in found.items()}

    def _is_complete(self, name: str, version: int) -> bool:
        """Whether the version's manifest and checksum are there and verify."""
        if (name, version) in self._complete:
            return True
        try:
            checksum = self.read(name, version, CHECKSUM_FILE)
            complete = checksum_matches(self.read(name, version, MANIFEST_FILE), checksum)
        except FileNotFoundError:
            return False
        if complete:
            self._complete.add((name, version))
        return complete

    def _pointer(self, name: str) -> int | None:
        """What ``latest`` names, or None when it is absent or no version number."""
        try:
            text = self.read(name, LATEST_FILE).decode("ascii", errors="replace").strip()
        except FileNotFoundError:
            return None
        return int(text) if VERSION_PATTERN.fullmatch(text) else None

    @contextmanager
    def _translated(self, *parts: str | int) -> Iterator[None]:
        """Make the filesystem's errors ``OSError``s that name the URL.

        An ``OSError`` keeps its kind (a missing object stays ``FileNotFoundError``);
        anything else the filesystem raises (an endpoint that cannot be reached, missing
        credentials) becomes ``OSError(EIO)``, which callers treat as transient.
        """
        url = self.location(*parts)
        try:
            yield
        except OSError as exc:
            if exc.filename is not None:
                raise
            code = exc.errno if exc.errno is not None else _ERRNO_OF.get(type(exc), errno.EIO)
            text = exc.strerror or str(exc)
            if not text or self._path in text:  # the message is only the path
                text = os.strerror(code)
            raise OSError(code, text, url) from exc
        except Exception as exc:
            raise OSError(errno.EIO, str(exc) or type(exc).__name__, url) from exc


#: The errno of an ``OSError`` subclass a filesystem raised without one.
_ERRNO_OF = {
    FileNotFoundError: errno.ENOENT,
    FileExistsError: errno.EEXIST,
    PermissionError: errno.EACCES,
    TimeoutError: errno.ETIMEDOUT,
    ConnectionRefusedError: errno.ECONNREFUSED,
}


def _read_files(staging: Path) -> dict[str, bytes]:
    """Relative POSIX path -> bytes of every file ``write`` left in ``staging``."""
    return {
        path.relative_to(staging).as_posix(): path.read_bytes()
        for path in sorted(staging.rglob("*"))
        if path.is_file() and path.name not in (MANIFEST_FILE, CHECKSUM_FILE)
    }


def _stamp(info: dict[str, Any]) -> str:
    """What a filesystem says changes with an object's bytes: its ETag, else its mtime."""
    for key in ("ETag", "etag", "mtime", "LastModified", "updated", "created"):
        if info.get(key) is not None:
            return str(info[key])
    return ""
