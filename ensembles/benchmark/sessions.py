"""onnxruntime sessions for the benchmark: serving's options, raw float32 features in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def open_session(path: Path, threads: int = 1) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``path`` with serving's session options.

    The options are :func:`ensembles.fused.session_options` (full graph optimisation, no
    spinning) with ``threads`` intra-op threads, so a single model is timed as serving
    runs it. One thread is deliberate: on a small machine the benchmark measures per-call
    cost, and several sessions competing for cores would measure contention instead.
    """
    import onnxruntime

    from ensembles.fused import session_options

    return onnxruntime.InferenceSession(
        str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )


def session_outputs(session: Any, X: np.ndarray) -> list[np.ndarray]:
    """Every output of one model on ``X`` ``(n_samples, n_features)``, as float64 arrays.

    Returns
    -------
    list of np.ndarray, each (n_samples, n_outputs)
        Probabilities, or values (and variances for Gaussian-head members).
    """
    outputs = session.run(None, {"input": np.ascontiguousarray(X, dtype=np.float32)})
    return [np.asarray(output, dtype=np.float64) for output in outputs]
