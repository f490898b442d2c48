"""Held-out member predictions (``heldout.npz``) and the rows combiners learn from.

The file holds, for the validation and test splits, the raw features, the targets and
every member's predictions ``(n_members, n_samples, n_outputs)``; for resampling
strategies also every member's predictions on the training rows, with NaN wherever the
member trained on the row (so only out-of-bag / out-of-fold entries remain). Gaussian-head
members add ``*_variances`` arrays of the same shape. It loads with ``allow_pickle=False``.

After a refit (:mod:`ensembles.training.refit`) the validation and training predictions
are those of the members trained on the training rows, held out where the combiners learn
from them, and the test predictions are the served members'.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensembles.errors import IntegrityError

HELDOUT_FILE = "heldout.npz"
#: How every zip archive, and so every ``.npz``, begins (an empty one: ``PK\x05\x06``).
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def read_npz(data: bytes, where: str) -> dict[str, np.ndarray]:
    """Every array of a numpy ``.npz`` archive's bytes (plain arrays only, never pickles).

    Raises
    ------
    IntegrityError
        When the bytes are no such archive (the message names ``where``).
    """
    if not data.startswith(_ZIP_MAGIC):  # np.load would take it for a pickle
        raise IntegrityError(f"{where} cannot be read: it is not a numpy .npz archive")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise IntegrityError(f"{where} cannot be read: {exc}") from exc


@dataclass(frozen=True)
class SplitPredictions:
    """Features, targets and member predictions on one split.

    Attributes
    ----------
    X : ndarray (n_samples, n_features)
    y : ndarray (n_samples,) int class indices, or (n_samples, n_outputs) float values
    member_preds : ndarray (n_members, n_samples, n_outputs)
    member_variances : ndarray (n_members, n_samples, n_outputs) or None
    """

    X: np.ndarray
    y: np.ndarray
    member_preds: np.ndarray
    member_variances: np.ndarray | None = None

    def rows(self, index: np.ndarray) -> SplitPredictions:
        """The same split restricted to the rows in ``index``."""
        variances = None if self.member_variances is None else self.member_variances[:, index]
        return SplitPredictions(
            self.X[index], self.y[index], self.member_preds[:, index], variances
        )


@dataclass(frozen=True)
class HeldoutPredictions:
    """Everything in ``heldout.npz``.

    ``train`` holds out-of-sample predictions on the training rows (NaN where a member
    trained on the row) for bagging, kfold and subsample; it is None otherwise.
    """

    validation: SplitPredictions
    test: SplitPredictions
    train: SplitPredictions | None = None

    def save(self, path: Path) -> None:
        """Write every array to an uncompressed npz (no object arrays, no pickles)."""
        arrays: dict[str, np.ndarray] = {}
        for prefix, split in self._splits().items():
            arrays[f"{prefix}_X"] = split.X
            arrays[f"{prefix}_y"] = split.y
            arrays[f"{prefix}_preds"] = split.member_preds
            if split.member_variances is not None:
                arrays[f"{prefix}_variances"] = split.member_variances
        np.savez(path, **arrays)

    @classmethod
    def load(cls, source: Path | bytes, name: str | None = None) -> HeldoutPredictions:
        """Read a file written by :meth:`save`, from its path or from its (verified) bytes.

        Parameters
        ----------
        source : Path or bytes
            The file, or its bytes as the store verified them.
        name : str, optional
            How to name the file in messages; the path by default.

        Raises
        ------
        IntegrityError
            When the file is missing, unreadable or lacks a required split.
        """
        where = name or (HELDOUT_FILE if isinstance(source, bytes) else str(source))
        try:
            data = source if isinstance(source, bytes) else source.read_bytes()
        except OSError as exc:
            raise IntegrityError(f"{where} cannot be read: {exc}") from exc
        arrays = read_npz(data, where)

        def split(prefix: str) -> SplitPredictions | None:
            if f"{prefix}_preds" not in arrays:
                return None
            return SplitPredictions(
                arrays[f"{prefix}_X"],
                arrays[f"{prefix}_y"],
                arrays[f"{prefix}_preds"],
                arrays.get(f"{prefix}_variances"),
            )

        validation, test = split("validation"), split("test")
        if validation is None or test is None:
            raise IntegrityError(f"{where} lacks the validation or test predictions")
        return cls(validation, test, split("train"))

    def _splits(self) -> dict[str, SplitPredictions]:
        splits = {"validation": self.validation, "test": self.test}
        if self.train is not None:
            splits["train"] = self.train
        return splits


@dataclass(frozen=True)
class FitSet:
    """The rows a combiner is fitted on, and a record of where they came from."""

    data: SplitPredictions
    record: dict[str, object]


def combiner_fit_set(heldout: HeldoutPredictions) -> FitSet:
    """The rows combiners learn from: the validation split, for every strategy.

    Every member predicts every validation row without having trained on it, so a
    combiner (and its temperature) learns how the members behave on unseen rows. The
    out-of-bag / out-of-fold predictions of resampling strategies are not fit rows: on
    each such row some members trained, and filling their entries in would hand the
    combiner members that agree more than they do (with kfold every member but one
    trained on every training row). They score the members and the ensemble instead
    (:func:`~ensembles.evaluation.out_of_sample_scores`).

    Parameters
    ----------
    heldout : HeldoutPredictions

    Returns
    -------
    FitSet
        ``data`` is ``heldout.validation``; ``record`` is ``{"source": "validation",
        "n_rows": n_samples}``.
    """
    validation = heldout.validation
    return FitSet(validation, {"source": "validation", "n_rows": len(validation.y)})
