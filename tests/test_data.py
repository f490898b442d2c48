"""Datasets, CSV loading and the split: behaviour and every bad-data message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensembles.data import (
    BUILTIN_DATASETS,
    load_builtin,
    load_csv,
    split_dataset,
    validation_share,
)
from ensembles.errors import ConfigError, DataError


@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_datasets_load_with_names(name: str) -> None:
    dataset = load_builtin(name)
    assert dataset.X.dtype == np.float32
    assert len(dataset.feature_names) == dataset.X.shape[1]
    if dataset.task == "classification":
        assert dataset.classes and dataset.y.max() == len(dataset.classes) - 1
    else:
        assert dataset.y.shape == (len(dataset.X), 1)


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(DataError, match="unknown dataset 'mnist': choose one of digits"):
        load_builtin("mnist")


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    dataset = load_builtin("digits")
    first, again = split_dataset(dataset, seed=3), split_dataset(dataset, seed=3)
    other = split_dataset(dataset, seed=4)
    np.testing.assert_array_equal(first.test.X, again.test.X)
    assert not np.array_equal(first.test.X, other.test.X)
    sizes = [len(part.y) for part in (first.train, first.validation, first.test)]
    assert sum(sizes) == len(dataset.y)
    rows = {tuple(row) for part in (first.train, first.validation, first.test) for row in part.X}
    assert len(rows) == len({tuple(row) for row in dataset.X})
    shares = np.bincount(first.test.y) / len(first.test.y)
    overall = np.bincount(dataset.y) / len(dataset.y)
    assert np.abs(shares - overall).max() < 0.02


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_string_labels(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 0.5},{'cat' if i % 2 else 'dog'}" for i in range(30))
    dataset = load_csv(write_csv(tmp_path / "pets.csv", "a,b,kind\n" + rows), "kind")
    assert dataset.task == "classification"
    assert dataset.classes == ["cat", "dog"]
    assert dataset.feature_names == ["a", "b"]
    assert dataset.y[0] == 1  # row 0 is a dog


def test_csv_task_inference_and_override(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 1.5 + 0.25}" for i in range(40))
    path = write_csv(tmp_path / "r.csv", "x,y\n" + rows)
    assert load_csv(path, "y").task == "regression"
    labels = "\n".join(f"{i},{i % 3}" for i in range(40))
    path = write_csv(tmp_path / "c.csv", "x,y\n" + labels)
    assert load_csv(path, "y").task == "classification"
    assert load_csv(path, "y", task="regression").task == "regression"


@pytest.mark.parametrize(
    ("text", "target", "message"),
    [
        ("a,b\n1,2\n", "c", "target column 'c' not in bad.csv; columns are: a, b"),
        ("a,t\n1,x\n2,x\n3,x\n", "t", "has a single class \\('x'\\)"),
        ("a,t\n1,x\n2,y\n", "t", "is not numeric, so it cannot be regressed"),
        ("a,t\n1,5\n2,5\n3,5\n", "t", "is constant \\(5 on every row\\): there is nothing"),
    ],
)
def test_bad_csv_gets_a_message_naming_the_problem(
    tmp_path: Path, text: str, target: str, message: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", text)
    task = "regression" if "regress" in message or "constant" in message else None
    with pytest.raises(DataError, match=message):
        load_csv(path, target, task=task)


def test_missing_csv_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="CSV file not found: .*nope.csv"):
        load_csv(tmp_path / "nope.csv", "y")


def test_too_few_rows_for_the_split(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i % 2}" for i in range(8))
    dataset = load_csv(write_csv(tmp_path / "few.csv", "x,t\n" + rows), "t")
    with pytest.raises(DataError, match="has 8 rows: too few for a train/validation/test split"):
        split_dataset(dataset)


def test_rare_class_cannot_be_stratified(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{'rare' if i == 0 else 'common'}" for i in range(60))
    dataset = load_csv(write_csv(tmp_path / "rare.csv", "x,t\n" + rows), "t")
    with pytest.raises(DataError, match="class 'rare' has 1 row"):
        split_dataset(dataset)


def test_fractions_that_leave_no_training_rows() -> None:
    with pytest.raises(ConfigError, match="leave under 10% of the rows for training"):
        split_dataset(load_builtin("wine"), validation_fraction=0.5, test_fraction=0.45)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,t\n1,0\ninf,1\n3,0\n", "infinite values in bad.csv, column 'a'"),
        ("t\n0\n1\n", "bad.csv has no feature columns besides the target 't'"),
        ("a,t\n", "bad.csv has a header but no data rows"),
        ('a,t\n"1,0\n', "cannot parse bad.csv as CSV"),
    ],
)
def test_more_bad_csv_messages(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_csv(write_csv(tmp_path / "bad.csv", text), "t")


def test_too_few_rows_per_class_for_the_test_split(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i % 5}" for i in range(20))
    dataset = load_csv(write_csv(tmp_path / "c.csv", "x,t\n" + rows), "t", task="classification")
    with pytest.raises(DataError, match="has 20 rows for 5 classes: the test and validation"):
        split_dataset(dataset)


@pytest.mark.parametrize(
    ("n_rows", "validation_rows"),
    [
        (178, 35.6),  # wine: 20%, the most (10% would leave 3 classes 18 rows)
        (506, 101.2),  # Boston: 200 rows would be more than 20%
        (1_030, 200),  # Concrete: raised to 200 rows (19.4%)
        (1_797, 200),  # digits: 200 rows, not 10% (180)
        (10_000, 1_000),  # 10%
    ],
)
def test_validation_is_a_tenth_raised_to_200_rows_but_at_most_a_fifth(
    n_rows: int, validation_rows: float
) -> None:
    assert validation_share(n_rows) * n_rows == pytest.approx(validation_rows)


def test_the_split_uses_the_default_share_when_none_is_given() -> None:
    splits = split_dataset(load_builtin("digits"), seed=0)
    assert splits.record["n_validation"] == 200
    assert splits.record["validation_fraction"] == pytest.approx(200 / 1797, abs=1e-6)
