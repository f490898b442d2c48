"""Serving from S3 (moto's server): train, publish, serve, hot swap; two servers, one store."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import uuid

import fsspec
import httpx
import pytest
from serving_fixtures import LiveServer, free_port

from ensembles.store import ModelStore
from serving.registry import EnsembleRegistry
from serving.settings import ServingSettings
from tests.conftest import tiny_request
from tests.synthetic_ensembles import publish_synthetic
from tests.test_object_store import publish_killed_at

POLL_S = 0.5


def served_version(http: httpx.Client, name: str) -> int | None:
    response = http.get(f"/v1/ensembles/{name}")
    return response.json()["version"] if response.status_code == 200 else None


def wait_for_version(clients: list[httpx.Client], name: str, version: int) -> None:
    """Wait until every client's server serves ``version`` of ``name`` (a hang guard of 60 s)."""
    deadline = time.monotonic() + 60
    while any(served_version(http, name) != version for http in clients):
        assert time.monotonic() < deadline, f"{name} version {version} was never served"
        time.sleep(0.02)


def test_train_publish_serve_and_hot_swap_on_s3(s3_store: str, tmp_path) -> None:
    from ensembles.training.pipeline import train_ensemble

    def train() -> int:
        request = tiny_request(
            tmp_path, dataset="wine", strategy="bagging", members=2, store=s3_store
        )
        return train_ensemble(request).version

    assert train() == 1
    with (
        LiveServer(store=s3_store, poll_interval_s=POLL_S) as one,
        LiveServer(store=s3_store, poll_interval_s=POLL_S) as two,
        one.client() as first,
        two.client() as second,
    ):
        clients = [first, second]
        wait_for_version(clients, "wine", 1)
        row = {"rows": [[0.0] * 13]}
        assert first.post("/v1/ensembles/wine/predict", json=row).json()["version"] == 1

        publish_killed_at(s3_store, "_commit", "wine")  # version 2: files and manifest, no checksum
        time.sleep(3 * POLL_S)
        for http in clients:
            info = http.get("/v1/ensembles/wine").json()
            assert info["version"] == 1 and [s["version"] for s in info["versions"]] == [1]

        assert train() == 3
        wait_for_version(clients, "wine", 3)
        for http in clients:
            assert http.post("/v1/ensembles/wine/predict", json=row).json()["version"] == 3
            states = {
                s["version"]: s["state"] for s in http.get("/v1/ensembles/wine").json()["versions"]
            }
            assert states == {1: "loaded", 3: "loaded"}
        body = first.get("/v1/ensembles").json()
        assert body["store"] == {"exists": True, "ensembles": 1}
        assert s3_store.split("/")[2] not in str(body)


def test_refusals_on_an_object_store_name_no_url_and_retry_when_objects_change(
    s3_store: str,
) -> None:
    store = ModelStore(s3_store)
    publish_synthetic(store, "toy", seed=1)
    publish_synthetic(store, "toy", seed=2)
    fs, path = fsspec.core.url_to_fs(f"{store.root}/toy/2/members/m000.onnx")
    good = fs.cat_file(path)
    fs.pipe_file(path, b"tampered")
    bucket = s3_store.split("/")[2]

    with (
        LiveServer(store=s3_store, poll_interval_s=POLL_S) as live,
        live.client() as http,
    ):
        wait_for_version([http], "toy", 1)
        info = http.get("/v1/ensembles/toy")
        state = {s["version"]: s for s in info.json()["versions"]}[2]
        assert state["state"] == "refused"
        assert state["reason"].startswith("toy/2/members/m000.onnx is corrupt: sha256")
        assert bucket not in info.text and "s3://" not in info.text
        row = {"rows": [[0.0] * 4]}
        assert http.post("/v1/ensembles/toy/predict", json=row).json()["version"] == 1

        fs.pipe_file(path, good)  # its fingerprint changes: tried again at the next scan
        wait_for_version([http], "toy", 2)
        assert http.post("/v1/ensembles/toy/predict", json=row).json()["version"] == 2


