"""Prometheus metrics: traffic, latency, batch sizes, loaded versions, variance and drift."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.prediction import Baseline, Prediction
from serving.runtime import EnsembleRuntime
from serving.settings import MULTIPROC_ENV

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
#: Buckets of the per-row variance in units of its held-out mean: edges times the held-out
#: level, so they follow the target's scale (regression) as they do probabilities.
_VARIANCE_RATIO_EDGES = np.array([0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0])
#: Length of the drift window in rows: every drift signal weighs the row served ``k`` rows
#: ago by ``exp(-k / DRIFT_WINDOW_ROWS)``, however the rows were batched.
DRIFT_WINDOW_ROWS = 1000
#: Features named by ``ensembles_feature_drift`` and ``/v1`` info: the largest PSIs.
N_DRIFT_FEATURES = 5
#: A row is far outside the training range when some feature lies this many held-out
#: standard deviations from the held-out mean. Chebyshev's inequality puts at most 1% of
#: the held-out rows themselves that far out; new rows can pass it more often where a
#: feature is nearly constant on the held-out rows (a pixel almost always 0, whose rare
#: values the standard deviation of a few hundred rows understates): a review measured
#: 1.1% and 3.1% of two digits versions' own 360 test rows. A count to watch for a rise,
#: not proof of extrapolation row by row.
OUT_OF_RANGE_Z = 10.0
#: A worker folds the batches it served into its request-size, variance and drift metrics
#: once they hold this many rows (after the answer that crossed it has gone), every
#: :data:`FOLD_INTERVAL_S`, or when it is scraped: one vectorised pass per few hundred rows
#: instead of a dozen numpy calls per request before its answer.
FOLD_ROWS = 256
#: Longest time served rows wait to be folded into the variance and drift metrics.
FOLD_INTERVAL_S = 1.0


def multiprocess_dir() -> str | None:
    """The ``PROMETHEUS_MULTIPROC_DIR`` of this process (set by ``python -m serving``)."""
    return os.environ.get(MULTIPROC_ENV) or None


def forget_dead_workers(folder: str) -> None:
    """Mark every worker that left ``live*`` gauge files in ``folder`` but is gone as dead.

    A worker marks itself dead when it exits cleanly (:meth:`ServingMetrics.close`); one
    killed (by the OOM killer, ``kill -9``) cannot, and its gauges would stay in every
    scrape. Its counters and histograms stay: the requests it served did happen.
    """
    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):  # another worker's scrape was first
                prometheus_multiprocess.mark_process_dead(int(pid), folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _observe_counts(child: Histogram, counts: np.ndarray, total: float) -> None:
    """Add per-bucket counts to a histogram child in one go (``len(counts)`` = its buckets).

    ``Histogram.observe`` takes one value at a time; a batch of rows is binned with numpy
    first and each bucket's value incremented once. Uses the child's bucket values, as
    ``observe`` does, so it works with multiprocess (mmap) values too.
    """
    for index in np.flatnonzero(counts):
        child._buckets[index].inc(int(counts[index]))
    child._sum.inc(total)


@dataclass(frozen=True, eq=False)
class _Served:
    """One combined batch a runtime served, waiting to be folded into the metrics."""

    runtime: EnsembleRuntime
    X: np.ndarray
    variance: np.ndarray | None
    request_rows: list[int]

    def row_variance(self) -> np.ndarray:
        """The served ``variance`` averaged over each row's outputs."""
        assert self.variance is not None
        per_row = self.variance.reshape(len(self.X), -1)
        return np.add.reduce(per_row, axis=1) / per_row.shape[1]


