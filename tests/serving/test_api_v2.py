"""The /v2 Open Inference Protocol with NVIDIA's stock tritonclient on a trained ensemble."""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from serving_fixtures import LiveServer, publish_corrupt

from ensembles.heldout import HeldoutPredictions
from ensembles.store import ModelStore
from tests.synthetic_ensembles import publish_synthetic


@pytest.fixture(scope="module")
def triton_client(trained_server):
    client = triton.InferenceServerClient(url=trained_server.address)
    yield client
    client.close()


@pytest.fixture(scope="module")
def digits_rows(trained_store):
    heldout = HeldoutPredictions.load(trained_store / "digits" / "1" / "heldout.npz")
    return heldout.test.X[:8].astype(np.float32)


def infer_input(X: np.ndarray) -> triton.InferInput:
    entry = triton.InferInput("input", list(X.shape), "FP32")
    entry.set_data_from_numpy(X)  # binary by default
    return entry


def test_server_health_and_metadata(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]
    assert triton_client.is_model_ready("digits")
    assert triton_client.is_model_ready("digits", "1")
    assert not triton_client.is_model_ready("digits", "9")
    meta = triton_client.get_model_metadata("digits")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["variance"]["shape"] == [-1, 10]
    assert outputs["mutual_information"]["shape"] == [-1]
    assert outputs["member_outputs"]["shape"] == [3, -1, 10]
    assert meta["versions"] == ["1"]


#: Two requests may run in different micro-batches, and onnxruntime's kernels may round the
#: last float32 bits differently for another batch size; the values agree far below that.
SAME_FLOAT32 = {"rtol": 1e-5, "atol": 1e-7}


def test_default_infer_matches_v1_numbers(triton_client, trained_server, digits_rows):
    result = triton_client.infer("digits", [infer_input(digits_rows)], request_id="r1")
    assert result.get_response()["id"] == "r1"
    with trained_server.client() as http:
        v1 = http.post("/v1/ensembles/digits/predict", json={"rows": digits_rows.tolist()}).json()
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        np.array(v1["predictions"]["probabilities"], "f4"),
        **SAME_FLOAT32,
    )
    probabilities = np.array(v1["predictions"]["probabilities"])
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5  # elsewhere float32 rounding may flip a tie
    np.testing.assert_array_equal(
        result.as_numpy("label")[clear], np.array(v1["predictions"]["class_index"])[clear]
    )
    for name in ("variance", "predictive_entropy", "mutual_information", "agreement"):
        np.testing.assert_allclose(
            result.as_numpy(name), np.array(v1["uncertainty"][name], "f4"), **SAME_FLOAT32
        )
    assert result.as_numpy("member_outputs") is None  # only when asked for


def test_member_outputs_and_combiner_parameter(triton_client, trained_server, digits_rows):
    outputs = [triton.InferRequestedOutput(n) for n in ("probabilities", "member_outputs")]
    result = triton_client.infer(
        "digits",
        [infer_input(digits_rows)],
        outputs=outputs,
        parameters={"combiner": "weight_average"},
    )
    assert result.get_response()["parameters"]["combiner"] == "weight_average"
    assert result.as_numpy("member_outputs").shape == (3, 8, 10)
    with trained_server.client() as http:
        v1 = http.post(
            "/v1/ensembles/digits/predict",
            json={"rows": digits_rows.tolist(), "combiner": "weight_average", "members": True},
        ).json()
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        np.array(v1["predictions"]["probabilities"], "f4"),
        **SAME_FLOAT32,
    )
    np.testing.assert_allclose(
        result.as_numpy("member_outputs"), np.array(v1["members"]["outputs"], "f4"), **SAME_FLOAT32
    )


def test_compressed_requests_and_responses_and_versioned_infer(triton_client, digits_rows):
    plain = triton_client.infer("digits", [infer_input(digits_rows)])
    for request_algo, response_algo in (("gzip", "deflate"), ("deflate", "gzip")):
        result = triton_client.infer(
            "digits",
            [infer_input(digits_rows)],
            model_version="1",
            request_compression_algorithm=request_algo,
            response_compression_algorithm=response_algo,
        )
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), plain.as_numpy("probabilities"), **SAME_FLOAT32
        )


def test_regression_with_json_tensors(trained_server):
    X = np.zeros((2, 10), np.float32)
    entry = triton.InferInput("input", [2, 10], "FP32")
    entry.set_data_from_numpy(X, binary_data=False)
    outputs = [
        triton.InferRequestedOutput(name, binary_data=False)
        for name in ("value", "total_variance", "member_variances")
    ]
    client = triton.InferenceServerClient(url=trained_server.address)
    try:
        result = client.infer("diabetes", [entry], outputs=outputs)
    finally:
        client.close()
    assert result.as_numpy("value").shape == (2, 1)
    assert (result.as_numpy("total_variance") > 0).all()
    assert result.as_numpy("member_variances").shape[1:] == (2, 1)


def test_raw_json_request_and_gzip_body(trained_server):
    request = {
        "inputs": [{"name": "input", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}],
        "outputs": [{"name": "value"}],
    }
    with trained_server.client() as http:
        response = http.post(
            "/v2/models/diabetes/infer",
            content=gzip.compress(orjson.dumps(request)),
            headers={"Content-Encoding": "gzip"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "diabetes" and body["model_version"] == "1"
    assert body["outputs"][0]["name"] == "value" and body["outputs"][0]["shape"] == [1, 1]


def test_repository_index_lists_every_version_or_only_the_ready_ones(tmp_path):
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    refused = publish_corrupt(store, "toy")  # the server falls back to version 1
    with LiveServer(store=store.root, poll_interval_s=0) as live, live.client() as http:
        every = http.post("/v2/repository/index")
        assert every.status_code == 200
        states = {(e["version"], e["state"]) for e in every.json()}
        assert states == {("1", "READY"), (str(refused), "UNAVAILABLE")}
        assert "reason" in next(e for e in every.json() if e["state"] == "UNAVAILABLE")
        ready = http.post("/v2/repository/index", json={"ready": True})
        assert ready.json() == [{"name": "toy", "version": "1", "state": "READY"}]
        assert http.post("/v2/repository/index", json={"ready": False}).json() == every.json()
        wrong = http.post("/v2/repository/index", json={"ready": "yes"})
        assert wrong.status_code == 400
        assert wrong.json() == {"error": "'ready' must be true or false; got 'yes'"}
        bad_json = http.post("/v2/repository/index", content=b"{")
        assert bad_json.status_code == 400 and bad_json.json()["error"].startswith("malformed")
