"""How fast one fused model call is when the core has just waited or the caches were stirred.

At concurrency 1 a server waits between requests and runs Python around every model call;
this measures what that does to the call itself, in-process, with nothing else running:
back to back, after a short sleep in ``select`` (as a server waits on its sockets), after
touching some memory between calls (as a request's Python does), on the caller's thread
against a hop into a worker thread and back, and split in halves over both threads.

Example::

    .venv/bin/python scripts/bench_cold_model.py --store /tmp/peer_store --name ensemble
"""

from __future__ import annotations

import argparse
import select
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ensembles.store import ModelStore  # noqa: E402
from serving.runtime import EnsembleRuntime  # noqa: E402


def median_us(call, before=None, calls: int = 2000) -> float:
    """Median µs of ``call()``, each after ``before()`` (not timed) when given."""
    for _ in range(100):
        call()
    times = []
    for _ in range(calls):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print the median time of one fused call in each condition, at each batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args(argv)
    store = ModelStore(args.store)
    runtime = EnsembleRuntime.load(store, args.name, store.latest(args.name))
    members = runtime.run_members
    pool = ThreadPoolExecutor(1)
    print("| batch | condition | µs per call (median) |\n|---|---|---|")
    for batch in args.batches:
        X = np.random.default_rng(0).normal(size=(batch, runtime.n_features)).astype(np.float32)
        rows = [("back to back", median_us(lambda X=X: members(X)))]
        for gap_us in (100, 500):
            wait = lambda gap=gap_us: select.select([], [], [], gap / 1e6)  # noqa: E731
            rows.append((f"after {gap_us} µs asleep", median_us(lambda X=X: members(X), wait)))
        for kib in (64, 512, 2048, 8192):
            junk = np.zeros(kib * 128)
            stir = lambda junk=junk: np.add(junk, 1.0, out=junk)  # noqa: E731
            rows.append((f"after touching {kib} KiB", median_us(lambda X=X: members(X), stir)))
        hop = median_us(lambda X=X: pool.submit(members, X).result())
        rows.append(("through a worker thread and back", hop))
        if batch > 1:
            half = batch // 2

            def split(X=X, half=half) -> None:
                other = pool.submit(members, X[:half])
                members(X[half:])
                other.result()

            rows.append(("split in halves, caller and worker thread at once", median_us(split)))
        for condition, us in rows:
            print(f"| {batch} | {condition} | {us:.1f} |")
    pool.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