class _DriftWindow:
    """Exponentially weighted sums over the recent rows one runtime (one version) served.

    Parameters
    ----------
    baseline : Baseline
        The version's held-out statistics.
    feature_names : list of str
        Its feature names, for the worst-features report.
    """

    def __init__(self, baseline: Baseline, feature_names: list[str]) -> None:
        self.baseline = baseline
        self.feature_names = feature_names
        self.rows = 0.0
        self.abs_z = 0.0
        self.variance_rows = 0.0
        self.variance = 0.0
        self.counts = np.zeros(baseline.feature_shares.shape)

    def add(
        self, row_abs_z: np.ndarray, row_variance: np.ndarray | None, counts: np.ndarray
    ) -> None:
        """Decay the window by the new rows and add them.

        Parameters
        ----------
        row_abs_z : np.ndarray, shape (n_samples,)
            Each row's mean absolute z-score over its features.
        row_variance : np.ndarray, shape (n_variance_rows,), or None
            The served member variance of the rows that report one (finite ones).
        counts : np.ndarray, shape (n_features, n_bins)
            :meth:`Baseline.bin_counts` of the rows.
        """
        keep = math.exp(-len(row_abs_z) / DRIFT_WINDOW_ROWS)
        self.rows = self.rows * keep + len(row_abs_z)
        self.abs_z = self.abs_z * keep + float(row_abs_z.sum())
        self.counts *= keep
        self.counts += counts
        if row_variance is not None and len(row_variance):
            keep = math.exp(-len(row_variance) / DRIFT_WINDOW_ROWS)
            self.variance_rows = self.variance_rows * keep + len(row_variance)
            self.variance = self.variance * keep + float(row_variance.sum())

    def ratios(self) -> dict[str, float]:
        """``feature_z`` and ``variance``: the window's means over their held-out levels."""
        ratios = {"feature_z": self.abs_z / self.rows / self.baseline.mean_abs_z}
        if self.variance_rows > 0 and self.baseline.mean_variance > 0:
            ratios["variance"] = self.variance / self.variance_rows / self.baseline.mean_variance
        return ratios

    def worst_features(self) -> dict[str, float]:
        """The :data:`N_DRIFT_FEATURES` features of largest PSI, largest first, name -> PSI."""
        psi = self.baseline.feature_psi(self.counts)
        worst = np.argsort(-psi, kind="stable")[:N_DRIFT_FEATURES]
        return {self.feature_names[j]: float(psi[j]) for j in worst}


