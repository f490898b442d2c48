"""Prometheus metrics: traffic, latency, batch sizes, loaded versions, variance and drift."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

from serving.prediction import Baseline, Prediction
from serving.runtime import EnsembleRuntime
from serving.settings import MULTIPROC_ENV

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
_VARIANCE_EDGES = np.array([1e-6, 1e-5, 1e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])
#: Weight of each new batch in the exponentially weighted drift means.
DRIFT_ALPHA = 0.05
#: A row is far outside the training range when some feature lies this many held-out
#: standard deviations from the held-out mean: by Chebyshev's inequality at most 1% of any
#: distribution lies that far out, so such rows are extrapolation, not bad luck.
OUT_OF_RANGE_Z = 10.0


def multiprocess_dir() -> str | None:
    """The ``PROMETHEUS_MULTIPROC_DIR`` of this process (set by ``python -m serving``)."""
    return os.environ.get(MULTIPROC_ENV) or None


def _observe_counts(child: Histogram, counts: np.ndarray, total: float) -> None:
    """Add per-bucket counts to a histogram child in one go (``len(counts)`` = its buckets).

    ``Histogram.observe`` takes one value at a time; a batch of rows is binned with numpy
    first and each bucket's value incremented once. Uses the child's bucket values, as
    ``observe`` does, so it works with multiprocess (mmap) values too.
    """
    for index in np.flatnonzero(counts):
        child._buckets[index].inc(int(counts[index]))
    child._sum.inc(total)


class ServingMetrics:
    """All metrics of one app, in their own registry (so tests can create many apps).

    Drift: for every combined batch the mean absolute z-score of its rows against the
    held-out feature statistics of the version, and the mean reported variance, each
    divided by its held-out level and smoothed exponentially (``DRIFT_ALPHA`` per batch).
    ``ensembles_drift_ratio`` near 1 means traffic looks like held-out data; 2 means twice
    as far from the training distribution (features) or twice as uncertain (variance).
    Rows with a feature over ``OUT_OF_RANGE_Z`` held-out standard deviations out are served
    and counted in ``ensembles_out_of_range_rows``.

    With several workers (``PROMETHEUS_MULTIPROC_DIR`` set, as ``python -m serving
    --workers N`` does), every worker writes its values to files in that folder and
    :meth:`render` aggregates all workers: counters and histograms are summed, the gauges
    show the most recent value of a live worker (versions held: the largest), and a worker
    that exits is marked dead (:meth:`close`) so its gauges disappear.
    """

    def __init__(self) -> None:
        self.multiprocess_dir = multiprocess_dir()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ensembles_requests",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ensembles_request_latency_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_rows = Histogram(
            "ensembles_request_rows",
            "Rows per prediction request",
            ["ensemble"],
            buckets=_ROW_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "ensembles_batch_rows",
            "Rows per onnxruntime call (after micro-batching)",
            ["ensemble"],
            buckets=_ROW_BUCKETS,
            registry=self.registry,
        )
        self.loaded_version = Gauge(
            "ensembles_loaded_version",
            "Version currently served",
            ["ensemble"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.versions_loaded = Gauge(
            "ensembles_versions_loaded",
            "Versions held in memory (per worker; the largest across workers)",
            ["ensemble"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.refusals = Counter(
            "ensembles_version_refusals",
            "Versions refused at load time",
            ["ensemble"],
            registry=self.registry,
        )
        self.drift = Gauge(
            "ensembles_drift_ratio",
            "Smoothed feature z-score or variance relative to the held-out level",
            ["ensemble", "signal"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.out_of_range = Counter(
            "ensembles_out_of_range_rows",
            f"Rows served with a feature over {OUT_OF_RANGE_Z:g} held-out standard deviations "
            "from the held-out mean (allowed, but extrapolated)",
            ["ensemble"],
            registry=self.registry,
        )
        self.variance = Histogram(
            "ensembles_prediction_variance",
            "Per-row mean variance across members reported in predictions",
            ["ensemble"],
            buckets=tuple(float(edge) for edge in _VARIANCE_EDGES),
            registry=self.registry,
        )
        self._drift_lock = threading.Lock()
        self._drift_state: dict[tuple[str, str], float] = {}

    def batch_hook(self, ensemble: str) -> Callable[[int], None]:
        """A callback that records the rows of every onnxruntime call of ``ensemble``."""
        histogram = self.batch_rows.labels(ensemble)
        return lambda rows: histogram.observe(rows)

    def observe_batch(
        self,
        runtime: EnsembleRuntime,
        X: np.ndarray,
        prediction: Prediction,
        request_rows: list[int],
    ) -> None:
        """Record the request sizes, reported variance and drift of one combined batch.

        The runtime calls it (as its ``on_prediction`` hook) once per micro-batch group, in
        the batch's worker thread, so the per-request cost on the event loop is nil.

        Parameters
        ----------
        runtime : EnsembleRuntime
        X : np.ndarray, shape (n_samples, n_features)
            The rows of every request of the batch, concatenated.
        prediction : Prediction
            Their combined prediction.
        request_rows : list of int
            Row count of each request in the batch (``sum(request_rows) == len(X)``).
        """
        name = runtime.name
        rows_histogram = self.request_rows.labels(name)
        for n_rows in request_rows:
            rows_histogram.observe(n_rows)
        variance = prediction.uncertainty.get("variance")
        row_variance = None
        if variance is not None:
            row_variance = variance.reshape(len(X), -1).mean(axis=1)
            row_variance = row_variance[np.isfinite(row_variance)]  # refused rows
            bins = np.bincount(
                np.searchsorted(_VARIANCE_EDGES, row_variance, side="left"),
                minlength=len(_VARIANCE_EDGES) + 1,
            )
            _observe_counts(self.variance.labels(name), bins, float(row_variance.sum()))
        baseline: Baseline | None = runtime.baseline
        if baseline is None:
            return
        z_scores = np.abs((X - baseline.feature_mean) / baseline.feature_std)
        far = int(np.count_nonzero(z_scores.max(axis=1) > OUT_OF_RANGE_Z))
        if far:
            self.out_of_range.labels(name).inc(far)
        self._update_drift(name, "feature_z", float(z_scores.mean()) / baseline.mean_abs_z)
        if row_variance is not None and len(row_variance) and baseline.mean_variance > 0:
            self._update_drift(
                name, "variance", float(row_variance.mean()) / baseline.mean_variance
            )

    def _update_drift(self, ensemble: str, signal: str, value: float) -> None:
        key = (ensemble, signal)
        with self._drift_lock:
            previous = self._drift_state.get(key)
            value = value if previous is None else previous + DRIFT_ALPHA * (value - previous)
            self._drift_state[key] = value
        self.drift.labels(ensemble, signal).set(value)

    def reset_drift(self, ensemble: str) -> None:
        """Forget the smoothed drift of an ensemble (a new version has a new baseline)."""
        with self._drift_lock:
            for key in [k for k in self._drift_state if k[0] == ensemble]:
                del self._drift_state[key]

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of every worker, when several)."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def close(self) -> None:
        """Mark this worker dead so the ``live*`` gauges of the other workers stay exact."""
        if self.multiprocess_dir is not None:
            prometheus_multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
