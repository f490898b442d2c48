"""The table encoding: fitted levels and fill values, the encoded matrix, and every message."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ensembles.errors import DataError
from ensembles.manifest import InputSpec, Manifest
from ensembles.tabular import (
    MAX_LEVELS,
    MAX_RARE_LEVELS,
    MIN_LEVEL_ROWS,
    MISSING_LEVEL,
    MISSING_TOKENS,
    OTHER_LEVEL,
    ColumnError,
    ColumnSpec,
    DroppedColumn,
    TabularSpec,
    boolean_tokens,
    coerce_table,
    fit_spec,
    table_from_records,
)
from tests.store_toys import toy_manifest

NAN = math.nan
COLUMNS = [
    ColumnSpec(name="color", kind="categorical"),
    ColumnSpec(name="age", kind="numeric"),
    ColumnSpec(name="flag", kind="boolean", true_token="yes", false_token="no"),
    ColumnSpec(name="x", kind="numeric"),
]


def training_table() -> dict[str, np.ndarray]:
    """18 coerced rows: 6 red, 5 missing, 5 blue, 2 green (rare); age and flag with gaps."""
    return {
        "color": np.array(["red"] * 6 + [None] * 5 + ["blue"] * 5 + ["green"] * 2, dtype=object),
        "age": np.array([20.0, 30.0, 40.0, NAN, 50.0, 60.0] * 3),
        "flag": np.array([1.0] * 10 + [0.0] * 7 + [NAN]),
        "x": np.arange(18, dtype=np.float64),
    }


def fitted() -> TabularSpec:
    return fit_spec(training_table(), COLUMNS)


def categorical(levels: list[str | None]) -> TabularSpec:
    """A spec of one categorical column ``c`` fitted on ``levels``."""
    table = {"c": np.array(levels, dtype=object)}
    return fit_spec(table, [ColumnSpec(name="c", kind="categorical")])


# --- fitting and encoding -------------------------------------------------------------------


def test_fit_spec_keeps_frequent_levels_and_training_medians() -> None:
    spec = fitted()
    color, age, flag, x = spec.columns
    # red 6, blue 5; green has 2 < MIN_LEVEL_ROWS rows, so it shares (other) and is recorded;
    # 5 missing cells earn a (missing) column, which follows the levels
    assert (color.levels, color.missing, color.other) == (["red", "blue"], True, True)
    assert color.rare_levels == ["green"]
    # age present: 20, 30, 40, 50, 60 three times each -> median 40; three cells missing
    assert (age.fill, age.indicator) == (40.0, True)
    # flag present: ten 1s and seven 0s -> the 9th of 17 sorted values is 1
    assert (flag.fill, flag.indicator) == (1.0, True)
    assert (flag.true_token, flag.false_token) == ("yes", "no")  # kept from the input spec
    # x = 0..17 -> median (8 + 9) / 2; nothing missing, so no indicator
    assert (x.fill, x.indicator) == (8.5, False)
    assert spec.column_names == ["color", "age", "flag", "x"]


def test_feature_names_are_values_then_indicators_then_one_hot() -> None:
    spec = fitted()
    assert spec.feature_names == [
        "age",
        "flag",
        "x",
        "age:missing",
        "flag:missing",
        "color=red",
        "color=blue",
        "color:(missing)",
        "color:(other)",
    ]
    assert spec.n_features == 9
    # (value column, indicator column) of age and flag in the list above
    assert spec.imputed_columns() == [(0, 3), (1, 4)]


def test_encode_by_hand() -> None:
    table = {
        "color": np.array(["blue", None, "green", "purple"], dtype=object),
        "age": np.array([NAN, 31.5, 40.0, NAN]),
        "flag": np.array([0.0, NAN, 1.0, 1.0]),
        "x": np.array([1.0, 2.0, 3.0, 100.0]),
    }
    encoded = fitted().encode(table)
    # age (missing -> fill 40), flag (missing -> 1), x, age:missing, flag:missing,
    # then red, blue, (missing), (other): green is rare, purple never seen
    expected = [
        [40.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        [31.5, 1.0, 2.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0],
        [40.0, 1.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        [40.0, 1.0, 100.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    ]
    assert encoded.X.dtype == np.float32
    np.testing.assert_array_equal(encoded.X, np.array(expected, dtype=np.float32))


def test_a_level_never_seen_in_training_goes_to_other_and_is_counted() -> None:
    table = {name: cells[:4] for name, cells in training_table().items()}
    table["color"] = np.array(["purple", "red", "purple", None], dtype=object)
    encoded = fitted().encode(table)
    # one-hot block: red, blue, (missing), (other)
    one_hot = [[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    np.testing.assert_array_equal(encoded.X[:, -4:], one_hot)
    assert encoded.unseen == {"color": 2}


def test_a_rare_level_seen_in_training_is_not_counted_as_unseen() -> None:
    # green had 2 training rows: it shares (other), but it is no level "never seen in
    # training" (the module docstring), so EncodedTable.unseen must not count it
    table = {name: cells[-2:] for name, cells in training_table().items()}  # the green rows
    encoded = fitted().encode(table)
    np.testing.assert_array_equal(encoded.X[:, -1], [1, 1])  # (other)
    assert encoded.unseen == {}


def test_unseen_level_without_an_other_column_is_all_zeros_and_counted() -> None:
    spec = categorical(["a"] * 6 + ["b"] * 5)
    assert (spec.columns[0].levels, spec.columns[0].other) == (["a", "b"], False)
    encoded = spec.encode({"c": np.array(["b", "nope", "nope", None], dtype=object)})
    np.testing.assert_array_equal(encoded.X, [[0, 1], [0, 0], [0, 0], [0, 0]])
    # a missing cell is no unseen level, even where training had none to learn from
    assert encoded.unseen == {"c": 2}


def test_at_most_max_levels_get_a_column_most_frequent_first() -> None:
    names = [f"L{i:03d}" for i in range(MAX_LEVELS + 3)]
    cells = [name for name in names for _ in range(MIN_LEVEL_ROWS)] + ["L999"] * (
        MIN_LEVEL_ROWS + 1
    )
    column = categorical(cells).columns[0]
    # L999 is the most frequent; the rest tie and go by name, the last three share (other)
    assert column.levels == ["L999", *names[: MAX_LEVELS - 1]]
    assert len(column.levels) == MAX_LEVELS and column.other


def test_a_level_needs_min_level_rows_for_its_own_column() -> None:
    enough, short = ["kept"] * MIN_LEVEL_ROWS, ["rare"] * (MIN_LEVEL_ROWS - 1)
    missing = [None] * (MIN_LEVEL_ROWS - 1)
    spec = categorical(enough + short + missing)
    assert (spec.columns[0].levels, spec.columns[0].other) == (["kept"], True)
    assert spec.feature_names == ["c=kept", "c:(other)"]
    # too few missing cells for a (missing) level: a missing cell goes to (other), uncounted
    encoded = spec.encode({"c": np.array(["kept", "rare", None], dtype=object)})
    np.testing.assert_array_equal(encoded.X, [[1, 0], [0, 1], [0, 1]])


def test_no_other_column_when_every_level_is_frequent() -> None:
    spec = categorical(["a"] * MIN_LEVEL_ROWS + [None] * MIN_LEVEL_ROWS)
    assert (spec.columns[0].levels, spec.columns[0].missing) == (["a"], True)
    assert not spec.columns[0].other
    assert spec.feature_names == ["c=a", f"c:{MISSING_LEVEL}"]
    assert f"c:{OTHER_LEVEL}" not in spec.feature_names


def test_levels_spelled_like_the_reserved_names_keep_their_own_columns() -> None:
    # a user's category may be the text "(other)": it is frequent, so it gets a column, and
    # the rare "x" needs the (other) column; the two must not share a name or a position
    spec = categorical(["(other)"] * MIN_LEVEL_ROWS + ["x"])
    assert len(set(spec.feature_names)) == len(spec.feature_names), spec.feature_names
    encoded = spec.encode({"c": np.array(["(other)", "x"], dtype=object)})
    assert not np.array_equal(encoded.X[0], encoded.X[1])


# --- coercing user values -------------------------------------------------------------------


def good_columns(**changes: list) -> dict[str, list]:
    columns = {"color": ["red", None], "age": [31.0, None], "flag": ["yes", None], "x": [1, 2]}
    return {**columns, **changes}


@pytest.mark.parametrize(
    ("columns", "column", "message"),
    [
        (
            {**good_columns(), "nope": [1, 2]},
            "nope",
            "unknown column 'nope': this ensemble takes color, age, flag, x",
        ),
        (
            {k: v for k, v in good_columns().items() if k != "age"},
            "age",
            "missing column 'age': send a value (or null for a missing one) for every column",
        ),
        (
            good_columns(age=[31.0, "forty"]),
            "age",
            "column 'age' is numeric and takes a number or null; got 'forty'",
        ),
        (
            good_columns(age=[True, 1.0]),
            "age",
            "column 'age' is numeric and takes a number or null; got True",
        ),
        (
            good_columns(age=[math.inf, 1.0]),
            "age",
            "column 'age' is numeric and takes a finite float32 number or null; got inf",
        ),
        (
            good_columns(flag=[2, "no"]),
            "flag",
            "column 'flag' is boolean and takes true/false, 0/1 or 'yes'/'no'; got 2",
        ),
        (
            good_columns(flag=["maybe", "no"]),
            "flag",
            "column 'flag' is boolean and takes true/false, 0/1 or 'yes'/'no'; got 'maybe'",
        ),
        (
            good_columns(color=[True, "red"]),
            "color",
            "column 'color' is categorical and takes a string; got True",
        ),
        (
            good_columns(color=[["red"], "red"]),
            "color",
            "column 'color' is categorical and takes a string; got ['red']",
        ),
        (
            good_columns(x=[1, 2, 3]),
            "x",
            "column 'x' has 3 values but 'color' has 2; every column needs one value per row",
        ),
    ],
)
def test_coerce_table_names_the_column_and_the_problem(
    columns: dict, column: str, message: str
) -> None:
    with pytest.raises(ColumnError) as caught:
        coerce_table(fitted(), columns)
    assert str(caught.value) == message
    assert caught.value.column == column
    assert isinstance(caught.value, DataError)  # the one hierarchy: callers catch DataError


def test_numeric_arrays_are_checked_like_lists() -> None:
    columns = {**good_columns(), "age": np.array([1, 2], dtype=np.int64)}
    np.testing.assert_array_equal(coerce_table(fitted(), columns)["age"], [1.0, 2.0])
    columns["age"] = np.array([1.0, np.inf])
    message = "^column 'age' is numeric and takes a finite float32 number or null; got inf$"
    with pytest.raises(ColumnError, match=message):
        coerce_table(fitted(), columns)


def test_boolean_arrays_take_only_zero_and_one() -> None:
    columns = {**good_columns(), "flag": np.array([1.0, 2.0])}
    with pytest.raises(ColumnError, match="^column 'flag' is boolean and takes true/false, 0/1 or"):
        coerce_table(fitted(), columns)
    columns["flag"] = np.array([1.0, np.nan])
    np.testing.assert_array_equal(coerce_table(fitted(), columns)["flag"], [1.0, NAN])


def test_a_column_without_a_fill_value_cannot_be_missing() -> None:
    spec = TabularSpec(columns=[ColumnSpec(name="a", kind="numeric")])  # as a plain ensemble
    message = (
        "^column 'a' cannot be missing: this ensemble was trained without missing values, so "
        "it has no fill value for it$"
    )
    for values in ([1.0, None], np.array([1.0, np.nan])):
        with pytest.raises(ColumnError, match=message) as caught:
            coerce_table(spec, {"a": values})
        assert caught.value.column == "a"


@pytest.mark.parametrize(
    ("records", "column", "message"),
    [
        (
            [{"color": "red", "age": 1, "flag": "no", "x": 0}, {"nope": 1}],
            "nope",
            "unknown column 'nope' in records[1]: this ensemble takes color, age, flag, x",
        ),
        (
            [{"color": "red", "flag": "no", "x": 0}],
            "age",
            "missing column 'age' in records[0]: send a value (or null for a missing one) for "
            "every column",
        ),
        (
            [{"color": "red", "age": "31", "flag": "no", "x": 0}],
            "age",
            "column 'age' in records is numeric and takes a number or null; got '31'",
        ),
        (
            [{"color": 3.5, "age": 1, "flag": 7, "x": 0}],
            "flag",
            "column 'flag' in records is boolean and takes true/false, 0/1 or 'yes'/'no'; got 7",
        ),
    ],
)
def test_table_from_records_names_the_record_and_the_column(
    records: list[dict], column: str, message: str
) -> None:
    with pytest.raises(ColumnError) as caught:
        table_from_records(fitted(), records)
    assert str(caught.value) == message
    assert caught.value.column == column


def test_records_encode_like_columns() -> None:
    records = [
        {"color": "blue", "age": None, "flag": "no", "x": 1},
        {"color": None, "age": 31.5, "flag": None, "x": 2.0},
    ]
    columns = {name: [record[name] for record in records] for name in fitted().column_names}
    from_records = fitted().encode(table_from_records(fitted(), records)).X
    np.testing.assert_array_equal(from_records, fitted().encode(coerce_table(fitted(), columns)).X)
    np.testing.assert_array_equal(from_records[:, :5], [[40, 0, 1, 1, 0], [31.5, 1, 2, 0, 1]])


def test_numbers_in_a_categorical_column_are_matched_as_text() -> None:
    spec = categorical(["415"] * 5 + ["510"] * 5 + ["415.5"] * 5)
    table = coerce_table(spec, {"c": [415, 415.0, "415", 415.5, None, NAN, ""]})
    assert table["c"].tolist() == ["415", "415", "415", "415.5", None, None, None]
    from_ints = coerce_table(spec, {"c": np.array([415, 510], dtype=np.int64)})
    assert from_ints["c"].tolist() == ["415", "510"]
    encoded = spec.encode(table)
    assert spec.feature_names == ["c=415", "c=415.5", "c=510"]
    np.testing.assert_array_equal(encoded.X[:4], [[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert encoded.unseen == {}


def test_integral_number_text_is_one_level_however_it_is_written() -> None:
    """pandas writes an integer column with missing cells as ``1.0``, ``2.0``: a code column
    read from such a file matches the number 1 and the text "1" (and "02134" stays)."""
    spec = categorical(["1"] * 5 + ["2"] * 5 + ["02134"] * 5)  # as read_csv_table reads them
    table = coerce_table(spec, {"c": [1, 1.0, "1", "1.0", "2.00", "02134", "2134"]})
    assert table["c"].tolist() == ["1", "1", "1", "1", "2", "02134", "2134"]
    assert spec.encode(table).unseen == {"c": 1}


def test_a_version_whose_levels_were_stored_with_a_zero_fraction_still_matches() -> None:
    """Versions never change: one published while "415.0" was its own level keeps
    matching a request's 415, "415" and "415.0", which are all cells of level 415 today."""
    spec = categorical(["415.0"] * 5 + ["510.0"] * 5 + ["7"] * 2)  # as an older reader kept them
    assert spec.column("c").levels == ["415.0", "510.0"] and spec.column("c").rare_levels == ["7"]
    table = coerce_table(spec, {"c": [415, "415", "415.0", 510.0, "7", "8"]})
    encoded = spec.encode(table)
    np.testing.assert_array_equal(encoded.X[:4, :2], [[1, 0], [1, 0], [1, 0], [0, 1]])
    assert encoded.unseen == {"c": 1}  # "7" was a rare training level, "8" never seen


