"""The model store: ``<root>/<name>/<version>/`` in a local folder or on any fsspec filesystem.

Versions are integers and never change once published; the ``latest`` pointer moves last.
``manifest.json`` is covered by ``manifest.sha256`` (written after it), the manifest lists
the sha256 of every other file, and reading a version hashes each file's bytes once and
hands out those very bytes, so what was verified is what is used. A local folder gets its
versions by renaming fsynced staging folders (``_local``); an object store, which cannot
rename, by claiming a number and committing with the checksum (``_object``).
"""

from ensembles.store._layout import (
    CHECKSUM_FILE,
    LATEST_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    MAX_VERSION_DIGITS,
    NAME_PATTERN,
    VERSION_PATTERN,
    Fingerprint,
    StoredVersion,
    name_from,
    sha256_bytes,
    validate_name,
)
from ensembles.store._model_store import ModelStore

__all__ = [
    "CHECKSUM_FILE",
    "LATEST_FILE",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "MAX_VERSION_DIGITS",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "Fingerprint",
    "ModelStore",
    "StoredVersion",
    "name_from",
    "sha256_bytes",
    "validate_name",
]
