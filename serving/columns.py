"""Rows as a user has them: ``/v1`` records and ``/v2`` column tensors, encoded for members.

An ensemble trained on a table (``manifest.preprocessing``) takes its raw columns: strings
for categories, ``null`` for missing cells. Records also work for a plain numeric
ensemble, keyed by its feature names (no missing cells: it learned no fill values). The
encoding is :mod:`ensembles.tabular`'s, the one training used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ensembles.manifest import Manifest
from ensembles.tabular import (
    ColumnError,
    ColumnSpec,
    EncodedTable,
    TableEncoder,
    TabularSpec,
    coerce_table,
    table_from_records,
)
from serving.errors import InvalidRequestError
from serving.v2_codec import TensorMeta

#: V2 datatype a stock client sends for each kind of column, and the others it may send.
_COLUMN_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "numeric": ("FP64", ("FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT8")),
    "boolean": ("BYTES", ("BOOL", "INT64", "INT32", "FP64", "FP32")),
    "categorical": ("BYTES", ("INT64", "INT32")),
}
#: Every datatype some column input takes (the OpenAPI infer body lists them).
COLUMN_DATATYPES: tuple[str, ...] = tuple(
    sorted({datatype for first, others in _COLUMN_TYPES.values() for datatype in (first, *others)})
)


class TableInput:
    """The columns an ensemble takes, and their encoding into its input matrix.

    Parameters
    ----------
    manifest : Manifest
        A table ensemble's ``preprocessing``, or a plain one's feature names.
    max_rows : int
        Largest request, checked before any value is converted (the encoded matrix of a
        request is many times its body).
    """

    def __init__(self, manifest: Manifest, max_rows: int) -> None:
        preprocessing = manifest.preprocessing
        self.max_rows = max_rows
        #: Whether requests send raw columns (a table ensemble) or one float32 matrix (also
        #: a table whose encoding is the identity: numbers only, none ever missing).
        self.is_table = preprocessing is not None and not preprocessing.is_identity
        self.spec = preprocessing or TabularSpec(
            columns=[ColumnSpec(name=name, kind="numeric") for name in manifest.input.feature_names]
        )
        self.encoder = TableEncoder(self.spec)  # built once per version, used per request

    @property
    def tensor_meta(self) -> dict[str, TensorMeta]:
        """One V2 input per column, as the codec checks them (table ensembles)."""
        metas = {}
        for column in self.spec.columns:
            datatype, alternatives = _COLUMN_TYPES[column.kind]
            metas[column.name] = TensorMeta(datatype, (-1, 1), alternatives, column=True)
        return metas

    def metadata(self) -> list[dict[str, Any]]:
        """The V2 metadata ``inputs``: name, datatype and shape of every column."""
        return [
            {"name": name, "datatype": meta.datatype, "shape": list(meta.shape)}
            for name, meta in self.tensor_meta.items()
        ]

    def from_records(self, records: Sequence[Mapping[str, Any]]) -> EncodedTable:
        """Encode ``/v1`` records.

        Raises
        ------
        InvalidRequestError
            Naming the column (``field`` ``records.<column>``) that is missing, unknown or
            of the wrong type.
        """
        if not records:
            raise InvalidRequestError("empty batch: send at least one record", field="records")
        self._check_rows(len(records), "records")
        try:
            return self.encoder.encode(table_from_records(self.spec, records))
        except ColumnError as exc:
            raise InvalidRequestError(str(exc), field=f"records.{exc.column}") from exc

    def from_tensors(self, inputs: Mapping[str, np.ndarray]) -> EncodedTable:
        """Encode ``/v2`` column tensors (shape ``[n]`` or ``[n, 1]``).

        Raises
        ------
        InvalidRequestError
            Naming the column whose values have the wrong type or length.
        """
        columns = {name: values.reshape(-1) for name, values in inputs.items()}
        for name, values in columns.items():
            self._check_rows(len(values), name)
        try:
            return self.encoder.encode(coerce_table(self.spec, columns))
        except ColumnError as exc:
            raise InvalidRequestError(str(exc), field=exc.column) from exc

    def _check_rows(self, n_rows: int, field: str) -> None:
        if n_rows > self.max_rows:
            raise InvalidRequestError(
                f"batch of {n_rows} rows is over the limit of {self.max_rows} rows; "
                "split it into smaller requests",
                field=field,
            )