def test_cells_of_spaces_are_missing_as_training_reads_them() -> None:
    spec = fitted()
    spaced = spec.encode(coerce_table(spec, good_columns(color=[" ", None], flag=["  ", None])))
    clean = spec.encode(coerce_table(spec, good_columns(color=[None, None], flag=[None, None])))
    np.testing.assert_array_equal(spaced.X, clean.X)
    assert spaced.unseen == {}


def test_a_float_array_with_nan_in_a_categorical_column_is_missing_as_a_list_is() -> None:
    spec = categorical(["415"] * 5 + [None] * 5)
    from_list = coerce_table(spec, {"c": [415.0, NAN]})["c"].tolist()
    from_array = coerce_table(spec, {"c": np.array([415.0, np.nan])})["c"].tolist()
    assert from_list == ["415", None]
    assert from_array == from_list


def test_boolean_spellings() -> None:
    cells = ["yes", "No", " YES ", "true", "FALSE", "1", "0", True, False, 1, 0, 1.0, None, ""]
    n = len(cells)
    columns = {"color": ["red"] * n, "age": [None] * n, "flag": cells, "x": [0] * n}
    expected = [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, NAN, NAN]
    np.testing.assert_array_equal(coerce_table(fitted(), columns)["flag"], expected)


def test_a_flag_takes_every_known_spelling_and_names_its_own_when_refusing() -> None:
    yn = TabularSpec(
        columns=[ColumnSpec(name="f", kind="boolean", true_token="y", false_token="n", fill=0.0)]
    )
    cells = ["Y", "n", "true", "yes", "No", "t"]  # a client need not know the file's spelling
    np.testing.assert_array_equal(coerce_table(yn, {"f": cells})["f"], [1, 0, 1, 1, 0, 1])
    message = "^column 'f' is boolean and takes true/false, 0/1 or 'y'/'n'; got 'maybe'$"
    with pytest.raises(ColumnError, match=message):
        coerce_table(yn, {"f": ["maybe"]})


