"""The optional bearer token (predict and admin routes, not metadata), and names that escape."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import tritonclient.http as triton
from serving_fixtures import TOKEN, LiveServer
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def guarded(synthetic_store):
    with LiveServer(store=synthetic_store.root, poll_interval_s=0, token=TOKEN) as live:
        yield live


def test_predict_and_reload_need_the_token(guarded):
    body = {"rows": [[0.0] * 4]}
    with guarded.client() as http:
        response = http.post("/v1/ensembles/toy/predict", json=body)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "missing or wrong bearer token" in response.json()["error"]
        wrong = {"Authorization": "Bearer nope"}
        assert http.post("/v1/admin/reload", headers=wrong).status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert http.post("/v1/ensembles/toy/predict", json=body, headers=good).status_code == 200
        assert http.post("/v1/admin/reload", headers=good).status_code == 200
        assert http.get("/v1/ensembles/toy").status_code == 200  # metadata stays open


def test_tritonclient_sends_the_token_as_a_header(guarded):
    client = triton.InferenceServerClient(url=guarded.address)
    entry = triton.InferInput("input", [1, 4], "FP32")
    entry.set_data_from_numpy(np.zeros((1, 4), np.float32))
    try:
        with pytest.raises(InferenceServerException, match="missing or wrong bearer token"):
            client.infer("toy", [entry])
        result = client.infer("toy", [entry], headers={"Authorization": f"Bearer {TOKEN}"})
        assert result.as_numpy("probabilities").shape == (1, 3)
        assert client.is_model_ready("toy")
    finally:
        client.close()


def _raw_get(port: int, path: str) -> tuple[int, dict]:
    """GET ``path`` byte for byte (an HTTP client would normalise ``..`` away first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, body = answer.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("name", ["..", "%2E%2E", "Bad.Name", "TOY", "toy%00"])
@pytest.mark.parametrize("route", ["/v1/ensembles/{}", "/v2/models/{}"])
def test_invalid_and_traversal_names_are_refused_by_the_route(server, route, name):
    status, body = _raw_get(server.settings.port, route.format(name))
    assert status == 400, body
    assert body["error"].startswith("invalid ensemble name"), body


def test_encoded_slashes_match_no_route(server):
    status, body = _raw_get(server.settings.port, "/v1/ensembles/..%2F..%2Fetc")
    assert (status, body) == (404, {"error": "Not Found"})
