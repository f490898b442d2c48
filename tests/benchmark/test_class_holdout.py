"""Held-out classes: the training CSV, the out-of-distribution rows and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensembles.benchmark.class_holdout import holdout_request, split_classes, write_csv
from ensembles.data import Dataset, load_builtin, load_csv
from ensembles.errors import ConfigError
from tests.conftest import tiny_request


def _toy() -> Dataset:
    X = np.arange(24, dtype=np.float32).reshape(12, 2) / 7
    y = np.array([0, 1, 2, 3] * 3, dtype=np.int64)
    return Dataset(X, y, "classification", ["a", "class"], ["w", "x", "y", "z"], "toy")


def test_split_classes_keeps_the_rest_renumbered() -> None:
    inside, X_out = split_classes(_toy(), ("x", "z"))
    assert inside.classes == ["w", "y"]
    np.testing.assert_array_equal(inside.y, [0, 1] * 3)
    np.testing.assert_array_equal(inside.X, _toy().X[[0, 2, 4, 6, 8, 10]])
    np.testing.assert_array_equal(X_out, _toy().X[[1, 3, 5, 7, 9, 11]])


def test_the_csv_reads_back_as_the_same_rows(tmp_path: Path) -> None:
    inside, _ = split_classes(_toy(), ("x",))
    target = write_csv(inside, tmp_path / "toy.csv")
    assert target == "_class_"  # a feature is called "class"
    loaded = load_csv(tmp_path / "toy.csv", target, "classification")
    np.testing.assert_array_equal(loaded.X, inside.X)  # float32 text round trip is exact
    assert loaded.classes == inside.classes and loaded.feature_names == ["a", "class"]
    np.testing.assert_array_equal(loaded.y, inside.y)


def test_holdout_request_trains_on_the_other_classes(tmp_path: Path) -> None:
    template = tiny_request(tmp_path, dataset="digits")
    request, X_out = holdout_request(template, ("5", "6", "7", "8", "9"), tmp_path / "data")
    assert request.name == "digits-without-5-6-7-8-9"
    assert request.csv == tmp_path / "data" / "digits-without-5-6-7-8-9.csv"
    assert request.dataset is None and request.task == "classification"
    loaded = load_csv(request.csv, request.target)
    digits = load_builtin("digits")
    assert loaded.classes == ["0", "1", "2", "3", "4"]
    assert len(loaded.y) + len(X_out) == len(digits.y)
    np.testing.assert_array_equal(X_out, digits.X[digits.y >= 5])


@pytest.mark.parametrize(
    ("dataset", "holdout", "message"),
    [
        (
            "diabetes",
            ("1",),
            "--holdout-classes needs a classification dataset; diabetes is regression",
        ),
        ("wine", ("class_3",), "unknown class 'class_3' in --holdout-classes: wine has classes "),
        (
            "wine",
            ("class_0", "class_1"),
            "--holdout-classes must leave at least two of the 3 classes of wine to train on",
        ),
    ],
)
def test_bad_holdouts_are_refused(
    dataset: str, holdout: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        holdout_request(tiny_request(tmp_path, dataset=dataset), holdout, tmp_path)
