"""Every bad request gets its 4xx and a JSON error naming the problem; the server stays live."""

from __future__ import annotations

import asyncio
import gzip
import re
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import orjson
import pytest
from serving_fixtures import LiveServer

from serving.app import create_app
from serving.errors import InvalidRequestError
from serving.settings import ServingSettings
from serving.v2_codec import TensorMeta, choose_encoding, decode_infer_request

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
    ("version zero", {"rows": ROW, "version": 0}, 422, "invalid field 'version'"),
    ("members not a boolean", {"rows": ROW, "members": "yes"}, 422, "invalid field 'members'"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "message"), V1_CASES, ids=[c[0] for c in V1_CASES]
)
def test_v1_bad_requests(client, case, body, status, message):
    response = client.post("/v1/ensembles/toy/predict", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert client.get("/v2/health/live").status_code == 200


def test_an_unknown_version_names_the_version_field(client):
    response = client.post("/v1/ensembles/toy/predict", json={"rows": ROW, "version": 99})
    assert response.status_code == 404
    assert response.json() == {
        "error": "ensemble 'toy' has no version 99; available versions: [1]",
        "field": "version",
    }
    infer = client.post("/v2/models/toy/versions/99/infer", content=v2())
    assert infer.status_code == 404 and list(infer.json()) == ["error"]  # V2: error only


@pytest.mark.parametrize(
    ("case", "path", "content", "status", "message"),
    [
        ("nan", "/v1/ensembles/toy/predict", b'{"rows": [[NaN, 1, 2, 3]]}', 400, "NaN or infinite"),
        (  # finite in JSON, infinite in float32: named as such, not as NaN alone
            "beyond float32",
            "/v1/ensembles/toy/predict",
            b'{"rows": [[1e39, 1, 2, 3]]}',
            400,
            "numbers beyond float32's range that became infinite",
        ),
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


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("identity", bytes)],
)
def test_v1_honours_content_encoding(client, encoding, compress):
    raw = orjson.dumps({"rows": ROW * 3})
    response = client.post(
        "/v1/ensembles/toy/predict",
        content=compress(raw),
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert response.status_code == 200, response.text
    assert response.json()["n_samples"] == 3


@pytest.mark.parametrize("path", ["/v1/ensembles/toy/predict", INFER])
def test_unsupported_content_encoding_is_415_naming_it(client, path):
    response = client.post(path, content=b"xx", headers={"Content-Encoding": "br"})
    assert response.status_code == 415, response.text
    assert response.json()["error"] == (
        "unsupported Content-Encoding 'br'; use gzip, deflate or none"
    )
    assert client.get("/v2/health/live").status_code == 200


def test_raw_deflate_and_zero_padded_gzip_are_read(client):
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for content, encoding in [
        (raw.compress(v2()) + raw.flush(), "deflate"),
        (gzip.compress(v2()) + b"\0" * 8, "gzip"),  # gzip(1) accepts trailing zeros
    ]:
        response = client.post(INFER, content=content, headers={"Content-Encoding": encoding})
        assert response.status_code == 200, response.text


def test_a_gzip_body_of_several_members_is_read_whole(client):
    body = v2([json_input([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]], (2, 4))])
    half = len(body) // 2  # RFC 1952: a gzip file is one or more members, one after another
    content = gzip.compress(body[:half]) + gzip.compress(body[half:])
    response = client.post(INFER, content=content, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"][0] == 2


def test_v1_bad_gzip_is_400(client):
    response = client.post(
        "/v1/ensembles/toy/predict", content=b"nope", headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("request body is not valid gzip data")


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
    (
        "beyond float32 in JSON",
        INFER,
        v2([json_input([1e39, 0.0, 0.0, 0.0])]),
        None,
        400,
        "numbers beyond float32's range that became infinite",
    ),
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
        "booleans among FP32 numbers",  # numpy alone would read true as 1.0
        INFER,
        v2([json_input([True, 2.0, 3.0, 4.0])]),
        None,
        400,
        "'data' of input 'input' must hold FP32 numbers",
    ),
    (
        "booleans among FP32 numbers, beside boolean parameters",
        INFER,
        v2(
            [json_input([[1.0, 2.0, 3.0, 4.0], [1.0, False, 3.0, 4.0]], (2, 4))],
            outputs=[{"name": "label", "parameters": {"binary_data": False}}],
            parameters={"binary_data_output": False},
        ),
        None,
        400,
        "'data' of input 'input' must hold FP32 numbers; got booleans among them",
    ),
    (
        "a boolean among FP32 numbers of a larger batch",  # tested in numpy, not on the list
        INFER,
        v2([json_input([[0.5, 2.0, 3.0, 4.0]] * 39 + [[0.5, 2.0, True, 4.0]], (40, 4))]),
        None,
        400,
        "'data' of input 'input' must hold FP32 numbers; got booleans among them",
    ),
    (
        "superscript digit as header length",  # str.isdigit() is true for it; int() is not
        INFER,
        binary_body(X2)[0],
        {HEADER: b"\xb2"},
        400,
        "must be a non-negative integer",
    ),
    (
        "gzip cut short",
        INFER,
        gzip.compress(v2())[:-8],
        {"Content-Encoding": "gzip"},
        400,
        "not valid gzip data: the stream is cut short",
    ),
    (
        "bytes after the gzip stream",
        INFER,
        gzip.compress(v2()) + b"GARBAGE",
        {"Content-Encoding": "gzip"},
        400,
        "not valid gzip data",
    ),
    (
        "bytes after the deflate stream",
        INFER,
        zlib.compress(v2()) + b"GARBAGE",
        {"Content-Encoding": "deflate"},
        400,
        "request body is not valid deflate data: bytes after the end of the stream",
    ),
    (
        "deflate cut short",
        INFER,
        zlib.compress(v2())[:-6],
        {"Content-Encoding": "deflate"},
        400,
        "request body is not valid deflate data: the stream is cut short",
    ),
    (
        "a header length of 5,000 digits",  # int() refuses strings of over 4,300 digits
        INFER,
        binary_body(X2)[0],
        {HEADER: "9" * 5000},
        400,
        "Inference-Header-Content-Length has 5000 digits but the body has",
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
    ("id not a string", INFER, v2(id=5), None, 400, "'id' must be a string"),
    (
        "combiner not a string",
        INFER,
        v2(parameters={"combiner": 3}),
        None,
        400,
        "parameter 'combiner' must be a string",
    ),
    (
        "binary_data_size against the shape",
        INFER,
        orjson.dumps(
            {"inputs": [{**json_input(None, (2, 4)), "parameters": {"binary_data_size": 8}}]}
        )
        + bytes(8),
        {
            HEADER: str(
                len(
                    orjson.dumps(
                        {
                            "inputs": [
                                {**json_input(None, (2, 4)), "parameters": {"binary_data_size": 8}}
                            ]
                        }
                    )
                )
            )
        },
        400,
        "input 'input' has binary_data_size 8 but shape [2, 4] of FP32 needs 32 bytes",
    ),
    (
        "negative binary_data_size",
        INFER,
        v2([{**json_input([0.0] * 4), "parameters": {"binary_data_size": -1}}]),
        None,
        400,
        "binary_data_size of input 'input' must be a non-negative integer",
    ),
    ("unsupported encoding", INFER, v2(), {"Content-Encoding": "br"}, 415, "Content-Encoding 'br'"),
    ("bad deflate", INFER, b"nope", {"Content-Encoding": "deflate"}, 400, "not valid deflate"),
    (
        "ragged data",
        INFER,
        v2([json_input([[0.0] * 4, [0.0] * 3], (2, 4))]),
        None,
        400,
        "'data' of input 'input' is ragged",
    ),
    (
        "duplicate input",
        INFER,
        v2([json_input([0.0] * 4), json_input([0.0] * 4)]),
        None,
        400,
        "input 'input' appears twice in the request",
    ),
    ("input without a name", INFER, v2([{"shape": [1, 4]}]), None, 400, "needs a 'name' string"),
    (
        "input without a shape",
        INFER,
        v2([{"name": "input", "datatype": "FP32", "data": [0.0] * 4}]),
        None,
        400,
        "input 'input' needs 'shape': a list of integers",
    ),
    (
        "neither data nor binary",
        INFER,
        v2([{"name": "input", "shape": [1, 4], "datatype": "FP32"}]),
        None,
        400,
        "input 'input' has neither 'data' nor binary_data_size",
    ),
    (
        "outputs not a list",
        INFER,
        v2(outputs={"name": "label"}),
        None,
        400,
        "'outputs' must be a list",
    ),
    (
        "output without a name",
        INFER,
        v2(outputs=[{"binary_data": True}]),
        None,
        400,
        "every requested output needs a 'name' string",
    ),
    (
        "binary_data_output not a boolean",
        INFER,
        v2(parameters={"binary_data_output": "yes"}),
        None,
        400,
        "parameter 'binary_data_output' must be a boolean",
    ),
    (
        "binary_data not a boolean",
        INFER,
        v2(outputs=[{"name": "label", "parameters": {"binary_data": 1}}]),
        None,
        400,
        "'binary_data' of output 'label' must be a boolean",
    ),
    (
        "parameters not an object",
        INFER,
        v2(parameters=[1]),
        None,
        400,
        "'parameters' must be an object",
    ),
    (
        "input parameters not an object",
        INFER,
        v2([{**json_input([0.0] * 4), "parameters": [1]}]),
        None,
        400,
        "'parameters' of input 'input' must be an object",
    ),
    *(
        (f"parameters {value!r}", INFER, v2(parameters=value), None, 400, message)
        for value, message in [
            ([], "'parameters' must be an object"),
            (False, "'parameters' must be an object"),
            ("", "'parameters' must be an object"),
        ]
    ),
    (
        "falsy input parameters",
        INFER,
        v2([{**json_input([0.0] * 4), "parameters": 0}]),
        None,
        400,
        "'parameters' of input 'input' must be an object",
    ),
    (
        "falsy output parameters",
        INFER,
        v2(outputs=[{"name": "probabilities", "parameters": []}]),
        None,
        400,
        "'parameters' of output 'probabilities' must be an object",
    ),
    (
        "Triton's classification extension (class_count)",
        INFER,
        v2(outputs=[{"name": "probabilities", "parameters": {"classification": 3}}]),
        None,
        400,
        "output 'probabilities' asks for classification (class_count), which this server "
        "does not support",
    ),
    (
        "data that is no array",
        INFER,
        v2([json_input(0.5, (1, 1))]).replace(b"[1,1]", b"[1,4]"),
        None,
        400,
        "input 'input' has 'data' that is no array",
    ),
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
    missing = client.get("/v2/models/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "ensemble 'nope' not found in the model store (known ensembles: reg, toy)"
    }
    response = client.get(INFER)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json() == {"error": "Method Not Allowed"}
    assert client.get("/v2/models/nope/ready").status_code == 400


def test_brackets_inside_strings_do_not_count_as_nesting(client):
    request_id = "[" * 150 + '\\"{'
    response = client.post(INFER, content=v2(id=request_id))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == request_id


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT32", "[4294967299, 0]", "holds 4294967299, outside the range of INT32"),
        ("UINT8", "[259, 0]", "holds 259, outside the range of UINT8 (0 to 255)"),
        ("UINT8", "[-1, 0]", "holds -1, outside the range of UINT8 (0 to 255)"),
        ("INT8", "[200, 0]", "holds 200, outside the range of INT8 (-128 to 127)"),
        ("INT64", "[9223372036854775809, 0]", "must hold INT64 integers; got numbers with a"),
        ("INT64", "[9223372036854775809]", "holds 9223372036854775809, outside the range"),
        ("INT32", "[1.5, 2]", "must hold INT32 integers; got numbers with a fraction"),
        ("BOOL", "[1, 0]", "must hold BOOL booleans; got numbers"),
    ],
)
def test_json_integers_the_datatype_cannot_hold_are_refused_not_wrapped(
    datatype: str, data: str, message: str
) -> None:
    """numpy's cast wraps around (259 as UINT8 is 3): the codec refuses it instead."""
    count = data.count(",") + 1
    body = (
        f'{{"inputs": [{{"name": "a", "shape": [{count}, 1], "datatype": "{datatype}", '
        f'"data": {data}}}]}}'
    ).encode()
    meta = {"a": TensorMeta(datatype, (-1, 1), column=True)}
    with pytest.raises(InvalidRequestError, match=re.escape(message)):
        decode_infer_request(body, None, "m", meta, set(), max_elements=100)


def test_json_integers_in_range_keep_their_values() -> None:
    body = b'{"inputs": [{"name": "a", "shape": [2, 1], "datatype": "INT64", "data": [-5, 7]}]}'
    meta = {"a": TensorMeta("INT64", (-1, 1), column=True)}
    decoded = decode_infer_request(body, None, "m", meta, set(), max_elements=100)
    assert decoded.inputs["a"].dtype == np.int64
    assert decoded.inputs["a"].reshape(-1).tolist() == [-5, 7]


def test_input_count_must_match_the_model():
    meta = TensorMeta("FP32", (-1, 4))
    body = v2([json_input([0.0] * 4, name="a")])
    with pytest.raises(
        InvalidRequestError,
        match=r"^expected 2 inputs but got 1 inputs for model 'm': missing 'b'$",
    ):
        decode_infer_request(body, None, "m", {"a": meta, "b": meta}, set(), max_elements=100)


def test_model_readiness_names_the_model_and_version(client):
    for path, message in [
        ("/v2/models/nope/ready", "model 'nope' is not ready"),
        (
            "/v2/models/toy/versions/9/ready",
            "model 'toy' version 9 is not ready: ensemble 'toy' has no version 9; "
            "available versions: [1]",
        ),
    ]:
        response = client.get(path)
        assert response.status_code == 400
        assert response.json() == {"error": message}


def test_readiness_before_the_store_is_loaded(synthetic_store):
    app = create_app(ServingSettings(store=synthetic_store.root, poll_interval_s=0))

    async def probe() -> tuple[httpx.Response, httpx.Response]:
        # ASGITransport does not run the lifespan, so the store is never loaded.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get("/v2/health/ready"), await http.get("/v2/models/toy")

    ready, model = asyncio.run(probe())
    assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
    assert ready.json() == {"error": "the server is still loading the model store"}
    assert model.status_code == 503
    assert model.json() == {"error": "'toy' is not loaded yet; retry shortly"}


def test_full_queue_answers_503_and_the_server_stays_live(synthetic_store):
    rows = {"rows": [[0.1, 0.2, 0.3, 0.4]] * 8}
    with (
        LiveServer(  # batches in the worker thread, so the held one leaves the loop free
            store=synthetic_store.root,
            poll_interval_s=0,
            max_batch_rows=8,
            max_queue_rows=8,
            inline_rows=0,
        ) as live,
        live.client() as http,
    ):
        runtime = live.app.state.registry.current("toy")
        gate, entered = threading.Event(), threading.Event()
        on_batch = runtime._on_batch

        def held(n_rows: int) -> None:  # hold the member run until the test lets it go
            entered.set()
            gate.wait(30)
            on_batch(n_rows)

        runtime._on_batch = held
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(http.post, "/v1/ensembles/toy/predict", json=rows)
            assert entered.wait(30)
            with live.client() as other:
                refused = other.post("/v1/ensembles/toy/predict", json=rows)
                refused_v2 = other.post(INFER, content=v2([json_input([0.0] * 4)]))
            gate.set()
            assert first.result(timeout=30).status_code == 200
        for response in (refused, refused_v2):
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert list(response.json()) == ["error"]
            assert response.json()["error"] == (
                "'toy' has 8 rows in flight (limit 8); retry shortly"
            )
        assert http.get("/v2/health/live").status_code == 200
        assert http.post("/v1/ensembles/toy/predict", json=rows).status_code == 200


def test_an_empty_outputs_list_asks_for_every_output_as_triton_answers(client):
    every = client.post(INFER, content=v2()).json()["outputs"]
    none_named = client.post(INFER, content=v2(outputs=[])).json()["outputs"]
    assert [o["name"] for o in none_named] == [o["name"] for o in every]
    assert len(every) > 1


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, None),
        ("gzip", "gzip"),
        ("deflate;q=1, gzip;q=0.1", "deflate"),  # the higher q wins, not the first named
        ("gzip;q=0, deflate;q=0.5", "deflate"),
        ("*", "gzip"),
        ("*;q=0.2, identity", None),  # identity preferred
        ("br, gzip;q=0", None),
        ("gzip, deflate, identity", "gzip"),  # a tie: gzip
    ],
)
def test_the_response_coding_follows_the_client_s_preference(accept, chosen):
    assert choose_encoding(accept) == chosen


@pytest.mark.parametrize(
    "content_type", ["text/csv", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"]
)
def test_v1_bodies_declared_as_something_else_than_json_get_415(client, content_type):
    body = orjson.dumps({"rows": ROW})
    response = client.post(
        "/v1/ensembles/toy/predict", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    media = content_type.partition(";")[0]
    assert response.json() == {
        "error": f"Content-Type '{media}' is not JSON: send the body as application/json "
        "(curl: -H 'Content-Type: application/json')"
    }


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/json; charset=utf-8"}])
def test_v1_bodies_declared_as_json_or_not_at_all_are_read(client, headers):
    body = orjson.dumps({"rows": ROW})
    response = client.post("/v1/ensembles/toy/predict", content=body, headers=headers)
    assert response.status_code == 200, response.text
