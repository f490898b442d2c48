"""Held-out member predictions (``heldout.npz``) and the rows combiners may learn from.

The file holds, for the validation and test splits, the raw features, the targets and
every member's predictions ``(n_members, n_samples, n_outputs)``; for resampling
strategies also every member's predictions on the training rows, with NaN wherever the
member trained on the row (so only out-of-bag / out-of-fold entries remain). Gaussian-head
members add ``*_variances`` arrays of the same shape. It loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ensembles.errors import ConfigError, IntegrityError

HELDOUT_FILE = "heldout.npz"
FitSource = Literal["heldout", "validation", "in_sample"]


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
    ``in_sample`` (optional) holds in-sample training predictions, kept only so that the
    explicit ``in_sample`` fitting mode and the leakage benchmark can use them.
    """

    validation: SplitPredictions
    test: SplitPredictions
    train: SplitPredictions | None = None
    in_sample: SplitPredictions | None = field(default=None)

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
            handle = io.BytesIO(source) if isinstance(source, bytes) else source
            with np.load(handle, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise IntegrityError(f"{where} cannot be read: {exc}") from exc

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
        return cls(validation, test, split("train"), split("in_sample"))

    def _splits(self) -> dict[str, SplitPredictions]:
        splits = {"validation": self.validation, "test": self.test}
        if self.train is not None:
            splits["train"] = self.train
        if self.in_sample is not None:
            splits["in_sample"] = self.in_sample
        return splits


@dataclass(frozen=True)
class FitSet:
    """The rows a combiner is fitted on, and a record of where they came from."""

    data: SplitPredictions
    record: dict[str, object]


def combiner_fit_set(heldout: HeldoutPredictions, source: FitSource = "heldout") -> FitSet:
    """Assemble the rows combiners learn from, never rows a member trained on.

    Parameters
    ----------
    heldout : HeldoutPredictions
    source : {"heldout", "validation", "in_sample"}
        ``"heldout"``: the validation split plus, for resampling strategies, every training
        row that at least one member did not train on; a member's in-sample entry on such
        a row is replaced by the mean of the row's out-of-sample predictions, so no
        prediction a member made on its own training rows is ever used.
        ``"validation"``: the validation split only.
        ``"in_sample"``: the members' predictions on their own training rows. This leaks
        and is only allowed when asked for explicitly; the record says so.

    Returns
    -------
    FitSet
    """
    validation = heldout.validation
    if source == "validation":
        return FitSet(validation, {"source": "validation", "n_rows": len(validation.y)})
    if source == "in_sample":
        if heldout.in_sample is None:
            raise ConfigError("in-sample fitting was asked for but no in-sample predictions exist")
        data = heldout.in_sample
        return FitSet(data, {"source": "in_sample", "n_rows": len(data.y), "leaks": True})
    if source != "heldout":
        raise ConfigError(
            f"The 'source' parameter of combiner_fit_set must be one of 'heldout', "
            f"'validation', 'in_sample'. Got {source!r} instead."
        )
    if heldout.train is None:
        return FitSet(validation, {"source": "validation", "n_rows": len(validation.y)})
    train = heldout.train
    observed = ~np.isnan(train.member_preds).any(axis=2)  # (n_members, n_train)
    usable = observed.any(axis=0)
    counts = observed[:, usable].sum(axis=0)
    preds = train.member_preds[:, usable]
    row_means = np.nansum(preds, axis=0) / counts[:, None]
    filled = np.where(np.isnan(preds), row_means[None], preds)
    variances = None
    if train.member_variances is not None:
        raw = train.member_variances[:, usable]
        var_means = np.nansum(raw, axis=0) / counts[:, None]
        variances = np.where(np.isnan(raw), var_means[None], raw)
        variances = np.concatenate([validation.member_variances, variances], axis=1)
    data = SplitPredictions(
        np.concatenate([validation.X, train.X[usable]]),
        np.concatenate([validation.y, train.y[usable]]),
        np.concatenate([validation.member_preds, filled], axis=1),
        variances,
    )
    imputed = int((~observed[:, usable]).sum())
    record = {
        "source": "validation+out_of_sample",
        "n_rows": len(data.y),
        "n_validation_rows": len(validation.y),
        "n_out_of_sample_rows": int(usable.sum()),
        "n_rows_dropped_in_every_member": int((~usable).sum()),
        "imputed_in_sample_entries": imputed,
    }
    return FitSet(data, record)
