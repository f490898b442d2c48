"""The optional bearer token: required on predict and admin routes, not on metadata."""

from __future__ import annotations

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


def test_path_traversal_names_are_rejected(client):
    for name in ("..", "Bad.Name", "a%2F..%2F..%2Fetc"):
        response = client.get(f"/v1/ensembles/{name}")
        assert response.status_code in (400, 404)
        assert "error" in response.json()
