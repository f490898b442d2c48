"""Reading a CSV into typed columns (read_csv_table) and loading it for training (load_csv)."""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from pathlib import Path
from statistics import median

import numpy as np
import pytest

from ensembles.csv_table import IDENTIFIER_MIN_ROWS, read_csv_table
from ensembles.data import load_csv, load_data, split_dataset
from ensembles.errors import ConfigError, DataError
from ensembles.tabular import MIN_LEVEL_ROWS
from tests.tabular_toys import (
    AGE,
    AREA_CODE,
    CALLS,
    EMPTY_TARGET_ROW,
    ID,
    KINDS,
    LABEL,
    PLAN,
    RARE_STATE,
    STATE,
    mixed_records,
    split_rows,
    write_mixed_csv,
)

NAN = math.nan
ID_REASON = (
    "distinct on 100% of its rows, so it identifies rows rather than describing them (an id?); "
    "name it with --categorical to keep it"
)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    return write_mixed_csv(tmp_path / "mixed.csv")


# --- inference ------------------------------------------------------------------------------


def test_each_kind_is_inferred(tmp_path: Path) -> None:
    path = write(
        tmp_path / "kinds.csv",
        [
            "n,yn,tf,tf_gap,yn1,tf1,bits,s,label",
            "1.5,yes,True,True,Y,t,1,red,a",
            "2,No,False,,n,F,0,,b",
            ",YES,True,False,N,f,1,blue,a",
            "4,,False,True,y,T,0,red,b",
        ],
    )
    table = read_csv_table(path, "label")
    kinds = {c.name: (c.kind, c.true_token, c.false_token) for c in table.columns}
    assert kinds == {
        "n": ("numeric", None, None),
        "yn": ("boolean", "yes", "no"),
        "tf": ("boolean", "true", "false"),  # pandas reads these as booleans
        "tf_gap": ("boolean", "true", "false"),  # ... and as objects when a cell is empty
        "yn1": ("boolean", "y", "n"),
        "tf1": ("boolean", "t", "f"),
        "bits": ("numeric", None, None),  # numbers first: 0/1 is read as numbers
        "s": ("categorical", None, None),
    }
    cells = table.table
    np.testing.assert_array_equal(cells["n"], [1.5, 2.0, NAN, 4.0])
    np.testing.assert_array_equal(cells["yn"], [1, 0, 1, NAN])
    np.testing.assert_array_equal(cells["tf"], [1, 0, 1, 0])
    np.testing.assert_array_equal(cells["tf_gap"], [1, NAN, 0, 1])
    np.testing.assert_array_equal(cells["yn1"], [1, 0, 0, 1])
    np.testing.assert_array_equal(cells["tf1"], [1, 0, 0, 1])
    assert cells["s"].tolist() == ["red", None, "blue", "red"]
    assert table.dropped == [] and table.rows_without_target == 0
    assert table.needs_encoding


def test_the_mixed_toy_is_typed_as_its_module_says(mixed: Path) -> None:
    table = read_csv_table(mixed, LABEL)
    assert {c.name: c.kind for c in table.columns} == KINDS
    assert [d.name for d in table.dropped] == [ID]
    assert table.rows_without_target == 1
    assert (table.table[STATE] == RARE_STATE).sum() == 3


# --- overrides ------------------------------------------------------------------------------


def test_a_numeric_code_column_forced_categorical_keeps_its_codes_as_text(tmp_path: Path) -> None:
    path = write(tmp_path / "codes.csv", ["area,x,label", "415,1,a", "510,2,b", ",3,a"])
    table = read_csv_table(path, "label", categorical=("area",))
    assert table.columns[0].kind == "categorical"
    # the empty cell makes pandas read floats; the level is still "415", not "415.0"
    assert table.table["area"].tolist() == ["415", "510", None]


def test_the_mixed_area_code_forced_categorical(mixed: Path) -> None:
    dataset = load_csv(mixed, LABEL, categorical=(AREA_CODE,))
    column = dataset.tabular.column(AREA_CODE)
    assert column.kind == "categorical"
    assert sorted(column.levels) == ["408", "415", "510"] and not column.other
    assert AREA_CODE not in dataset.feature_names and f"{AREA_CODE}=415" in dataset.feature_names


