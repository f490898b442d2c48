"""The model store's one entry point: every path of ``<root>/<name>/<version>/`` goes here.

It verifies what it reads the same way on every backend (a local folder, or any fsspec
filesystem): the manifest's bytes against ``manifest.sha256``, then every file the manifest
lists against its sha256, each file read once and those very bytes handed out.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from ensembles.errors import IntegrityError, NotFoundError, StoreError
from ensembles.manifest import Manifest
from ensembles.store._layout import (
    CHECKSUM_FILE,
    CLAIM_PREFIX,
    LATEST_FILE,
    MANIFEST_FILE,
    SHA256_PATTERN,
    VERSION_PATTERN,
    Fingerprint,
    StoredVersion,
    sha256_bytes,
    validate_name,
)
from ensembles.store._local import LocalBackend
from ensembles.writable import check_can_create

if TYPE_CHECKING:
    from ensembles.store._object import ObjectBackend

logger = logging.getLogger(__name__)

#: ``protocol://`` (or an fsspec chain such as ``simplecache::s3://``): not a local path.
_URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(::[A-Za-z][A-Za-z0-9+.-]*)*://")
#: URLs of the local filesystem, served by the local backend (renames, fsync, locks).
_LOCAL_SCHEMES = ("file://", "local://")
#: ``s3:/bucket/...``: what ``Path("s3://bucket/...")`` makes of a URL (one '/' lost).
_MANGLED_URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/(?!/)")


class ModelStore:
    """A folder (or an fsspec URL) of named, versioned ensembles.

    Parameters
    ----------
    root : str or Path
        The store folder, created on the first publish; or an fsspec URL such as
        ``s3://bucket/prefix`` or ``memory://store`` (``file://`` URLs are local folders).

    Attributes
    ----------
    root : Path or str
        The folder, or the URL without a trailing ``/``.

    Raises
    ------
    StoreError
        When ``root`` is empty, when the URL's protocol is unknown to fsspec or its package
        is not installed, or when ``root`` looks like a URL that went through ``Path``
        (``s3:/bucket``).

    Notes
    -----
    A local folder publishes by renaming an fsynced staging folder into place, under a lock
    per ensemble. An object store has no rename: a version counts only once its manifest and
    ``manifest.sha256`` are written and verify, and ``latest`` moves after that (see
    ``ensembles.store._object``); publish one version of an ensemble at a time there.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        text = os.fspath(root)
        if not text.strip():
            raise StoreError(
                "the model store location is empty: give a folder or an fsspec URL such as "
                "s3://bucket/prefix"
            )
        if _MANGLED_URL_PATTERN.match(text):
            raise StoreError(
                f"model store {text!r} looks like a URL that lost a '/' (Path('s3://b/p') "
                "gives 's3:/b/p'): give the URL as a string, e.g. s3://bucket/prefix"
            )
        self._backend: LocalBackend | ObjectBackend
        if isinstance(root, str) and _URL_PATTERN.match(text):
            local = next((s for s in _LOCAL_SCHEMES if text.startswith(s)), None)
            if local is not None:
                self._backend = LocalBackend(Path(text.removeprefix(local)))
            else:
                from ensembles.store._object import ObjectBackend

                self._backend = ObjectBackend(text)
        else:
            self._backend = LocalBackend(Path(root))
        self.root: Path | str = self._backend.root

    @property
    def is_local(self) -> bool:
        """Whether the store is a local folder (renames, fsync and locks) or an object store."""
        return self._backend.is_local

    # -- reading -----------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the store's folder exists (on an object store: whether it holds anything).

        Raises
        ------
        OSError
            On an object store: when it cannot be reached, access is denied, or the
            bucket does not exist (the message names the URL).
        """
        return self._backend.exists()

    def check_can_publish(self, name: str) -> None:
        """Fail now, not after training, where a publish under ``name`` surely could not write.

        A local store needs its nearest existing folder on the way to ``<root>/<name>`` to
        be a folder on a writable file system that ``os.access`` lets us write in; an
        object store must be reachable. Best effort: what only the write itself can tell
        (root on sysfs, NFS root-squash, SELinux, a bucket's write policy) still fails at
        publish, with the same one line.

        Raises
        ------
        OSError
            ``NotADirectoryError`` or ``PermissionError`` naming the path in the way; on an
            object store, what :meth:`exists` raises.
        """
        if not self.is_local:
            self.exists()
            return
        check_can_create(Path(self.root) / name)

    def root_names(self) -> set[str]:
        """How messages may spell the root: as given, resolved, or as the filesystem's path."""
        return self._backend.root_names()

    def names(self) -> list[str]:
        """Sorted names of the ensembles that have at least one complete version.

        An ensemble folder that cannot be listed is skipped with a warning; it does not
        hide the others.
        """
        names = []
        for name in self._backend.folder_names():
            try:
                if self.versions(name):
                    names.append(name)
            except OSError as exc:
                logger.warning(
                    "cannot list ensemble folder %s: %s", self._backend.location(name), exc
                )
        return names

    def folder_names(self) -> list[str]:
        """Sorted names of every ensemble folder, whether or not it holds a complete version."""
        return self._backend.folder_names()

    def versions(self, name: str) -> list[int]:
        """Sorted versions of ``name``, oldest first.

        In a local folder, a version is listed once its folder has a manifest (nothing is
        read; the rename made it complete). On an object store, only once its manifest and
        checksum are there and verify (two small reads, once per version and process). A
        listed version may still be refused by :meth:`read_version` (a changed file).
        """
        return self._backend.versions(validate_name(name))

    def unlisted_versions(self, name: str) -> list[int]:
        """Version folders of ``name`` that :meth:`versions` does not list.

        Locally, those without a manifest (a publish always brings one: damage or a hand
        edit); on an object store, committed prefixes (their checksum is no claim) whose
        manifest or checksum no longer verifies: damage, never a leftover.
        """
        return self._backend.unlisted_versions(validate_name(name))

    def latest(self, name: str) -> int:
        """The version the ``latest`` pointer names (the newest listed one when it has none).

        Raises
        ------
        NotFoundError
            When the ensemble has no published version.
        IntegrityError
            When the pointer holds anything but an ASCII version number.
        """
        try:
            raw = self._backend.read(validate_name(name), LATEST_FILE)
        except FileNotFoundError:
            versions = self.versions(name)
            if not versions:
                raise NotFoundError(self.not_found_message(name)) from None
            return versions[-1]
        text = raw.decode("utf-8", errors="backslashreplace").strip()
        if not VERSION_PATTERN.fullmatch(text):
            pointer = self._backend.location(name, LATEST_FILE)
            raise IntegrityError(f"{pointer} does not hold a version number: {text[:32]!r}")
        return int(text)

    def path(self, name: str, version: int) -> Path:
        """Folder of one version (it may not exist).

        Raises
        ------
        StoreError
            On an object store, where a version has no local folder (use
            :meth:`read_version`).
        """
        if not isinstance(self._backend, LocalBackend):
            raise StoreError(
                f"{self.root} is an object store: its versions have no local folder; read "
                "them with ModelStore.read_version, or copy the version to a local store"
            )
        return self._backend.folder(validate_name(name), int(version))

    def fingerprint(self, name: str, version: int) -> Fingerprint:
        """What identifies the state of a version's files, from metadata alone.

        Locally ``(relative path, size, mtime_ns, ctime_ns, inode, mode)`` of every entry
        and of the folder;
        on an object store ``(relative path, size, ETag or mtime)`` of every object. A
        refused version is worth reading again only when this changes.
        """
        return self._backend.fingerprint(validate_name(name), int(version))

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
        manifest, version = self._read_manifest(name, version)
        backend = self._backend
        found, odd = backend.version_files(name, version)
        if odd:
            raise IntegrityError(
                f"{backend.location(name, version, odd[0])} is not a regular file (a link or a "
                "device): a version holds plain files only"
            )
        unlisted = sorted(found - set(manifest.files) - {MANIFEST_FILE, CHECKSUM_FILE})
        if unlisted:
            raise IntegrityError(
                f"{backend.location(name, version, unlisted[0])} is not listed in the "
                f"manifest's checksums ({len(unlisted)} unlisted "
                f"file{'s' if len(unlisted) > 1 else ''}): a published version is never "
                "changed; publish a new one instead"
            )
        files = {}
        for relative, expected in manifest.files.items():
            file = backend.location(name, version, relative)
            if relative not in found:  # listed paths are relative and inside (the schema)
                raise IntegrityError(f"{file} is missing (listed in the manifest)")
            data = backend.read(name, version, relative)
            actual = sha256_bytes(data)
            if actual != expected:
                raise IntegrityError(
                    f"{file} is corrupt: sha256 {actual[:12]}… does not match the manifest's "
                    f"{expected[:12]}…"
                )
            files[relative] = data
        return StoredVersion(manifest, backend.folder(name, version), files)

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

        :meth:`versions` lists versions cheaply; this reads every file, then runs ``verify``
        (e.g. the combiners' reproduction check) on each version that reads; a
        ``StoreError`` it raises is that version's problem.
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

    def leftovers(self, name: str) -> list[PurePath]:
        """What killed publishes left behind: never versions.

        Locally: staging folders and temporary files (the next :meth:`publish` of ``name``
        removes them). On an object store: version prefixes without a verified checksum
        (removed by :meth:`remove_leftovers` only; their numbers are not reused meanwhile).
        """
        return list(self._backend.leftovers(validate_name(name)))

    def publishing(self, name: str) -> bool:
        """Whether a publish of ``name`` holds its lock right now (its staging is no leftover).

        Always False on an object store, which has no lock: there, a publish in progress
        looks like a leftover until it commits.
        """
        return self._backend.publishing(validate_name(name))

    def remove_leftovers(self, name: str) -> list[PurePath]:
        """Remove what killed publishes of ``name`` left (under its lock locally); return it."""
        return list(self._backend.remove_leftovers(validate_name(name)))

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

    def _read_manifest(self, name: str, version: int | None) -> tuple[Manifest, int]:
        """The manifest of one version, its bytes checked against ``manifest.sha256``."""
        validate_name(name)
        version = self.latest(name) if version is None else int(version)
        backend = self._backend
        manifest_path = backend.location(name, version, MANIFEST_FILE)
        try:
            data = backend.read(name, version, MANIFEST_FILE)
        except FileNotFoundError:
            if backend.version_exists(name, version):
                raise IntegrityError(
                    f"{manifest_path} is missing: version {version} is incomplete"
                ) from None
            raise NotFoundError(
                f"ensemble '{name}' has no version {version}; "
                f"available: {self.versions(name) or 'none'}"
            ) from None
        checksum_path = backend.location(name, version, CHECKSUM_FILE)
        try:
            raw = backend.read(name, version, CHECKSUM_FILE)
        except FileNotFoundError:
            raise IntegrityError(
                f"{checksum_path} is missing: version {version} is incomplete or was written "
                "by an older release; publish it again with this one"
            ) from None
        expected = raw.strip().decode("ascii", errors="replace")
        if expected.startswith(CLAIM_PREFIX):
            raise IntegrityError(
                f"{checksum_path} holds no checksum: version {version} is incomplete (the "
                f"publish that claimed it {expected.removeprefix(CLAIM_PREFIX)[:120]})"
            )
        if not SHA256_PATTERN.fullmatch(expected):
            raise IntegrityError(f"{checksum_path} does not hold a sha256 digest")
        if sha256_bytes(data) != expected:
            raise IntegrityError(
                f"{manifest_path} is corrupt: its sha256 does not match {CHECKSUM_FILE}"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IntegrityError(f"{manifest_path} is not UTF-8 text: {exc}") from None
        manifest = Manifest.from_json(text, source=manifest_path)
        if manifest.name != name or manifest.version != version:
            raise IntegrityError(
                f"{manifest_path} describes {manifest.name}/{manifest.version}, "
                f"not {name}/{version}"
            )
        return manifest, version

    # -- writing -----------------------------------------------------------------
    def publish(self, name: str, write: Callable[[Path, int], Manifest]) -> Manifest:
        """Publish a new version of ``name``: all of it, or nothing a reader accepts.

        Parameters
        ----------
        name : str
            Ensemble name.
        write : callable
            ``write(staging_folder, version) -> Manifest`` writes every file into a local
            staging folder and returns the manifest; ``files`` may be empty, the store
            fills in the sha256 of every file written.

        Returns
        -------
        Manifest
            The manifest as published, with the checksums.

        Notes
        -----
        Locally, the version is built in a hidden sibling folder; every file in it is
        fsynced, then the manifest and its checksum are written (and fsynced), the folder
        is renamed into place, the ensemble folder is fsynced, and only then does
        ``latest`` move. Any exception (Ctrl-C included) removes the staging folder, so no
        partial version is ever visible; what a killed process leaves (``kill -9``) is
        removed by the next publish of the same name (it holds the ensemble's lock, so no
        other publish is writing) and listed by :meth:`leftovers` until then.

        An exception after the commit and before ``latest`` moved leaves the whole version
        in the store, readable by number; it carries a note saying so (``__notes__``).

        On an object store, the publish claims the next free number exclusively, uploads
        the files and the manifest together, then its checksum (the commit), reads them
        back and moves ``latest`` last; a killed publish leaves an incomplete prefix that
        no reader accepts and :meth:`leftovers` lists.
        """
        return self._backend.publish(validate_name(name), write)
