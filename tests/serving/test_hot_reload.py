"""Hot reload under concurrent load: no failed request across a swap; corrupt versions refused."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from serving_fixtures import LiveServer, publish_corrupt

from ensembles.store import ModelStore
from tests.synthetic_ensembles import publish_synthetic

V2_BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1] * 4}]}
ROWS = {"rows": [[0.5, -0.5, 1.0, 0.0]]}


def hammer(url: str, stop: threading.Event) -> tuple[list[int], list[str]]:
    """Predict in a loop until ``stop``; return the versions seen and every failure."""
    versions, failures = [], []
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            try:
                response = http.post("/v1/ensembles/hot/predict", json=ROWS)
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if response.status_code == 200:
                versions.append(response.json()["version"])
            else:
                failures.append(f"{response.status_code} {response.text}")
    return versions, failures


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_swap_under_load_then_refuse_a_corrupt_version(tmp_path, caplog):
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "hot", seed=1)
    with LiveServer(store=store.root, poll_interval_s=0.1) as live, live.client() as http:
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(hammer, live.url, stop) for _ in range(6)]
            time.sleep(0.5)
            publish_synthetic(store, "hot", seed=2)  # version 2, picked up by polling
            wait_for(lambda: http.get("/v1/ensembles/hot").json()["version"] == 2)
            time.sleep(0.5)
            stop.set()
            results = [future.result() for future in futures]
        versions = [v for seen, _ in results for v in seen]
        failures = [f for _, failed in results for f in failed]
        assert failures == []
        assert {1, 2} <= set(versions) and versions.count(2) > 0

        with caplog.at_level(logging.ERROR, logger="serving.registry"):
            bad = publish_corrupt(store, "hot")
            reloaded = http.post("/v1/admin/reload").json()
        states = {s["version"]: s for s in reloaded["hot"]}
        assert states[bad]["state"] == "refused"
        assert states[bad]["reason"].startswith(f"hot/{bad}/members/m000.onnx is corrupt")
        assert str(tmp_path) not in str(reloaded)
        assert f"refused hot version {bad}" in caplog.text
        info = http.get("/v1/ensembles/hot").json()
        assert info["version"] == 2
        assert [s["state"] for s in info["versions"]] == ["loaded", "loaded", "refused"]
        # V2 metadata lists the versions a request may name: not the refused one.
        assert http.get("/v2/models/hot").json()["versions"] == ["1", "2"]
        assert http.post("/v1/ensembles/hot/predict", json=ROWS).json()["version"] == 2
        response = http.post("/v1/ensembles/hot/predict", json={**ROWS, "version": bad})
        assert response.status_code == 409 and "was refused" in response.json()["error"]
        assert 'ensembles_version_refusals_total{ensemble="hot"} 1.0' in http.get("/metrics").text


def test_v2_metadata_lists_versions_that_load_on_demand(tmp_path):
    store = ModelStore(tmp_path / "store")
    for seed in (1, 2, 3):
        publish_synthetic(store, "hot", seed=seed)
    live = LiveServer(store=store.root, poll_interval_s=0, max_versions=1)
    with live, live.client() as http:
        states = [s["state"] for s in http.get("/v1/ensembles/hot").json()["versions"]]
        versions = http.get("/v2/models/hot").json()["versions"]
        assert states == ["unloaded", "unloaded", "loaded"] and versions == ["1", "2", "3"]
        assert http.post("/v2/models/hot/versions/1/infer", json=V2_BODY).status_code == 200


def test_a_version_that_loads_on_demand_is_ready_and_a_refused_one_says_why(tmp_path):
    """tritonclient's ``is_model_ready(name, version)`` before pinning requests to an older
    version: the probe loads it, as the inference request would; a refused one answers 400
    with the reason."""
    store = ModelStore(tmp_path / "store")
    for seed in (1, 2):
        publish_synthetic(store, "hot", seed=seed)
    corrupt = publish_corrupt(store, "hot")
    publish_synthetic(store, "hot", seed=4)
    live = LiveServer(store=store.root, poll_interval_s=0)
    with live, live.client() as http:
        states = {
            s["version"]: s["state"] for s in http.get("/v1/ensembles/hot").json()["versions"]
        }
        assert states[1] == "unloaded"
        ready = http.get("/v2/models/hot/versions/1/ready")
        assert ready.status_code == 200 and ready.json() == {"name": "hot", "ready": True}
        states = {
            s["version"]: s["state"] for s in http.get("/v1/ensembles/hot").json()["versions"]
        }
        assert states[1] == "loaded"
        refused = http.get(f"/v2/models/hot/versions/{corrupt}/ready")
        assert refused.status_code == 400
        assert refused.json()["error"].startswith(
            f"model 'hot' version {corrupt} is not ready: 'hot' version {corrupt} was refused: "
            f"hot/{corrupt}/members/m000.onnx is corrupt"
        )


def test_with_a_token_only_a_probe_that_carries_it_loads_a_version(tmp_path):
    """Loading is an inference request's work: an anonymous probe of a server with a token
    is answered from what is loaded, and loads nothing."""
    store = ModelStore(tmp_path / "store")
    for seed in (1, 2):
        publish_synthetic(store, "hot", seed=seed)
    live = LiveServer(store=store.root, poll_interval_s=0, token="s3cret")
    with live, live.client() as http:
        anonymous = http.get("/v2/models/hot/versions/1/ready")
        assert anonymous.status_code == 400
        assert "it is not loaded (a request with the server's token" in anonymous.json()["error"]
        states = {
            s["version"]: s["state"] for s in http.get("/v1/ensembles/hot").json()["versions"]
        }
        assert states[1] == "unloaded"
        assert http.get("/v2/models/hot/versions/2/ready").status_code == 200  # loaded
        signed = {"Authorization": "Bearer s3cret"}
        assert http.get("/v2/models/hot/versions/1/ready", headers=signed).status_code == 200
