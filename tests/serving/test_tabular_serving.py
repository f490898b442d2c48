"""A mixed-type CSV served as users send it: /v1 records, /v2 column tensors (tritonclient BYTES).

The ensemble is trained on the file from ``tests/tabular_toys.py`` (categories, yes/no flags,
empty cells, an id column); the raw rows of its test split must be served with the
predictions training computed for them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
import tritonclient.http as triton
from serving_fixtures import LiveServer, run_schemathesis

from ensembles.data import load_csv, split_dataset
from ensembles.heldout import HeldoutPredictions
from ensembles.reproduction import TEST_OUTPUTS_FILE, load_test_outputs
from tests.conftest import tiny_request
from tests.tabular_toys import AGE, CALLS, LABEL, PLAN, STATE, write_mixed_csv

NAME = "mixed"
#: Served (onnxruntime, float32) against training-time (torch, float32) member outputs of
#: the same encoded rows: the export parity bound of every member.
PARITY = 1e-5


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from ensembles.training.pipeline import train_ensemble

    root = tmp_path_factory.mktemp("mixed")
    csv = write_mixed_csv(root / "mixed.csv", n_rows=400, seed=3)
    manifest = train_ensemble(
        tiny_request(root, csv=csv, target=LABEL, name=NAME, strategy="repeat")
    )
    test = split_dataset(load_csv(csv, LABEL), seed=0).test
    version = root / "store" / NAME / "1"
    return {
        "store": root / "store",
        "manifest": manifest,
        "test": test,
        "heldout": HeldoutPredictions.load(version / "heldout.npz"),
        "test_outputs": load_test_outputs((version / TEST_OUTPUTS_FILE).read_bytes()),
    }


@pytest.fixture(scope="module")
def server(mixed: dict[str, Any]):
    with LiveServer(store=mixed["store"], poll_interval_s=0) as live:
        yield live


@pytest.fixture(scope="module")
def http(server: LiveServer):
    with server.client() as client:
        yield client


def _records(test: Any, names: list[str]) -> list[dict[str, Any]]:
    """The raw test rows as a client sends them: strings, 'yes'/'no', null when empty."""
    records = []
    for i in range(len(test.y)):
        record: dict[str, Any] = {}
        for name in names:
            cell = test.table[name][i]
            if name == PLAN:
                cell = None if math.isnan(cell) else ("yes" if cell == 1 else "no")
            elif isinstance(cell, float) and math.isnan(cell):
                cell = None
            record[name] = cell
        records.append(record)
    return records


def _predict(http: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return http.post(f"/v1/ensembles/{NAME}/predict", json=body)


def test_records_of_raw_csv_rows_equal_the_training_time_predictions(mixed, http):
    names = mixed["manifest"].preprocessing.column_names
    records = _records(mixed["test"], names)
    assert any(None in record.values() for record in records)  # missing cells are served
    answer = _predict(http, {"records": records, "members": True})
    assert answer.status_code == 200, answer.text
    served = np.asarray(answer.json()["members"]["outputs"])
    trained = mixed["heldout"].test.member_preds
    np.testing.assert_allclose(served, trained, atol=PARITY)
    combiner = answer.json()["combiner"]
    assert combiner == mixed["manifest"].default_combiner
    combined = np.asarray(answer.json()["predictions"]["probabilities"])
    np.testing.assert_allclose(combined, mixed["test_outputs"][combiner], atol=PARITY)
    assert "variance" in answer.json()["uncertainty"]


def test_tritonclient_bytes_columns_equal_records(mixed, http, server):
    metadata = http.get(f"/v2/models/{NAME}").json()
    inputs = {entry["name"]: entry for entry in metadata["inputs"]}
    assert inputs[STATE] == {"name": STATE, "datatype": "BYTES", "shape": [-1, 1]}
    assert inputs[PLAN]["datatype"] == "BYTES"
    assert inputs[AGE]["datatype"] == "FP64"
    records = _records(mixed["test"], list(inputs))[:20]
    client = triton.InferenceServerClient(url=server.address)
    tensors = []
    for name, entry in inputs.items():
        if entry["datatype"] == "BYTES":
            values = np.array([[r[name] or ""] for r in records], dtype=object)
        else:
            values = np.array([[np.nan if r[name] is None else r[name]] for r in records])
        tensor = triton.InferInput(name, list(values.shape), entry["datatype"])
        tensor.set_data_from_numpy(values)  # binary tensors, the client's default
        tensors.append(tensor)
    result = client.infer(NAME, tensors)
    client.close()
    expected = _predict(http, {"records": records}).json()["predictions"]["probabilities"]
    # The same rows through the same graph in the same process: only float32 rounding.
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)
    assert result.as_numpy("variance").shape == (20, 2)


def test_v2_json_column_inputs_take_null_and_flat_shapes(mixed, http):
    records = _records(mixed["test"], mixed["manifest"].preprocessing.column_names)[:3]
    records[0][AGE] = None
    body = {"inputs": []}
    for name, entry in ((e["name"], e) for e in http.get(f"/v2/models/{NAME}").json()["inputs"]):
        body["inputs"].append(
            {
                "name": name,
                "datatype": entry["datatype"],
                "shape": [3],
                "data": [r[name] for r in records],
            }
        )
    answer = http.post(f"/v2/models/{NAME}/infer", json=body)
    assert answer.status_code == 200, answer.text
    got = next(o for o in answer.json()["outputs"] if o["name"] == "probabilities")["data"]
    expected = _predict(http, {"records": records}).json()["predictions"]["probabilities"]
    np.testing.assert_allclose(np.reshape(got, (3, 2)), expected, atol=1e-6)


def test_the_openapi_infer_body_admits_column_inputs(mixed, http):
    # A client that validates its requests against /openapi.json must be able to send a
    # table ensemble's columns: flat or one per row, strings, numbers and null.
    schema = http.get("/openapi.json").json()["paths"]["/v2/models/{name}/infer"]["post"]
    validator = jsonschema.Draft202012Validator(
        schema["requestBody"]["content"]["application/json"]["schema"]
    )
    records = _records(mixed["test"], mixed["manifest"].preprocessing.column_names)[:3]
    records[0][AGE] = None
    metadata = http.get(f"/v2/models/{NAME}").json()["inputs"]
    for nested in (False, True):
        body = {
            "inputs": [
                {
                    "name": entry["name"],
                    "datatype": entry["datatype"],
                    "shape": [3, 1] if nested else [3],
                    "data": [[r[entry["name"]]] if nested else r[entry["name"]] for r in records],
                }
                for entry in metadata
            ]
        }
        assert not list(validator.iter_errors(body)), body
        assert http.post(f"/v2/models/{NAME}/infer", json=body).status_code == 200


def test_schemathesis_finds_no_failure_on_a_table_ensemble(server, tmp_path):
    run_schemathesis(server, tmp_path, "--include-path-regex=/infer$", examples=40)


def test_unseen_category_is_served_and_counted_per_column(mixed, http):
    record = _records(mixed["test"], mixed["manifest"].preprocessing.column_names)[0]
    before = _unseen(http)
    answer = _predict(http, {"records": [{**record, STATE: "Atlantis"}, {**record, STATE: "Mu"}]})
    assert answer.status_code == 200, answer.text
    assert _unseen(http) == before + 2


def _unseen(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    pattern = rf'ensembles_unseen_categories_total{{column="{STATE}",ensemble="{NAME}"}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize(
    ("change", "column", "message"),
    [
        ({"zip": "12345"}, "zip", "unknown column 'zip' in records\\[0\\]"),
        ({AGE: "forty"}, AGE, f"column '{AGE}' in records is numeric and takes a number"),
        ({PLAN: "maybe"}, PLAN, f"column '{PLAN}' in records is boolean"),
        ({STATE: True}, STATE, f"column '{STATE}' in records is categorical and takes a string"),
    ],
)
def test_bad_records_get_a_400_naming_the_column(mixed, http, change, column, message):
    record = _records(mixed["test"], mixed["manifest"].preprocessing.column_names)[0]
    answer = _predict(http, {"records": [{**record, **change}]})
    assert answer.status_code == 400, answer.text
    assert re.search(message, answer.json()["error"])
    assert answer.json()["field"] == f"records.{column}"


@pytest.mark.parametrize(
    ("column", "value", "got"), [(AGE, {"a": 1}, "an object"), (STATE, [1], "a list")]
)
def test_a_cell_no_json_kind_fits_is_named_by_its_column(mixed, http, column, value, got):
    record = _records(mixed["test"], mixed["manifest"].preprocessing.column_names)[0]
    answer = _predict(http, {"records": [record, {**record, column: value}]})
    assert answer.status_code == 422
    assert answer.json() == {
        "error": f"column '{column}' in records[1] takes a string, a number, true/false or "
        f"null; got {got}",
        "field": f"records.{column}",
    }


def test_a_record_without_a_column_is_refused_naming_it(mixed, http):
    record = _records(mixed["test"], mixed["manifest"].preprocessing.column_names)[0]
    del record[CALLS]
    answer = _predict(http, {"records": [record]})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": f"missing column '{CALLS}' in records[0]: send a value (or null for a missing "
        "one) for every column",
        "field": f"records.{CALLS}",
    }


def test_encoded_rows_are_refused_for_a_table_ensemble(mixed, http):
    width = mixed["manifest"].input.n_features
    answer = _predict(http, {"rows": [[0.0] * width]})
    assert answer.status_code == 400
    assert "was trained on a table: send 'records'" in answer.json()["error"]
    assert _predict(http, {}).json()["error"] == "give either 'rows' or 'records'"


def test_v2_missing_or_mistyped_column_input_gets_a_400(mixed, http):
    names = mixed["manifest"].preprocessing.column_names
    inputs = [
        {"name": n, "datatype": "FP64", "shape": [1, 1], "data": [1.0]}
        for n in names
        if n not in (STATE, PLAN)
    ]
    inputs.append({"name": PLAN, "datatype": "BYTES", "shape": [1, 1], "data": ["yes"]})
    answer = http.post(f"/v2/models/{NAME}/infer", json={"inputs": inputs})
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        f"expected {len(names)} inputs but got {len(names) - 1} inputs for model '{NAME}': "
        f"missing '{STATE}'"
    )
    wrong = [*inputs, {"name": STATE, "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]
    answer = http.post(f"/v2/models/{NAME}/infer", json={"inputs": wrong})
    assert answer.status_code == 400
    assert f"inference input '{STATE}' data-type is 'FP32'" in answer.json()["error"]


def test_records_work_for_a_numeric_ensemble_keyed_by_feature_name(trained_store: Path):
    from ensembles.store import ModelStore

    manifest = ModelStore(trained_store).read_version("digits").manifest
    names = manifest.input.feature_names
    rows = np.random.default_rng(0).uniform(0, 16, (2, len(names))).round(2)
    with LiveServer(store=trained_store, poll_interval_s=0) as live, live.client() as client:
        by_rows = client.post("/v1/ensembles/digits/predict", json={"rows": rows.tolist()})
        records = [dict(zip(names, row, strict=True)) for row in rows.tolist()]
        by_records = client.post("/v1/ensembles/digits/predict", json={"records": records})
        assert by_records.status_code == 200, by_records.text
        assert by_records.json()["predictions"] == by_rows.json()["predictions"]
        records[0][names[3]] = None
        refused = client.post("/v1/ensembles/digits/predict", json={"records": records})
    assert refused.status_code == 400
    assert refused.json()["field"] == f"records.{names[3]}"
    assert "cannot be missing" in refused.json()["error"]


def test_too_many_records_are_refused_before_they_are_encoded(mixed, http):
    record = _records(mixed["test"], mixed["manifest"].preprocessing.column_names)[0]
    answer = _predict(http, {"records": [record] * 4097})  # the default limit: 4,096 rows
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "batch of 4097 rows is over the limit of 4096 rows; split it into smaller "
        "requests",
        "field": "records",
    }


def test_binary_bytes_beyond_the_shape_are_refused(mixed, http):
    names = mixed["manifest"].preprocessing.column_names
    extra = b"\x00\x00\x00\x00" * 1000  # a thousand empty elements for a shape of one
    header = {
        "inputs": [
            {
                "name": STATE,
                "datatype": "BYTES",
                "shape": [1, 1],
                "parameters": {"binary_data_size": 6 + len(extra)},
            },
            *[
                {"name": n, "datatype": "FP64", "shape": [1, 1], "data": [1.0]}
                for n in names
                if n not in (STATE, PLAN)
            ],
            {"name": PLAN, "datatype": "BYTES", "shape": [1, 1], "data": ["yes"]},
        ]
    }
    text = json.dumps(header).encode()
    body = text + b"\x02\x00\x00\x00KS" + extra
    answer = http.post(
        f"/v2/models/{NAME}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(text))},
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        f"input '{STATE}' has 4000 bytes after its 1 BYTES elements (check binary_data_size)"
    )


def test_the_ensemble_info_names_the_raw_columns_records_take(mixed, http):
    """A client of a table ensemble learns which columns to send from the info, not from
    the encoded ``features`` (which records refuse)."""
    info = http.get(f"/v1/ensembles/{NAME}").json()
    columns = {column["name"]: column for column in info["preprocessing"]["columns"]}
    assert list(columns) == mixed["manifest"].preprocessing.column_names
    assert columns[PLAN]["kind"] == "boolean"
    assert (columns[PLAN]["true_token"], columns[PLAN]["false_token"]) == ("yes", "no")
    assert columns[STATE]["kind"] == "categorical" and columns[STATE]["levels"]
    record = {name: None for name in columns}
    assert _predict(http, {"records": [record]}).status_code == 200