def test_a_text_column_forced_numeric_names_the_column_and_the_value(mixed: Path) -> None:
    first = mixed_records(mixed)[0][STATE]  # the first row's state is not empty
    assert first is not None
    with pytest.raises(DataError) as caught:
        read_csv_table(mixed, LABEL, numeric=(STATE,))
    assert str(caught.value) == (
        f"column '{STATE}' is forced numeric but holds text, e.g. '{first}' at line 2"
    )


def test_forced_numeric_reads_a_few_text_cells_as_missing_and_names_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = ["zip,label", "12,a", "13,b", "x9,a", "14,b"]
    good = read_csv_table(
        write(tmp_path / "ok.csv", lines[:3] + lines[4:]), "label", numeric=("zip",)
    )
    np.testing.assert_array_equal(good.table["zip"], [12, 13, 14])
    with caplog.at_level(logging.WARNING, logger="ensembles.csv_table"):
        odd = read_csv_table(write(tmp_path / "odd.csv", lines), "label", numeric=("zip",))
    np.testing.assert_array_equal(odd.table["zip"], [12, 13, NAN, 14])
    assert caplog.messages == [
        "column 'zip' is forced numeric: 1 cells that are no numbers are read as missing "
        "(e.g. 'x9' at line 4)"
    ]
    mostly_text = ["zip,label", "12,a", "x8,b", "x9,a", "x7,b"]
    with pytest.raises(
        DataError, match="^column 'zip' is forced numeric but holds text, e.g. 'x8' at line 3$"
    ):
        read_csv_table(write(tmp_path / "bad.csv", mostly_text), "label", numeric=("zip",))


