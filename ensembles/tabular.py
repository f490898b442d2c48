"""Tables as users have them: typed columns, and the encoding into the matrix members take.

A *table* maps each column name to a one-dimensional array: float64 for numeric and
boolean columns (booleans as 0/1, NaN where a cell is missing), an object array of ``str``
(``None`` where missing) for categorical columns. :class:`TabularSpec` is the fitted
encoding, recorded in the manifest and applied by this one numpy module both at training
time and by the server (no torch, no pandas):

- a numeric or boolean column is one value column; when its training rows had missing
  cells it gets a ``name:missing`` indicator column and missing cells hold ``fill`` (the
  training median). Each member replaces that placeholder with the median of its own rows
  inside its graph (:meth:`TabularSpec.imputed_columns`).
- a categorical column is one-hot: the :data:`MAX_LEVELS` most frequent levels with at
  least :data:`MIN_LEVEL_ROWS` training rows get a column each; missing cells get their
  own column (:data:`MISSING_LEVEL`) when as many training rows have one; the remaining
  levels (and rarer missing cells) share :data:`OTHER_LEVEL`. A level never seen in
  training is encoded as ``(other)`` when that column exists, else as all zeros, and
  counted (:attr:`EncodedTable.unseen`); the rare levels are recorded, so they are not.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ensembles.errors import DataError

ColumnKind = Literal["numeric", "boolean", "categorical"]
Table = dict[str, np.ndarray]

#: At most this many levels of one categorical column get their own column.
MAX_LEVELS = 64
#: A level needs this many training rows for its own column; rarer ones share ``(other)``,
#: so that no member meets a column it could not learn (a bootstrap sample misses a level
#: of 5 rows with probability e^-5).
MIN_LEVEL_ROWS = 5
#: Cell texts that mean "missing", as in a CSV (pandas' default ``na_values``, here so that
#: training reads the file and serving reads a request with the same list).
MISSING_TOKENS: frozenset[str] = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
#: Training levels remembered as rare (beyond it, a rare level counts as unseen).
MAX_RARE_LEVELS = 10_000
MISSING_LEVEL = "(missing)"
OTHER_LEVEL = "(other)"
#: Boolean-like spellings, (true, false), compared case-insensitively.
BOOLEAN_TOKENS: tuple[tuple[str, str], ...] = (
    ("yes", "no"),
    ("true", "false"),
    ("y", "n"),
    ("t", "f"),
    ("1", "0"),
)

#: The largest magnitude a member's float32 input holds; beyond it a value becomes inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)
_TRUE = frozenset(true for true, _ in BOOLEAN_TOKENS)
_FALSE = frozenset(false for _, false in BOOLEAN_TOKENS)


class ColumnError(DataError):
    """A column of a table is missing, unknown or holds values of the wrong type.

    Attributes
    ----------
    column : str
        The column at fault.
    """

    def __init__(self, message: str, column: str) -> None:
        super().__init__(message)
        self.column = column


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Model):
    """One input column: its type and, once fitted, how it is encoded."""

    name: str
    kind: ColumnKind
    true_token: str | None = Field(
        default=None, description="boolean: the spelling of true (lowercase), e.g. 'yes'"
    )
    false_token: str | None = None
    fill: float | None = Field(
        default=None, description="numeric, boolean: the training median, for missing cells"
    )
    indicator: bool = Field(
        default=False, description="numeric, boolean: a missing-indicator column follows"
    )
    levels: list[str] = Field(
        default_factory=list, description="categorical: the levels with a column, in order"
    )
    missing: bool = Field(
        default=False, description="categorical: a (missing) column follows the levels"
    )
    other: bool = Field(default=False, description="categorical: an (other) column comes last")
    rare_levels: list[str] = Field(
        default_factory=list,
        description="categorical: training levels too rare for a column (encoded as (other); "
        "kept to tell them from levels never seen)",
    )


class DroppedColumn(_Model):
    """A column of the file that is not a feature, and why."""

    name: str
    reason: str


class TabularSpec(_Model):
    """The fitted encoding of a table into the float32 matrix every member takes."""

    columns: list[ColumnSpec]
    dropped: list[DroppedColumn] = Field(default_factory=list)

    @property
    def column_names(self) -> list[str]:
        """The input columns a request must send, in order."""
        return [column.name for column in self.columns]

    @property
    def feature_names(self) -> list[str]:
        """Names of the encoded columns: values, then missing indicators, then one-hot."""
        values = [c.name for c in self.columns if c.kind != "categorical"]
        indicators = [f"{c.name}:missing" for c in self.columns if c.indicator]
        one_hot = [name for c in self.columns for name in _one_hot_names(c)]
        return values + indicators + one_hot

    @property
    def is_identity(self) -> bool:
        """True when the encoding passes numeric columns through unchanged (no indicators)."""
        return all(c.kind == "numeric" and not c.indicator for c in self.columns)

    @property
    def n_features(self) -> int:
        """Width of the encoded matrix."""
        return len(self.feature_names)

    def column(self, name: str) -> ColumnSpec:
        """The spec of column ``name`` (KeyError when there is none)."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def imputed_columns(self) -> list[tuple[int, int]]:
        """``(value index, indicator index)`` of every column with a missing indicator."""
        values = [c for c in self.columns if c.kind != "categorical"]
        index = {c.name: i for i, c in enumerate(values)}
        flagged = [c.name for c in values if c.indicator]
        return [(index[name], len(values) + k) for k, name in enumerate(flagged)]

    def encode(self, table: Mapping[str, np.ndarray]) -> EncodedTable:
        """Encode a coerced table (see :func:`coerce_table` and :class:`TableEncoder`)."""
        return TableEncoder(self).encode(table)


