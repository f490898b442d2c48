"""Serving benchmark: HTTP load on loopback (/v1 JSON, /v2 binary) beside the in-process limit.

Trains a 5-member MLP ensemble (32 -> 256 -> 256 -> 10) with the real training pipeline on
a synthetic 10-class CSV (scikit-learn's ``make_classification``) into a temporary store (or
uses ``--store``), measures the in-process onnxruntime limit (fused graph +
combine + uncertainty, no HTTP), starts ``python -m serving`` and drives it with ``wrk``
(Lua script) or, when wrk is missing, a Python asyncio keep-alive load generator. Prints a
Markdown table. Every response carries the variance.

Example::

    .venv/bin/python scripts/bench_serving.py --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_FEATURES, N_CLASSES, HIDDEN, N_MEMBERS = 32, 10, (256, 256), 5


@dataclass
class Row:
    """One line of the result table."""

    mode: str
    batch: int
    concurrency: int
    requests_s: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    note: str = ""
    server_cpu_ms: float = float("nan")
    loadgen_cpu_ms: float = float("nan")

    @property
    def predictions_s(self) -> float:
        """Rows predicted per second."""
        return self.requests_s * self.batch

    @property
    def projected_s(self) -> float:
        """Requests/s two idle cores would sustain at the measured CPU cost per request."""
        return 2e3 / (self.server_cpu_ms + self.loadgen_cpu_ms)


# -- ensemble ------------------------------------------------------------------------------


def publish_ensemble(store: Path, name: str, seed: int, workdir: Path) -> None:
    """Train and publish the benchmark ensemble with the real pipeline (needs torch).

    A synthetic 32-feature, 10-class problem is written as a CSV, then trained with the
    ``repeat`` strategy: 5 members of 32 -> 256 -> 256 -> 10, 2 epochs each, exported to
    ONNX, combiners fitted on held-out rows, published atomically.
    """
    import pandas as pd
    from sklearn.datasets import make_classification

    from ensembles.training.config import TrainConfig
    from ensembles.training.pipeline import TrainRequest, run_training

    X, y = make_classification(
        n_samples=3000,
        n_features=N_FEATURES,
        n_informative=24,
        n_classes=N_CLASSES,
        n_clusters_per_class=1,
        random_state=seed,
    )
    csv = workdir / f"{name}.csv"
    frame = pd.DataFrame(X, columns=[f"x{k}" for k in range(N_FEATURES)])
    frame["label"] = [f"c{k}" for k in y]
    frame.to_csv(csv, index=False)
    run_training(
        TrainRequest(
            dataset=None,
            csv=csv,
            target="label",
            task="classification",
            strategy="repeat",
            members=N_MEMBERS,
            name=name,
            store=store,
            seed=seed,
            config=TrainConfig(hidden_sizes=HIDDEN, epochs=2),
            progress=False,
        )
    )


# -- in-process limit ----------------------------------------------------------------------


def _time_calls(call, duration: float) -> tuple[float, float, float, float]:
    """Call ``call()`` repeatedly for ``duration`` s.

    Returns 1 / p50 (calls/s), p50 and p99 in ms, and the median process CPU ms per call
    (all threads): the rate comes from the median call and the CPU cost does not count
    time spent descheduled, so both resist other jobs on the shared cores.
    """
    for _ in range(20):
        call()
    latencies, cpu = [], []
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        latencies.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    q = np.percentile(latencies, [50, 99]) * 1e3
    return 1e3 / float(q[0]), float(q[0]), float(q[1]), float(np.median(cpu)) * 1e3


def in_process_rows(store: Path, name: str, duration: float, intra: int) -> list[Row]:
    """The no-HTTP limit on one core: fused members, then the runtime's full predict."""
    import onnxruntime as ort

    from ensembles.fused import FusedMembers, session_options
    from ensembles.store import ModelStore
    from serving.runtime import EnsembleRuntime

    model_store = ModelStore(store)
    version = model_store.latest(name)
    manifest = model_store.load_manifest(name, version)
    folder = model_store.path(name, version)
    fused = FusedMembers(
        [folder / member.file for member in manifest.members],
        options=session_options(intra, 1),
    )
    separate = [
        ort.InferenceSession(
            str(folder / member.file),
            sess_options=session_options(intra, 1),
            providers=["CPUExecutionProvider"],
        )
        for member in manifest.members
    ]
    runtime = EnsembleRuntime.load(model_store, name, version, intra_op_threads=intra)
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 64, 1024):
        X = rng.normal(size=(batch, N_FEATURES)).astype(np.float32)
        prediction = runtime.predict(X)
        if "variance" not in prediction.uncertainty:
            raise SystemExit(f"the runtime reports no 'variance': {sorted(prediction.uncertainty)}")
        for mode, call in (
            (
                "in-process: 5 separate ORT sessions + np.stack",
                lambda X=X: np.stack([session.run(None, {"input": X})[0] for session in separate]),
            ),
            ("in-process: fused ORT call only", lambda X=X: fused(X)),
            (
                "in-process: runtime.predict (ORT + combine + uncertainty)",
                lambda X=X: runtime.predict(X),
            ),
        ):
            per_s, p50, p99, cpu_ms = _time_calls(call, duration)
            rows.append(Row(mode, batch, 1, per_s, p50, p99, server_cpu_ms=cpu_ms))
    return rows