def test_the_row_of_forced_numeric_text_counts_rows_with_an_empty_target(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "x9" is on line 4 of the file, as in the test above; the empty target on line 2
    # must not shift the line the message names
    lines = ["zip,label", "12,", "13,b", "x9,a", "14,b"]
    with caplog.at_level(logging.WARNING, logger="ensembles.csv_table"):
        read_csv_table(write(tmp_path / "odd.csv", lines), "label", numeric=("zip",))
    assert caplog.messages[0].endswith("(e.g. 'x9' at line 4)")


def test_a_code_column_written_with_a_zero_fraction_has_integral_levels(tmp_path: Path) -> None:
    """pandas writes an integer column with missing cells as 1.0, 2.0, ...: forced
    categorical, its levels are 1, 2 (what a request's 1 or "1" matches), not "1.0"."""
    rows = [f"{i % 2},{'' if i == 4 else float(i % 3 + 1)}" for i in range(12)]
    table = read_csv_table(
        write(tmp_path / "codes.csv", ["label,zip", *rows]), "label", categorical=("zip",)
    )
    assert sorted({cell for cell in table.table["zip"] if cell is not None}) == ["1", "2", "3"]


def test_a_delimiter_ending_every_row_shifts_no_column(tmp_path: Path) -> None:
    """``yes,0.5,blue,``: one field more than the header on every row, always empty.
    pandas would read the first field as the index and shift every name by one."""
    rows = [f"{'yes' if i % 2 else 'no'},{i / 10},{'blue' if i % 3 else 'red'}," for i in range(8)]
    table = read_csv_table(write(tmp_path / "trail.csv", ["label,x,color", *rows]), "label")
    assert [(c.name, c.kind) for c in table.columns] == [("x", "numeric"), ("color", "categorical")]
    assert table.target.tolist()[:2] == ["no", "yes"]
    np.testing.assert_allclose(table.table["x"], [i / 10 for i in range(8)])
    labelled = ["x,color,label", *(f"r{i},{i},c{i % 2},{i % 2}" for i in range(8))]
    with_labels = read_csv_table(write(tmp_path / "labels.csv", labelled), "label")
    assert [c.name for c in with_labels.columns] == ["x", "color"]  # R's write.table rows


def test_a_delimiter_ending_rows_that_start_with_a_row_number_shifts_no_column(
    tmp_path: Path,
) -> None:
    """pandas 3 reads an implicit index of 0, 1, 2, ... as a RangeIndex: the shift must be
    seen from the columns, not from the index's type."""
    rows = [f"{i},{i % 2},{i / 10}," for i in range(8)]
    table = read_csv_table(write(tmp_path / "ids.csv", ["id,label,x", *rows]), "label")
    assert table.target.tolist() == [i % 2 for i in range(8)]
    np.testing.assert_allclose(table.table["x"], [i / 10 for i in range(8)])


def test_row_labels_before_an_empty_last_column_are_read_as_r_writes_them(
    tmp_path: Path,
) -> None:
    """R's write.table: a label first on every row, not in the header; the last column
    missing throughout (NA) is no delimiter ending the rows."""
    rows = [f"r{i},{i % 2},{i},NA" for i in range(8)]
    table = read_csv_table(write(tmp_path / "r.csv", ["label,x,empty", *rows]), "label")
    assert table.target.tolist() == [i % 2 for i in range(8)]
    np.testing.assert_allclose(table.table["x"], list(range(8)))


def test_a_column_with_no_value_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A delimiter ending the header too makes a nameless column of nothing."""
    rows = [f"{i % 2},{i}," for i in range(8)]
    with caplog.at_level(logging.WARNING, logger="ensembles.csv_table"):
        table = read_csv_table(write(tmp_path / "both.csv", ["label,x,", *rows]), "label")
    assert [c.name for c in table.columns] == ["x"]
    assert [(d.name, d.reason) for d in table.dropped] == [("Unnamed: 2", "every cell is empty")]


def test_cells_of_spaces_are_missing_and_a_number_column_stays_numeric(tmp_path: Path) -> None:
    """IBM's Telco churn table writes an empty TotalCharges as one space."""
    rows = [f"{i % 2},{' ' if i == 3 else 20.5 * i},{'a' if i % 2 else '  '}" for i in range(30)]
    table = read_csv_table(write(tmp_path / "telco.csv", ["label,total,kind", *rows]), "label")
    kinds = {c.name: c.kind for c in table.columns}
    assert kinds == {"total": "numeric", "kind": "categorical"}
    assert np.isnan(table.table["total"][3]) and table.table["total"][4] == 82.0
    assert table.table["kind"][0] is None and table.table["kind"][1] == "a"


def test_a_number_column_with_a_stray_text_cell_points_to_numeric(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [f"{i % 2},{'n.a.' if i == 5 else 10.25 * i}" for i in range(30)]
    path = write(tmp_path / "stray.csv", ["label,charges", *rows])
    with pytest.raises(DataError, match="no usable feature column") as caught:
        read_csv_table(path, "label")
    hint = (
        "all but 1 of its cells are numbers (e.g. 'n.a.' at line 7); --numeric charges reads "
        "them as numbers, those cells as missing"
    )
    assert hint in str(caught.value)
    kept = read_csv_table(path, "label", numeric=("charges",))
    assert np.isnan(kept.table["charges"][5]) and kept.table["charges"][6] == 61.5
    few = ["label,code", *(f"{i % 2},{'x' if i == 2 else i % 3}" for i in range(30))]
    with caplog.at_level(logging.WARNING, logger="ensembles.csv_table"):
        read_csv_table(write(tmp_path / "few.csv", few), "label")
    assert any(
        m.startswith("column 'code' of few.csv is read as categories: all but 1 of its cells")
        for m in caplog.messages
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"categorical": ("NOPE",)},
            "--categorical NOPE: no such column in mixed.csv; columns are: "
            "id, state, plan, age, calls, area_code",
        ),
        (
            {"numeric": ("nope",)},
            "--numeric nope: no such column in mixed.csv; columns are: "
            "id, state, plan, age, calls, area_code",
        ),
        ({"numeric": (LABEL,)}, "--numeric label names the target column"),
        ({"categorical": (LABEL,)}, "--categorical label names the target column"),
        (
            {"categorical": (CALLS, AGE), "numeric": (AGE, CALLS)},
            "column 'age' is given to both --categorical and --numeric",
        ),
    ],
)
def test_bad_overrides_are_config_errors(mixed: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_csv(mixed, LABEL, **options)
    assert str(caught.value) == message


def test_overrides_apply_to_csv_files_only() -> None:
    with pytest.raises(
        ConfigError, match="^--categorical and --numeric apply to --csv files only$"
    ):
        load_data("wine", categorical=("alcohol",))


# --- identifiers ----------------------------------------------------------------------------


def test_an_id_column_is_dropped_with_a_warning(
    mixed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ensembles.csv_table"):
        dataset = load_csv(mixed, LABEL)
    assert [r.getMessage() for r in caplog.records] == [
        f"dropped column 'id' of mixed.csv: {ID_REASON}"
    ]
    assert caplog.records[0].levelno == logging.WARNING
    assert [(d.name, d.reason) for d in dataset.tabular.dropped] == [(ID, ID_REASON)]
    assert ID not in dataset.tabular.column_names
    assert not any(name.startswith(ID) for name in dataset.feature_names)


def test_an_id_column_named_categorical_is_kept(
    mixed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ensembles.csv_table"):
        dataset = load_csv(mixed, LABEL, categorical=(ID,))
    assert caplog.records == []
    column = dataset.tabular.column(ID)
    # every id is on one row, fewer than MIN_LEVEL_ROWS: they all share (other)
    assert (column.kind, column.levels, column.other) == ("categorical", [], True)
    assert dataset.tabular.dropped == []
    assert f"{ID}:(other)" in dataset.feature_names


def test_distinct_strings_on_few_rows_are_not_an_identifier(tmp_path: Path) -> None:
    rows = [f"name{i},{i % 2}" for i in range(IDENTIFIER_MIN_ROWS - 1)]
    table = read_csv_table(write(tmp_path / "few.csv", ["who,label", *rows]), "label")
    assert [c.name for c in table.columns] == ["who"] and table.dropped == []


def test_a_file_of_identifiers_only_says_how_to_keep_one(tmp_path: Path) -> None:
    rows = [f"C{i:04d},{i % 2}" for i in range(IDENTIFIER_MIN_ROWS)]
    with pytest.raises(DataError) as caught:
        read_csv_table(write(tmp_path / "ids.csv", ["key,label", *rows]), "label")
    assert str(caught.value) == (
        "ids.csv has no usable feature column: key was dropped as distinct on 100% of its "
        "rows, so it identifies rows rather than describing them (an id?); name it with "
        "--categorical to keep it"
    )


LABELS_REASON = "the file's row labels (an unnamed or 'rownames' first column); name it to keep it"


def counter_csv(path: Path, header: str = "rownames", with_feature: bool = True) -> Path:
    """Row labels 1, 2, 3, ... in a first column headed ``header``, beside a real feature."""
    rows = [f"{i},{(i * 7) % 5},{'a' if i % 2 else 'b'}" for i in range(1, 30)]
    if not with_feature:
        rows = [f"{i},{'a' if i % 2 else 'b'}" for i in range(1, 30)]
    return write(path, [f"{header},x,label" if with_feature else f"{header},label", *rows])


@pytest.mark.parametrize(("header", "name"), [("rownames", "rownames"), ("", "Unnamed: 0")])
def test_a_first_column_of_row_labels_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, header: str, name: str
) -> None:
    path = counter_csv(tmp_path / "idx.csv", header)
    with caplog.at_level(logging.WARNING, logger="ensembles.csv_table"):
        table = read_csv_table(path, "label")
    assert [r.getMessage() for r in caplog.records] == [
        f"dropped column '{name}' of idx.csv: {LABELS_REASON}"
    ]
    assert [(d.name, d.reason) for d in table.dropped] == [(name, LABELS_REASON)]
    kept = read_csv_table(path, "label", numeric=(name,))
    assert [c.name for c in kept.columns] == [name, "x"] and kept.dropped == []


def test_consecutive_numbers_elsewhere_are_a_feature(tmp_path: Path) -> None:
    # years or a counter as a real feature: values alone never drop a numeric column
    table = read_csv_table(counter_csv(tmp_path / "years.csv", "year"), "label")
    assert [c.name for c in table.columns] == ["year", "x"] and table.dropped == []


def test_a_file_of_row_labels_only_says_why_and_how_to_keep_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_csv_table(counter_csv(tmp_path / "only.csv", with_feature=False), "label")
    assert str(caught.value) == (
        f"only.csv has no usable feature column: rownames was dropped as {LABELS_REASON}"
    )


# --- targets and the plain matrix -----------------------------------------------------------


def test_rows_with_an_empty_target_are_dropped_and_counted(mixed: Path) -> None:
    dataset = load_csv(mixed, LABEL)
    assert dataset.rows_without_target == 1
    assert len(dataset.y) == len(dataset.X) == 399  # 400 rows written
    with mixed.open() as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for i, row in enumerate(rows) if i != EMPTY_TARGET_ROW]
    assert [dataset.classes[i] for i in dataset.y] == [row[LABEL] for row in kept]
    splits = split_dataset(dataset, seed=0)
    assert splits.record["rows_without_target"] == 1
    assert sum(splits.record[f"n_{part}"] for part in ("train", "validation", "test")) == 399


def test_a_file_without_empty_targets_records_none(tmp_path: Path) -> None:
    rows = [f"{i},{i % 3},{'a' if i % 2 else 'b'}" for i in range(60)]
    splits = split_dataset(load_csv(write(tmp_path / "p.csv", ["x,y,label", *rows]), "label"))
    assert "rows_without_target" not in splits.record


def test_every_target_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="^every target cell of column 'label' in e.csv is empty$"):
        read_csv_table(write(tmp_path / "e.csv", ["x,label", "1,", "2,"]), "label")


