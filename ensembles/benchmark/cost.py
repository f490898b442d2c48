"""Serving cost of a published version: onnxruntime time per row per combiner, bytes on disk."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ensembles.benchmark.sessions import open_session, session_outputs
from ensembles.combiners import combiner_from_state
from ensembles.manifest import WEIGHT_AVERAGE, Manifest

#: Rows per timed batch (test rows are tiled up to this many).
BATCH_ROWS = 256
#: Timed calls per model; the median is reported.
TIMING_REPEATS = 15


def median_seconds(call: Callable[[], object], repeats: int = TIMING_REPEATS) -> float:
    """Median wall-clock seconds of ``call`` over ``repeats`` runs, after one warm-up run."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def inference_cost(
    folder: Path, manifest: Manifest, X: np.ndarray, repeats: int = TIMING_REPEATS
) -> dict[str, dict[str, float]]:
    """Per-row inference time and model size of every combiner and of one member.

    What is timed is what serving runs per batch: the fused member graph
    (:class:`ensembles.fused.FusedMembers`, every member in one onnxruntime call with one
    intra-op thread), then the combiner's ``combine`` on its float32 outputs.
    ``weight_average`` runs ``averaged.onnx`` alone, and ``single_member`` one member
    file alone. Uncertainty measures, request decoding and HTTP are not timed.

    Parameters
    ----------
    folder : Path
        The version folder.
    manifest : Manifest
    X : np.ndarray, shape (n_samples, n_features)
        Rows to tile into the timed batch of :data:`BATCH_ROWS` rows (the test split).
    repeats : int
        Timed calls per model; the median is kept.

    Returns
    -------
    dict
        name -> ``{"infer_us_per_row": ..., "size_kb": ...}`` for every combiner and for
        ``single_member`` (one member file, the cost of a single network).
    """
    from ensembles.fused import FusedMembers

    batch = np.resize(np.asarray(X, dtype=np.float32), (BATCH_ROWS, X.shape[1]))
    files = [folder / member.file for member in manifest.members]
    member_sizes = [path.stat().st_size for path in files]
    fused = FusedMembers(files)

    def member_outputs() -> np.ndarray:
        result = fused(batch)
        return result[0] if isinstance(result, tuple) else result

    first = open_session(files[0])
    per_row = 1e6 / BATCH_ROWS
    cost = {
        "single_member": {
            "infer_us_per_row": median_seconds(lambda: session_outputs(first, batch), repeats)
            * per_row,
            "size_kb": float(np.mean(member_sizes)) / 1024,
        }
    }
    for name, info in manifest.combiners.items():
        if info.kind == WEIGHT_AVERAGE:
            path = folder / info.state["file"]
            averaged = open_session(path)
            seconds = median_seconds(lambda s=averaged: session_outputs(s, batch), repeats)
            cost[name] = {
                "infer_us_per_row": seconds * per_row,
                "size_kb": path.stat().st_size / 1024,
            }
            continue
        combiner = combiner_from_state(info.state)
        seconds = median_seconds(lambda c=combiner: c.combine(member_outputs(), batch), repeats)
        cost[name] = {
            "infer_us_per_row": seconds * per_row,
            "size_kb": sum(member_sizes) / 1024,
        }
    return cost