def test_latest_naming_a_damaged_committed_version_says_it_no_longer_verifies(
    s3_store: str,
) -> None:
    """A committed version whose manifest changed is no version on an object store (no
    reader accepts it); when ``latest`` names it, the server says so, not "no manifest"."""
    store = ModelStore(s3_store)
    publish_synthetic(store, "toy", seed=1)
    publish_synthetic(store, "toy", seed=2)
    fs, path = fsspec.core.url_to_fs(f"{store.root}/toy/2/manifest.json")
    fs.pipe_file(path, fs.cat_file(path) + b" ")

    with (
        LiveServer(store=s3_store, poll_interval_s=0) as live,
        live.client() as http,
    ):
        info = http.get("/v1/ensembles/toy").json()
        assert info["version"] == 1
        assert info["latest_error"] == (
            "latest names version 2, which no longer verifies: its manifest.json or "
            "manifest.sha256 changed since it was published (ensembles-store check names the "
            "problem)"
        )


@pytest.mark.parametrize("trouble", ["missing bucket", "unreachable endpoint"])
def test_a_store_out_of_reach_is_a_warning_and_the_server_stays_up(
    s3_endpoint: str, trouble: str, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    url = f"s3://absent-{uuid.uuid4().hex[:12]}/models"
    if trouble == "unreachable endpoint":
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": "http://127.0.0.1:9"})
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    registry = EnsembleRegistry(ServingSettings(store=url))

    async def scan_twice() -> None:
        with caplog.at_level(logging.WARNING, logger="serving.scanning"):
            await registry.refresh()
            await registry.refresh()
        await registry.close()

    asyncio.run(scan_twice())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once, not at every poll
    assert warnings[0].startswith(f"cannot look at the model store {url}: ")
    expected = "there is no bucket" if trouble == "missing bucket" else "Could not connect"
    assert expected in warnings[0]
    assert registry.ready and registry.names() == []
    info = registry.store_info()
    assert info["exists"] is False and "cannot be reached right now" in info["hint"]

    with LiveServer(store=url, poll_interval_s=0) as live, live.client() as http:
        assert http.get("/v1/ensembles").json()["store"]["exists"] is False
        assert http.get("/v2/health/live").status_code == 200


#: ``python -m serving`` with torch made unimportable: any ``import torch`` raises.
WITHOUT_TORCH = (
    "import runpy, sys\n"
    "sys.modules['torch'] = None\n"
    "runpy.run_module('serving', run_name='__main__', alter_sys=True)\n"
)


def test_serving_from_s3_needs_no_torch(s3_store: str) -> None:
    """Load from S3 and predict through /v1 and /v2 in a server where torch cannot load."""
    publish_synthetic(ModelStore(s3_store), "toy", seed=1)
    port = free_port()
    argv = [sys.executable, "-c", WITHOUT_TORCH, "--store", s3_store, "--workers", "1"]
    # the subprocess finds moto through FSSPEC_S3_ENDPOINT_URL (set by s3_endpoint)
    process = subprocess.Popen([*argv, "--port", str(port)], stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60  # a hang guard
            while True:
                try:
                    if served_version(http, "toy") == 1:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server never served toy"
                time.sleep(0.1)
            rows = [[0.1 * (i + j) for j in range(4)] for i in range(3)]
            for combiner in http.get("/v1/ensembles/toy").json()["combiners"]:
                v1 = http.post(
                    "/v1/ensembles/toy/predict",
                    json={"rows": rows, "combiner": combiner, "members": True},
                )
                assert v1.status_code == 200, (combiner, v1.text)
                assert v1.json()["version"] == 1
                entry = {"name": "input", "shape": [3, 4], "datatype": "FP32", "data": rows}
                v2 = http.post(
                    "/v2/models/toy/infer",
                    json={"inputs": [entry], "parameters": {"combiner": combiner}},
                )
                assert v2.status_code == 200, (combiner, v2.text)
                assert v2.json()["model_version"] == "1"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert b"torch" not in stderr, stderr.decode()[-4000:]
