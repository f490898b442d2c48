"""Serving benchmark: a loopback load generator against ``python -m serving`` (time-bounded).

Run ``python -m serving.benchmark``. It publishes a synthetic 5-member MLP ensemble
(32 -> 256 -> 256 -> 10) to a temporary store unless ``--store``/``--name`` are given,
measures the in-process limit (``EnsembleRuntime.predict`` with no HTTP), starts the server
in a subprocess, then drives ``/v2/.../infer`` with binary tensors (every uncertainty output
in every response) at batch 1 and 64, concurrency 1 and 16, over keep-alive connections.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from ensembles.store import ModelStore
from serving.runtime import EnsembleRuntime
from serving.synthetic import publish_synthetic


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def infer_payload(name: str, X: np.ndarray, port: int) -> bytes:
    """A complete HTTP/1.1 request with a binary V2 body, asking for binary outputs."""
    blob = np.ascontiguousarray(X, dtype="<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(X.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    body = header + blob
    head = (
        f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(port: int, payload: bytes, deadline: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            at = lower.index(b"\r\ncontent-length:") + 17
            length = int(lower[at : lower.index(b"\r\n", at)])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()
    return errors


async def drive(port: int, payload: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    """Send ``payload`` on ``concurrency`` connections for ``seconds``; summarize."""
    warm: list[float] = []
    await asyncio.gather(
        *(_connection(port, payload, time.perf_counter() + 0.3, warm) for _ in range(concurrency))
    )
    latencies: list[float] = []
    start = time.perf_counter()
    errors = await asyncio.gather(
        *(_connection(port, payload, start + seconds, latencies) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests_s": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": float(sum(errors)),
    }


def in_process(runtime: EnsembleRuntime, X: np.ndarray, seconds: float) -> dict[str, float]:
    """Calls per second of ``runtime.predict`` (members, combiner, uncertainty), no HTTP."""
    runtime.predict(X)
    count, start = 0, time.perf_counter()
    latencies = []
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        runtime.predict(X)
        latencies.append(time.perf_counter() - t0)
        count += 1
    lat = np.array(latencies) * 1000
    return {
        "requests_s": count / (time.perf_counter() - start),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": 0.0,
    }


def _wait_ready(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited during startup")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="existing store (default: synthetic)")
    parser.add_argument("--name", default="bench", help="ensemble to drive")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each cell")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--server-args", default="", help="extra flags for python -m serving")
    args = parser.parse_args(argv)

    temporary = None
    if args.store is None:
        temporary = tempfile.TemporaryDirectory()
        args.store = Path(temporary.name) / "store"
        publish_synthetic(
            ModelStore(args.store),
            args.name,
            n_members=5,
            n_features=32,
            n_outputs=10,
            hidden=(256, 256),
            seed=0,
        )
    store = ModelStore(args.store)
    runtime = EnsembleRuntime.load(store, args.name, store.latest(args.name), batching=False)
    n_features = runtime.n_features
    rng = np.random.default_rng(0)
    batches = [int(b) for b in args.batches.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]

    rows = []
    for batch in batches:
        X = rng.normal(size=(batch, n_features)).astype(np.float32)
        rows.append(("in-process", batch, 1, in_process(runtime, X, args.seconds)))

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "serving",
        "--store",
        str(args.store),
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--poll-interval",
        "0",
        "--log-level",
        "warning",
        *args.server_args.split(),
    ]
    env = {**os.environ, "ENSEMBLES_MAX_BATCH_ROWS": str(max(4096, max(batches) * 64))}
    server = subprocess.Popen(command, env=env)
    try:
        _wait_ready(port, server)
        for batch in batches:
            X = rng.normal(size=(batch, n_features)).astype(np.float32)
            payload = infer_payload(args.name, X, port)
            for concurrency in levels:
                result = asyncio.run(drive(port, payload, concurrency, args.seconds))
                rows.append((f"http x{args.workers}", batch, concurrency, result))
    finally:
        server.terminate()
        server.wait(timeout=30)
        if temporary is not None:
            temporary.cleanup()

    print(
        f"ensemble {args.name}: {runtime.n_members} members, {n_features} features, "
        f"{runtime.n_outputs} outputs; {os.cpu_count()} cores"
    )
    print(
        f"{'mode':<12}{'batch':>6}{'conc':>6}{'req/s':>10}{'pred/s':>11}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}"
    )
    for mode, batch, concurrency, r in rows:
        print(
            f"{mode:<12}{batch:>6}{concurrency:>6}{r['requests_s']:>10.0f}"
            f"{r['requests_s'] * batch:>11.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{int(r['errors']):>8}"
        )


if __name__ == "__main__":
    main()