def thread_setting_rows(store: Path, name: str, duration: float) -> list[Row]:
    """Time the fused call under several onnxruntime thread settings (batch 1 and 64)."""
    from ensembles.fused import FusedMembers, session_options
    from ensembles.store import ModelStore

    model_store = ModelStore(store)
    version = model_store.latest(name)
    manifest = model_store.load_manifest(name, version)
    paths = [model_store.path(name, version) / member.file for member in manifest.members]
    settings = [
        ("intra 1, inter 1, sequential", dict(intra_threads=1, inter_threads=1)),
        ("intra 2, sequential", dict(intra_threads=2, inter_threads=1)),
        ("intra 2, sequential, spinning", dict(intra_threads=2, inter_threads=1, spinning=True)),
        (
            "intra 1, inter 2, parallel",
            dict(intra_threads=1, inter_threads=2, execution_mode="parallel"),
        ),
        ("ORT defaults (0, 0)", dict(intra_threads=0, inter_threads=0)),
    ]
    rng = np.random.default_rng(0)
    rows = []
    for label, kwargs in settings:
        fused = FusedMembers(paths, options=session_options(**kwargs))
        for batch in (1, 64):
            X = rng.normal(size=(batch, N_FEATURES)).astype(np.float32)
            per_s, p50, p99, cpu_ms = _time_calls(lambda X=X, fused=fused: fused(X), duration)
            rows.append(Row(f"fused ORT: {label}", batch, 1, per_s, p50, p99, server_cpu_ms=cpu_ms))
    return rows


# -- server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def process_group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[2] is pgrp; utime, stime are fields[11:13]
            total += int(fields[11]) + int(fields[12])
    return total / tick