@pytest.mark.parametrize(
    ("values", "tokens"),
    [
        (["yes", "no", "Yes"], ("yes", "no")),
        (["no"], ("yes", "no")),
        (["True", "false"], ("true", "false")),
        (["Y", "n"], ("y", "n")),
        (["t", "F "], ("t", "f")),
        (["1", "0"], ("1", "0")),
        (["yes", "n"], None),
        (["yes", "maybe"], None),
        ([], None),
    ],
)
def test_boolean_tokens(values: list[str], tokens: tuple[str, str] | None) -> None:
    assert boolean_tokens(values) == tokens


# --- the manifest ---------------------------------------------------------------------------


def test_spec_round_trips_through_the_manifest_json() -> None:
    spec = fit_spec(
        training_table(),
        COLUMNS,
        dropped=[DroppedColumn(name="id", reason="distinct on 100% of its rows")],
    )
    manifest = toy_manifest("tab", 1).model_copy(
        update={"preprocessing": spec, "input": InputSpec(feature_names=spec.feature_names)}
    )
    loaded = Manifest.from_json(manifest.to_json())
    assert loaded.preprocessing == spec
    assert loaded.preprocessing.dropped[0].name == "id"
    table = coerce_table(loaded.preprocessing, good_columns())
    np.testing.assert_array_equal(loaded.preprocessing.encode(table).X, spec.encode(table).X)


