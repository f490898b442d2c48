"""Prometheus metrics: traffic, latency, batch sizes, loaded versions, variance and drift."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from serving.runtime import Baseline, EnsembleRuntime, Prediction

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
_VARIANCE_EDGES = np.array([1e-6, 1e-5, 1e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])
#: Weight of each new batch in the exponentially weighted drift means.
DRIFT_ALPHA = 0.05


class _VarianceHistogram(Collector):
    """A histogram per ensemble filled a whole batch at a time (one numpy call per batch)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}

    def observe(self, ensemble: str, values: np.ndarray) -> None:
        bins = np.bincount(
            np.searchsorted(_VARIANCE_EDGES, values, side="left"),
            minlength=len(_VARIANCE_EDGES) + 1,
        )
        with self._lock:
            counts = self._counts.setdefault(ensemble, np.zeros(len(_VARIANCE_EDGES) + 1, np.int64))
            counts += bins
            self._sums[ensemble] = self._sums.get(ensemble, 0.0) + float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "ensembles_prediction_variance",
            "Per-row mean variance across members reported in predictions",
            labels=["ensemble"],
        )
        with self._lock:
            for ensemble, counts in self._counts.items():
                cumulative = np.cumsum(counts)
                buckets = [
                    (repr(float(e)), int(c))
                    for e, c in zip(_VARIANCE_EDGES, cumulative, strict=False)
                ]
                buckets.append(("+Inf", int(cumulative[-1])))
                family.add_metric([ensemble], buckets, self._sums[ensemble])
        yield family


class ServingMetrics:
    """All metrics of one app, in their own registry (so tests can create many apps).

    Drift: for every combined batch the mean absolute z-score of its rows against the
    held-out feature statistics of the version, and the mean reported variance, each
    divided by its held-out level and smoothed exponentially (``DRIFT_ALPHA`` per batch).
    ``ensembles_drift_ratio`` near 1 means traffic looks like held-out data; 2 means twice
    as far from the training distribution (features) or twice as uncertain (variance).
    """

    def __init__(self) -> None:
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
        )
        self.versions_loaded = Gauge(
            "ensembles_versions_loaded",
            "Versions held in memory",
            ["ensemble"],
            registry=self.registry,
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
        )
        self._variance = _VarianceHistogram()
        self.registry.register(self._variance)
        self._drift_lock = threading.Lock()
        self._drift_state: dict[tuple[str, str], float] = {}

    def batch_hook(self, ensemble: str):
        """A callback that records the rows of every onnxruntime call of ``ensemble``."""
        histogram = self.batch_rows.labels(ensemble)
        return lambda rows: histogram.observe(rows)

    def observe_prediction(
        self, runtime: EnsembleRuntime, X: np.ndarray, prediction: Prediction
    ) -> None:
        """Record one request's prediction (see :meth:`observe_batch`)."""
        self.observe_batch(runtime, X, prediction, [len(X)])

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
            self._variance.observe(name, row_variance)
        baseline: Baseline | None = runtime.baseline
        if baseline is None:
            return
        z = float(np.abs((X - baseline.feature_mean) / baseline.feature_std).mean())
        self._update_drift(name, "feature_z", z / baseline.mean_abs_z)
        if row_variance is not None and baseline.mean_variance > 0:
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
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