def start_server(store: Path, port: int, workers: int | None, extra: list[str]) -> subprocess.Popen:
    """Start ``python -m serving`` and wait until ``/v2/health/ready`` answers 200.

    ``workers`` None leaves the worker count to the server (one per usable core).
    """
    env = {**os.environ, "ENSEMBLES_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "serving", "--store", str(store), "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    command += extra
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if _get(f"http://127.0.0.1:{port}/v2/health/ready")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise SystemExit("server not ready after 60 s")


def stop_server(server: subprocess.Popen) -> None:
    """Terminate the server's process group and wait."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# -- requests ------------------------------------------------------------------------------


@dataclass
class HttpRequest:
    """A prepared POST: path, headers, body."""

    path: str
    headers: dict[str, str]
    body: bytes


def v1_request(name: str, X: np.ndarray) -> HttpRequest:
    """Our REST API: JSON rows in, prediction + variance + uncertainty per row out."""
    body = json.dumps({"rows": X.tolist()}).encode()
    return HttpRequest(f"/v1/ensembles/{name}/predict", {"Content-Type": "application/json"}, body)


def v2_request(name: str, X: np.ndarray) -> HttpRequest:
    """Open Inference Protocol with binary tensors, like tritonclient's defaults."""
    raw = np.ascontiguousarray(X, dtype="<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(X.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        },
        separators=(",", ":"),
    ).encode()
    return HttpRequest(
        f"/v2/models/{name}/infer",
        {"Inference-Header-Content-Length": str(len(header))},
        header + raw,
    )


def check_response(port: int, request: HttpRequest, api: str) -> str:
    """Send one request; fail unless it is a 200 that carries the variance."""
    http = urllib.request.Request(
        f"http://127.0.0.1:{port}{request.path}", data=request.body, headers=request.headers
    )
    try:
        with urllib.request.urlopen(http, timeout=10) as response:
            body = response.read()
            length = response.headers.get("Inference-Header-Content-Length")
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{api} request failed: {exc.code} {exc.read()[:500]!r}") from exc
    text = body[: int(length)] if length else body
    if b"variance" not in text:
        raise SystemExit(f"{api} response carries no variance: {text[:500]!r}")
    return f"{len(body)} B response"


# -- load generators -----------------------------------------------------------------------

_WRK_LUA = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.path = os.getenv("BENCH_PATH")
for k, v in string.gmatch(os.getenv("BENCH_HEADERS"), "([^\\n:]+):([^\\n]*)") do
  wrk.headers[k] = v
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d," ..
    "\\"errors\\":%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def run_wrk(
    port: int, request: HttpRequest, concurrency: int, duration: float, workdir: Path
) -> tuple[float, float, float, int]:
    """Drive the server with wrk; return requests/s, p50 ms, p99 ms and errors."""
    body = workdir / "body.bin"
    body.write_bytes(request.body)
    script = workdir / "bench.lua"
    script.write_text(_WRK_LUA)
    env = {
        **os.environ,
        "BENCH_BODY": str(body),
        "BENCH_PATH": request.path,
        "BENCH_HEADERS": "\n".join(f"{k}:{v}" for k, v in request.headers.items()),
    }
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 30)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    per_s = result["requests"] / (result["duration_us"] / 1e6)
    return per_s, result["p50_us"] / 1e3, result["p99_us"] / 1e3, result["errors"]


async def _python_load(
    port: int, request: HttpRequest, concurrency: int, duration: float
) -> tuple[float, float, float, int]:
    head = (
        f"POST {request.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        + f"Content-Length: {len(request.body)}\r\n\r\n"
    ).encode()
    message = head + request.body
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    stop = start + duration

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                writer.write(message)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if b" 200 " not in status_line:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    q = np.percentile(latencies, [50, 99]) * 1e3
    return len(latencies) / elapsed, float(q[0]), float(q[1]), errors


def run_python(
    port: int, request: HttpRequest, concurrency: int, duration: float
) -> tuple[float, float, float, int]:
    """Drive the server with the Python keep-alive generator (uvloop when installed)."""
    try:
        import uvloop

        return uvloop.run(_python_load(port, request, concurrency, duration))
    except ImportError:
        return asyncio.run(_python_load(port, request, concurrency, duration))


# -- main ----------------------------------------------------------------------------------