@dataclass(frozen=True)
class EncodedTable:
    """An encoded table: the matrix and, per categorical column, how many unseen levels."""

    X: np.ndarray
    unseen: dict[str, int]


def fit_spec(
    table: Mapping[str, np.ndarray],
    columns: Sequence[ColumnSpec],
    dropped: Sequence[DroppedColumn] = (),
) -> TabularSpec:
    """Fit the encoding of ``columns`` on the (training) rows of ``table``.

    Parameters
    ----------
    table : dict of str to ndarray (n_samples,)
        Coerced columns (see the module docstring).
    columns : sequence of ColumnSpec
        Name, kind and boolean tokens of each column; the fitted fields are filled in.
    dropped : sequence of DroppedColumn
        Columns of the source left out, recorded with the spec.
    """
    fitted = []
    for column in columns:
        cells = table[column.name]
        if column.kind == "categorical":
            fitted.append(_fit_levels(column, cells))
            continue
        observed = cells[~np.isnan(cells)]
        fill = float(np.median(observed)) if len(observed) else 0.0
        has_missing = bool(len(observed) < len(cells))
        fitted.append(column.model_copy(update={"fill": fill, "indicator": has_missing}))
    return TabularSpec(columns=fitted, dropped=list(dropped))


def coerce_table(
    spec: TabularSpec, columns: Mapping[str, Sequence[Any] | np.ndarray], where: str = ""
) -> Table:
    """Check and convert user values, column by column, into a table ``spec`` encodes.

    Numeric columns take numbers (``None`` / NaN for missing); boolean columns take
    ``true``/``false``, 0/1 or the column's own spellings; categorical columns take strings
    (numbers are written as text, so a code column trained as categorical still matches).

    Parameters
    ----------
    spec : TabularSpec
    columns : mapping of column name to a sequence of values
    where : str
        Prefix of the column in messages (e.g. ``"records"``).

    Raises
    ------
    ColumnError
        Naming the first unknown column, missing column, wrongly typed value, or columns of
        different lengths.
    """
    known = set(spec.column_names)
    ignored = {dropped.name for dropped in spec.dropped}
    for name in columns:
        if name not in known and name not in ignored:
            raise ColumnError(
                f"unknown column '{name}'{_at(where)}: this ensemble takes "
                f"{', '.join(spec.column_names)}",
                name,
            )
    table: Table = {}
    for column in spec.columns:
        if column.name not in columns:
            raise ColumnError(
                f"missing column '{column.name}'{_at(where)}: send a value (or null for a "
                "missing one) for every column",
                column.name,
            )
        table[column.name] = _coerce(column, columns[column.name], where)
    _row_count(table, spec.column_names)
    return table


def table_from_records(spec: TabularSpec, records: Sequence[Mapping[str, Any]]) -> Table:
    """A table from row records (``[{"state": "KS", "age": 31, ...}, ...]``).

    Raises
    ------
    ColumnError
        When a record lacks a column or has one the ensemble does not take (the message
        names the record and the column), or a value has the wrong type.
    """
    names = spec.column_names
    known = set(names) | {dropped.name for dropped in spec.dropped}
    for index, record in enumerate(records):
        for name in record:
            if name not in known:
                raise ColumnError(
                    f"unknown column '{name}' in records[{index}]: this ensemble takes "
                    f"{', '.join(names)}",
                    name,
                )
        for name in names:
            if name not in record:
                raise ColumnError(
                    f"missing column '{name}' in records[{index}]: send a value (or null for "
                    "a missing one) for every column",
                    name,
                )
    columns = {name: [record[name] for record in records] for name in names}
    return coerce_table(spec, columns, "records")  # columns dropped in training are ignored


