"""Datasets: the built-in ones, user CSV files, and the deterministic three-way split."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ensembles import defaults
from ensembles.csv_table import read_csv_table, stray_text
from ensembles.errors import ConfigError, DataError
from ensembles.manifest import Task
from ensembles.tabular import FLOAT32_MAX, Table, TabularSpec, fit_spec

BUILTIN_DATASETS = ("digits", "breast_cancer", "wine", "diabetes", "blobs", "regression")
_MAX_CLASSES_FOR_NUMERIC_TARGET = 20
#: The largest split seed: the split seeds scikit-learn with ``seed`` and ``seed + 1``,
#: each of which must be below 2**32.
MAX_SEED = 2**32 - 2


@dataclass(frozen=True)
class Dataset:
    """Features and targets of one problem.

    Attributes
    ----------
    X : ndarray (n_samples, n_features), float32
    y : ndarray (n_samples,) int64 class indices for classification,
        (n_samples, 1) float32 values for regression
    task : {"classification", "regression"}
    feature_names : list of str, length n_features
        Encoded column names when ``tabular`` is set, else the file's columns.
    classes : list of str (index -> label) for classification, else None
    source : str, where the data came from (dataset name or CSV path)
    table : Table or None
        The raw typed columns ``X`` was encoded from (tables that need encoding).
    tabular : TabularSpec or None
        The encoding that made ``X`` from ``table``: fitted on every row when loaded, on
        the training rows alone after :func:`split_dataset`.
    rows_without_target : int
        Rows of the file dropped because their target was empty.
    """

    X: np.ndarray
    y: np.ndarray
    task: Task
    feature_names: list[str]
    classes: list[str] | None
    source: str
    table: Table | None = None
    tabular: TabularSpec | None = None
    rows_without_target: int = 0

    @property
    def n_outputs(self) -> int:
        """Number of classes (classification) or target columns (regression)."""
        return len(self.classes) if self.classes is not None else self.y.shape[1]

    @property
    def input_names(self) -> list[str]:
        """The columns a caller sends: the table's columns, else the features."""
        return self.tabular.column_names if self.tabular is not None else self.feature_names

    def subset(self, index: np.ndarray) -> Dataset:
        """The rows in ``index``."""
        table = None
        if self.table is not None:
            table = {name: cells[index] for name, cells in self.table.items()}
        return replace(self, X=self.X[index], y=self.y[index], table=table)

    def encoded_with(self, spec: TabularSpec) -> Dataset:
        """This table encoded by ``spec`` (a spec fitted on other rows, e.g. training)."""
        if self.table is None:
            raise DataError(f"{self.source} has no table to encode")
        X = spec.encode(self.table).X
        return replace(self, X=X, feature_names=spec.feature_names, tabular=spec)


@dataclass(frozen=True)
class Splits:
    """A deterministic train / validation / test partition; test is never trained or fitted on."""

    train: Dataset
    validation: Dataset
    test: Dataset
    record: dict[str, int | float]


def load_builtin(name: str, seed: int = 0) -> Dataset:
    """Load a built-in dataset by name.

    Parameters
    ----------
    name : str
        One of ``digits``, ``breast_cancer``, ``wine``, ``diabetes`` (scikit-learn), ``blobs``
        (noisy 5-class blobs with 10% label noise) or ``regression`` (Friedman #1 with noise).
    seed : int
        Seed of the two synthetic generators.
    """
    from sklearn import datasets

    loaders = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }
    if name in loaders:
        bunch = loaders[name]()
        names = [str(feature) for feature in bunch.feature_names]
        if name == "diabetes":
            return _regression(bunch.data, bunch.target, names, name)
        labels = [str(label) for label in bunch.target_names]
        return _classification(bunch.data, bunch.target.astype(np.int64), names, labels, name)
    if name == "blobs":
        rng = np.random.default_rng(seed)
        X, y = datasets.make_blobs(
            n_samples=1500, n_features=8, centers=5, cluster_std=3.0, random_state=seed
        )
        flip = rng.random(len(y)) < 0.1
        y[flip] = rng.integers(0, 5, flip.sum())
        names = [f"x{i}" for i in range(X.shape[1])]
        return _classification(X, y, names, [f"class_{i}" for i in range(5)], name)
    if name == "regression":
        X, y = datasets.make_friedman1(n_samples=1500, n_features=10, noise=1.0, random_state=seed)
        return _regression(X, y, [f"x{i}" for i in range(X.shape[1])], name)
    raise DataError(f"unknown dataset '{name}': choose one of {', '.join(BUILTIN_DATASETS)}")


