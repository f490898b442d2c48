"""Prometheus metrics (traffic, batches, versions, variance, drift) and JSON log lines."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import orjson
import pytest
from serving_fixtures import LiveServer

from serving.logs import JsonFormatter


def test_metrics_cover_requests_batches_versions_variance_and_drift(client, rows):
    for _ in range(3):
        client.post("/v1/ensembles/toy/predict", json={"rows": rows.tolist()})
    shifted = (rows + 25.0).tolist()
    for _ in range(3):
        client.post("/v1/ensembles/toy/predict", json={"rows": shifted})
    client.post("/v2/models/toy/infer", content=b'{"inputs": []}')
    text = client.get("/metrics").text
    assert (
        'ensembles_requests_total{method="POST",route="/v2/models/{name}/infer",status="400"}'
    ) in text
    assert (
        'ensembles_requests_total{method="POST",route="/v1/ensembles/{name}/predict",status="200"}'
    ) in text
    assert 'ensembles_request_latency_seconds_bucket{le="0.005",route=' in text
    assert 'ensembles_request_rows_bucket{ensemble="toy",le="8.0"}' in text
    assert 'ensembles_batch_rows_count{ensemble="toy"}' in text
    assert 'ensembles_loaded_version{ensemble="toy"} 1.0' in text
    assert 'ensembles_prediction_variance_bucket{ensemble="toy",le="+Inf"}' in text
    drift = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('ensembles_drift_ratio{ensemble="toy",signal="feature_z"}')
    ]
    assert drift and drift[0] > 1.5  # rows far from the held-out features raise it


def test_json_log_lines_carry_extra_fields():
    record = logging.LogRecord(
        "serving.registry", logging.ERROR, __file__, 1, "refused %s", ("x",), None
    )
    record.ensemble = "toy"
    line = orjson.loads(JsonFormatter().format(record))
    assert line["message"] == "refused x" and line["ensemble"] == "toy"
    assert line["level"] == "error" and np.isfinite(len(line["time"]))


def _status_count(text: str, route: str, status: str) -> float:
    prefix = f'ensembles_requests_total{{method="POST",route="{route}",status="{status}"}}'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_client_disconnect_is_not_a_server_error(client, server, caplog):
    route = "/v1/ensembles/{name}/predict"
    before = client.get("/metrics").text
    with caplog.at_level(logging.DEBUG, logger="serving.errors"):
        with socket.create_connection(("127.0.0.1", server.settings.port)) as sock:
            sock.sendall(
                b"POST /v1/ensembles/toy/predict HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                b'{"rows": [[1, 2'
            )
            time.sleep(0.1)  # let the route start reading the body, then hang up
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = client.get("/metrics").text
            if _status_count(text, route, "499") > _status_count(before, route, "499"):
                break
            time.sleep(0.05)
    assert _status_count(text, route, "499") == _status_count(before, route, "499") + 1
    assert _status_count(text, route, "500") == _status_count(before, route, "500")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors and not any(r.exc_info for r in caplog.records)
    assert "client disconnected" in caplog.text


@pytest.mark.parametrize("enabled", [True, False])
def test_access_log_lines_only_when_asked_for(synthetic_store, caplog, enabled):
    with (
        LiveServer(store=synthetic_store.root, poll_interval_s=0, access_log=enabled) as live,
        live.client() as http,
        caplog.at_level(logging.INFO, logger="serving.access"),
    ):
        response = http.post(
            "/v1/ensembles/toy/predict",
            json={"rows": [[0.0] * 4]},
            headers={"X-Request-ID": "abc-1"},
        )
        assert response.status_code == 200
        http.post("/v2/models/toy/infer", content=b'{"id": "r2", "inputs": []}')
        http.post(
            "/v2/models/toy/versions/1/infer",
            json={
                "id": "r3",
                "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
            },
        )
    records = [r for r in caplog.records if r.name == "serving.access"]
    if not enabled:
        assert records == []
        return
    assert len(records) == 3
    first = orjson.loads(JsonFormatter().format(records[0]))
    assert first["route"] == "/v1/ensembles/{name}/predict" and first["status"] == 200
    assert first["ensemble"] == "toy" and first["version"] == 1
    assert first["request_id"] == "abc-1" and first["latency_ms"] > 0
    refused = records[1]
    assert refused.status == 400 and refused.ensemble == "toy" and refused.version == 1
    third = records[2]
    assert third.route == "/v2/models/{name}/versions/{version}/infer"
    assert third.request_id == "r3" and third.version == 1 and third.status == 200


def test_binding_beyond_loopback_without_a_token_warns(synthetic_store, caplog):
    with caplog.at_level(logging.WARNING, logger="serving.app"):
        with LiveServer(store=synthetic_store.root, poll_interval_s=0, host="0.0.0.0"):
            pass
        with LiveServer(store=synthetic_store.root, poll_interval_s=0, host="::1"):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.name == "serving.app"]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "binding 0.0.0.0, which other machines can reach, without a token"
    )
