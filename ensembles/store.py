"""The model store: every path of ``<root>/<name>/<version>/`` goes through this module.

Versions are integers, written in a hidden staging folder, fsynced, and renamed into place
only when complete; the ``latest`` pointer moves last. A version is never changed after it
is published. Its ``manifest.json`` is covered by ``manifest.sha256`` (written last), the
manifest lists the sha256 of every other file, and reading a version hashes each file's
bytes once and hands out those very bytes, so what was verified is what is used.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ensembles.errors import IntegrityError, NotFoundError, StoreError
from ensembles.manifest import Manifest

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Version folders and the ``latest`` pointer: ASCII digits, no leading zero.
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,17}$")
MANIFEST_FILE = "manifest.json"
#: The sha256 of ``manifest.json``'s bytes, written after it: a version is complete once
#: this file exists and matches.
CHECKSUM_FILE = "manifest.sha256"
LATEST_FILE = "latest"
LOCK_FILE = ".lock"
_STAGING_PREFIX = ".staging-"
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def validate_name(name: str) -> str:
    """Return ``name`` when it is a valid ensemble name, else raise ``StoreError``.

    Names are 1-64 characters of lowercase letters, digits, '-' and '_', starting with a
    letter or digit; this also rules out path traversal.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise StoreError(
            f"invalid ensemble name {name!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredVersion:
    """One verified version: its manifest and the verified bytes of every file it lists.

    Attributes
    ----------
    manifest : Manifest
        The parsed manifest, whose own bytes matched ``manifest.sha256``.
    folder : Path
        The version folder (for messages; read nothing from it again).
    files : Mapping[str, bytes]
        Relative path -> bytes, for every file in ``manifest.files``; each matched its
        sha256 when it was read.
    """

    manifest: Manifest
    folder: Path
    files: Mapping[str, bytes]


class ModelStore:
    """A folder of named, versioned ensembles.

    Parameters
    ----------
    root : str or Path
        The store folder; created on the first publish.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- reading -----------------------------------------------------------------
    def names(self) -> list[str]:
        """Sorted names of the ensembles that have at least one complete version.

        An ensemble folder that cannot be listed is skipped with a warning; it does not
        hide the others.
        """
        if not self.root.is_dir():
            return []
        names = []
        for entry in self.root.iterdir():
            if not (NAME_PATTERN.fullmatch(entry.name) and entry.is_dir()):
                continue
            try:
                if self.versions(entry.name):
                    names.append(entry.name)
            except OSError as exc:
                logger.warning("cannot list ensemble folder %s: %s", entry, exc)
        return sorted(names)

    def versions(self, name: str) -> list[int]:
        """Sorted versions of ``name`` that have a manifest, oldest first.

        Listing is cheap and reads no file: a listed version may still be refused by
        :meth:`read_version` (a missing checksum, a changed file).
        """
        folder = self.root / validate_name(name)
        if not folder.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in folder.iterdir()
            if VERSION_PATTERN.fullmatch(entry.name) and (entry / MANIFEST_FILE).is_file()
        )

    def latest(self, name: str) -> int:
        """The version the ``latest`` pointer names (the newest listed one when it has none).

        Raises
        ------
        NotFoundError
            When the ensemble has no published version.
        IntegrityError
            When the pointer holds anything but an ASCII version number.
        """
        pointer = self.root / validate_name(name) / LATEST_FILE
        try:
            raw = pointer.read_bytes()
        except FileNotFoundError:
            versions = self.versions(name)
            if not versions:
                raise NotFoundError(self.not_found_message(name)) from None
            return versions[-1]
        text = raw.decode("utf-8", errors="backslashreplace").strip()
        if not VERSION_PATTERN.fullmatch(text):
            raise IntegrityError(f"{pointer} does not hold a version number: {text[:32]!r}")
        return int(text)

    def path(self, name: str, version: int) -> Path:
        """Folder of one version (it may not exist)."""
        return self.root / validate_name(name) / str(int(version))

    def read_version(self, name: str, version: int | None = None) -> StoredVersion:
        """Read and verify one version: the manifest's checksum, then every file it lists.

        Each file is read once; its bytes are hashed and returned, so a caller uses exactly
        the bytes that were verified. A file in the folder that the manifest does not list
        is refused too.

        Parameters
        ----------
        name : str
            Ensemble name.
        version : int, optional
            The version; the ``latest`` one when None.

        Returns
        -------
        StoredVersion

        Raises
        ------
        NotFoundError
            When the ensemble or version does not exist.
        IntegrityError
            When the manifest or a file is missing, changed, unlisted or invalid (the
            message names it).
        """
        manifest, folder = self._read_manifest(name, version)
        found, odd = _walk_version(folder)
        if odd:
            raise IntegrityError(
                f"{folder / odd[0]} is not a regular file (a link or a device): a version holds "
                "plain files only"
            )
        unlisted = sorted(found - set(manifest.files) - {MANIFEST_FILE, CHECKSUM_FILE})
        if unlisted:
            raise IntegrityError(
                f"{folder / unlisted[0]} is not listed in the manifest's checksums "
                f"({len(unlisted)} unlisted file{'s' if len(unlisted) > 1 else ''}): a "
                "published version is never changed; publish a new one instead"
            )
        files = {}
        for relative, expected in manifest.files.items():
            file = folder / relative
            if relative not in found:  # listed paths are relative and inside (the schema)
                raise IntegrityError(f"{file} is missing (listed in the manifest)")
            data = file.read_bytes()
            actual = sha256_bytes(data)
            if actual != expected:
                raise IntegrityError(
                    f"{file} is corrupt: sha256 {actual[:12]}… does not match the manifest's "
                    f"{expected[:12]}…"
                )
            files[relative] = data
        return StoredVersion(manifest, folder, files)

    def load_manifest(self, name: str, version: int | None = None) -> Manifest:
        """A version's manifest, after verifying it and every file it lists.

        Raises
        ------
        NotFoundError
            When the ensemble or version does not exist.
        IntegrityError
            When the manifest is invalid or a file is missing or changed (the message names it).
        """
        return self.read_version(name, version).manifest

    def check_versions(
        self, name: str, verify: Callable[[StoredVersion], None] | None = None
    ) -> dict[int, str | None]:
        """Verify every version of ``name``: version -> None when intact, else the problem.

        :meth:`versions` only lists folders with a manifest (cheap); this reads every file,
        then runs ``verify`` (e.g. the combiners' reproduction check) on each version that
        reads; a ``StoreError`` it raises is that version's problem.
        """
        problems: dict[int, str | None] = {}
        for version in self.versions(name):
            try:
                stored = self.read_version(name, version)
                if verify is not None:
                    verify(stored)
                problems[version] = None
            except (StoreError, OSError) as exc:
                problems[version] = str(exc)
        return problems

    def leftovers(self, name: str) -> list[Path]:
        """Staging folders and temporary files that a killed publish left behind.

        They are never versions; the next :meth:`publish` of ``name`` removes them.
        """
        folder = self.root / validate_name(name)
        if not folder.is_dir():
            return []
        return sorted(entry for entry in folder.iterdir() if _is_leftover(entry.name))

    def publishing(self, name: str) -> bool:
        """Whether a publish of ``name`` holds its lock right now (its staging is no leftover)."""
        lock = self.root / validate_name(name) / LOCK_FILE
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
        folder = self.root / validate_name(name)
        if not folder.is_dir():
            return []
        with self._lock(folder):
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

    def not_found_message(
        self, name: str, *, show_root: bool = True, known: list[str] | None = None
    ) -> str:
        """What to tell a user asking for an ensemble the store does not have.

        ``show_root=False`` keeps the store's path out (for clients of a server): the
        message then names the known ensembles only. ``known`` gives those names (a server
        passes its last scan's, to stay off the filesystem); by default the store is listed.
        """
        known = self.names() if known is None else known
        hint = f"known ensembles: {', '.join(known)}" if known else "the store is empty"
        if not show_root:
            return f"ensemble '{name}' not found in the model store ({hint})"
        return (
            f"ensemble '{name}' not found in {self.root} ({hint}); "
            f"train one with: python scripts/train.py --name {name} --store {self.root}"
        )

    def _read_manifest(self, name: str, version: int | None) -> tuple[Manifest, Path]:
        """The manifest of one version, its bytes checked against ``manifest.sha256``."""
        version = self.latest(name) if version is None else int(version)
        folder = self.path(name, version)
        manifest_path = folder / MANIFEST_FILE
        try:
            data = manifest_path.read_bytes()
        except FileNotFoundError:
            if folder.is_dir():
                raise IntegrityError(
                    f"{manifest_path} is missing: version {version} is incomplete"
                ) from None
            raise NotFoundError(
                f"ensemble '{name}' has no version {version}; "
                f"available: {self.versions(name) or 'none'}"
            ) from None
        checksum_path = folder / CHECKSUM_FILE
        try:
            expected = checksum_path.read_bytes().strip().decode("ascii", errors="replace")
        except FileNotFoundError:
            raise IntegrityError(
                f"{checksum_path} is missing: version {version} is incomplete or was written "
                "by an older release; publish it again with this one"
            ) from None
        if not _SHA256_PATTERN.fullmatch(expected):
            raise IntegrityError(f"{checksum_path} does not hold a sha256 digest")
        if sha256_bytes(data) != expected:
            raise IntegrityError(
                f"{manifest_path} is corrupt: its sha256 does not match {CHECKSUM_FILE}"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IntegrityError(f"{manifest_path} is not UTF-8 text: {exc}") from None
        manifest = Manifest.from_json(text, source=str(manifest_path))
        if manifest.name != name or manifest.version != version:
            raise IntegrityError(
                f"{manifest_path} describes {manifest.name}/{manifest.version}, "
                f"not {name}/{version}"
            )
        return manifest, folder

    # -- writing -----------------------------------------------------------------
    def publish(self, name: str, write: Callable[[Path, int], Manifest]) -> Manifest:
        """Publish a new version of ``name`` atomically and durably.

        Parameters
        ----------
        name : str
            Ensemble name.
        write : callable
            ``write(staging_folder, version) -> Manifest`` writes every file into the
            staging folder and returns the manifest; ``files`` may be empty, the store
            fills in the sha256 of every file written.

        Returns
        -------
        Manifest
            The manifest as published, with the checksums.

        Notes
        -----
        The version is built in a hidden sibling folder; every file in it is fsynced, then
        the manifest and its checksum are written (and fsynced), the folder is renamed into
        place, the ensemble folder is fsynced, and only then does ``latest`` move. Any
        exception (Ctrl-C included) removes the staging folder, so no partial version is
        ever visible; what a killed process leaves (``kill -9``) is removed by the next
        publish of the same name (it holds the ensemble's lock, so no other publish is
        writing) and listed by :meth:`leftovers` until then.
        """
        folder = self.root / validate_name(name)
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
        with self._lock(folder):
            self._remove_leftovers(name)
            taken = [int(e.name) for e in folder.iterdir() if VERSION_PATTERN.fullmatch(e.name)]
            version = max(taken, default=0) + 1
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
            _fsync_directory(folder)
            _replace_durably(folder / LATEST_FILE, f"{version}\n".encode())
        logger.info("published %s version %d to %s", name, version, self.root)
        return manifest

    @contextmanager
    def _lock(self, folder: Path) -> Iterator[None]:
        with (folder / LOCK_FILE).open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


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
    """
    try:
        if os.listdir(folder) == [LOCK_FILE]:
            (folder / LOCK_FILE).unlink()
            folder.rmdir()
    except OSError:
        pass  # someone else is publishing into it


def _walk_version(folder: Path) -> tuple[set[str], list[str]]:
    """The regular files under ``folder`` (relative POSIX paths), and anything else found.

    Links are never followed: a version holds plain files only, so a link (to a device, to a
    file outside the store) or a special file is reported, not read.
    """
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