def test_an_all_numeric_file_without_gaps_is_the_plain_matrix(tmp_path: Path) -> None:
    rows = [f"{2 * i},{i * 0.5},{'a' if i % 2 else 'b'}" for i in range(40)]
    dataset = load_csv(write(tmp_path / "plain.csv", ["x,z,label", *rows]), "label")
    assert dataset.tabular is None and dataset.table is None
    assert dataset.feature_names == ["x", "z"] and dataset.input_names == ["x", "z"]
    expected = np.array([[2 * i, i * 0.5] for i in range(40)], dtype=np.float32)
    np.testing.assert_array_equal(dataset.X, expected)
    assert split_dataset(dataset).train.tabular is None


def test_one_missing_numeric_cell_needs_the_encoding(tmp_path: Path) -> None:
    rows = [f"{i},{i * 0.5},{'a' if i % 2 else 'b'}" for i in range(1, 40)]
    dataset = load_csv(write(tmp_path / "gap.csv", ["x,z,label", ",0,b", *rows]), "label")
    assert dataset.tabular is not None
    assert dataset.feature_names == ["x", "z", "x:missing"]
    # x present on 1..39 -> median 20, written in the missing cell, flagged
    np.testing.assert_array_equal(dataset.X[0], [20.0, 0.0, 1.0])


