"""Prometheus metrics (traffic, batches, versions, variance, drift) and JSON log lines."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
import warnings

import numpy as np
import orjson
import pytest
from serving_fixtures import LiveServer

from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions
from ensembles.manifest import InputSpec, Manifest, MemberInfo, OutputSpec, StrategyInfo
from ensembles.store import ModelStore
from serving.app import create_app
from serving.logs import JsonFormatter
from serving.metrics import N_DRIFT_FEATURES
from serving.prediction import MAX_DRIFT_BINS, PSI_FLOOR, baseline_from
from serving.settings import ServingSettings


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


def test_warnings_become_log_records_once_the_app_is_built(synthetic_store, caplog):
    # A numpy RuntimeWarning printed to stderr would break the JSON log lines.
    logging.captureWarnings(False)
    create_app(ServingSettings(store=synthetic_store.root, poll_interval_s=0))
    with caplog.at_level(logging.WARNING, logger="py.warnings"):
        warnings.warn("overflow encountered in cast", RuntimeWarning, stacklevel=1)
    assert [r.name for r in caplog.records] == ["py.warnings"]
    assert "overflow encountered in cast" in caplog.records[0].getMessage()


def test_json_log_lines_carry_extra_fields():
    record = logging.LogRecord(
        "serving.registry", logging.ERROR, __file__, 1, "refused %s", ("x",), None
    )
    record.ensemble = "toy"
    line = orjson.loads(JsonFormatter().format(record))
    assert line["message"] == "refused x" and line["ensemble"] == "toy"
    assert line["level"] == "error"
    # An ISO 8601 time with its zone, at the record's own moment (microseconds written).
    logged = dt.datetime.fromisoformat(line["time"])
    assert logged.tzinfo is not None
    assert logged.timestamp() == pytest.approx(record.created, abs=1e-5)


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


def test_psi_of_hand_bins():
    # 250 validation values 0..249 give ten bins (25 rows each) with the inner decile edges
    # 24.9, 49.8, ..., 224.1. A feature that never varies puts every value at or below its
    # edges (bin 0); a value above them lands in the last bin, which held no validation row.
    X = np.column_stack([np.arange(250.0), np.zeros(250)])
    validation = SplitPredictions(X, np.zeros(250, dtype=int), np.full((2, 250, 2), 0.5))
    baseline = baseline_from(validation, manifest_with_features(2))
    assert baseline is not None
    np.testing.assert_allclose(baseline.feature_shares[0], np.full(MAX_DRIFT_BINS, 0.1))
    np.testing.assert_allclose(baseline.feature_shares[1], np.eye(MAX_DRIFT_BINS)[0])
    assert baseline.mean_variance == 0.0  # identical members do not disagree
    rows = np.array([[0.0, 0.0], [249.5, 0.0], [249.0, 1.0], [75.0, 0.0]], dtype=np.float32)
    counts = baseline.bin_counts(rows)
    np.testing.assert_array_equal(counts[0], [1, 0, 0, 1, 0, 0, 0, 0, 0, 2])
    np.testing.assert_array_equal(counts[1], [3, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    actual = np.maximum(counts / 4, PSI_FLOOR)
    expected = np.maximum(baseline.feature_shares, PSI_FLOOR)
    by_hand = ((actual - expected) * np.log(actual / expected)).sum(axis=1)
    np.testing.assert_allclose(baseline.feature_psi(counts), by_hand, rtol=1e-12)
    np.testing.assert_allclose(baseline.feature_psi(baseline.bin_counts(X)), 0.0, atol=1e-15)
    # Fewer validation rows, fewer bins: at least 25 rows each.
    small = baseline_from(validation.rows(np.arange(60)), manifest_with_features(2))
    assert small is not None and small.feature_shares.shape == (2, 2)


def manifest_with_features(n_features: int) -> Manifest:
    return Manifest(
        name="hand",
        version=1,
        created="2024-01-01T00:00:00+00:00",
        task="classification",
        classes=["a", "b"],
        input=InputSpec(feature_names=[f"x{j}" for j in range(n_features)]),
        output=OutputSpec(name="probabilities", n_outputs=2),
        strategy=StrategyInfo(name="hand", params={}),
        members=[MemberInfo(id="m000", file="members/m000.onnx", seed=0, rows={"rule": "all"})],
        files={},
        combiners={},
        default_combiner="mean",
    )


def _metric(text: str, prefix: str) -> float:
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    ]
    assert len(values) == 1, (prefix, values)
    return values[0]


def test_drift_sits_near_one_on_held_out_rows_and_names_one_shifted_feature(trained_store):
    """Traffic drawn from the validation rows themselves, through every combiner, keeps both
    drift ratios near 1 (the variance baseline is the served pool disagreement whatever
    the combiner); a 5 sigma shift in one digits feature of 64 stands out in that feature's
    PSI while the mean z-score barely moves."""
    store = ModelStore(trained_store)
    manifest = store.load_manifest("digits")
    folder = store.path("digits", manifest.version)
    validation = HeldoutPredictions.load(folder / HELDOUT_FILE).validation
    rng = np.random.default_rng(0)
    combiners = list(manifest.combiners)
    with LiveServer(store=trained_store, poll_interval_s=0) as live, live.client() as http:

        def send(n_requests: int, shift: np.ndarray) -> None:
            for index in range(n_requests):
                rows = validation.X[rng.integers(0, len(validation.X), 50)] + shift
                body = {"rows": rows.tolist(), "combiner": combiners[index % len(combiners)]}
                assert http.post("/v1/ensembles/digits/predict", json=body).status_code == 200

        send(40, np.zeros(manifest.input.n_features))
        text = http.get("/metrics").text
        info = http.get("/v1/ensembles/digits").json()
        # 2000 rows resampled from the validation rows: the window's effective size is
        # about 1000 rows, the per-row variance has a coefficient of variation of about 0.8,
        # so the variance ratio's standard error is about 0.02; 0.1 is 5 of them.
        ratio = 'ensembles_drift_ratio{ensemble="digits",signal='
        assert abs(_metric(text, ratio + '"variance"}') - 1.0) < 0.1
        assert abs(_metric(text, ratio + '"feature_z"}') - 1.0) < 0.1
        # PSI from sampling noise alone is about (bins - 1) / rows, a few thousandths here.
        assert len(info["feature_drift"]) == N_DRIFT_FEATURES
        assert max(info["feature_drift"].values()) < 0.05
        assert text.count('ensembles_feature_drift{ensemble="digits"') == N_DRIFT_FEATURES

        std = validation.X.std(axis=0)
        shifted = int(np.argmax(std))
        name = manifest.input.feature_names[shifted]
        send(20, 5 * std * (np.arange(len(std)) == shifted))
        text = http.get("/metrics").text
        info = http.get("/v1/ensembles/digits").json()
    worst = list(info["feature_drift"].items())
    assert worst[0][0] == name and worst[0][1] > 1.0  # a PSI over 0.25 is a major shift
    assert all(psi < 0.05 for _, psi in worst[1:])
    assert _metric(text, f'ensembles_feature_drift{{ensemble="digits",feature="{name}"}}') > 1.0
    assert _metric(text, ratio + '"feature_z"}') < 1.2  # the mean over 64 features hides it


def test_regression_variance_histogram_is_in_held_out_units(trained_store):
    # Diabetes variances are in squared target units (hundreds): the histogram observes
    # each row's variance over the held-out mean, so all validation rows average 1 (up to
    # onnxruntime's float32 against the stored float32 torch outputs).
    store = ModelStore(trained_store)
    folder = store.path("diabetes", store.latest("diabetes"))
    validation = HeldoutPredictions.load(folder / HELDOUT_FILE).validation
    with LiveServer(store=trained_store, poll_interval_s=0) as live, live.client() as http:
        body = {"rows": validation.X.tolist()}
        assert http.post("/v1/ensembles/diabetes/predict", json=body).status_code == 200
        text = http.get("/metrics").text
    histogram = 'ensembles_prediction_variance_{}{{ensemble="diabetes"}}'
    count = _metric(text, histogram.format("count"))
    assert count == len(validation.X)
    np.testing.assert_allclose(_metric(text, histogram.format("sum")) / count, 1.0, rtol=1e-4)


def test_the_batch_histogram_counts_calls_that_served_requests_not_the_warm_up(
    synthetic_store, rows
):
    """A fresh server, one request: one onnxruntime call, whatever the load ran to check."""
    with LiveServer(store=synthetic_store.root, poll_interval_s=0) as live, live.client() as http:
        assert (
            http.post("/v1/ensembles/toy/predict", json={"rows": rows.tolist()}).status_code == 200
        )
        text = http.get("/metrics").text
    assert _metric(text, 'ensembles_batch_rows_count{ensemble="toy"}') == 1
    assert _metric(text, 'ensembles_batch_rows_sum{ensemble="toy"}') == len(rows)
