"""Micro-batching: coalesce concurrent requests into one blocking model call, off the event loop."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import NotReadyError

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


class MicroBatcher:
    """Coalesce concurrent ``submit`` calls into batched calls of a blocking ``run_spans``.

    A request that finds the batcher idle is dispatched at once. Requests that arrive while
    a batch runs queue up and leave together, up to ``max_batch_rows`` rows, as soon as the
    runner is free; under steady load the batcher also holds a batch back for at most
    ``max_wait_ms`` (counted from the arrival of its oldest request) until it has as many
    requests as recent batches had, so batches do not shrink to single stragglers.
    A batch of more than ``inline_rows`` rows runs in one worker thread, so the event loop
    keeps parsing and answering requests meanwhile (onnxruntime releases the GIL); a smaller
    one runs on the event loop itself, which saves the hop into the thread and back (more
    than a small batch's own work on the machines measured, docs/performance.md).

    Parameters
    ----------
    run_spans : callable
        ``run_spans(X_all, spans) -> list``, blocking. ``X_all`` has shape
        ``(N, n_features)``: the rows of every request of the batch, concatenated;
        ``spans`` holds ``(key, start, stop)`` for every request, in order (``key`` as
        given to :meth:`submit`, ``X_all[start:stop]`` its rows). The result holds one item
        per request, in the same order; an item that is an exception instance is raised to
        that request alone, and an exception raised by ``run_spans`` reaches every request
        of the batch. One batch can thus serve requests that ask for different things
        (e.g. different combiners) while doing the shared work once.
    max_batch_rows : int
        Most rows per ``run_spans`` call. A single request with more rows runs alone.
    max_wait_ms : float
        Longest extra wait for company under load; 0 dispatches whenever the runner is free.
    inline_rows : int, default 0
        Batches of at most this many rows run on the event loop; 0 runs every batch in the
        worker thread.

    The batcher has no queue limit of its own: its caller bounds the rows in flight
    (``EnsembleRuntime.max_queue_rows``, one limit for batched and unbatched requests).

    Examples
    --------
    >>> def run_spans(X, spans):
    ...     outputs = session_run(X)  # (n_members, len(X), n_outputs)
    ...     return [outputs[:, start:stop] for _, start, stop in spans]
    >>> batcher = MicroBatcher(run_spans, max_batch_rows=1024, max_wait_ms=1.0)
    >>> member_outputs = await batcher.submit(X)  # (n_members, len(X), n_outputs)
    >>> await batcher.close()
    """

    def __init__(
        self,
        run_spans: SpansFunction,
        max_batch_rows: int,
        max_wait_ms: float,
        inline_rows: int = 0,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be at least 1; got {max_batch_rows}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be non-negative; got {max_wait_ms}")
        if inline_rows < 0:
            raise ValueError(f"inline_rows must be non-negative; got {inline_rows}")
        self.run_spans = run_spans
        self.max_batch_rows = int(max_batch_rows)
        self.max_wait_ms = float(max_wait_ms)
        self.inline_rows = int(inline_rows)
        self._pending: deque[_Request] = deque()
        self._pending_rows = 0
        self._in_flight = 0
        self._expected = 1.0
        self._last_done = -math.inf
        self._closed = False
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="microbatch")

    async def submit(self, X: np.ndarray, key: Any = None) -> Any:
        """Queue rows and wait for their slice of the batched result.

        Parameters
        ----------
        X : np.ndarray, shape (n_samples, n_features)
            The request's rows; ``n_samples`` may exceed ``max_batch_rows``.
        key : any, optional
            Handed to ``run_spans`` with this request's row range.

        Returns
        -------
        any
            This request's item of the ``run_spans`` result.

        Raises
        ------
        BatcherClosedError
            After :meth:`close`.
        Exception
            The exception instance ``run_spans`` returned for this request, or whatever it
            raised for the batch these rows were in.
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
        runner = asyncio.Semaphore(1)  # one batch runs at a time
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await runner.acquire()
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
                runner.release()
                continue
            self._in_flight += 1
            X, spans = self._assemble(batch)
            if len(X) <= self.inline_rows:
                try:
                    self._run_inline(batch, X, spans)
                finally:
                    self._batch_done(runner)
                continue
            task = loop.create_task(self._run_batch(loop, batch, X, spans, runner))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    def _assemble(self, batch: list[_Request]) -> tuple[np.ndarray, list[tuple[Any, int, int]]]:
        """The batch's rows, concatenated, and each request's ``(key, start, stop)``."""
        X = batch[0].X if len(batch) == 1 else np.concatenate([request.X for request in batch])
        self._expected += _EXPECTED_ALPHA * (len(batch) - self._expected)
        spans, start = [], 0
        for request in batch:
            spans.append((request.key, start, start + len(request.X)))
            start += len(request.X)
        return X, spans

    async def _run_batch(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[_Request],
        X: np.ndarray,
        spans: list[tuple[Any, int, int]],
        runner: asyncio.Semaphore,
    ) -> None:
        try:
            parts = await loop.run_in_executor(self._executor, self.run_spans, X, spans)
            self._deliver(batch, parts)
        except BaseException as exc:
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._batch_done(runner)

    def _run_inline(
        self, batch: list[_Request], X: np.ndarray, spans: list[tuple[Any, int, int]]
    ) -> None:
        """Run a small batch here, on the event loop, and hand each request its part.

        Whatever goes wrong fails this batch's requests alone: the dispatcher goes on.
        """
        try:
            self._deliver(batch, self.run_spans(X, spans))
        except BaseException as exc:
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise

    @staticmethod
    def _fail(batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            if not request.future.done():
                request.future.set_exception(exc)

    @staticmethod
    def _deliver(batch: list[_Request], parts: list[Any]) -> None:
        for request, part in zip(batch, parts, strict=True):
            if request.future.done():
                continue
            if isinstance(part, BaseException):
                request.future.set_exception(part)
            else:
                request.future.set_result(part)

    def _batch_done(self, runner: asyncio.Semaphore) -> None:
        self._in_flight -= 1
        self._last_done = time.perf_counter()
        runner.release()
        self._wakeup.set()