def measure_cell(
    mode: str,
    port: int,
    pgid: int,
    request: HttpRequest,
    batch: int,
    concurrency: int,
    args: argparse.Namespace,
    loadgen: str,
    workdir: Path,
) -> Row:
    """Run one (api, batch, concurrency) cell ``args.repeats`` times; keep the median run.

    Besides wall-clock rates it records the CPU time per request of the server's processes
    and of the load generator, which stays meaningful when other jobs share the cores.
    """
    runs = []
    for _ in range(args.repeats):
        server_before = process_group_cpu_s(pgid)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self_before = time.process_time()
        if loadgen == "wrk":
            per_s, p50, p99, errors = run_wrk(port, request, concurrency, args.duration, workdir)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            loadgen_s = (after.ru_utime + after.ru_stime) - (
                children_before.ru_utime + children_before.ru_stime
            )
        else:
            per_s, p50, p99, errors = run_python(port, request, concurrency, args.duration)
            loadgen_s = time.process_time() - self_before
        server_s = process_group_cpu_s(pgid) - server_before
        n_requests = max(per_s * args.duration, 1.0)
        runs.append(
            Row(
                mode,
                batch,
                concurrency,
                per_s,
                p50,
                p99,
                errors,
                server_cpu_ms=server_s / n_requests * 1e3,
                loadgen_cpu_ms=loadgen_s / n_requests * 1e3,
            )
        )
    runs.sort(key=lambda row: row.requests_s)
    return runs[len(runs) // 2]


def print_table(rows: list[Row], title: str, http: bool = False) -> None:
    """Print rows as a Markdown table, with CPU cost columns."""
    print(f"\n### {title}\n")
    head = "| mode | batch | conc. | requests/s | predictions/s | p50 ms | p99 ms |"
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if http:
        head += (
            " errors | server CPU ms/req | loadgen CPU ms/req |"
            " projection (estimate, assumes idle cores): req/s |"
        )
        rule += "---:|---:|---:|---:|"
    else:
        head += " CPU ms/call | predictions/s per core (by CPU) |"
        rule += "---:|---:|"
    print(head)
    print(rule)
    for row in rows:
        line = (
            f"| {row.mode} | {row.batch} | {row.concurrency} | {row.requests_s:,.0f} | "
            f"{row.predictions_s:,.0f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} |"
        )
        if http:
            line += (
                f" {row.errors} | {row.server_cpu_ms:.3f} | {row.loadgen_cpu_ms:.3f} | "
                f"{row.projected_s:,.0f} ({row.projected_s * row.batch:,.0f} pred/s) |"
            )
        else:
            line += f" {row.server_cpu_ms:.3f} | {row.batch / row.server_cpu_ms * 1e3:,.0f} |"
        print(line)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="existing store (default: a temporary one)")
    parser.add_argument("--name", default="bench", help="ensemble name")
    parser.add_argument(
        "--workers", type=int, help="server worker processes (default: the server's own)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per HTTP run")
    parser.add_argument("--inprocess-duration", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell (median kept)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--apis", default="v1,v2", help="comma list of v1, v2")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument("--no-http", action="store_true", help="only the in-process limit")
    parser.add_argument(
        "--threads", action="store_true", help="also time onnxruntime thread settings"
    )
    parser.add_argument("--server-arg", action="append", default=[], help="extra server flag")
    args = parser.parse_args(argv)

    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workdir = Path(tmp)
        store = args.store or workdir / "store"
        if args.store is None or not (store / args.name).is_dir():
            publish_ensemble(store, args.name, seed=0, workdir=workdir)
        print(
            f"ensemble: {N_MEMBERS} members {N_FEATURES} -> {' -> '.join(map(str, HIDDEN))} -> "
            f"{N_CLASSES}; cpus: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}; "
            f"load generator: {loadgen}; server workers: {args.workers or 'default'}"
        )
        limit = in_process_rows(store, args.name, args.inprocess_duration, args.intra_op_threads)
        print_table(limit, "In-process limit (one thread, no HTTP; requests/s = 1 / p50)")
        if args.threads:
            threads = thread_setting_rows(store, args.name, args.inprocess_duration)
            print_table(threads, "onnxruntime thread settings (fused graph; requests/s = 1 / p50)")
        if args.no_http:
            return 0
        port = free_port()
        server = start_server(store, port, args.workers, args.server_arg)
        rows = []
        try:
            rng = np.random.default_rng(1)
            for api in args.apis.split(","):
                for batch in map(int, args.batches.split(",")):
                    X = rng.normal(size=(batch, N_FEATURES)).astype(np.float32)
                    request = (v1_request if api == "v1" else v2_request)(args.name, X)
                    check_response(port, request, api)
                    mode = "/v1 JSON" if api == "v1" else "/v2 binary"
                    for concurrency in map(int, args.concurrency.split(",")):
                        row = measure_cell(
                            mode,
                            port,
                            server.pid,
                            request,
                            batch,
                            concurrency,
                            args,
                            loadgen,
                            workdir,
                        )
                        rows.append(row)
                        print(
                            f"  {mode} batch {batch} c{concurrency}: {row.requests_s:,.0f} req/s,"
                            f" server {row.server_cpu_ms:.3f} CPU ms/req",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            stop_server(server)
        print_table(
            rows,
            f"HTTP on loopback ({loadgen}, workers: {args.workers or 'default'}, "
            f"load average {os.getloadavg()[0]:.1f})",
            http=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
