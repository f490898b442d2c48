"""Out-of-distribution data from held-out classes: train on the rest, keep theirs aside.

The training pipeline takes a built-in dataset or a CSV file; to train on a subset of the
classes, the benchmark writes the in-distribution rows to a CSV file in its temporary folder
and trains on that (:func:`holdout_request`). A table is written as its raw columns, so each
version fits its own encoding, and the held-out rows are encoded by it
(:func:`encoded_rows`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ensembles.data import Dataset, load_data
from ensembles.errors import ConfigError
from ensembles.store import name_from
from ensembles.tabular import ColumnSpec, TabularSpec

if TYPE_CHECKING:  # the training modules import torch; this module stays torch-free
    from ensembles.training.pipeline import TrainRequest

#: Name of the target column of the written CSV (underscores added if a feature has it).
TARGET_COLUMN = "class"


def split_classes(dataset: Dataset, holdout: tuple[str, ...]) -> tuple[Dataset, Dataset]:
    """The rows of the other classes, and the rows of the held-out classes.

    Parameters
    ----------
    dataset : Dataset
        A classification dataset.
    holdout : tuple of str
        Class labels to leave out of training (as :attr:`Dataset.classes` spells them).

    Returns
    -------
    in_distribution : Dataset
        The rows of the remaining classes, class indices renumbered ``0..k-1``.
    out_of_distribution : Dataset
        The held-out classes' rows (their ``X``, and their ``table`` for a table), targets
        as in ``dataset``.

    Raises
    ------
    ConfigError
        For a regression dataset, an unknown label, or fewer than two classes left.
    """
    if dataset.classes is None:
        raise ConfigError(
            f"--holdout-classes needs a classification dataset; {dataset.source} is regression"
        )
    unknown = [label for label in holdout if label not in dataset.classes]
    if unknown:
        raise ConfigError(
            f"unknown class {', '.join(map(repr, unknown))} in --holdout-classes: "
            f"{dataset.source} has classes {', '.join(dataset.classes)}"
        )
    kept = [label for label in dataset.classes if label not in holdout]
    if len(kept) < 2:
        raise ConfigError(
            f"--holdout-classes must leave at least two of the {len(dataset.classes)} classes "
            f"of {dataset.source} to train on; hold out fewer"
        )
    held = np.isin(dataset.y, [dataset.classes.index(label) for label in holdout])
    renumber = {dataset.classes.index(label): i for i, label in enumerate(kept)}
    inside = dataset.subset(np.flatnonzero(~held))
    y = np.array([renumber[int(c)] for c in inside.y], dtype=np.int64)
    return replace(inside, y=y, classes=kept), dataset.subset(np.flatnonzero(held))


def write_csv(dataset: Dataset, path: Path) -> str:
    """Write a classification dataset as a CSV file :func:`~ensembles.data.load_csv` reads.

    A table is written as its raw columns (empty cells where missing, booleans in their
    own spelling), anything else as ``X`` under ``feature_names``.

    Returns
    -------
    str
        The name of the target column (class labels as text).
    """
    import pandas as pd

    names = dataset.input_names
    target = TARGET_COLUMN
    while target in names:
        target = f"_{target}_"
    if dataset.table is not None and dataset.tabular is not None:
        frame = pd.DataFrame(
            {c.name: _raw_cells(c, dataset.table[c.name]) for c in dataset.tabular.columns}
        )
    else:
        frame = pd.DataFrame(dataset.X, columns=dataset.feature_names)
    frame[target] = np.asarray(dataset.classes)[dataset.y]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return target


def holdout_request(
    template: TrainRequest, holdout: tuple[str, ...], folder: Path
) -> tuple[TrainRequest, Dataset]:
    """A training request on the classes not in ``holdout``, and the held-out rows.

    The in-distribution rows are written to ``folder/<name>-without-<labels>.csv``; the
    request trains on that file under the same name, so every split, member and baseline
    sees only those classes. A table's columns keep their kinds (categorical and numeric
    ones are named in the request's ``categorical`` / ``numeric``).

    Returns
    -------
    request : TrainRequest
    out_of_distribution : Dataset
        The held-out classes' rows (never trained, fitted or tuned on); see
        :func:`encoded_rows`.
    """
    dataset = load_data(
        template.dataset,
        template.csv,
        template.target,
        template.task,
        template.seed,
        template.categorical,
        template.numeric,
    )
    inside, outside = split_classes(dataset, holdout)
    name = name_from(f"{template.ensemble_name}-without-{'-'.join(holdout)}")
    target = write_csv(inside, folder / f"{name}.csv")
    columns = dataset.tabular.columns if dataset.tabular is not None else []
    request = replace(
        template,
        dataset=None,
        csv=folder / f"{name}.csv",
        target=target,
        task="classification",
        name=name,
        categorical=tuple(c.name for c in columns if c.kind == "categorical"),
        numeric=tuple(c.name for c in columns if c.kind == "numeric"),
    )
    return request, outside


def encoded_rows(dataset: Dataset, spec: TabularSpec | None) -> np.ndarray:
    """Rows as a version's members take them: a table encoded by the version's ``spec``.

    Parameters
    ----------
    dataset : Dataset
        Rows from :func:`split_classes`.
    spec : TabularSpec or None
        The version's encoding (``Manifest.preprocessing``), fitted on its training rows.

    Returns
    -------
    np.ndarray, shape (n_samples, n_features), float32
        ``dataset.X`` when there is no table or no spec.
    """
    if dataset.table is None or spec is None:
        return dataset.X
    return spec.encode(dataset.table).X


def _raw_cells(column: ColumnSpec, cells: np.ndarray) -> list[Any]:
    """One table column as CSV cells: None where missing, booleans as their spelling."""
    if column.kind == "categorical":
        return list(cells)
    if column.kind == "boolean":
        spelling = (column.false_token or "false", column.true_token or "true")
        return [None if np.isnan(cell) else spelling[int(cell)] for cell in cells]
    return [None if np.isnan(cell) else float(cell) for cell in cells]