@pytest.mark.parametrize("value", ["inf", "-1e300"])  # 1e300 is finite, but inf in float32
def test_infinite_numbers_are_refused(tmp_path: Path, value: str) -> None:
    refused = "^infinite values in inf.csv, column 'x', or values beyond float32's range"
    with pytest.raises(DataError, match=refused):
        read_csv_table(write(tmp_path / "inf.csv", ["x,label", "1,a", f"{value},b"]), "label")


@pytest.mark.parametrize("value", ["inf", "1e300"])  # "nan" reads as an empty cell
def test_a_regression_target_beyond_float32_is_refused(tmp_path: Path, value: str) -> None:
    rows = [f"{i},{i * 0.5}" for i in range(30)] + [f"30,{value}"]
    path = write(tmp_path / "reg.csv", ["x,y", *rows])
    with pytest.raises(DataError, match="the target of .*reg.csv has 1 value.* within float32"):
        load_csv(path, "y", task="regression")


# --- statistics come from the training rows only --------------------------------------------


def rewrite_rows(path: Path, rows: np.ndarray, changes: dict[str, str]) -> None:
    """Set ``changes`` on the dataset rows ``rows`` (rows with a target, as load_csv counts)."""
    with path.open(newline="") as handle:
        lines = list(csv.reader(handle))
    header, body = lines[0], lines[1:]
    with_target = [i for i, line in enumerate(body) if line[header.index(LABEL)] != ""]
    for row in rows:
        for name, text in changes.items():
            body[with_target[row]][header.index(name)] = text
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *body])


