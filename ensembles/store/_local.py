"""The store on a local folder: fsynced staging folders renamed into place, under a lock."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ensembles.manifest import Manifest
from ensembles.store._layout import (
    CHECKSUM_FILE,
    LATEST_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    NAME_PATTERN,
    VERSION_PATTERN,
    Fingerprint,
    next_version,
    noting_committed,
    sha256_bytes,
)

logger = logging.getLogger(__name__)

_STAGING_PREFIX = ".staging-"


class LocalBackend:
    """A model store in a local folder (names are validated by :class:`ModelStore`).

    Parameters
    ----------
    root : Path
        The store folder; created on the first publish.
    """

    is_local = True

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- reading -----------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the store folder exists."""
        return self.root.is_dir()

    def root_names(self) -> set[str]:
        """The root as configured and resolved (how messages may spell it)."""
        return {str(self.root), str(self.root.resolve())}

    def location(self, *parts: str | int) -> str:
        """The path of ``root/part/...``, for messages."""
        return str(self.root.joinpath(*map(str, parts)))

    def folder(self, name: str, version: int) -> Path:
        """Folder of one version (it may not exist)."""
        return self.root / name / str(version)

    def folder_names(self) -> list[str]:
        """Every folder with an ensemble's name, whether or not it holds a version."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if NAME_PATTERN.fullmatch(entry.name) and entry.is_dir()
        )

    def versions(self, name: str) -> list[int]:
        """Versions of ``name`` whose folder has a manifest (read nothing)."""
        return self._numbered(name, with_manifest=True)

    def unlisted_versions(self, name: str) -> list[int]:
        """Version folders without a manifest: damage or a hand edit (a publish brings one)."""
        return self._numbered(name, with_manifest=False)

    def _numbered(self, name: str, with_manifest: bool) -> list[int]:
        """Sorted numbers of the version folders of ``name`` that have a manifest, or not."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in folder.iterdir()
            if VERSION_PATTERN.fullmatch(entry.name)
            and (entry / MANIFEST_FILE).is_file() == with_manifest
        )

    def read(self, *parts: str | int) -> bytes:
        """The bytes of ``root/part/...`` (``FileNotFoundError`` when absent)."""
        return self.root.joinpath(*map(str, parts)).read_bytes()

    def version_exists(self, name: str, version: int) -> bool:
        """Whether the version's folder exists (complete or not)."""
        return self.folder(name, version).is_dir()

    def version_files(self, name: str, version: int) -> tuple[set[str], list[str]]:
        """The regular files of a version folder (relative POSIX paths), and anything else.

        Links are never followed: a version holds plain files only, so a link (to a device,
        to a file outside the store) or a special file is reported, not read.
        """
        folder = self.folder(name, version)
        regular, odd = set(), []
        for top, dirs, names in os.walk(folder, followlinks=False):
            for entry in [*dirs, *names]:
                path = Path(top) / entry
                relative = path.relative_to(folder).as_posix()
                mode = path.lstat().st_mode
                if stat.S_ISDIR(mode):
                    continue
                if stat.S_ISREG(mode):
                    regular.add(relative)
                else:
                    odd.append(relative)
        return regular, sorted(odd)

    def fingerprint(self, name: str, version: int) -> Fingerprint:
        """``(relative path, size, mtime_ns, ctime_ns, inode, mode)`` of every entry, from
        ``stat`` alone.

        Unreadable entries are fingerprinted by what can be seen, so a permission fix
        changes the fingerprint too. The change time and inode catch what size and
        modification time miss: a file restored with its old time (``cp -a``, ``touch
        -r``, ``rsync -t``) or replaced by another of the same size and time.
        """
        folder = self.folder(name, version)
        entries: list[tuple[str | int, ...]] = []
        for path in sorted(folder.rglob("*")):
            try:
                info = path.stat()
            except OSError:
                continue
            entries.append((path.relative_to(folder).as_posix(), info.st_size, *_stamps(info)))
        try:
            info = folder.stat()
            entries.append((".", 0, *_stamps(info)))
        except OSError:
            pass
        return tuple(entries)

    # -- leftovers ---------------------------------------------------------------
    def leftovers(self, name: str) -> list[Path]:
        """Staging folders and temporary files that a killed publish left behind."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(entry for entry in folder.iterdir() if _is_leftover(entry.name))

    def publishing(self, name: str) -> bool:
        """Whether a publish of ``name`` holds its lock right now."""
        lock = self.root / name / LOCK_FILE
        try:
            handle = lock.open("r")
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def remove_leftovers(self, name: str) -> list[Path]:
        """Remove what killed publishes of ``name`` left (under its lock); return what it was."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        with _lock(folder):
            return self._remove_leftovers(name)

    def _remove_leftovers(self, name: str) -> list[Path]:
        """Remove the leftovers of ``name``; the caller holds its lock."""
        removed = []
        for leftover in self.leftovers(name):
            try:
                _remove(leftover)
            except OSError as exc:
                logger.warning("cannot remove %s, left by a killed publish: %s", leftover, exc)
                continue
            logger.warning("removed %s, left by a publish that was killed", leftover)
            removed.append(leftover)
        return removed

    # -- writing -----------------------------------------------------------------
    def publish(self, name: str, write: Callable[[Path, int], Manifest]) -> Manifest:
        """Publish a new version of ``name`` atomically and durably.

        The version is built in a hidden sibling folder; every file in it is fsynced, then
        the manifest and its checksum are written (and fsynced), the folder is renamed into
        place, the ensemble folder is fsynced, and only then does ``latest`` move. Any
        exception (Ctrl-C included) removes the staging folder; what a killed process
        leaves is removed by the next publish of the same name (under the ensemble's lock).
        """
        folder = self.root / name
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        if created:
            _fsync_directory(folder.parent)
        try:
            return self._publish_locked(name, folder, write)
        except BaseException:
            if created:
                _remove_if_only_lock(folder)
            raise

    def _publish_locked(
        self, name: str, folder: Path, write: Callable[[Path, int], Manifest]
    ) -> Manifest:
        with _lock(folder, create=True):
            self._remove_leftovers(name)
            taken = [int(e.name) for e in folder.iterdir() if VERSION_PATTERN.fullmatch(e.name)]
            version = next_version(str(folder), taken)
            staging = folder / f"{_STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            try:
                manifest = write(staging, version)
                files = _seal_files(staging)
                manifest = manifest.model_copy(update={"files": files, "version": version})
                data = manifest.to_json().encode("utf-8")
                _write_durably(staging / MANIFEST_FILE, data)
                _write_durably(staging / CHECKSUM_FILE, f"{sha256_bytes(data)}\n".encode())
                _fsync_tree(staging)
                os.rename(staging, folder / str(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            with noting_committed(str(folder / str(version))):
                _fsync_directory(folder)
                _replace_durably(folder / LATEST_FILE, f"{version}\n".encode())
        logger.info("published %s version %d to %s", name, version, self.root)
        return manifest


@contextmanager
def _lock(folder: Path, create: bool = False) -> Iterator[None]:
    """Hold the ensemble's lock: ``folder/.lock``, exclusively.

    A failed first publish removes the folder it created, lock file included, under the
    lock; a publish that was waiting then holds a lock on a file no longer there. So once
    the lock is held, the file at the path must be the one locked, or it is taken again
    (``create``: making the folder again if it went).
    """
    while True:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / LOCK_FILE).open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                held = os.fstat(handle.fileno()).st_ino == (folder / LOCK_FILE).stat().st_ino
            except FileNotFoundError:
                held = False
        except BaseException:
            handle.close()
            raise
        if held:
            break
        handle.close()  # the lock file was removed meanwhile: take the one there now
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _is_leftover(entry_name: str) -> bool:
    """A staging folder, or a temporary file of :func:`_replace_durably` (``.latest.*``)."""
    return entry_name.startswith(_STAGING_PREFIX) or entry_name.startswith(f".{LATEST_FILE}.")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove_if_only_lock(folder: Path) -> None:
    """Remove an ensemble folder a failed first publish created, unless anyone else wrote there.

    Only the lock file may be in it; a staging folder of a concurrent publish keeps it.
    Done under the lock: a publish waiting for it finds its lock file gone and takes the
    next one (:func:`_lock`).
    """
    try:
        with _lock(folder):
            if os.listdir(folder) == [LOCK_FILE]:
                (folder / LOCK_FILE).unlink()
                folder.rmdir()
    except OSError:
        pass  # someone else is publishing into it


def _seal_files(staging: Path) -> dict[str, str]:
    """sha256 of every file under ``staging`` (relative POSIX path -> hex), each fsynced."""
    files = {}
    for path in sorted(staging.rglob("*")):
        if path.is_dir() or path.name in (MANIFEST_FILE, CHECKSUM_FILE):
            continue
        with path.open("rb") as handle:
            files[path.relative_to(staging).as_posix()] = sha256_bytes(handle.read())
            os.fsync(handle.fileno())
    return files


def _write_durably(path: Path, data: bytes) -> None:
    """Write a new file and fsync it."""
    with path.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_durably(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so readers see the old or the new bytes;
    the file and then its folder are fsynced."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        _write_durably(temporary, data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_tree(folder: Path) -> None:
    """fsync every folder under ``folder``, deepest first, then ``folder`` itself."""
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        _fsync_directory(path)
    _fsync_directory(folder)


def _fsync_directory(folder: Path) -> None:
    """fsync a folder, so the entries created or renamed in it survive a power loss."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _stamps(info: os.stat_result) -> tuple[int, int, int, int]:
    """What of one ``stat`` changes whenever a file's bytes or permissions do."""
    return info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_mode
