"""Held-out classes: the training CSV, the out-of-distribution rows and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensembles.benchmark.class_holdout import (
    encoded_rows,
    holdout_request,
    split_classes,
    write_csv,
)
from ensembles.data import Dataset, load_builtin, load_csv
from ensembles.errors import ConfigError
from ensembles.store import validate_name
from tests.conftest import tiny_request


def _toy() -> Dataset:
    X = np.arange(24, dtype=np.float32).reshape(12, 2) / 7
    y = np.array([0, 1, 2, 3] * 3, dtype=np.int64)
    return Dataset(X, y, "classification", ["a", "class"], ["w", "x", "y", "z"], "toy")


def test_split_classes_keeps_the_rest_renumbered() -> None:
    inside, outside = split_classes(_toy(), ("x", "z"))
    assert inside.classes == ["w", "y"]
    np.testing.assert_array_equal(inside.y, [0, 1] * 3)
    np.testing.assert_array_equal(inside.X, _toy().X[[0, 2, 4, 6, 8, 10]])
    np.testing.assert_array_equal(outside.X, _toy().X[[1, 3, 5, 7, 9, 11]])


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
    request, outside = holdout_request(template, ("5", "6", "7", "8", "9"), tmp_path / "data")
    assert request.name == "digits-without-5-6-7-8-9"
    assert request.csv == tmp_path / "data" / "digits-without-5-6-7-8-9.csv"
    assert request.dataset is None and request.task == "classification"
    loaded = load_csv(request.csv, request.target)
    digits = load_builtin("digits")
    assert loaded.classes == ["0", "1", "2", "3", "4"]
    assert len(loaded.y) + len(outside.y) == len(digits.y)
    np.testing.assert_array_equal(encoded_rows(outside, None), digits.X[digits.y >= 5])


def test_a_held_out_class_of_capitals_gives_a_valid_ensemble_name(tmp_path: Path) -> None:
    """``churn-without-Yes`` was refused by the store: names are lowercase."""
    rows = [f"{i / 10},{('Yes', 'No', 'Maybe')[i % 3]}" for i in range(30)]
    csv = tmp_path / "Churn Data.csv"
    csv.write_text("\n".join(["x,churn", *rows]) + "\n")
    template = tiny_request(tmp_path, dataset=None, csv=csv, target="churn")
    request, _ = holdout_request(template, ("Yes",), tmp_path / "data")
    assert request.name == "churn-data-without-yes"
    assert validate_name(request.name) == request.name


def _mixed_csv(path: Path, n_rows: int = 60) -> Path:
    """Three classes; a string, a yes/no and a numeric column, with empty cells."""
    lines = ["colour,member,size,kind"]
    for i in range(n_rows):
        colour = "" if i % 11 == 0 else ("red", "green", "blue")[i % 3]
        member = "" if i % 7 == 0 else ("yes", "no")[i % 2]
        size = "" if i % 5 == 0 else f"{i / 3:.2f}"
        lines.append(f"{colour},{member},{size},{('a', 'b', 'c')[i % 3]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_table_is_written_raw_and_the_held_out_rows_take_each_versions_encoding(
    tmp_path: Path,
) -> None:
    csv = _mixed_csv(tmp_path / "mixed.csv")
    template = tiny_request(tmp_path, dataset=None, csv=csv, target="kind")
    request, outside = holdout_request(template, ("c",), tmp_path / "data")
    assert request.categorical == ("colour",) and request.numeric == ("size",)
    text = request.csv.read_text()
    assert "yes" in text and "red" in text and ",," in text  # raw cells, empty where missing
    loaded = load_csv(request.csv, request.target, "classification", request.categorical)
    original = load_csv(csv, "kind")
    assert [c.kind for c in loaded.tabular.columns] == [c.kind for c in original.tabular.columns]
    kept = original.y != 2
    for name, cells in loaded.table.items():
        expected = original.table[name][kept]
        if cells.dtype == object:
            assert cells.tolist() == expected.tolist(), name
        else:
            np.testing.assert_array_equal(cells, expected)
    # Held-out rows are encoded by the version's spec (fitted on in-distribution rows).
    assert len(outside.y) == 20
    np.testing.assert_array_equal(
        encoded_rows(outside, loaded.tabular), loaded.tabular.encode(outside.table).X
    )
    assert encoded_rows(outside, loaded.tabular).shape[1] == loaded.tabular.n_features


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


def test_a_table_benchmark_scores_held_out_classes_through_each_versions_encoding(
    tmp_path: Path,
) -> None:
    from ensembles.benchmark.gradient_boosting import HGB
    from ensembles.benchmark.runner import BenchmarkRequest, run_benchmark

    csv = _mixed_csv(tmp_path / "mixed.csv", n_rows=150)
    train = tiny_request(tmp_path, dataset=None, csv=csv, target="kind", members=2, epochs=2)
    request = BenchmarkRequest(
        train=train,
        strategies=("repeat",),
        repeats=1,
        holdout_classes=("c",),
        shift_strengths=(0.0,),
        timing_repeats=1,
        progress=False,
    )
    run = run_benchmark(request)["runs"][0]
    assert run["ood"]["n_out"] == 50
    assert 0.0 <= run["ood"]["detection"]["default"]["mutual_information"]["auroc"] <= 1.0
    assert 0.0 <= run["models"][HGB]["roc_auc"] <= 1.0  # two classes left
