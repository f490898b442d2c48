"""The server as a process: no torch on import, ``python -m serving`` with flags and env vars."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from pydantic import ValidationError
from serving_fixtures import free_port

from ensembles.machine import usable_cores
from serving.__main__ import SettingsError, main, parse_args, settings_problems
from serving.metrics import ServingMetrics
from serving.settings import MAX_DEFAULT_WORKERS, ServingSettings
from serving.workers import SPREADS_CONNECTIONS

#: ``python -m serving`` with torch made unimportable: any ``import torch`` raises.
WITHOUT_TORCH = (
    "import runpy, sys\n"
    "sys.modules['torch'] = None\n"
    "runpy.run_module('serving', run_name='__main__', alter_sys=True)\n"
)


def _start(argv: list[str], port: int) -> subprocess.Popen:
    """Start a server process and wait (a hang guard of 60 s) until it answers."""
    process = subprocess.Popen([*argv, "--port", str(port)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
            return process
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)


def test_serving_every_combiner_needs_no_torch(trained_store):
    # Every request path, not only the import: /v1 with each combiner and the members'
    # outputs, /v2 with each combiner, for a classifier and a regressor.
    port = free_port()
    argv = [sys.executable, "-c", WITHOUT_TORCH, "--store", str(trained_store), "--workers", "1"]
    process = _start(argv, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            names = [e["name"] for e in http.get("/v1/ensembles").json()["ensembles"]]
            assert len(names) == 2
            for name in names:
                info = http.get(f"/v1/ensembles/{name}").json()
                width = info["n_features"]
                rows = [[0.1 * (i + j) for j in range(width)] for i in range(3)]
                entry = {"name": "input", "shape": [3, width], "datatype": "FP32", "data": rows}
                for combiner in info["combiners"]:
                    v1 = http.post(
                        f"/v1/ensembles/{name}/predict",
                        json={"rows": rows, "combiner": combiner, "members": True},
                    )
                    assert v1.status_code == 200, (name, combiner, v1.text)
                    v2 = http.post(
                        f"/v2/models/{name}/infer",
                        json={"inputs": [entry], "parameters": {"combiner": combiner}},
                    )
                    assert v2.status_code == 200, (name, combiner, v2.text)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert b"torch" not in stderr, stderr.decode()[-4000:]


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("ENSEMBLES_PORT", "9123")
    monkeypatch.setenv("ENSEMBLES_TOKEN", "abc")
    settings = parse_args(["--store", "/tmp/s", "--workers", "2"])
    assert settings.port == 9123 and settings.workers == 2 and settings.host == "127.0.0.1"
    assert settings.token.get_secret_value() == "abc"
    assert str(settings.store) == "/tmp/s"


def test_default_workers_are_one_per_usable_core(monkeypatch):
    monkeypatch.delenv("ENSEMBLES_WORKERS", raising=False)
    assert parse_args(["--store", "/tmp/s"]).workers == min(usable_cores(), MAX_DEFAULT_WORKERS)


def test_python_m_serving_serves_the_store(synthetic_store):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            "--store",
            str(synthetic_store.root),
            "--port",
            str(port),
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/ensembles", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert {e["name"] for e in response.json()["ensembles"]} == {"toy", "reg"}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert b'"message":"serving 2 ensembles' in stderr  # structured JSON log lines


def test_bad_flag_values_print_one_line_per_field_and_exit_2(capsys, monkeypatch):
    monkeypatch.setenv("ENSEMBLES_WORKERS", "abc")
    with pytest.raises(SystemExit) as exited:
        main(["--port", "99999", "--log-level", "loud"])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("ensembles-serve: error: port (--port / ENSEMBLES_PORT): ")
    assert "less than or equal to 65535 (got '99999')" in lines[0]
    assert lines[1].startswith("ensembles-serve: error: workers (--workers / ENSEMBLES_WORKERS)")
    assert "(got 'abc')" in lines[1]
    assert "log_level (--log-level / ENSEMBLES_LOG_LEVEL): Input should be 'debug'" in lines[2]


def test_env_only_field_names_no_flag(monkeypatch):
    monkeypatch.setenv("ENSEMBLES_MAX_BATCH_ROWS", "0")
    with pytest.raises(SettingsError) as caught:
        parse_args(["--poll-interval", "-1"])
    assert str(caught.value).splitlines() == [
        "max_batch_rows (ENSEMBLES_MAX_BATCH_ROWS; env only): Input should be greater than or "
        "equal to 1 (got '0')",
        "poll_interval_s (--poll-interval / ENSEMBLES_POLL_INTERVAL_S): Input should be "
        "greater than or equal to 0 (got '-1')",
    ]


def test_bad_environment_exits_2_without_a_traceback():
    env = {**os.environ, "ENSEMBLES_WORKERS": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", "serving", "--store", "nowhere"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "ensembles-serve: error: workers (--workers / ENSEMBLES_WORKERS): Input should be a "
        "valid integer, unable to parse string as an integer (got 'abc')"
    ]


@pytest.mark.parametrize(
    ("env", "argv", "line"),
    [
        (
            {"ENSEMBLES_TOKEN": ""},
            [],
            "token (ENSEMBLES_TOKEN; env only): is empty: an empty token would let an empty "
            "Authorization header in",
        ),
        (
            {},
            ["--host", "999.1.1.1"],
            "host (--host / ENSEMBLES_HOST): is neither an IP address nor a name this "
            "machine resolves",
        ),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "{tmp}/absent"},
            ["--workers", "2"],
            "PROMETHEUS_MULTIPROC_DIR={tmp}/absent is not a folder: create it, or unset",
        ),
    ],
    ids=["empty token", "host that resolves to nothing", "absent metrics folder"],
)
def test_settings_the_server_could_not_honour_exit_2_before_it_starts(tmp_path, env, argv, line):
    env = {key: value.format(tmp=tmp_path) for key, value in env.items()}
    done = subprocess.run(
        [sys.executable, "-m", "serving", "--store", str(tmp_path), "--port", "0", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"ensembles-serve: error: {line.format(tmp=tmp_path)}"), lines


def test_queue_limit_must_hold_one_full_request():
    with pytest.raises(ValidationError) as caught:
        ServingSettings(max_batch_rows=64, max_queue_rows=10)
    assert settings_problems(caught.value) == [
        "max_queue_rows (10) must be at least max_batch_rows (64), or a request of "
        "max_batch_rows rows could never run"
    ]


def _wait_until_up(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)


def _requests_total(text: str, route: str) -> float:
    prefix = f'ensembles_requests_total{{method="POST",route="{route}",status="200"}}'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_metrics_aggregate_every_worker(synthetic_store, tmp_path):
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}  # respected as given
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            "--store",
            str(synthetic_store.root),
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    route = "/v1/ensembles/{name}/predict"
    sent = 24
    try:
        _wait_until_up(process, f"{url}/v2/health/ready")
        for _ in range(sent):  # a new connection each time, so both workers answer
            response = httpx.post(
                f"{url}/v1/ensembles/toy/predict", json={"rows": [[0.0] * 4]}, timeout=30
            )
            assert response.status_code == 200
        variance_count = 'ensembles_prediction_variance_count{ensemble="toy"} 24.0'
        deadline = time.monotonic() + 30
        while True:  # each worker records its rows' variance within FOLD_INTERVAL_S
            text = httpx.get(f"{url}/metrics", timeout=10).text
            done = _requests_total(text, route) >= sent and variance_count in text
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert _requests_total(text, route) == sent
        assert 'ensembles_loaded_version{ensemble="toy"} 1.0' in text
        assert variance_count in text
        pids = {path.name.rsplit("_", 1)[-1] for path in tmp_path.glob("counter_*.db")}
        assert len(pids) == 2, f"expected files from 2 workers, found {sorted(pids)}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _requests_per_worker(folder) -> dict[str, float]:
    """Requests each worker counted: its own counter file in the multiprocess folder."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        if path.stat().st_size < 4:  # a worker has created its file but not sized it yet
            continue
        values = MmapedDict.read_all_values_from_file(str(path))
        counts[path.stem.rsplit("_", 1)[-1]] = sum(
            value for key, value, *_ in values if '"ensembles_requests_total"' in key
        )
    return counts