def load_csv(
    path: str | Path,
    target: str,
    task: Task | None = None,
    categorical: tuple[str, ...] = (),
    numeric: tuple[str, ...] = (),
) -> Dataset:
    """Load a CSV file with a header row; every column but ``target`` is a feature.

    Columns are typed by :func:`~ensembles.csv_table.read_csv_table` (numeric, boolean-like,
    categorical; identifier-like columns dropped; ``categorical`` / ``numeric`` force a
    kind). A file of numeric columns without missing cells is used as it is; any other is
    encoded by a :class:`~ensembles.tabular.TabularSpec` (fitted here on every row, and
    again on the training rows alone by :func:`split_dataset`). Rows with an empty target
    are dropped (``rows_without_target``).

    The task is inferred when not given: a non-numeric target, or an integer target with at
    most 20 distinct values, means classification; anything else regression. Class labels
    may be strings or numbers and are kept as strings, sorted.

    Raises
    ------
    DataError
        With one line naming the problem: missing file, unknown target column, a single
        class, a non-numeric regression target (and see ``read_csv_table``).
    ConfigError
        When ``categorical`` / ``numeric`` name unknown columns.
    OSError
        When the path is a folder or cannot be read (``IsADirectoryError``,
        ``PermissionError``).
    """
    import pandas as pd

    path = Path(path)
    csv = read_csv_table(path, target, categorical, numeric)
    features = [column.name for column in csv.columns]
    if csv.needs_encoding:
        spec = fit_spec(csv.table, csv.columns, csv.dropped)
        X, table, features = spec.encode(csv.table).X, csv.table, spec.feature_names
    else:
        spec, table = None, None
        X = np.column_stack([csv.table[name] for name in features])
    values = csv.target
    numeric_target = pd.api.types.is_numeric_dtype(values)
    if task is None and not numeric_target:
        _check_not_numbers_but(values, target, path.name)
    if task is None:
        few_integers = numeric_target and (
            np.allclose(values, np.round(values))
            and values.nunique() <= _MAX_CLASSES_FOR_NUMERIC_TARGET
        )
        task = "classification" if (not numeric_target or few_integers) else "regression"
    extra = {"table": table, "tabular": spec, "rows_without_target": csv.rows_without_target}
    if task == "regression":
        if not numeric_target:
            raise DataError(f"target column '{target}' is not numeric, so it cannot be regressed")
        return _regression(X, values.to_numpy(dtype=np.float64), features, str(path), **extra)
    labels = values.astype(str) if not numeric_target else values
    uniques = sorted(pd.unique(labels), key=lambda v: (isinstance(v, str), v))
    index = {label: i for i, label in enumerate(uniques)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    classes = [_label_text(label) for label in uniques]
    return _classification(X, y, features, classes, str(path), **extra)


def _check_not_numbers_but(values: Any, target: str, file: str) -> None:
    """Refuse a text target whose cells are numbers but for a few: a measure with stray
    text (``unknown``, ``1,200``) would otherwise be read as hundreds of classes."""
    stray = stray_text(values)
    if stray is not None and stray.few and stray.n_distinct > _MAX_CLASSES_FOR_NUMERIC_TARGET:
        raise DataError(
            f"target column '{target}' of {file} holds numbers but for {stray.count} cells "
            f"(e.g. {stray.first}): clean those cells (empty ones drop their rows), or give "
            "--task classification if the values are labels"
        )


def _numbers_hint(dataset: Dataset) -> str:
    """A hint for a CSV whose class labels are all numbers: maybe it is a measure."""
    if dataset.source in BUILTIN_DATASETS or not dataset.classes:
        return ""
    try:
        [float(label) for label in dataset.classes]
    except ValueError:
        return ""
    return (
        " (the target was read as classes, as its values are few integers: for a count or "
        "a measure, give --task regression)"
    )


def load_data(
    dataset: str | None = None,
    csv: str | Path | None = None,
    target: str | None = None,
    task: Task | None = None,
    seed: int = 0,
    categorical: tuple[str, ...] = (),
    numeric: tuple[str, ...] = (),
) -> Dataset:
    """A CSV file when ``csv`` is given, else the built-in ``dataset`` (default ``digits``).

    ``categorical`` / ``numeric`` force column kinds of a CSV (see :func:`load_csv`).

    Raises
    ------
    ConfigError
        When ``csv`` lacks ``target`` or ``task`` contradicts a built-in dataset.
    """
    if csv is not None:
        if not target:
            raise ConfigError("--csv needs --target COLUMN naming the column to predict")
        return load_csv(csv, target, task, categorical, numeric)
    if categorical or numeric:
        raise ConfigError("--categorical and --numeric apply to --csv files only")
    data = load_builtin(dataset or "digits", seed)
    if task is not None and task != data.task:
        raise ConfigError(f"--task {task} contradicts dataset '{dataset}', which is {data.task}")
    return data


def validation_share(n_rows: int) -> float:
    """The default share of validation rows for a dataset of ``n_rows`` rows.

    :data:`~ensembles.defaults.VALIDATION_FRACTION` of the rows, raised to
    :data:`~ensembles.defaults.MIN_VALIDATION_ROWS` rows but never above
    :data:`~ensembles.defaults.MAX_VALIDATION_FRACTION` (``docs/training.md``, "Using the
    rows"): early stopping and the variance calibration need a couple of hundred rows to tell
    epochs apart, and beyond that a validation row is worth more as a training row.
    """
    rows = max(
        defaults.VALIDATION_FRACTION * n_rows,
        min(defaults.MIN_VALIDATION_ROWS, defaults.MAX_VALIDATION_FRACTION * n_rows),
    )
    return rows / max(n_rows, 1)


def fraction_problems(validation_fraction: float | None, test_fraction: float) -> list[str]:
    """Every problem of the split shares, one line each (empty when valid).

    Each share must lie in (0, 1) and together they must leave at least 10% of the rows
    for training; a validation share of None (:func:`validation_share`, chosen from the
    rows) is always valid.
    """
    problems = []
    shares = {"validation-fraction": validation_fraction, "test-fraction": test_fraction}
    for option, value in shares.items():
        if value is not None and not 0 < value < 1:
            problems.append(f"--{option} must be between 0 and 1, got {value}")
    given = validation_fraction is not None
    if not problems and given and validation_fraction + test_fraction >= 0.9:
        problems.append(
            f"--validation-fraction {validation_fraction} and --test-fraction {test_fraction} "
            "leave under 10% of the rows for training"
        )
    return problems


def split_dataset(
    dataset: Dataset,
    seed: int = 0,
    validation_fraction: float | None = None,
    test_fraction: float = defaults.TEST_FRACTION,
    min_train_rows: int = 10,
) -> Splits:
    """Split deterministically from ``seed`` (stratified for classification).

    ``validation_fraction`` None takes :func:`validation_share` of the rows.

    Raises
    ------
    DataError
        When there are too few rows (or rows of a class) for the three splits.
    ConfigError
        When the fractions are not in (0, 1) or add up to 1 or more.
    """
    from sklearn.model_selection import train_test_split

    if validation_fraction is None:
        validation_fraction = validation_share(len(dataset.y))
    if problems := fraction_problems(validation_fraction, test_fraction):
        raise ConfigError("; ".join(problems))
    n_samples = len(dataset.y)
    n_train = n_samples - round(n_samples * validation_fraction) - round(n_samples * test_fraction)
    if n_train < min_train_rows or round(n_samples * test_fraction) < 2:
        raise DataError(
            f"{dataset.source} has {n_samples} rows: too few for a train/validation/test split "
            f"(need at least {min_train_rows} training rows)"
        )
    stratify = dataset.y if dataset.task == "classification" else None
    n_classes = dataset.n_outputs if stratify is not None else 0
    n_test, n_validation = round(n_samples * test_fraction), round(n_samples * validation_fraction)
    if min(n_test, n_validation) < n_classes:
        raise DataError(
            f"{dataset.source} has {n_samples} rows for {n_classes} classes: the test and "
            f"validation splits would hold {n_test} and {n_validation} rows, fewer than one per "
            "class; add rows or raise --test-fraction / --validation-fraction"
            + _numbers_hint(dataset)
        )
    if stratify is not None:
        smallest = int(np.bincount(dataset.y).min())
        if smallest < 3:
            label = dataset.classes[int(np.argmin(np.bincount(dataset.y)))]
            raise DataError(
                f"class '{label}' has {smallest} row(s) in {dataset.source}; "
                "each class needs at least 3 for a stratified train/validation/test split"
                f"{_numbers_hint(dataset)}"
            )
    index = np.arange(n_samples)
    rest, test = train_test_split(
        index, test_size=test_fraction, random_state=seed, stratify=stratify
    )
    relative = validation_fraction / (1 - test_fraction)
    train, validation = train_test_split(
        rest,
        test_size=relative,
        random_state=seed + 1,
        stratify=None if stratify is None else stratify[rest],
    )
    record = {
        "seed": seed,
        "validation_fraction": round(validation_fraction, 6),
        "test_fraction": test_fraction,
        "n_train": len(train),
        "n_validation": len(validation),
        "n_test": len(test),
    }
    parts = [dataset.subset(np.sort(rows)) for rows in (train, validation, test)]
    if dataset.tabular is not None and dataset.table is not None:
        spec = fit_spec(parts[0].table, dataset.tabular.columns, dataset.tabular.dropped)
        parts = [part.encoded_with(spec) for part in parts]
    if dataset.rows_without_target:
        record["rows_without_target"] = dataset.rows_without_target
    return Splits(*parts, record)


def _classification(
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    classes: list[str],
    source: str,
    **table: Any,
) -> Dataset:
    if len(classes) < 2:
        raise DataError(
            f"the target of {source} has a single class ('{classes[0]}'); "
            "classification needs at least two"
        )
    return Dataset(X.astype(np.float32), y, "classification", features, classes, source, **table)


def _regression(
    X: np.ndarray, y: np.ndarray, features: list[str], source: str, **table: Any
) -> Dataset:
    values = np.asarray(y, dtype=float).reshape(len(y), -1)
    bad = values[~(np.abs(values) <= FLOAT32_MAX)]  # infinite, NaN or too large for float32
    if bad.size:
        raise DataError(
            f"the target of {source} has {bad.size} value(s) that are not finite numbers "
            f"within float32's range (±{FLOAT32_MAX:.3g}), e.g. {float(bad[0]):g}"
        )
    values = values.astype(np.float32)
    constant = np.flatnonzero((values == values[:1]).all(axis=0)) if len(values) else []
    if len(constant):
        raise DataError(
            f"the target of {source} is constant ({float(values[0, constant[0]]):g} on every "
            "row): there is nothing to learn; regression needs at least two distinct values"
        )
    return Dataset(X.astype(np.float32), values, "regression", features, None, source, **table)


def _label_text(label: object) -> str:
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)