def is_missing_text(text: str) -> bool:
    """Whether a cell's text means "missing": one of :data:`MISSING_TOKENS`, or nothing but
    spaces (as training reads a CSV's ``" "``)."""
    return text in MISSING_TOKENS or not text.strip()


#: The text of an integral number with a zero fraction (``415.0``, as pandas writes an
#: integer column with missing cells): the level is ``415``.
_INTEGRAL_TEXT = re.compile(r"(-?[0-9]+)\.0+")


def level_text(value: Any) -> str:
    """The text of a categorical value: integral numbers without a trailing ``.0``, whether
    they come as numbers or as text (``415``, ``415.0`` and ``"415.0"`` are level
    ``415``; ``"02134"`` stays as written)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    integral = _INTEGRAL_TEXT.fullmatch(text)
    if integral is None:
        return text
    digits = integral.group(1)
    return "0" if digits.lstrip("-").strip("0") == "" else digits  # "-0.0" is 0, as -0.0


def boolean_tokens(values: Iterable[str]) -> tuple[str, str] | None:
    """The (true, false) spelling pair all ``values`` belong to, or None."""
    seen = {value.strip().lower() for value in values}
    for pair in BOOLEAN_TOKENS:
        if seen and seen <= set(pair):
            return pair
    return None


def _fit_levels(column: ColumnSpec, cells: np.ndarray) -> ColumnSpec:
    """The levels of a categorical column that earn a column (see the module docstring)."""
    n_missing = sum(cell is None for cell in cells)
    counts = Counter(cell for cell in cells if cell is not None)
    frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_LEVELS]
    kept = [level for level, count in frequent if count >= MIN_LEVEL_ROWS]
    rare = sorted(set(counts) - set(kept))[:MAX_RARE_LEVELS]
    missing = n_missing >= MIN_LEVEL_ROWS
    other = bool(rare) or (0 < n_missing < MIN_LEVEL_ROWS)
    update = {"levels": kept, "missing": missing, "other": other, "rare_levels": rare}
    return column.model_copy(update=update)


def _one_hot_names(column: ColumnSpec) -> list[str]:
    """Names of a categorical column's one-hot columns: ``name=level``, then
    ``name:(missing)`` and ``name:(other)`` (a ``:`` no level name can produce)."""
    names = [f"{column.name}={level}" for level in column.levels]
    names += [f"{column.name}:{MISSING_LEVEL}"] if column.missing else []
    return names + ([f"{column.name}:{OTHER_LEVEL}"] if column.other else [])


class TableEncoder:
    """:meth:`TabularSpec.encode`, with the layout and the level lookups worked out once.

    Serving keeps one per loaded version, so a request does not rebuild the lookups (for a
    column of thousands of rare levels that took milliseconds).

    Parameters
    ----------
    spec : TabularSpec
    """

    def __init__(self, spec: TabularSpec) -> None:
        self.spec = spec
        self._numeric = [c for c in spec.columns if c.kind != "categorical"]
        self._flagged = [c for c in self._numeric if c.indicator]
        start = len(self._numeric) + len(self._flagged)
        #: per categorical column: (column, first one-hot column, width, level -> column,
        #: rare training levels)
        self._blocks: list[tuple[ColumnSpec, int, int, dict[str, int], frozenset[str]]] = []
        for column in spec.columns:
            if column.kind != "categorical":
                continue
            width = len(column.levels) + column.missing + column.other
            # keyed as cells are spelled (level_text): a version whose levels were stored
            # before "415.0" became "415" matches the cells of today's requests
            index = {level_text(level): k for k, level in enumerate(column.levels)}
            rare = frozenset(map(level_text, column.rare_levels))
            self._blocks.append((column, start, width, index, rare))
            start += width
        #: Width of the encoded matrix.
        self.n_features = start

    def encode(self, table: Mapping[str, np.ndarray]) -> EncodedTable:
        """Encode a coerced table (see :func:`coerce_table`).

        Returns
        -------
        EncodedTable
            ``X`` (n_samples, n_features) float32, and the count of unseen levels per
            categorical column.
        """
        n_rows = _row_count(table, self.spec.column_names)
        X = np.zeros((n_rows, self.n_features), dtype=np.float32)
        for position, column in enumerate(self._numeric):
            cells = table[column.name]
            X[:, position] = np.where(np.isnan(cells), column.fill or 0.0, cells)
        for position, column in enumerate(self._flagged, len(self._numeric)):
            X[:, position] = np.isnan(table[column.name])
        unseen = {}
        for column, start, width, index, rare in self._blocks:
            cells = table[column.name]
            other = width - 1 if column.other else -1
            missing = len(column.levels) if column.missing else other
            positions = np.array(
                [missing if cell is None else index.get(cell, other) for cell in cells],
                dtype=np.int64,
            )
            rows = np.flatnonzero(positions >= 0)
            X[rows, start + positions[rows]] = 1.0
            count = sum(c is not None and c not in index and c not in rare for c in cells)
            if count:
                unseen[column.name] = count
        return EncodedTable(X, unseen)


def _coerce(column: ColumnSpec, values: Sequence[Any] | np.ndarray, where: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        if column.kind == "categorical":
            return np.array([_category(column, v, where) for v in values.tolist()], dtype=object)
        cells = values.astype(np.float64).reshape(-1)
        odd = ~(np.abs(cells) <= FLOAT32_MAX)  # infinite, too large for float32, or NaN
        if column.fill is not None:
            odd &= ~np.isnan(cells)  # missing: filled
        if column.kind == "boolean":
            odd |= ~np.isin(cells, (0.0, 1.0)) & ~np.isnan(cells)
        if odd.any():  # convert_cell refuses the first odd value, naming it
            convert_cell(column, float(cells[np.argmax(odd)]), where)
        return cells
    cells = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if column.kind == "categorical":
        return np.array([_category(column, cell, where) for cell in cells], dtype=object)
    return np.array([convert_cell(column, cell, where) for cell in cells], dtype=np.float64)


def convert_cell(column: ColumnSpec, cell: Any, where: str = "") -> float:
    """One numeric or boolean cell as a float (NaN when missing).

    Raises
    ------
    ColumnError
        When the value has the wrong type, is infinite, or is missing in a column with no
        fill value (a plain numeric ensemble learned none).
    """
    convert = _number if column.kind == "numeric" else _boolean
    value = convert(column, cell, where)
    if math.isnan(value) and column.fill is None:
        raise ColumnError(
            f"column '{column.name}'{_at(where)} cannot be missing: this ensemble was trained "
            "without missing values, so it has no fill value for it",
            column.name,
        )
    return value


def _category(column: ColumnSpec, cell: Any, where: str) -> str | None:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None
    if isinstance(cell, bytes):
        cell = cell.decode("utf-8", errors="replace")
    if isinstance(cell, str):
        return None if is_missing_text(cell) else level_text(cell)
    if isinstance(cell, bool) or not isinstance(cell, int | float):
        raise _type_error(column, cell, "a string", where)
    return level_text(cell)


def _number(column: ColumnSpec, cell: Any, where: str) -> float:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return math.nan
    if isinstance(cell, str) and is_missing_text(cell):  # "NA" in a CSV is missing
        return math.nan
    if isinstance(cell, bool) or not isinstance(cell, int | float):
        raise _type_error(column, cell, "a number or null", where)
    value = float(cell)
    if not abs(value) <= FLOAT32_MAX:  # members compute in float32
        raise _type_error(column, cell, "a finite float32 number or null", where)
    return value


def _boolean(column: ColumnSpec, cell: Any, where: str) -> float:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return math.nan
    if isinstance(cell, bytes):
        cell = cell.decode("utf-8", errors="replace")
    if isinstance(cell, bool):
        return float(cell)
    if isinstance(cell, int | float) and cell in (0, 1):
        return float(cell)
    if isinstance(cell, str):
        text = cell.strip().lower()
        if is_missing_text(cell):
            return math.nan
        if text in _TRUE or text == column.true_token:
            return 1.0
        if text in _FALSE or text == column.false_token:
            return 0.0
    own = (column.true_token, column.false_token)
    spelled = f" or '{own[0]}'/'{own[1]}'" if None not in own and own != ("true", "false") else ""
    expected = f"true/false, 0/1{spelled}"
    raise _type_error(column, cell, expected, where)


def _type_error(column: ColumnSpec, cell: Any, expected: str, where: str) -> ColumnError:
    shown = repr(cell) if not isinstance(cell, str) else f"'{cell[:40]}'"
    return ColumnError(
        f"column '{column.name}'{_at(where)} is {column.kind} and takes {expected}; got {shown}",
        column.name,
    )


def _row_count(table: Mapping[str, np.ndarray], names: Sequence[str]) -> int:
    lengths = {name: len(table[name]) for name in names}
    if len(set(lengths.values())) > 1:
        first, *rest = names
        odd = next(name for name in rest if lengths[name] != lengths[first])
        raise ColumnError(
            f"column '{odd}' has {lengths[odd]} values but '{first}' has {lengths[first]}; "
            "every column needs one value per row",
            odd,
        )
    return next(iter(lengths.values()), 0)


def _at(where: str) -> str:
    return f" in {where}" if where else ""
