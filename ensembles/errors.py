"""The exception hierarchy of the ensembles package: one base, no HTTP codes.

Messages say what was wrong, what was expected and what to do next. Serving maps
these classes to HTTP status codes in exactly one place.
"""

from __future__ import annotations


class EnsembleError(Exception):
    """Base class of every error raised on purpose by this project."""


class DataError(EnsembleError):
    """The data given for training is missing, malformed or unusable."""


class ConfigError(EnsembleError):
    """Options are invalid, unknown or contradict each other."""


class NotFittedError(EnsembleError):
    """A combiner was used before ``fit`` was called."""


class ShapeError(EnsembleError):
    """An array does not have the shape the operation needs."""


class ExportError(EnsembleError):
    """An ONNX export failed or did not match the torch module."""


class StoreError(EnsembleError):
    """The model store could not be read or written."""


class NotFoundError(StoreError):
    """An ensemble or version does not exist in the store."""


class IntegrityError(StoreError):
    """A stored version is corrupt or incomplete (a file missing or changed)."""
