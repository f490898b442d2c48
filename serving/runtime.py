"""The runtime of one loaded ensemble version: onnxruntime sessions, combiners and uncertainty."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ensembles.errors import EnsembleError, IntegrityError
from ensembles.fused import MEMBER_OUTPUTS, MEMBER_TENSORS, MEMBER_VARIANCES, session_options
from ensembles.reproduction import stored_test_data
from ensembles.store import ModelStore, StoredVersion
from ensembles.tabular import FLOAT32_MAX
from ensembles.uncertainty import served_uncertainty
from ensembles.version_parts import (
    AveragedOutputs,
    VersionParts,
    WeightAverage,
    verify_reproduction,
)
from serving.batching import BatcherClosedError, MicroBatcher
from serving.columns import TableInput
from serving.errors import InvalidRequestError, OverloadedError
from serving.prediction import Prediction, baseline_from, finite_rows
from serving.tensors import TensorSpec
from serving.v2_codec import TensorMeta

logger = logging.getLogger(__name__)

LABEL = "label"

#: ``on_prediction(runtime, X, prediction, request_rows)``: called once per combined batch,
#: or, when a request in it is refused, once per answered request (refused ones left out).
PredictionHook = Callable[["EnsembleRuntime", np.ndarray, "Prediction", list[int]], None]


class EnsembleRuntime:
    """Serve one version of an ensemble: run its members, combine, measure uncertainty.

    Parameters
    ----------
    stored : StoredVersion
        The verified version: its manifest and the bytes of every file it lists.
    intra_op_threads : int
        onnxruntime threads inside one operator (execution is sequential).
    interval_level : float, optional
        Probability mass of regression intervals; None takes the version's own
        (``manifest.training["interval_level"]``, the level its coverage was scored at).
    batching : bool
        Coalesce concurrent :meth:`predict_async` calls into one onnxruntime call.
    max_wait_ms : float
        Longest extra wait for more requests under load (``serving.batching``).
    max_batch_rows : int
        Largest request (rows) accepted.
    max_microbatch_rows : int
        Most rows coalesced into one micro-batch (one onnxruntime call); a single request
        with more rows (up to ``max_batch_rows``) runs alone.
    max_queue_rows : int
        Rows in flight before :meth:`predict_async` refuses with ``OverloadedError``.
    inline_rows : int
        Micro-batches of at most this many rows run on the event loop rather than in the
        batcher's worker thread (``serving.batching``); 0 for never.
    on_batch : callable, optional
        Called with the row count of every onnxruntime call that serves requests (for
        metrics; not those of the warm-up at load).
    on_prediction : callable, optional
        ``on_prediction(runtime, X, prediction, request_rows)``, called by
        :meth:`predict_async` once per combined batch (where the batch runs) with
        the rows, the combined prediction and the row count of each request in it (for
        metrics: request sizes, variance histogram, drift); a request refused for
        non-finite outputs is not reported (its batch's answered requests then are, one
        call each). Not called by :meth:`predict`.

    Notes
    -----
    Members run in one fused onnxruntime graph (``ensembles.fused``). With batching on,
    :meth:`predict_async` requests are coalesced into micro-batches; for each batch (on the
    event loop up to ``inline_rows`` rows, else in the batcher's worker thread) the
    members run once over all rows, then requests that ask for the same
    combiner and uncertainty share one combine + uncertainty computation over their
    concatenated rows, and each request gets its slice. Use :meth:`load` to build a runtime
    from the store; it verifies checksums and signatures. Building one re-runs every
    combiner (and the averaged graph) on the stored test member predictions and refuses the
    version when they do not reproduce the stored test outputs
    (``ensembles.reproduction``). A request whose rows drive an output non-finite is refused
    (``InvalidRequestError`` naming the rows) rather than answered with NaN or infinity.
    """

    def __init__(
        self,
        stored: StoredVersion,
        *,
        intra_op_threads: int = 1,
        interval_level: float | None = None,
        batching: bool = True,
        max_wait_ms: float = 1.0,
        max_batch_rows: int = 4096,
        max_microbatch_rows: int = 512,
        max_queue_rows: int = 65536,
        inline_rows: int = 0,
        on_batch: Callable[[int], None] | None = None,
        on_prediction: PredictionHook | None = None,
    ) -> None:
        manifest = stored.manifest
        self.manifest = manifest
        self.folder = stored.folder
        self.task = manifest.task
        self.n_features = manifest.input.n_features
        self.n_outputs = manifest.output.n_outputs
        self.n_members = manifest.n_members
        self.interval_level = manifest.interval_level if interval_level is None else interval_level
        self.batching = batching
        self.max_wait_ms = max_wait_ms
        self.max_batch_rows = max_batch_rows
        self.max_microbatch_rows = max_microbatch_rows
        self.max_queue_rows = max_queue_rows
        self.inline_rows = inline_rows
        self._on_batch: Callable[[int], None] | None = None  # the warm-up is no traffic
        self._on_prediction = on_prediction
        self._options = session_options(intra_op_threads)
        parts = VersionParts(stored, self._options)
        #: The version folder relative to the store root, for messages (never absolute).
        self.label = parts.label
        self._members = parts.members()
        self._has_variance = self._members.has_variance
        self.combiners = parts.combiners()
        #: Each combiner's regression variance calibration (1 where none was fitted).
        self._variance_scales = {
            name: info.variance_scale or 1.0 for name, info in manifest.combiners.items()
        }
        heldout, expected = stored_test_data(stored)
        self.baseline = baseline_from(heldout.validation, manifest)
        self._batcher: Any = None
        self._retired = False
        self._inflight_rows = 0
        self._lock = threading.Lock()
        self.uncertainty_names, self.outputs = self._warm_up()
        verify_reproduction(self.label, self._members, self.combiners, heldout.test, expected)
        self._on_batch = on_batch
        # Derived once here rather than on every request.
        #: Every output tensor by name.
        self.output_specs: dict[str, TensorSpec] = {spec.name: spec for spec in self.outputs}
        #: The outputs returned when a request lists none: all but the per-member ones.
        self.default_outputs: tuple[str, ...] = tuple(
            name for name in self.output_specs if name not in MEMBER_TENSORS
        )
        #: The raw columns a table ensemble takes (``/v1`` records, ``/v2`` column inputs).
        self.table_input = TableInput(manifest, max_batch_rows)
        #: The inputs as the V2 codec checks them: one per column of a table, else the matrix.
        self.input_meta: dict[str, TensorMeta] = (
            self.table_input.tensor_meta
            if self.table_input.is_table
            else {manifest.input.name: TensorMeta("FP32", (-1, self.n_features))}
        )
        self.uncertainty_set: frozenset[str] = frozenset(self.uncertainty_names)

    @classmethod
    def load(cls, store: ModelStore, name: str, version: int, **options: Any) -> EnsembleRuntime:
        """Load and verify one version from the store.

        Parameters
        ----------
        store : ModelStore
            The store holding the version.
        name : str
            Ensemble name.
        version : int
            Version number.
        **options
            Keyword arguments of :class:`EnsembleRuntime` (threads, batching, limits,
            hooks).

        Returns
        -------
        EnsembleRuntime
            The runtime, warmed up and ready to predict.

        Raises
        ------
        NotFoundError
            When the version does not exist.
        IntegrityError
            When a checksum, a signature, a combiner state or the warm-up fails.
        """
        stored = store.read_version(name, version)
        try:
            return cls(stored, **options)
        except (IntegrityError, OSError):  # an OS error may pass: the registry decides
            raise
        except Exception as exc:
            raise IntegrityError(
                f"{name} version {version} cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc

    @property
    def name(self) -> str:
        """Ensemble name."""
        return self.manifest.name

    @property
    def version(self) -> int:
        """Version number."""
        return self.manifest.version

    # -- building ----------------------------------------------------------------------
    def _warm_up(self) -> tuple[tuple[str, ...], tuple[TensorSpec, ...]]:
        X = np.zeros((2, self.n_features), dtype=np.float32)
        if self.baseline is not None:
            X[:] = self.baseline.feature_mean
        names: tuple[str, ...] = ()
        for combiner in self.combiners:
            try:  # with every value check that requests skip
                prediction = self._run_one(X, combiner, False, True, check=True)
            except EnsembleError as exc:
                raise IntegrityError(
                    f"combiner '{combiner}' fails on a warm-up batch: {exc}"
                ) from exc
            if combiner == self.manifest.default_combiner:
                names = tuple(prediction.uncertainty)
                shapes = {k: v.shape[1:] for k, v in prediction.uncertainty.items()}
        main = self.manifest.output.name
        specs = [TensorSpec(main, "FP32", (-1, self.n_outputs))]
        if self.task == "classification":
            specs.append(TensorSpec(LABEL, "INT64", (-1,)))
        specs += [TensorSpec(k, "FP32", (-1, *shapes[k])) for k in names]
        specs.append(TensorSpec(MEMBER_OUTPUTS, "FP32", (self.n_members, -1, self.n_outputs)))
        if self._has_variance:
            specs.append(TensorSpec(MEMBER_VARIANCES, "FP32", (self.n_members, -1, self.n_outputs)))
        return names, tuple(specs)

    # -- checks ------------------------------------------------------------------------
    def check_input(self, X: np.ndarray) -> np.ndarray:
        """Validate a batch and return it as contiguous float32.

        Parameters
        ----------
        X : np.ndarray, shape (n_samples, n_features)

        Raises
        ------
        InvalidRequestError
            Empty batch, too many rows, wrong feature count, or NaN/infinite values.
        """
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise InvalidRequestError(
                f"expected rows of {self.n_features} features ({self.n_features} columns) for "
                f"'{self.name}'; got shape {list(X.shape)}",
                field="rows",
            )
        if X.shape[0] == 0:
            raise InvalidRequestError("empty batch: send at least one row", field="rows")
        if X.shape[0] > self.max_batch_rows:
            raise InvalidRequestError(
                f"batch of {X.shape[0]} rows is over the limit of {self.max_batch_rows} rows; "
                "split it into smaller requests",
                field="rows",
            )
        X = np.ascontiguousarray(X, dtype=np.float32)
        finite = np.isfinite(X)
        if not finite.all():
            bad = np.flatnonzero(~finite.all(axis=1))[:5].tolist()
            raise InvalidRequestError(
                f"input contains NaN or infinite values (rows {bad}), or numbers beyond "
                f"float32's range that became infinite; send finite numbers within "
                f"±{FLOAT32_MAX:.2g}",
                field="rows",
            )
        return X

    def resolve_combiner(self, combiner: str | None) -> str:
        """The combiner name to use: ``combiner`` if fitted, the default when None."""
        if combiner is None:
            return self.manifest.default_combiner
        if combiner not in self.combiners:
            raise InvalidRequestError(
                f"unknown combiner '{combiner}' for '{self.name}' version {self.version}; "
                f"fitted combiners: {sorted(self.combiners)}",
                field="combiner",
            )
        return combiner

    # -- prediction --------------------------------------------------------------------
    def run_members(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run every member in one onnxruntime call.

        Parameters
        ----------
        X : np.ndarray, shape (n_samples, n_features), float32

        Returns
        -------
        member_outputs : np.ndarray, shape (n_members, n_samples, n_outputs)
        member_variances : np.ndarray of the same shape, or None
        """
        if self._on_batch is not None:
            self._on_batch(len(X))
        result = self._members(X)
        if isinstance(result, tuple):
            return result[0], result[1]
        return result, None

    def predict(
        self,
        X: np.ndarray,
        combiner: str | None = None,
        members: bool = False,
        uncertainty: bool = True,
    ) -> Prediction:
        """Combined prediction and uncertainty for a batch, synchronously.

        Parameters
        ----------
        X : np.ndarray, shape (n_samples, n_features)
            Rows; any real dtype, validated and converted to float32.
        combiner : str, optional
            A fitted combiner's name (the weight-averaged model included); default when None.
        members : bool, default False
            Also return the per-member outputs.
        uncertainty : bool, default True
            Compute the uncertainty measures.

        Returns
        -------
        Prediction
        """
        X = self.check_input(X)
        prediction = self._run_one(X, self.resolve_combiner(combiner), members, uncertainty)
        if bad := prediction.nonfinite_rows():
            raise _nonfinite_error(bad)
        return prediction

    async def predict_async(
        self,
        X: np.ndarray,
        combiner: str | None = None,
        members: bool = False,
        uncertainty: bool = True,
    ) -> Prediction:
        """Like :meth:`predict`, micro-batching member runs across concurrent calls.

        Raises
        ------
        OverloadedError
            When more than ``max_queue_rows`` rows are already in flight.
        """
        X = self.check_input(X)
        name = self.resolve_combiner(combiner)
        rule = self.combiners[name]
        rows = len(X)
        with self._lock:
            if self._inflight_rows + rows > self.max_queue_rows:
                raise OverloadedError(
                    f"'{self.name}' has {self._inflight_rows} rows in flight (limit "
                    f"{self.max_queue_rows}); retry shortly"
                )
            self._inflight_rows += rows
        try:
            batcher = None
            if not self._retired and self._needs_members(rule, members, uncertainty):
                batcher = self._get_batcher()
            if batcher is not None:
                try:
                    return await batcher.submit(X, (name, uncertainty, members))
                except BatcherClosedError:
                    pass  # a retired runtime finishing a late request: run it alone
            return await asyncio.to_thread(self._predict_alone, X, name, members, uncertainty)
        finally:
            with self._lock:
                self._inflight_rows -= rows

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """Wait for in-flight requests (up to ``timeout_s``), then stop the micro-batcher."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._inflight_rows and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self._retired = True
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.close()

    def _predict_alone(
        self, X: np.ndarray, name: str, members: bool, uncertainty: bool
    ) -> Prediction:
        """One request without micro-batching (worker thread), reported to the hook."""
        prediction = self._run_one(X, name, members, uncertainty)
        if bad := prediction.nonfinite_rows():
            raise _nonfinite_error(bad)  # refused rows stay out of the metrics and drift
        self._report(X, prediction, [len(X)])
        return prediction

    def _run_one(
        self, X: np.ndarray, name: str, members: bool, uncertainty: bool, *, check: bool = False
    ) -> Prediction:
        """One checked batch with a resolved combiner: run what it needs, then finish."""
        rule = self.combiners[name]
        averaged = self._run_averaged(rule, X)
        outputs, variances = (
            self.run_members(X) if self._needs_members(rule, members, uncertainty) else (None, None)
        )
        return self._finish(
            X, name, outputs, variances, averaged, members, uncertainty, check=check
        )

    def _report(self, X: np.ndarray, prediction: Prediction, request_rows: list[int]) -> None:
        if self._on_prediction is None:
            return
        try:
            self._on_prediction(self, X, prediction, request_rows)
        except Exception:  # metrics must never fail a prediction
            logger.exception("on_prediction hook failed")

    def _report_served(
        self,
        X: np.ndarray,
        combined: Prediction,
        spans: list[tuple[int, int]],
        results: list[Prediction | Exception],
    ) -> None:
        """Report the requests of one combine that are answered, not the refused ones.

        A refused row (its outputs not finite, e.g. inputs near float32's limit) would
        otherwise stay in the drift windows for tens of thousands of rows.
        """
        if not any(isinstance(result, Exception) for result in results):  # the common case
            self._report(X, combined, [stop - start for start, stop in spans])
            return
        for (start, stop), result in zip(spans, results, strict=True):
            if not isinstance(result, Exception):
                self._report(X[start:stop], combined.rows(start, stop), [stop - start])

    def _get_batcher(self) -> Any:
        if self._batcher is None and self.batching:
            self._batcher = MicroBatcher(
                self._run_micro_batch, self.max_microbatch_rows, self.max_wait_ms, self.inline_rows
            )
        return self._batcher

    def _run_micro_batch(
        self, X: np.ndarray, spans: list[tuple[Any, int, int]]
    ) -> list[Prediction | Exception]:
        """Members once over the whole micro-batch, then one combine per (combiner, uncertainty).

        ``spans`` holds ``((combiner, uncertainty, members), start, stop)`` per request.
        Runs where the batcher runs the batch (the event loop for small batches, else its
        worker thread); a failing group fails only its requests.
        """
        outputs, variances = self.run_members(X)
        groups: dict[tuple[str, bool], list[int]] = {}
        for index, ((name, uncertainty, _), _, _) in enumerate(spans):
            groups.setdefault((name, uncertainty), []).append(index)
        results: list[Prediction | Exception] = [None] * len(spans)  # type: ignore[list-item]
        for (name, uncertainty), indices in groups.items():
            try:
                if len(indices) == len(spans):  # the common case: one group, no copies
                    Xg, og, vg = X, outputs, variances
                    local = [(start, stop) for _, start, stop in spans]
                else:
                    take = np.concatenate([np.arange(spans[i][1], spans[i][2]) for i in indices])
                    Xg, og = X[take], outputs[:, take]
                    vg = None if variances is None else variances[:, take]
                    local, at = [], 0
                    for i in indices:
                        local.append((at, at + spans[i][2] - spans[i][1]))
                        at = local[-1][1]
                rule = self.combiners[name]
                averaged = self._run_averaged(rule, Xg)
                combined = self._finish(Xg, name, og, vg, averaged, False, uncertainty)
                for i, (start, stop) in zip(indices, local, strict=True):
                    part = combined.rows(start, stop)
                    if spans[i][0][2]:  # per-member outputs asked for
                        a, b = spans[i][1], spans[i][2]
                        part.member_outputs = outputs[:, a:b]
                        part.member_variances = None if variances is None else variances[:, a:b]
                    bad = part.nonfinite_rows()
                    results[i] = _nonfinite_error(bad) if bad else part
                self._report_served(Xg, combined, local, [results[i] for i in indices])
            except Exception as exc:
                for i in indices:
                    results[i] = exc
        return results

    def _needs_members(self, rule: Any, members: bool, uncertainty: bool) -> bool:
        return members or uncertainty or not isinstance(rule, WeightAverage)

    def _run_averaged(self, rule: Any, X: np.ndarray) -> AveragedOutputs | None:
        """The weight-averaged model's values and own variance on ``X``; None for a rule."""
        return rule(X) if isinstance(rule, WeightAverage) else None

    def _finish(
        self,
        X: np.ndarray,
        name: str,
        outputs: np.ndarray | None,
        variances: np.ndarray | None,
        averaged: AveragedOutputs | None,
        members: bool,
        uncertainty: bool,
        *,
        check: bool = False,
    ) -> Prediction:
        """Combine and measure uncertainty; ``check`` validates the member values (warm-up).

        The served output is the combiner's (or the weight-averaged model's own); the
        uncertainty is :func:`~ensembles.uncertainty.served_uncertainty` of it over the
        whole member pool, the averaged model's variance head as its aleatoric part.
        """
        rule = self.combiners[name]
        # Member outputs come from verified sessions whose values the warm-up checked: convert
        # them to float64 once here, and let combine skip its checks.
        pool = None if outputs is None else outputs.astype(np.float64)
        pool_variances = None
        if variances is not None and uncertainty:
            pool_variances = variances.astype(np.float64)
        served_variance = None
        # Rows that overflow are refused once combined (``Prediction.finite``): no warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if isinstance(rule, WeightAverage):
                values, own_variance = averaged  # type: ignore[misc]
                combined = values.astype(np.float64)
                if own_variance is not None and uncertainty:
                    served_variance = own_variance.astype(np.float64)
            else:
                try:
                    combined = rule.combine(pool, X, check=check)
                except EnsembleError as exc:  # the member outputs are ours: a server-side fault
                    raise IntegrityError(f"combiner '{name}' failed: {exc}") from exc
            measures: dict[str, np.ndarray] = {}
            if uncertainty:
                measures = served_uncertainty(
                    self.task,
                    pool,
                    combined,
                    pool_variances,
                    served_variance,
                    self.interval_level,
                    self._variance_scales[name],
                )
        labels = combined.argmax(axis=1) if self.task == "classification" else None
        return Prediction(
            combiner=name,
            combined=combined,
            labels=labels,
            uncertainty=measures,
            member_outputs=outputs if members else None,
            member_variances=variances if members else None,
            finite=finite_rows(combined, measures, outputs, variances),
        )


def _nonfinite_error(rows: list[int]) -> InvalidRequestError:
    """The refusal of a request whose ``rows`` drive an output non-finite."""
    shown = ", ".join(map(str, rows[:10])) + (", …" if len(rows) > 10 else "")
    return InvalidRequestError(
        f"rows [{shown}] drive the model's output to infinity or NaN: their values are far "
        "outside the range the ensemble was trained on; send values on the training scale",
        field="rows",
    )