def test_the_encoding_is_fitted_on_the_training_rows_alone(mixed: Path) -> None:
    dataset = load_csv(mixed, LABEL)
    splits = split_dataset(dataset, seed=0)
    spec, train = splits.train.tabular, splits.train.table
    # by hand, from the training rows' own cells
    ages = [a for a in train[AGE].tolist() if not math.isnan(a)]
    plans = [p for p in train[PLAN].tolist() if not math.isnan(p)]
    counts = Counter(s for s in train[STATE].tolist() if s is not None)
    frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    assert spec.column(AGE).fill == pytest.approx(median(ages), rel=1e-12)  # numpy vs python
    assert spec.column(PLAN).fill == median(plans)
    assert spec.column(CALLS).fill == median(train[CALLS].tolist())
    assert spec.column(STATE).levels == [s for s, n in frequent if n >= MIN_LEVEL_ROWS]
    assert 0 < counts[RARE_STATE] < MIN_LEVEL_ROWS  # two rows: it shares (other)
    assert spec.column(STATE).other
    assert spec.column(STATE).missing  # at least MIN_LEVEL_ROWS empty cells
    assert spec.column(STATE).rare_levels == [RARE_STATE]
    assert splits.validation.tabular == spec and splits.test.tabular == spec
    np.testing.assert_array_equal(splits.test.X, spec.encode(splits.test.table).X)
    assert splits.train.feature_names == spec.feature_names

    # move the test rows drastically: the training encoding must not move with them
    test_rows = split_rows(dataset, seed=0)["test"]
    rewrite_rows(mixed, test_rows, {AGE: "1000000", STATE: "QQ", CALLS: "999", PLAN: ""})
    changed = load_csv(mixed, LABEL)
    assert "QQ" in changed.tabular.column(STATE).levels  # a fit on every row sees them
    again = split_dataset(changed, seed=0)
    assert again.train.tabular == spec
    np.testing.assert_array_equal(again.train.X, splits.train.X)
    test = again.test
    assert (test.table[AGE] == 1e6).all() and (test.table[STATE] == "QQ").all()
    encoded = spec.encode(test.table)
    assert encoded.unseen == {STATE: len(test_rows)}
    np.testing.assert_array_equal(test.X, encoded.X)


def test_split_rows_match_the_split(mixed: Path) -> None:
    dataset = load_csv(mixed, LABEL)
    rows, splits = split_rows(dataset, seed=3), split_dataset(dataset, seed=3)
    for part in ("train", "validation", "test"):
        split = getattr(splits, part)
        np.testing.assert_array_equal(split.y, dataset.y[rows[part]])
        for name, cells in split.table.items():
            np.testing.assert_array_equal(cells, dataset.table[name][rows[part]])
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(len(dataset.y)))


def test_a_column_forced_categorical_keeps_the_file_s_text(tmp_path: Path) -> None:
    lines = ["zip,label", *[f"0213{i % 3},{'a' if i % 2 else 'b'}" for i in range(30)]]
    dataset = load_csv(write(tmp_path / "zips.csv", lines), "label", categorical=("zip",))
    assert sorted(dataset.tabular.column("zip").levels) == ["02130", "02131", "02132"]


def test_a_file_separated_by_semicolons_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path / "semi.csv", ["x;y", *(f"{i};{i % 2}" for i in range(8))])
    with pytest.raises(DataError) as caught:
        read_csv_table(path, "y")
    assert str(caught.value) == (
        "target column 'y' not in semi.csv; columns are: x;y (the file seems separated by "
        "';', not commas: save it as comma-separated)"
    )


def test_a_numeric_target_with_a_stray_text_cell_is_named_not_read_as_classes(
    tmp_path: Path,
) -> None:
    rows = [f"{i},{'unknown' if i == 7 else '' if i < 3 else 1000 + 37 * i}" for i in range(40)]
    with pytest.raises(DataError) as caught:  # the rows without a target do not shift line 9
        load_csv(write(tmp_path / "price.csv", ["x,price", *rows]), "price")
    assert str(caught.value) == (
        "target column 'price' of price.csv holds numbers but for 1 cells (e.g. 'unknown' at "
        "line 9): clean those cells (empty ones drop their rows), or give --task "
        "classification if the values are labels"
    )
    labels = [f"{i},{'3+' if i % 4 == 3 else i % 4}" for i in range(40)]  # labels, no measure
    assert load_csv(write(tmp_path / "kids.csv", ["x,kids", *labels]), "kids").classes == [
        "0",
        "1",
        "2",
        "3+",
    ]


def test_integer_classes_too_rare_to_split_suggest_regression(tmp_path: Path) -> None:
    """A count (0-19) is read as classes; a class of one row then names --task regression."""
    rows = [f"{i / 10},{min(i // 3, 19)}" for i in range(58)]
    dataset = load_csv(write(tmp_path / "counts.csv", ["x,count", *rows]), "count")
    assert dataset.task == "classification"
    with pytest.raises(DataError, match=r"for a count or a measure, give --task regression\)$"):
        split_dataset(dataset, seed=0)
