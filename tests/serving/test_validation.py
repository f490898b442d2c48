"""Every bad request gets its 4xx and a JSON error naming the problem; the server stays live."""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest

INFER = "/v2/models/toy/infer"
HEADER = "Inference-Header-Content-Length"


def binary_body(X: np.ndarray, datatype: str = "FP32", **extra) -> tuple[bytes, dict]:
    """A tritonclient-style body: JSON header then raw bytes."""
    blob = X.tobytes()
    request = {
        "inputs": [
            {
                "name": "input",
                "shape": list(X.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(blob)},
            }
        ],
        **extra,
    }
    header = orjson.dumps(request)
    return header + blob, {HEADER: str(len(header))}


def json_input(data, shape=(1, 4), datatype="FP32", name="input") -> dict:
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data}


def v2(inputs=None, **extra) -> bytes:
    return orjson.dumps({"inputs": inputs or [json_input([0.0] * 4)], **extra})


ROW = [[0.1, 0.2, 0.3, 0.4]]

V1_CASES = [
    ("wrong feature count", {"rows": [[1.0, 2.0]]}, 400, "expected rows of 4 features"),
    ("ragged rows", {"rows": [[1.0] * 4, [1.0] * 3]}, 400, "same length; got lengths [3, 4]"),
    ("wrong dtype", {"rows": [["a", 1, 2, 3]]}, 422, "invalid field 'rows.0.0'"),
    ("boolean values", {"rows": [[True, 1, 2, 3]]}, 422, "invalid field 'rows.0.0'"),
    ("empty batch", {"rows": []}, 400, "empty batch"),
    ("over the row limit", {"rows": ROW * 65}, 400, "65 rows is over the limit of 64"),
    ("unknown combiner", {"rows": ROW, "combiner": "best"}, 400, "unknown combiner 'best'"),
    ("unknown version", {"rows": ROW, "version": 9}, 404, "has no version 9"),
    ("unknown field", {"rows": ROW, "colour": 1}, 422, "invalid field 'colour'"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "message"), V1_CASES, ids=[c[0] for c in V1_CASES]
)
def test_v1_bad_requests(client, case, body, status, message):
    response = client.post("/v1/ensembles/toy/predict", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert client.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize(
    ("case", "path", "content", "status", "message"),
    [
        ("nan", "/v1/ensembles/toy/predict", b'{"rows": [[NaN, 1, 2, 3]]}', 400, "NaN or infinite"),
        ("malformed JSON", "/v1/ensembles/toy/predict", b'{"rows": [[1, 2', 422, "malformed JSON"),
        (
            "unknown ensemble",
            "/v1/ensembles/nope/predict",
            b'{"rows": [[1,2,3,4]]}',
            404,
            "ensemble 'nope' not found",
        ),
        (
            "invalid name",
            "/v1/ensembles/Bad.Name/predict",
            b'{"rows": [[1,2,3,4]]}',
            400,
            "invalid ensemble name 'Bad.Name'",
        ),
        ("oversized body", "/v1/ensembles/toy/predict", b" " * 70000, 413, "larger than the limit"),
    ],
)
def test_v1_bad_raw_bodies(client, case, path, content, status, message):
    response = client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def nested(depth: int) -> bytes:
    return b'{"inputs": [' + b"[" * depth + b"]" * depth + b"]}"


X2 = np.zeros((2, 4), np.float32)
NAN = np.array([[0, np.nan, 0, 0]], np.float32)

V2_CASES = [
    (
        "wrong shape",
        INFER,
        v2([json_input([0.0] * 16, (2, 8))]),
        None,
        400,
        "unexpected shape for input 'input' for model 'toy'. Expected [-1,4], got [2,8]",
    ),
    (
        "wrong dtype",
        INFER,
        v2([json_input([0.0] * 4, datatype="FP64")]),
        None,
        400,
        "inference input 'input' data-type is 'FP64', but model 'toy' expects 'FP32'",
    ),
    (
        "unknown datatype",
        INFER,
        v2([json_input([0.0] * 4, datatype="FP128")]),
        None,
        400,
        "unknown datatype 'FP128'",
    ),
    (
        "strings as data",
        INFER,
        v2([json_input(["1", "2", "3", "4"])]),
        None,
        400,
        "must hold FP32 numbers",
    ),
    (
        "value count",
        INFER,
        v2([json_input([0.0] * 3)]),
        None,
        400,
        "has 3 values but shape [1, 4] needs 4",
    ),
    ("nan in binary", INFER, *binary_body(NAN), 400, "NaN or infinite values"),
    ("empty batch", INFER, v2([json_input([], (0, 4))]), None, 400, "empty batch"),
    (
        "batch over limit",
        INFER,
        v2([json_input([0.0] * 260, (65, 4))]),
        None,
        400,
        "over the limit of 64 rows",
    ),
    ("malformed JSON", INFER, b'{"inputs": [', None, 400, "malformed JSON"),
    ("not an object", INFER, b"[1, 2]", None, 400, "must be a JSON object"),
    ("no inputs", INFER, b'{"inputs": []}', None, 400, "'inputs' must be a non-empty list"),
    ("oversized body", INFER, b" " * 70000, None, 413, "larger than the limit"),
    (
        "gzip bomb",
        INFER,
        gzip.compress(b" " * 200000),
        {"Content-Encoding": "gzip"},
        413,
        "decompressed request body is larger",
    ),
    ("bad gzip", INFER, b"not gzip", {"Content-Encoding": "gzip"}, 400, "not valid gzip data"),
    ("unknown ensemble", "/v2/models/nope/infer", v2(), None, 404, "ensemble 'nope' not found"),
    ("unknown version", "/v2/models/toy/versions/9/infer", v2(), None, 404, "has no version 9"),
    (
        "bad version",
        "/v2/models/toy/versions/x1/infer",
        v2(),
        None,
        400,
        "version must be a positive integer",
    ),
    (
        "unknown combiner",
        INFER,
        v2(parameters={"combiner": "best"}),
        None,
        400,
        "unknown combiner 'best'",
    ),
    (
        "unknown output",
        INFER,
        v2(outputs=[{"name": "logits"}]),
        None,
        400,
        "unexpected inference output 'logits' for model 'toy'",
    ),
    (
        "unknown input",
        INFER,
        v2([json_input([0.0] * 4, name="x")]),
        None,
        400,
        "unexpected inference input 'x' for model 'toy'",
    ),
    (
        "duplicate outputs",
        INFER,
        v2(outputs=[{"name": "label"}, {"name": "label"}]),
        None,
        400,
        "duplicate output name 'label'",
    ),
    ("lying header length", INFER, binary_body(X2)[0], {HEADER: "10"}, 400, "malformed JSON"),
    (
        "huge header length",
        INFER,
        binary_body(X2)[0],
        {HEADER: str(2**62)},
        400,
        "Inference-Header-Content-Length is 4611686018427387904 but the body has",
    ),
    (
        "non-numeric header length",
        INFER,
        binary_body(X2)[0],
        {HEADER: "-5"},
        400,
        "must be a non-negative integer",
    ),
    (
        "binary size mismatch",
        INFER,
        binary_body(X2)[0][:-4],
        binary_body(X2)[1],
        400,
        "claims 32 bytes of binary data but only 28 remain",
    ),
    (
        "trailing bytes",
        INFER,
        binary_body(X2)[0] + b"xxxx",
        binary_body(X2)[1],
        400,
        "4 bytes of binary data after the JSON header are not claimed",
    ),
    (
        "overflowing element count",
        INFER,
        v2([json_input([0.0], (2**62, 4))]),
        None,
        400,
        "18446744073709551616 elements",
    ),
    (
        "negative dimension",
        INFER,
        v2([json_input([0.0] * 4, (-1, 4))]),
        None,
        400,
        "negative dimension",
    ),
    ("nesting past 100", INFER, nested(101), None, 400, "nests deeper than 100 levels"),
    ("unknown route", "/v2/models/toy/explain", v2(), None, 404, "Not Found"),
]


@pytest.mark.parametrize(
    ("case", "path", "content", "headers", "status", "message"),
    V2_CASES,
    ids=[c[0] for c in V2_CASES],
)
def test_v2_bad_requests(client, case, path, content, headers, status, message):
    response = client.post(path, content=content, headers=headers or {})
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and message in body["error"]
    assert client.get("/v2/health/live").status_code == 200


def test_v2_not_found_and_method_errors_are_json(client):
    assert client.get("/v2/models/nope").json() == {
        "error": client.get("/v2/models/nope").json()["error"]
    }
    response = client.get(INFER)
    assert response.status_code == 405 and "error" in response.json()
    assert client.get("/v2/models/nope/ready").status_code == 400
