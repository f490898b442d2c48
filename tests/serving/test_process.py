"""The server as a process: no torch on import, ``python -m serving`` with flags and env vars."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
from serving_fixtures import free_port

from serving.__main__ import parse_args


def test_server_import_pulls_no_torch(synthetic_store):
    code = (
        "import sys\n"
        "from serving.app import create_app\n"
        "from serving.settings import ServingSettings\n"
        f"create_app(ServingSettings(store={str(synthetic_store.root)!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("ENSEMBLES_PORT", "9123")
    monkeypatch.setenv("ENSEMBLES_TOKEN", "abc")
    settings = parse_args(["--store", "/tmp/s", "--workers", "2"])
    assert settings.port == 9123 and settings.workers == 2 and settings.host == "127.0.0.1"
    assert settings.token.get_secret_value() == "abc"
    assert str(settings.store) == "/tmp/s"


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
