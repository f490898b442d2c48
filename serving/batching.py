"""Micro-batching: coalesce concurrent requests into one blocking model call, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import NotReadyError

logger = logging.getLogger(__name__)

RunResult = np.ndarray | tuple[np.ndarray, ...]
RunFunction = Callable[[np.ndarray], Any]
SplitFunction = Callable[[Any, int, int], Any]
#: ``run_spans(X_all, spans) -> results``: ``spans`` lists ``(key, start, stop)`` per request.
SpansFunction = Callable[[np.ndarray, list[tuple[Any, int, int]]], list[Any]]

#: Weight of the newest batch in the running estimate of requests per batch.
_EXPECTED_ALPHA = 0.25


class BatcherClosedError(NotReadyError):
    """A request reached a micro-batcher that is closed or closing (answered 503)."""


@dataclass(slots=True)
class _Request:
    X: np.ndarray
    future: asyncio.Future[Any]
    key: Any = None
    arrival: float = field(default_factory=time.perf_counter)


def slice_rows(result: RunResult, start: int, stop: int) -> RunResult:
    """Rows ``start:stop`` of a batched result, on axis 1 of every array (the default split).

    Parameters
    ----------
    result : np.ndarray or tuple of np.ndarray
        Arrays shaped ``(n_members, N, ...)``.
    start, stop : int
        Row range of one request inside the batch.

    Returns
    -------
    np.ndarray or tuple of np.ndarray
        Views shaped ``(n_members, stop - start, ...)``.
    """
    if isinstance(result, tuple):
        return tuple(part[:, start:stop] for part in result)
    return result[:, start:stop]


class MicroBatcher:
    """Coalesce concurrent ``submit`` calls into batched calls of a blocking ``run``.

    A request that finds the batcher idle is dispatched at once. Requests that arrive while
    a batch runs queue up and leave together, up to ``max_batch_rows`` rows, as soon as a
    runner is free; under steady load the batcher also holds a batch back for at most
    ``max_wait_ms`` (counted from the arrival of its oldest request) until it has as many
    requests as recent batches had, so batches do not shrink to single stragglers. ``run``
    executes in worker threads (``max_concurrency`` at a time), so the event loop keeps
    parsing and answering requests meanwhile (onnxruntime releases the GIL).

    Parameters
    ----------
    run : callable or None
        ``run(X_all) -> np.ndarray or tuple of np.ndarray``, blocking; ``X_all`` has shape
        ``(N, n_features)`` and every returned array has the batch on axis 1, e.g.
        ``(n_members, N, n_outputs)`` (any result when ``split`` is given). None when
        ``run_spans`` is given instead.
    max_batch_rows : int
        Most rows per ``run`` call. A single request with more rows runs alone.
    max_wait_ms : float
        Longest extra wait for company under load; 0 dispatches whenever a runner is free.
    max_concurrency : int, default 1
        ``run`` calls in flight at once (worker threads).
    on_batch : callable, optional
        Called with the number of rows of every batch dispatched (for metrics).
    split : callable, optional
        ``split(result, start, stop)`` returns one request's part of ``run``'s result;
        defaults to :func:`slice_rows` (axis 1 of every array). Give one when ``run`` also
        does per-batch work whose result is not shaped that way, e.g. combining and
        measuring uncertainty once per batch (per-row arrays on axis 0) instead of once per
        request on the event loop.
    run_spans : callable, optional
        Instead of ``run`` + ``split``: ``run_spans(X_all, spans) -> list``, blocking, where
        ``spans`` holds ``(key, start, stop)`` for every request of the batch (``key`` as
        given to :meth:`submit`) and the result holds one item per request, in order. An
        item that is an exception instance is raised to that request alone. This lets one
        batch serve requests that ask for different things (e.g. different combiners)
        while doing the shared work once.

    The batcher has no queue limit of its own: its caller bounds the rows in flight
    (``EnsembleRuntime.max_queue_rows``, one limit for batched and unbatched requests).

    Examples
    --------
    >>> batcher = MicroBatcher(session_run, max_batch_rows=1024, max_wait_ms=1.0)
    >>> member_outputs = await batcher.submit(X)   # (n_members, len(X), n_outputs)
    >>> await batcher.close()
    """

    def __init__(
        self,
        run: RunFunction | None,
        max_batch_rows: int,
        max_wait_ms: float,
        *,
        max_concurrency: int = 1,
        on_batch: Callable[[int], None] | None = None,
        split: SplitFunction | None = None,
        run_spans: SpansFunction | None = None,
    ) -> None:
        if (run is None) == (run_spans is None):
            raise ValueError("give exactly one of run and run_spans")
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be at least 1; got {max_batch_rows}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be non-negative; got {max_wait_ms}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1; got {max_concurrency}")
        self.run = run
        self.max_batch_rows = int(max_batch_rows)
        self.max_wait_ms = float(max_wait_ms)
        self.max_concurrency = int(max_concurrency)
        self.on_batch = on_batch
        self.split = split or slice_rows
        self.run_spans = run_spans
        self._pending: deque[_Request] = deque()
        self._pending_rows = 0
        self._in_flight = 0
        self._expected = 1.0
        self._last_done = -math.inf
        self._closed = False
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(
            max_workers=self.max_concurrency, thread_name_prefix="microbatch"
        )

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch (not counting batches that are running)."""
        return self._pending_rows

    async def submit(self, X: np.ndarray, key: Any = None) -> Any:
        """Queue rows and wait for their slice of the batched result.

        Parameters
        ----------
        X : np.ndarray, shape (n_samples, n_features)
            The request's rows; ``n_samples`` may exceed ``max_batch_rows``.
        key : any, optional
            Handed to ``run_spans`` with this request's row range (ignored by ``run``).

        Returns
        -------
        np.ndarray or tuple of np.ndarray
            What ``run`` returns, restricted to these rows along axis 1, e.g.
            ``(n_members, n_samples, n_outputs)`` (or what ``split`` makes of it).

        Raises
        ------
        BatcherClosedError
            After :meth:`close`.
        Exception
            Whatever ``run`` raised for the batch these rows were in.
        """
        if self._closed:
            raise BatcherClosedError("the micro-batcher is closed; the model is being unloaded")
        n_rows = len(X)
        loop = asyncio.get_running_loop()
        if self._dispatcher is None:
            self._wakeup = asyncio.Event()
            self._dispatcher = loop.create_task(self._dispatch_loop())
        request = _Request(X, loop.create_future(), key)
        self._pending.append(request)
        self._pending_rows += n_rows
        self._wakeup.set()
        return await request.future

    async def close(self) -> None:
        """Finish every queued and running batch, then stop the worker threads.

        Requests submitted after ``close`` starts raise :class:`BatcherClosedError`.
        """
        self._closed = True
        if self._dispatcher is not None:
            self._wakeup.set()
            await self._dispatcher
            self._dispatcher = None
        if self._runs:
            await asyncio.gather(*self._runs, return_exceptions=True)
        self._executor.shutdown(wait=True)

    # -- internals ---------------------------------------------------------------------

    def _ready(self) -> bool:
        """Return whether the queued requests should leave now rather than wait for company."""
        if self._pending_rows >= self.max_batch_rows or self._closed or self.max_wait_ms == 0:
            return True
        now = time.perf_counter()
        idle = self._in_flight == 0 and (now - self._last_done) * 1e3 > self.max_wait_ms
        if idle or len(self._pending) >= math.floor(self._expected):
            return True
        return (now - self._pending[0].arrival) * 1e3 >= self.max_wait_ms

    def _take(self) -> list[_Request]:
        batch: list[_Request] = []
        rows = 0
        while self._pending:
            request = self._pending[0]
            if request.future.done():  # the caller gave up (cancelled) before dispatch
                self._pending.popleft()
                self._pending_rows -= len(request.X)
                continue
            if batch and rows + len(request.X) > self.max_batch_rows:
                break
            self._pending.popleft()
            self._pending_rows -= len(request.X)
            rows += len(request.X)
            batch.append(request)
        return batch

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.max_concurrency)
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await slots.acquire()
            while self._pending and not self._ready():
                age = time.perf_counter() - self._pending[0].arrival
                remaining = self.max_wait_ms / 1e3 - age
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=max(remaining, 0.0))
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                slots.release()
                continue
            self._in_flight += 1
            task = loop.create_task(self._run_batch(loop, batch, slots))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    async def _run_batch(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Request], slots: asyncio.Semaphore
    ) -> None:
        X = batch[0].X if len(batch) == 1 else np.concatenate([request.X for request in batch])
        if self.on_batch is not None:
            try:
                self.on_batch(len(X))
            except Exception:
                logger.exception("on_batch callback failed")
        self._expected += _EXPECTED_ALPHA * (len(batch) - self._expected)
        try:
            if self.run_spans is not None:
                spans, start = [], 0
                for request in batch:
                    spans.append((request.key, start, start + len(request.X)))
                    start += len(request.X)
                parts = await loop.run_in_executor(self._executor, self.run_spans, X, spans)
                for request, part in zip(batch, parts, strict=True):
                    if request.future.done():
                        continue
                    if isinstance(part, BaseException):
                        request.future.set_exception(part)
                    else:
                        request.future.set_result(part)
                return
            result = await loop.run_in_executor(self._executor, self.run, X)
        except BaseException as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            start = 0
            for request in batch:
                stop = start + len(request.X)
                if not request.future.done():
                    try:
                        request.future.set_result(self.split(result, start, stop))
                    except Exception as exc:
                        request.future.set_exception(exc)
                start = stop
        finally:
            self._in_flight -= 1
            self._last_done = time.perf_counter()
            slots.release()
            self._wakeup.set()
