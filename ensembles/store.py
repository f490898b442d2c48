"""The model store: every path of ``<root>/<name>/<version>/`` goes through this module.

Versions are integers, written in a hidden staging folder and renamed into place only
when complete; the ``latest`` pointer moves last. A version is never changed after it
is published, and reading it verifies the sha256 of every file listed in its manifest.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ensembles.errors import IntegrityError, NotFoundError, StoreError
from ensembles.manifest import Manifest

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest"
_STAGING_PREFIX = ".staging-"


def validate_name(name: str) -> str:
    """Return ``name`` when it is a valid ensemble name, else raise ``StoreError``.

    Names are 1-64 characters of lowercase letters, digits, '-' and '_', starting with a
    letter or digit; this also rules out path traversal.
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise StoreError(
            f"invalid ensemble name {name!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        """Sorted names of the ensembles that have at least one complete version."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and NAME_PATTERN.match(entry.name) and self.versions(entry.name)
        )

    def versions(self, name: str) -> list[int]:
        """Sorted complete versions of ``name`` (folders with a manifest), oldest first."""
        folder = self.root / validate_name(name)
        if not folder.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in folder.iterdir()
            if entry.name.isdigit() and (entry / MANIFEST_FILE).is_file()
        )

    def latest(self, name: str) -> int:
        """The version the ``latest`` pointer names.

        Raises
        ------
        NotFoundError
            When the ensemble has no published version.
        """
        pointer = self.root / validate_name(name) / LATEST_FILE
        try:
            text = pointer.read_text().strip()
        except FileNotFoundError:
            versions = self.versions(name)
            if not versions:
                raise NotFoundError(self.not_found_message(name)) from None
            return versions[-1]
        if not text.isdigit():
            raise IntegrityError(f"{pointer} does not hold a version number: {text!r}")
        return int(text)

    def check_versions(self, name: str) -> dict[int, str | None]:
        """Verify every version of ``name``: version -> None when intact, else the problem.

        :meth:`versions` only lists folders with a manifest (cheap); this reads every file.
        """
        problems: dict[int, str | None] = {}
        for version in self.versions(name):
            try:
                self.load_manifest(name, version)
                problems[version] = None
            except StoreError as exc:
                problems[version] = str(exc)
        return problems

    def path(self, name: str, version: int) -> Path:
        """Folder of one version (it may not exist)."""
        return self.root / validate_name(name) / str(int(version))

    def load_manifest(
        self, name: str, version: int | None = None, *, verify: bool = True
    ) -> Manifest:
        """Read a version's manifest, verifying every file's sha256 unless ``verify`` is False.

        Raises
        ------
        NotFoundError
            When the ensemble or version does not exist.
        IntegrityError
            When the manifest is invalid or a file is missing or changed (the message names it).
        """
        version = self.latest(name) if version is None else int(version)
        folder = self.path(name, version)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file():
            if folder.is_dir():
                raise IntegrityError(f"{manifest_path} is missing: version {version} is incomplete")
            raise NotFoundError(
                f"ensemble '{name}' has no version {version}; "
                f"available: {self.versions(name) or 'none'}"
            )
        manifest = Manifest.from_json(manifest_path.read_text(), source=str(manifest_path))
        if manifest.name != name or manifest.version != version:
            raise IntegrityError(
                f"{manifest_path} describes {manifest.name}/{manifest.version}, "
                f"not {name}/{version}"
            )
        if verify:
            self.verify_files(folder, manifest)
        return manifest

    @staticmethod
    def verify_files(folder: Path, manifest: Manifest) -> None:
        """Check that every file the manifest lists exists under ``folder`` with its sha256."""
        for relative, expected in manifest.files.items():
            file = folder / relative
            if not file.is_file():
                raise IntegrityError(f"{file} is missing (listed in the manifest)")
            actual = sha256_file(file)
            if actual != expected:
                raise IntegrityError(
                    f"{file} is corrupt: sha256 {actual[:12]}… does not match the manifest's "
                    f"{expected[:12]}…"
                )

    def not_found_message(self, name: str, *, show_root: bool = True) -> str:
        """What to tell a user asking for an ensemble the store does not have.

        ``show_root=False`` keeps the store's path out (for clients of a server): the
        message then names the known ensembles only.
        """
        known = self.names()
        hint = f"known ensembles: {', '.join(known)}" if known else "the store is empty"
        if not show_root:
            return f"ensemble '{name}' not found in the model store ({hint})"
        return (
            f"ensemble '{name}' not found in {self.root} ({hint}); "
            f"train one with: python scripts/train.py --name {name} --store {self.root}"
        )

    # -- writing -----------------------------------------------------------------
    def publish(self, name: str, write: Callable[[Path, int], Manifest]) -> Manifest:
        """Publish a new version of ``name`` atomically.

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
        The version is built in a hidden sibling folder, renamed into place when complete,
        and only then does ``latest`` move. Any exception (Ctrl-C included) removes the
        staging folder, so no partial version is ever visible.
        """
        folder = self.root / validate_name(name)
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return self._publish_locked(name, folder, write)
        except BaseException:
            if created and not self.versions(name):
                shutil.rmtree(folder, ignore_errors=True)
            raise

    def _publish_locked(
        self, name: str, folder: Path, write: Callable[[Path, int], Manifest]
    ) -> Manifest:
        with self._lock(folder):
            version = (self.versions(name) or [0])[-1] + 1
            staging = folder / f"{_STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            try:
                manifest = write(staging, version)
                files = {
                    path.relative_to(staging).as_posix(): sha256_file(path)
                    for path in sorted(staging.rglob("*"))
                    if path.is_file() and path.name != MANIFEST_FILE
                }
                manifest = manifest.model_copy(update={"files": files, "version": version})
                _write_text_durably(staging / MANIFEST_FILE, manifest.to_json())
                os.rename(staging, folder / str(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            _write_text_durably(folder / LATEST_FILE, f"{version}\n")
        logger.info("published %s version %d to %s", name, version, self.root)
        return manifest

    @contextmanager
    def _lock(self, folder: Path) -> Iterator[None]:
        with (folder / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _write_text_durably(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so readers see the old or the new text."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        with temporary.open("w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
