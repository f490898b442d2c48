"""A mixed-type CSV for the tabular tests: categories, yes/no flags, empty cells, an id column.

:func:`write_mixed_csv` writes the file; the constants name its columns and the facts the
tests rely on (the rare level, the row with an empty target). :func:`mixed_records` reads
the file back as the records a client would send (numbers as floats, empty cells as None),
and :func:`split_rows` says which of those rows ``split_dataset`` puts in each split.

The file, for ``n_rows`` rows drawn from ``seed``:

- ``id``: ``C00000``, ``C00001``, ... distinct on every row (read_csv_table drops it).
- ``state``: one of :data:`STATES`, :data:`RARE_STATE` on exactly :data:`RARE_ROWS` rows
  (fewer than ``MIN_LEVEL_ROWS``, so it lands in ``(other)``), empty on about 6% of rows.
  With the default ``n_rows`` and ``seed``, ``split_dataset(..., seed=0)`` puts two of the
  rare rows in the training split for either task (one in test for classification).
- ``plan``: ``yes`` / ``no``, empty on about 6% of rows (a boolean column).
- ``age``: a number with two decimals, empty on about 6% of rows.
- ``calls``: a small integer, never empty.
- ``area_code``: one of :data:`AREA_CODES`, never empty (numeric unless forced categorical).
- the target: ``label`` (``churn`` / ``stay``) for classification or ``value`` (a number)
  for regression, empty on data row :data:`EMPTY_TARGET_ROW` only.

The features do not depend on ``task``: one seed gives the same rows for both targets.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from ensembles.data import Dataset

ID = "id"
STATE = "state"
PLAN = "plan"
AGE = "age"
CALLS = "calls"
AREA_CODE = "area_code"
LABEL = "label"
VALUE = "value"
#: Every feature column of the file, in file order (the target comes last).
FEATURES = (ID, STATE, PLAN, AGE, CALLS, AREA_CODE)
#: The kind read_csv_table infers for each column it keeps (``id`` is dropped).
KINDS = {
    STATE: "categorical",
    PLAN: "boolean",
    AGE: "numeric",
    CALLS: "numeric",
    AREA_CODE: "numeric",
}
#: Columns with empty cells.
WITH_MISSING = (STATE, PLAN, AGE)
STATES = ("KS", "OH", "NY", "CA")
RARE_STATE = "ZZ"
RARE_ROWS = 3
AREA_CODES = (408, 415, 510)
CLASSES = ("churn", "stay")
#: The (0-based) data row whose target cell is empty; the file has one such row.
EMPTY_TARGET_ROW = 5
_MISSING_SHARE = 0.06
_RARE_AT = (12, 48, 84)  # with the defaults, 2 of them land in split_dataset's train


def write_mixed_csv(
    path: str | Path,
    n_rows: int = 400,
    seed: int = 0,
    task: Literal["classification", "regression"] = "classification",
) -> Path:
    """Write the mixed-type CSV described in the module docstring to ``path``.

    Parameters
    ----------
    path : str or Path
        The file to write (its folder must exist).
    n_rows : int
        Data rows, the one with an empty target included (at least 100).
    seed : int
        Seeds every value; the same seed writes the same file.
    task : {"classification", "regression"}
        Target column ``label`` (classes ``churn`` / ``stay``) or ``value`` (a number).

    Returns
    -------
    Path
        ``path``.
    """
    if n_rows < 100:
        raise ValueError(f"write_mixed_csv needs at least 100 rows, got {n_rows}")
    rng = np.random.default_rng(seed)
    state = rng.choice(STATES, size=n_rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    state[list(_RARE_AT)] = RARE_STATE
    plan = rng.random(n_rows) < 0.35
    age = np.round(np.clip(rng.normal(41.0, 12.0, n_rows), 18.0, 90.0), 2)
    calls = rng.poisson(3.0, n_rows)
    area = rng.choice(AREA_CODES, size=n_rows)
    noise = rng.normal(0.0, 1.0, n_rows)
    empty = {name: rng.random(n_rows) < _MISSING_SHARE for name in WITH_MISSING}
    empty[STATE][list(_RARE_AT)] = False  # exactly RARE_ROWS rows of the rare level
    state_effect = {"KS": 1.0, "OH": -0.5, "NY": 0.0, "CA": -1.0, RARE_STATE: 2.0}
    effect = np.array([state_effect[s] for s in state])
    score = 0.08 * (age - 41.0) + 1.5 * plan - 0.4 * (calls - 3.0) + effect
    if task == "classification":
        target = np.where(score + 0.7 * noise > 0, CLASSES[0], CLASSES[1]).astype(object)
        target_name = LABEL
    else:
        values = 20.0 + 3.0 * score + 0.01 * (area - 415) + 0.5 * noise
        target = np.array([f"{v:.3f}" for v in values], dtype=object)
        target_name = VALUE
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, target_name])
        for i in range(n_rows):
            writer.writerow(
                [
                    f"C{i:05d}",
                    "" if empty[STATE][i] else state[i],
                    "" if empty[PLAN][i] else ("yes" if plan[i] else "no"),
                    "" if empty[AGE][i] else f"{age[i]:.2f}",
                    int(calls[i]),
                    int(area[i]),
                    "" if i == EMPTY_TARGET_ROW else target[i],
                ]
            )
    return path


def mixed_records(path: str | Path, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of a file from :func:`write_mixed_csv` as a client sends them.

    Rows with an empty target are skipped (as training skips them), so record ``i`` is row
    ``i`` of the dataset ``load_csv`` reads. Numeric columns become floats, the others stay
    strings; an empty cell is None.

    Parameters
    ----------
    path : str or Path
    columns : sequence of str, optional
        The columns each record holds, e.g. ``spec.column_names`` (default: every feature
        column, ``id`` included).

    Returns
    -------
    list of dict
        One ``{column: value}`` per row with a target.
    """
    names = list(columns) if columns is not None else list(FEATURES)
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    target = LABEL if LABEL in rows[0] else VALUE
    return [{name: _value(name, row[name]) for name in names} for row in rows if row[target] != ""]


def _value(name: str, text: str) -> Any:
    if text == "":
        return None
    return float(text) if KINDS.get(name) == "numeric" else text


def split_rows(dataset: Dataset, seed: int = 0, **fractions: float | None) -> dict[str, np.ndarray]:
    """Which rows of ``dataset`` :func:`~ensembles.data.split_dataset` puts in each split.

    The split depends on the row count, the targets and the seed only, so splitting a
    stand-in whose single feature is the row index gives the indices. Row ``i`` is record
    ``i`` of :func:`mixed_records`.

    Parameters
    ----------
    dataset : Dataset
        As ``load_csv`` read it.
    seed : int
    **fractions : float or None
        ``validation_fraction`` / ``test_fraction``, as ``split_dataset`` takes them.

    Returns
    -------
    dict of str to ndarray of int
        Sorted row indices under ``"train"``, ``"validation"`` and ``"test"``.
    """
    from ensembles.data import split_dataset

    index = np.arange(len(dataset.y), dtype=np.float32)[:, None]
    stand_in = replace(dataset, X=index, feature_names=["row"], table=None, tabular=None)
    splits = split_dataset(stand_in, seed, **fractions)
    parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    return {name: part.X[:, 0].astype(np.int64) for name, part in parts.items()}
