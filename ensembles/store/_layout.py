"""What every store backend shares: the names of the layout, ensemble names, digests."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ensembles.errors import StoreError
from ensembles.manifest import Manifest

#: The longest ensemble name.
MAX_NAME_LENGTH = 64
NAME_PATTERN = re.compile(rf"^[a-z0-9][a-z0-9_-]{{0,{MAX_NAME_LENGTH - 1}}}$")
#: The most digits of a version number (so that every version fits an int64).
MAX_VERSION_DIGITS = 18
#: Version folders and the ``latest`` pointer: ASCII digits, no leading zero.
VERSION_PATTERN = re.compile(rf"^[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}}$")
#: The largest version number :data:`VERSION_PATTERN` accepts.
MAX_VERSION = 10**MAX_VERSION_DIGITS - 1


def next_version(location: str, taken: list[int]) -> int:
    """The version after every one in ``taken``, refused past :data:`MAX_VERSION`.

    Raises
    ------
    StoreError
        When the next number would have more than :data:`MAX_VERSION_DIGITS` digits (no
        reader would take it for a version).
    """
    version = max(taken, default=0) + 1
    if version > MAX_VERSION:
        raise StoreError(
            f"{location} holds version {version - 1}: no version number is left after it "
            f"(at most {MAX_VERSION_DIGITS} digits); publish under another name"
        )
    return version


#: What an exception raised after a version's commit and before ``latest`` moved carries
#: as a note (see :func:`noting_committed`).
COMMITTED_NOTE = "{location} was published in full, but latest was not moved to it"


@contextmanager
def noting_committed(location: str, unless: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Note, on any exception raised inside, that the version at ``location`` is committed.

    A failure between a version's commit and the move of ``latest`` (Ctrl-C, a full disk,
    a lost connection) leaves a whole version that ``latest`` does not name: readers take
    it by number, and the next publish moves ``latest`` past it. Whoever reports the
    failure must not say that nothing was published; the note (``__notes__``, which
    :func:`ensembles.cli.common.run_command` prints) says what was; exceptions of the
    types in ``unless`` (a version found changed under the publish) get no note.
    """
    try:
        yield
    except unless:
        raise
    except BaseException as exc:
        exc.add_note(COMMITTED_NOTE.format(location=location))
        raise


MANIFEST_FILE = "manifest.json"
#: The sha256 of ``manifest.json``'s bytes, written after it: a version is complete once
#: this file exists and matches.
CHECKSUM_FILE = "manifest.sha256"
LATEST_FILE = "latest"
LOCK_FILE = ".lock"
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
#: How an object-store publish's claim on a version number starts: it holds the checksum's
#: place until the real digest replaces it (see ``ensembles.store._object``).
CLAIM_PREFIX = "claimed "

#: What identifies the state of a version's files from metadata alone (no file is read):
#: one tuple per entry, starting with its path relative to the version folder.
Fingerprint = tuple[tuple[str | int, ...], ...]


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


def name_from(text: str) -> str:
    """A valid ensemble name made from ``text`` (a file name's stem, a dataset's name).

    Lowercase ASCII with accents dropped (``données`` is ``donnees``), every run of other
    characters one ``-``, at most :data:`MAX_NAME_LENGTH` characters; ``ensemble`` when
    nothing is left (``___``, ``数据``).
    """
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^a-z0-9_-]+", "-", plain.lower()).strip("-_")
    return name[:MAX_NAME_LENGTH].rstrip("-_") or "ensemble"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def checksum_matches(manifest: bytes, checksum: bytes) -> bool:
    """Whether ``checksum`` (the bytes of ``manifest.sha256``) is the digest of ``manifest``."""
    text = checksum.strip().decode("ascii", errors="replace")
    return bool(SHA256_PATTERN.fullmatch(text)) and sha256_bytes(manifest) == text


@dataclass(frozen=True)
class StoredVersion:
    """One verified version: its manifest and the verified bytes of every file it lists.

    Attributes
    ----------
    manifest : Manifest
        The parsed manifest, whose own bytes matched ``manifest.sha256``.
    folder : Path or str
        The version folder, or its URL on an object store (for messages; read nothing
        from it again).
    files : Mapping[str, bytes]
        Relative path -> bytes, for every file in ``manifest.files``; each matched its
        sha256 when it was read.
    """

    manifest: Manifest
    folder: Path | str
    files: Mapping[str, bytes]
