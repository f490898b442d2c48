"""The /v1 REST API over real HTTP: listing, info, predictions with uncertainty, OpenAPI."""

from __future__ import annotations

import numpy as np
from serving_fixtures import LiveServer

from serving.runtime import EnsembleRuntime


def test_list_ensembles_shows_served_versions(client):
    body = client.get("/v1/ensembles").json()
    by_name = {item["name"]: item for item in body["ensembles"]}
    assert by_name["toy"] == {
        "name": "toy",
        "version": 1,
        "task": "classification",
        "n_members": 3,
        "default_combiner": "mean",
    }
    assert by_name["reg"]["task"] == "regression"
    assert body["store"] == {"exists": True, "ensembles": 2}


def test_info_describes_members_combiners_and_versions(client):
    info = client.get("/v1/ensembles/toy").json()
    assert info["features"] == ["x0", "x1", "x2", "x3"] and info["classes"] == ["c0", "c1", "c2"]
    assert info["strategy"]["name"] == "synthetic" and len(info["members"]) == 3
    assert set(info["combiners"]) == {"mean", "vote", "weight_average"}
    assert info["combiners"]["mean"]["test_metrics"] == {"score": 0.5}
    assert info["default_combiner"] == "mean"
    assert info["versions"] == [
        {
            "version": 1,
            "state": "loaded",
            "current": True,
            "reason": None,
            "since": info["versions"][0]["since"],
        }
    ]
    assert "mutual_information" in info["uncertainty"]


def test_predict_returns_labels_probabilities_and_uncertainty(client, synthetic_store, rows):
    expected = EnsembleRuntime.load(synthetic_store, "toy", 1).predict(rows, members=True)
    response = client.post(
        "/v1/ensembles/toy/predict", json={"rows": rows.tolist(), "members": True}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ensemble"] == "toy" and body["version"] == 1 and body["n_samples"] == 5
    predictions = body["predictions"]
    assert predictions["label"] == [f"c{k}" for k in expected.labels]
    np.testing.assert_allclose(predictions["probabilities"], expected.combined, rtol=1e-6)
    for name, values in expected.uncertainty.items():
        np.testing.assert_allclose(body["uncertainty"][name], values, rtol=1e-5, atol=1e-7)
    assert body["members"]["ids"] == ["m000", "m001", "m002"]
    np.testing.assert_allclose(body["members"]["outputs"], expected.member_outputs, rtol=1e-6)


def test_predict_options_combiner_version_and_no_uncertainty(client, rows):
    body = client.post(
        "/v1/ensembles/toy/predict",
        json={
            "rows": rows.tolist(),
            "combiner": "weight_average",
            "version": 1,
            "uncertainty": False,
        },
    ).json()
    assert body["combiner"] == "weight_average" and body["uncertainty"] == {}
    assert "members" not in body


def test_regression_predict_reports_value_and_interval(client, rows):
    body = client.post("/v1/ensembles/reg/predict", json={"rows": rows.tolist()}).json()
    value = np.array(body["predictions"]["value"])
    assert value.shape == (5, 2)
    assert (np.array(body["uncertainty"]["interval_upper"]) > value).all()
    assert set(body["uncertainty"]) >= {"aleatoric_variance", "total_variance"}


def test_openapi_documents_the_predict_request_with_examples(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["PredictRequest"]
    assert request["examples"][0]["combiner"] == "mean"
    assert "/v2/models/{name}/infer" in schema["paths"]


def test_openapi_documents_the_v2_infer_body_with_an_example(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["required"] == ["inputs"]
        example = body["example"]
        assert example["inputs"][0]["shape"] == [2, 4]
        assert example["parameters"] == {"combiner": "mean"}
    # the documented example is a valid request for the 4-feature 'toy' ensemble
    response = client.post("/v2/models/toy/infer", json=example)
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["probabilities", "variance"]


def test_missing_store_is_shown_and_served_empty(tmp_path):
    with LiveServer(store=tmp_path / "absent", poll_interval_s=0) as live, live.client() as http:
        body = http.get("/v1/ensembles").json()
    assert body["ensembles"] == []
    assert body["store"]["exists"] is False
    assert "python scripts/train.py --store DIR" in body["store"]["hint"]
    assert str(tmp_path) not in str(body)


def test_a_store_path_that_is_a_file_is_named_as_such(tmp_path):
    store = tmp_path / "store"
    store.write_text("not a folder")
    with LiveServer(store=store, poll_interval_s=0) as live, live.client() as http:
        body = http.get("/v1/ensembles").json()
    assert body["store"]["exists"] is False
    assert body["store"]["hint"].startswith("the model store path is a file, not a folder")
    assert str(tmp_path) not in str(body)