@pytest.mark.skipif(not SPREADS_CONNECTIONS, reason="the kernel spreads SO_REUSEPORT on Linux")
def test_connections_opened_in_a_burst_spread_over_the_workers(synthetic_store, tmp_path):
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "serving", "--store", str(synthetic_store.root)),
            *("--port", str(port), "--workers", "2", "--log-level", "warning"),
        ],
        env=env,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    n_connections = 64
    try:
        _wait_until_up(process, f"{url}/v2/health/ready")
        deadline = time.monotonic() + 60
        while len(_requests_per_worker(tmp_path)) < 2:  # until both workers listen
            assert time.monotonic() < deadline, "the second worker did not start"
            httpx.get(f"{url}/v2/health/live", timeout=10)  # a new connection each time
        before = _requests_per_worker(tmp_path)
        # All connections open before any request, as a pool or a load generator opens them.
        sockets = [
            socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n_connections)
        ]
        request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        for sock in sockets:
            sock.sendall(request)
        for sock in sockets:
            with sock:
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")

        def served() -> dict[str, float]:
            now = _requests_per_worker(tmp_path)
            return {pid: now[pid] - before.get(pid, 0.0) for pid in now}

        deadline = time.monotonic() + 30
        while sum(served().values()) < n_connections:
            assert time.monotonic() < deadline, served()
            time.sleep(0.1)
        counts = served()
        # Each connection lands on a worker by a hash of its addresses: both get a fair
        # share (below 20% of 64 has odds of about one in a million for an even split).
        assert len(counts) == 2 and min(counts.values()) >= 0.2 * n_connections, counts
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.skipif(not SPREADS_CONNECTIONS, reason="SO_REUSEPORT sockets are Linux's")
def test_a_second_server_on_a_taken_port_is_refused(synthetic_store):
    port = free_port()
    command = [
        *(sys.executable, "-m", "serving", "--store", str(synthetic_store.root)),
        *("--port", str(port), "--workers", "2", "--log-level", "warning"),
    ]
    first = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_until_up(first, f"http://127.0.0.1:{port}/v2/health/ready")
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "in use" in second.stderr.lower()
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=30)


_KILLED_WORKER = """
import os
from serving.metrics import ServingMetrics
metrics = ServingMetrics()
metrics.versions_loaded.labels("toy").set(3)
metrics.refusals.labels("toy").inc()
os._exit(0)  # as a worker killed by the OOM killer: no close(), no mark_process_dead
"""


def test_a_killed_workers_gauges_leave_the_scrape_and_its_counters_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    subprocess.run([sys.executable, "-c", _KILLED_WORKER], check=True, timeout=60)
    assert list(tmp_path.glob("gauge_livemax_*.db"))  # what it left behind
    text = ServingMetrics().render().decode()
    assert 'ensembles_version_refusals_total{ensemble="toy"} 1.0' in text
    assert 'ensembles_versions_loaded{ensemble="toy"}' not in text
    assert not list(tmp_path.glob("gauge_livemax_*.db"))