def test_a_csv_missing_spelling_in_a_request_is_missing_as_in_training() -> None:
    # read_csv_table reads "NA", "null", ... as missing (MISSING_TOKENS); a client sending
    # the same raw cell must get the same encoding, not an unseen level or a 400
    spec = fitted()
    raw = spec.encode(coerce_table(spec, good_columns(color=["NA", None], flag=["N/A", None])))
    clean = spec.encode(coerce_table(spec, good_columns(color=[None, None], flag=[None, None])))
    np.testing.assert_array_equal(raw.X, clean.X)
    assert raw.unseen == {}
    assert {"NA", "null", "", "NaN"} <= MISSING_TOKENS


def test_a_number_too_large_for_float32_is_refused_naming_the_column() -> None:
    with pytest.raises(ColumnError, match="^column 'age' is numeric and takes a finite float32"):
        coerce_table(fitted(), good_columns(age=[1e39, None]))
    with pytest.raises(ColumnError, match="^column 'age' is numeric"):
        coerce_table(fitted(), good_columns(age=np.array([1e39, 1.0])))


def test_columns_dropped_in_training_are_accepted_and_ignored() -> None:
    spec = fitted().model_copy(update={"dropped": [DroppedColumn(name="id", reason="an id")]})
    record = {"color": "red", "age": 31.0, "flag": "yes", "x": 1, "id": "C00001"}
    with_id = spec.encode(table_from_records(spec, [record]))
    without = spec.encode(
        table_from_records(spec, [{k: v for k, v in record.items() if k != "id"}])
    )
    np.testing.assert_array_equal(with_id.X, without.X)


def test_rare_levels_kept_are_capped() -> None:
    cells = [f"L{i:05d}" for i in range(MAX_RARE_LEVELS + 50)] + ["big"] * MIN_LEVEL_ROWS
    column = categorical(cells).columns[0]
    assert column.levels == ["big"] and len(column.rare_levels) == MAX_RARE_LEVELS
