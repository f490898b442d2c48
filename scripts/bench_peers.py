"""Serving beside its peers: our server and MLServer on the same work, measured side by side.

Trains the serving benchmark's ensemble (5 members 32 -> 256 -> 256 -> 10, see
``bench_serving.py``), runs the peers harness ``../shared/peers/serving_peers.sh`` with our
server added (``ours``: ``python -m serving`` with no flags, what a user gets; ``--config``
adds more), then our binary V2 cells (tritonclient's default binary tensors) against the
same server. Each repeat is one run of the harness with every stack in it (its own
in-process limit too); the tables give, per cell, the median over the repeats of
predictions/s, ours against MLServer's best configuration in each repeat, and binary V2 at
batch 64 against the in-process fused limit of the same repeat.

Example::

    VENV=$PWD/.venv bash ../shared/peers/setup_peers.sh     # once per machine
    .venv/bin/python scripts/bench_peers.py --repeats 3
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_serving import (
    N_FEATURES,
    ROOT,
    check_response,
    free_port,
    measure_cell,
    publish_ensemble,
    start_server,
    stop_server,
    v2_request,
)

#: The harness's stacks of MLServer 1.7.1: its default and its fastest on 2 cores.
MLSERVER_STACKS = ("mlserver", "mlserver_pw0")
#: The harness's in-process limit: the fused graph on one onnxruntime thread.
LIMIT_STACK = "A:ort-fused-t1"
CELLS = ((1, 1), (1, 16), (64, 1), (64, 16))


@dataclass(frozen=True)
class Config:
    """One configuration of our server in the comparison: a stack name and its flags."""

    name: str
    flags: tuple[str, ...] = ()


def parse_config(text: str) -> Config:
    """``NAME=FLAGS`` (e.g. ``ours_w1=--workers 1``) as a :class:`Config`."""
    name, _, flags = text.partition("=")
    if not name or not name.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected NAME=FLAGS with a plain name; got {text!r}")
    return Config(name, tuple(shlex.split(flags)))


def run_harness(
    peers: Path, store: Path, model: str, configs: list[Config], args: argparse.Namespace, out: Path
) -> Path:
    """One run of ``serving_peers.sh`` with our configurations added; returns its results.csv."""
    command = [
        "bash",
        str(peers / "serving_peers.sh"),
        "--stacks",
        " ".join(MLSERVER_STACKS),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--repeats",
        "1",
        "--out",
        str(out),
    ]
    python = shlex.quote(sys.executable)
    check = f'{python} {shlex.quote(str(peers / "check_outputs.py"))} "$URL" "$MODEL"'
    for config in configs:
        port = free_port()
        serve = [
            "exec",
            python,
            "-m",
            "serving",
            "--store",
            shlex.quote(str(store)),
            "--port",
            str(port),
            *map(shlex.quote, config.flags),
        ]
        command += [
            "--extra-name",
            config.name,
            "--extra-url",
            f"http://127.0.0.1:{port}",
            "--extra-model",
            model,
            "--extra-cmd",
            " ".join(serve),
            "--extra-check",
            check,
        ]
    env = {**os.environ, "VENV": sys.prefix, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return out / "results.csv"


def read_results(path: Path) -> dict[tuple[str, int, int], float]:
    """(stack, batch, concurrency) -> predictions/s of one harness run."""
    with path.open() as handle:
        return {
            (row["stack"], int(row["batch"]), int(row["conc"])): float(row["pred_s"])
            for row in csv.DictReader(handle)
            if row["pred_s"] not in ("", "NA")
        }


def binary_v2(store: Path, model: str, args: argparse.Namespace, workdir: Path) -> list[float]:
    """Predictions/s of binary V2 requests of 64 rows at concurrency 1 and 16 (defaults)."""
    port = free_port()
    server = start_server(store, port, None, [])
    try:
        X = np.random.default_rng(1).normal(size=(64, N_FEATURES)).astype(np.float32)
        request = v2_request(model, X)
        check_response(port, request, "v2")
        cell_args = argparse.Namespace(repeats=1, duration=args.duration)
        return [
            measure_cell(
                "/v2 binary", port, server.pid, request, 64, conc, cell_args, "wrk", workdir
            ).predictions_s
            for conc in (1, 16)
        ]
    finally:
        stop_server(server)


def median(values: list[float]) -> float:
    """The median, NaN for none."""
    return statistics.median(values) if values else float("nan")


def print_tables(runs: list[dict], binaries: list[list[float]], configs: list[Config]) -> None:
    """Medians over the repeats: ours against MLServer's best, binary V2 against the limit."""
    names = [config.name for config in configs]
    print(f"\n### Predictions/s, median of {len(runs)} runs (V2 JSON, wrk -t1)\n")
    print(
        "| batch | conc | MLServer best | "
        + " | ".join(f"{n} | {n} ÷ MLServer" for n in names)
        + " |"
    )
    print("|---|---|---|" + "---|---|" * len(names))
    for batch, conc in CELLS:
        best = [max(run.get((s, batch, conc), 0.0) for s in MLSERVER_STACKS) for run in runs]
        cells = []
        for name in names:
            ours = [run.get((name, batch, conc), float("nan")) for run in runs]
            ratios = [o / b for o, b in zip(ours, best, strict=True) if b > 0]
            cells += [f"{median(ours):,.0f}", f"{median(ratios):.2f}×"]
        print(f"| {batch} | {conc} | {median(best):,.0f} | " + " | ".join(cells) + " |")
    print(f"\n### Binary V2, batch 64, {names[0]}: share of the in-process fused limit\n")
    print("| conc | predictions/s | in-process limit (1 thread) | share |")
    print("|---|---|---|---|")
    limits = [run.get((LIMIT_STACK, 64, 1), float("nan")) for run in runs]
    for index, conc in enumerate((1, 16)):
        rates = [binary[index] for binary in binaries]
        shares = [rate / limit for rate, limit in zip(rates, limits, strict=True)]
        print(f"| {conc} | {median(rates):,.0f} | {median(limits):,.0f} | {median(shares):.0%} |")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-dir", type=Path, default=ROOT.parent / "shared" / "peers")
    parser.add_argument("--store", type=Path, help="existing store (default: a temporary one)")
    parser.add_argument("--name", default="bench", help="ensemble name")
    parser.add_argument("--repeats", type=int, default=2, help="harness runs (medians quoted)")
    parser.add_argument("--duration", type=int, default=10, help="measured s per cell")
    parser.add_argument("--warmup", type=int, default=3, help="discarded s per cell")
    parser.add_argument(
        "--config",
        type=parse_config,
        action="append",
        default=[],
        help="another configuration of our server, NAME=FLAGS (e.g. 'ours_w1=--workers 1')",
    )
    parser.add_argument("--out", type=Path, help="keep the harness's logs here")
    args = parser.parse_args(argv)
    if not (args.peers_dir / "serving_peers.sh").is_file():
        parser.error(f"no peers harness at {args.peers_dir} (set --peers-dir)")
    mlserver = Path(os.environ.get("MLSERVER_VENV", "/tmp/mlserver_venv")) / "bin" / "mlserver"
    if not mlserver.exists():
        parser.error(
            f"MLServer is not set up ({mlserver} is missing): run "
            f"VENV={sys.prefix} bash {args.peers_dir / 'setup_peers.sh'} once"
        )
    configs = [Config("ours"), *args.config]
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        workdir = Path(tmp)
        store = args.store or workdir / "store"
        if not (store / args.name).is_dir():
            publish_ensemble(store, args.name, seed=0, workdir=workdir)
        out = args.out or workdir / "runs"
        runs, binaries = [], []
        for repeat in range(1, args.repeats + 1):
            stamp = time.strftime("%H:%M:%S")
            print(f"[{stamp}] run {repeat}/{args.repeats}", file=sys.stderr, flush=True)
            results = run_harness(
                args.peers_dir, store, args.name, configs, args, out / f"run{repeat}"
            )
            runs.append(read_results(results))
            binaries.append(binary_v2(store, args.name, args, workdir))
        print_tables(runs, binaries, configs)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}; harness logs: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