class _DriftCollector(Collector):
    """``ensembles_drift_ratio{ensemble,signal}`` and ``ensembles_feature_drift{ensemble,
    feature}``, computed at scrape time from the window of the version serving by default.

    Only the worst :data:`N_DRIFT_FEATURES` features of each ensemble are exported, so the
    label set stays bounded and a feature that leaves the worst ones leaves no stale series;
    a request pinned to an older version feeds that version's window, never these series,
    and a new version's series start with its first rows.
    """

    def __init__(self, metrics: ServingMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ratios, features = self._families()
        for ensemble, (signals, worst) in self._metrics.serving_drift().items():
            for signal, value in signals.items():
                ratios.add_metric([ensemble, signal], value)
            for feature, psi in worst.items():
                features.add_metric([ensemble, feature], psi)
        yield ratios
        yield features

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        ratios = GaugeMetricFamily(
            "ensembles_drift_ratio",
            "Smoothed feature z-score or variance relative to the held-out level, of the "
            "version serving by default (this worker)",
            labels=["ensemble", "signal"],
        )
        features = GaugeMetricFamily(
            "ensembles_feature_drift",
            f"Population stability index of the {N_DRIFT_FEATURES} most drifted features of "
            f"the last ~{DRIFT_WINDOW_ROWS} rows against held-out quantile bins, of the "
            "version serving by default (this worker)",
            labels=["ensemble", "feature"],
        )
        return ratios, features


class ServingMetrics:
    """All metrics of one app, in their own registry (so tests can create many apps).

    Drift, per version, over a window of the last ~``DRIFT_WINDOW_ROWS`` rows
    (exponentially weighted by row): ``ensembles_drift_ratio`` with ``signal="feature_z"``
    (mean absolute z-score of the rows against the held-out feature statistics) and
    ``signal="variance"`` (mean served member disagreement, the ``variance`` output), each
    divided by the same figure on the held-out validation rows, so both sit near 1 while
    traffic looks like held-out data; 2 means twice as far from the training distribution
    or twice the disagreement. Per feature, ``ensembles_feature_drift`` gives the
    population stability index of the window against held-out quantile bins for the
    ``N_DRIFT_FEATURES`` worst features (one shifted feature among many is visible there
    when the mean z-score barely moves). Both series are those of the version serving by
    default (:meth:`now_serving`); rows of requests pinned to another version feed only
    that version's window (``feature_drift`` of its ``/v1`` info).
    ``ensembles_prediction_variance`` is the per-row
    variance in units of its held-out mean. Rows with a feature over ``OUT_OF_RANGE_Z``
    held-out standard deviations out are served and counted in
    ``ensembles_out_of_range_rows``. These four and ``ensembles_request_rows`` are
    recorded after the answers have gone, a few hundred rows at a time
    (:meth:`observe_batch`, :meth:`fold_soon`), so they trail the traffic by at most
    :data:`FOLD_INTERVAL_S`; a scrape folds in the answering worker's rows first.

    With several workers (``PROMETHEUS_MULTIPROC_DIR`` set, as ``python -m serving
    --workers N`` does), every worker writes its values to files in that folder and
    :meth:`render` aggregates all workers: counters and histograms are summed, the gauges
    show the most recent value of a live worker (versions held: the largest), and a worker
    that exits is marked dead (:meth:`close`; one killed is found dead at the next scrape,
    :func:`forget_dead_workers`) so its gauges disappear. The drift windows are per
    worker: both drift series are those of the worker answering the scrape (each worker
    sees a random share of the traffic).
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
            "Refusals of a version at load time (each worker refuses for itself, and again "
            "when a refused version's files change and it is refused again)",
            ["ensemble"],
            registry=self.registry,
        )
        self.out_of_range = Counter(
            "ensembles_out_of_range_rows",
            f"Rows received with a feature over {OUT_OF_RANGE_Z:g} held-out standard deviations "
            "from the held-out mean (allowed, but extrapolated)",
            ["ensemble"],
            registry=self.registry,
        )
        self.unseen_levels = Counter(
            "ensembles_unseen_categories",
            "Categorical cells received with a level the ensemble never saw in training "
            "(served as its (other) level), per column",
            ["ensemble", "column"],
            registry=self.registry,
        )
        self.variance = Histogram(
            "ensembles_prediction_variance",
            "Per-row member variance (pool disagreement) served, divided by its held-out mean",
            ["ensemble"],
            buckets=tuple(float(edge) for edge in _VARIANCE_RATIO_EDGES),
            registry=self.registry,
        )
        self._drift_lock = threading.Lock()
        #: The drift window of every runtime that served a batch (gone with the runtime).
        self._windows: weakref.WeakKeyDictionary[EnsembleRuntime, _DriftWindow] = (
            weakref.WeakKeyDictionary()
        )
        #: Per ensemble, the version serving by default (the registry says at every swap).
        self._serving: dict[str, EnsembleRuntime] = {}
        self._drift = _DriftCollector(self)
        self.registry.register(self._drift)
        #: Served batches not yet folded in, and their rows.
        self._fold_lock = threading.Lock()
        self._unfolded: list[_Served] = []
        self._unfolded_rows = 0
        self._fold_scheduled = False

    def count_unseen(self, ensemble: str, unseen: dict[str, int]) -> None:
        """Count the unseen categorical levels of one request, per column."""
        for column, count in unseen.items():
            self.unseen_levels.labels(ensemble, column).inc(count)

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
        """Keep one combined batch for the request-size, variance and drift metrics.

        The runtime calls it (as its ``on_prediction`` hook) once per micro-batch group (or
        once per answered request of a group in which one was refused), before the
        answers go out, so it only queues the batch. :meth:`fold` records it
        with the batches served since: through :meth:`fold_soon` once :data:`FOLD_ROWS`
        rows have gathered, within :data:`FOLD_INTERVAL_S` otherwise
        (:meth:`fold_forever`), or when a scrape or an info request reads the metrics.

        Parameters
        ----------
        runtime : EnsembleRuntime
        X : np.ndarray of float32, shape (n_samples, n_features)
            The rows of every request of the batch, concatenated (not modified later).
        prediction : Prediction
            Their combined prediction (not modified later).
        request_rows : list of int
            Row count of each request in the batch (``sum(request_rows) == len(X)``).
        """
        served = _Served(runtime, X, prediction.uncertainty.get("variance"), request_rows)
        with self._fold_lock:
            self._unfolded.append(served)
            self._unfolded_rows += len(X)

    def fold_soon(self) -> None:
        """Fold on the next turn of the event loop when :data:`FOLD_ROWS` rows are waiting.

        The app calls it, on the loop, once it has sent an answer: the answers of the same
        batch, woken together, are sent before the fold runs.
        """
        if self._fold_scheduled or self._unfolded_rows < FOLD_ROWS:
            return
        self._fold_scheduled = True
        asyncio.get_running_loop().call_soon(self.fold)

    def fold(self) -> None:
        """Record the batches served since the last fold: sizes, variance and drift.

        A failure is logged and costs those batches' metrics, never a request.
        """
        with self._fold_lock:
            unfolded, self._unfolded, self._unfolded_rows = self._unfolded, [], 0
            self._fold_scheduled = False
        by_runtime: dict[EnsembleRuntime, list[_Served]] = {}
        for served in unfolded:
            by_runtime.setdefault(served.runtime, []).append(served)
        for runtime, batches in by_runtime.items():
            try:
                self._fold_batches(runtime, batches)
            except Exception:  # metrics must never fail a request or a scrape
                logger.exception("recording the metrics of %d batches failed", len(batches))

    async def fold_forever(self) -> None:
        """Fold served rows every :data:`FOLD_INTERVAL_S` (the app runs it while it serves)."""
        while True:
            await asyncio.sleep(FOLD_INTERVAL_S)
            if self._unfolded:
                self.fold()

    def _fold_batches(self, runtime: EnsembleRuntime, batches: list[_Served]) -> None:
        rows_histogram = self.request_rows.labels(runtime.name)
        for n_rows in (n for batch in batches for n in batch.request_rows):
            rows_histogram.observe(n_rows)
        if runtime.baseline is None:
            return
        X = np.concatenate([batch.X for batch in batches])
        variances = [batch.row_variance() for batch in batches if batch.variance is not None]
        self._fold_rows(runtime, X, np.concatenate(variances) if variances else None)

    def _fold_rows(
        self, runtime: EnsembleRuntime, X: np.ndarray, row_variance: np.ndarray | None
    ) -> None:
        """Record the variance, out-of-range rows and drift of rows one runtime served."""
        name = runtime.name
        baseline: Baseline = runtime.baseline
        if row_variance is not None:
            row_variance = row_variance[np.isfinite(row_variance)]  # refused rows
            if baseline.mean_variance > 0:
                ratio = row_variance / baseline.mean_variance
                bins = np.bincount(
                    np.searchsorted(_VARIANCE_RATIO_EDGES, ratio, side="left"),
                    minlength=len(_VARIANCE_RATIO_EDGES) + 1,
                )
                _observe_counts(self.variance.labels(name), bins, float(ratio.sum()))
        z_scores = np.abs((X - baseline.feature_mean) / baseline.feature_std)
        far = int(np.count_nonzero(z_scores.max(axis=1) > OUT_OF_RANGE_Z))
        if far:
            self.out_of_range.labels(name).inc(far)
        counts = baseline.bin_counts(X)
        with self._drift_lock:
            window = self._windows.get(runtime)
            if window is None:
                window = _DriftWindow(baseline, runtime.manifest.input.feature_names)
                self._windows[runtime] = window
            window.add(z_scores.mean(axis=1), row_variance, counts)

    def feature_drift(self, runtime: EnsembleRuntime) -> dict[str, float] | None:
        """The worst features of the traffic ``runtime`` served (name -> PSI, largest first).

        None before it served a batch (in this worker) or without a held-out baseline.
        """
        self.fold()
        with self._drift_lock:
            window = self._windows.get(runtime)
            return None if window is None else window.worst_features()

    def serving_drift(self) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
        """Per ensemble, the drift ratios and worst features of the version serving by
        default (once it has served a batch in this worker).

        Returns
        -------
        dict
            ``{name: (ratios, worst_features)}``, computed under the drift lock: a scrape
            runs in a thread while the event loop folds new rows into the windows.
        """
        self.fold()
        drift = {}
        with self._drift_lock:
            for name, runtime in self._serving.items():
                window = self._windows.get(runtime)
                if window is not None:
                    drift[name] = (window.ratios(), window.worst_features())
        return drift

    def now_serving(self, ensemble: str, runtime: EnsembleRuntime) -> None:
        """Export ``runtime``'s drift as the ensemble's from now on (the registry's swap).

        Every version has its own window (a new version has a new baseline), so nothing of
        the old version's traffic enters the new one's signals; the old version's queued
        rows are folded into its own window first.
        """
        self.fold()
        with self._drift_lock:
            self._serving[ensemble] = runtime

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of every worker, when several)."""
        self.fold()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(self._drift)
        return generate_latest(registry)

    def close(self) -> None:
        """Record the rows still queued, then mark this worker dead so the ``live*`` gauges
        of the other workers stay exact."""
        self.fold()
        if self.multiprocess_dir is not None:
            prometheus_multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
