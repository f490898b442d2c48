"""Tests of serving.batching: coalescing, per-request results, errors, big requests and close."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from serving.batching import BatcherClosedError, MicroBatcher

N_MEMBERS = 3
N_FEATURES = 4


def _model(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic row-wise 'ensemble': (n_members, n_rows, 2) values and variances."""
    scales = np.arange(1, N_MEMBERS + 1, dtype=np.float32)[:, None, None]
    values = scales * np.stack([X.sum(axis=1), X[:, 0]], axis=1)[None]
    return values, values**2


def _slices(X: np.ndarray, spans: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """``run_spans`` of :func:`_model`: the model once over the batch, one slice per request."""
    values, variances = _model(X)
    return [(values[:, start:stop], variances[:, start:stop]) for _, start, stop in spans]


def _requests(sizes: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(size, N_FEATURES)).astype(np.float32) for size in sizes]


class _GatedRun:
    """``run_spans`` whose first call blocks until released, so a burst queues up behind it.

    ``calls`` holds the rows of every call; ``fail_call`` (1-based) makes that call raise.
    """

    def __init__(self, fail_call: int | None = None) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: list[int] = []
        self.fail_call = fail_call

    def __call__(self, X: np.ndarray, spans: list) -> list[tuple[np.ndarray, np.ndarray]]:
        self.calls.append(len(X))
        if len(self.calls) == 1:
            self.started.set()
            self.release.wait(timeout=10)
        if len(self.calls) == self.fail_call:
            raise RuntimeError("member session failed")
        return _slices(X, spans)


async def _wait_for(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("max_wait_ms", [0.0, 2.0])
def test_results_equal_running_each_request_alone(max_wait_ms):
    requests = _requests([1, 3, 1, 5, 2, 1, 4, 1])

    async def main():
        batcher = MicroBatcher(_slices, max_batch_rows=8, max_wait_ms=max_wait_ms)
        results = await asyncio.gather(*(batcher.submit(X) for X in requests))
        await batcher.close()
        return results

    for X, (values, variances) in zip(requests, asyncio.run(main()), strict=True):
        expected_values, expected_variances = _model(X)
        assert values.shape == (N_MEMBERS, len(X), 2)
        np.testing.assert_array_equal(values, expected_values)
        np.testing.assert_array_equal(variances, expected_variances)


def test_concurrent_burst_is_coalesced_up_to_the_row_limit():
    run = _GatedRun()
    requests = _requests([1] * 12)

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=5, max_wait_ms=0.0)
        first = asyncio.ensure_future(batcher.submit(requests[0]))
        await _wait_for(run.started)  # the first batch runs alone and blocks
        rest = [asyncio.ensure_future(batcher.submit(X)) for X in requests[1:]]
        await asyncio.sleep(0.01)
        run.release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert run.calls == [1, 5, 5, 1]
    for X, (values, _) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(values, _model(X)[0])


def test_lone_request_does_not_wait_for_the_window():
    (X,) = _requests([1])

    async def main():
        batcher = MicroBatcher(_slices, max_batch_rows=64, max_wait_ms=600_000.0)
        # A ten-minute window: waiting for it at all would hit these timeouts.
        await asyncio.wait_for(batcher.submit(X), timeout=30)
        await asyncio.wait_for(batcher.submit(X), timeout=30)  # right after a batch: same
        await batcher.close()

    asyncio.run(main())


def test_exception_reaches_every_waiter_and_batcher_recovers():
    run = _GatedRun(fail_call=2)
    requests = _requests([1, 1, 2, 1])

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=16, max_wait_ms=0.0)
        first = asyncio.ensure_future(batcher.submit(requests[0]))
        await _wait_for(run.started)
        burst = [asyncio.ensure_future(batcher.submit(X)) for X in requests[1:]]
        await asyncio.sleep(0.01)
        run.release.set()
        outcomes = await asyncio.gather(first, *burst, return_exceptions=True)
        after = await batcher.submit(requests[0])
        await batcher.close()
        return outcomes, after

    outcomes, after = asyncio.run(main())
    assert run.calls == [1, 4, 1]
    assert not isinstance(outcomes[0], Exception)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes[1:])
    assert all("member session failed" in str(outcome) for outcome in outcomes[1:])
    np.testing.assert_array_equal(after[0], _model(requests[0])[0])


def test_request_larger_than_the_row_limit_runs_alone():
    run = _GatedRun()
    run.release.set()
    requests = _requests([10, 1])

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=4, max_wait_ms=0.0)
        results = await asyncio.gather(*(batcher.submit(X) for X in requests))
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert run.calls == [10, 1]
    for X, (values, _) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(values, _model(X)[0])


def test_closed_batcher_refuses_requests_and_finishes_queued_ones():
    run = _GatedRun()
    requests = _requests([1, 3])

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=8, max_wait_ms=0.0)
        first = asyncio.ensure_future(batcher.submit(requests[0]))
        await _wait_for(run.started)
        second = asyncio.ensure_future(batcher.submit(requests[1]))
        await asyncio.sleep(0)
        run.release.set()
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(BatcherClosedError, match="closed"):
            await batcher.submit(requests[0])
        await closing
        return await first, await second

    first, second = asyncio.run(main())
    np.testing.assert_array_equal(second[0], _model(requests[1])[0])
    assert first[0].shape == (N_MEMBERS, 1, 2)


def test_cancelled_request_is_dropped_from_the_batch():
    run = _GatedRun()
    requests = _requests([1, 1, 1])

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=8, max_wait_ms=0.0)
        first = asyncio.ensure_future(batcher.submit(requests[0]))
        await _wait_for(run.started)
        gone = asyncio.ensure_future(batcher.submit(requests[1]))
        kept = asyncio.ensure_future(batcher.submit(requests[2]))
        await asyncio.sleep(0)
        gone.cancel()
        run.release.set()
        await first
        result = await kept
        await batcher.close()
        return result

    result = asyncio.run(main())
    assert run.calls == [1, 1]
    np.testing.assert_array_equal(result[0], _model(requests[2])[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_rows": 0, "max_wait_ms": 1.0}, "max_batch_rows must be at least 1"),
        ({"max_batch_rows": 4, "max_wait_ms": -1.0}, "max_wait_ms must be non-negative"),
    ],
)
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MicroBatcher(_slices, **kwargs)


def test_run_spans_gets_each_request_key_and_can_fail_one_request_alone():
    run = _GatedRun()
    requests = _requests([1, 2, 1, 3, 1])
    keys = ["first", "a", "b", "a", "bad"]
    seen: list[list[tuple[str, int, int]]] = []

    def run_spans(X: np.ndarray, spans: list[tuple[str, int, int]]) -> list:
        seen.append(spans)
        parts = run(X, spans)  # the shared work, once per batch
        return [
            ValueError("bad key") if key == "bad" else (key, part[0])
            for (key, _, _), part in zip(spans, parts, strict=True)
        ]

    async def main():
        batcher = MicroBatcher(run_spans, max_batch_rows=16, max_wait_ms=0.0)
        first = asyncio.ensure_future(batcher.submit(requests[0], keys[0]))
        await _wait_for(run.started)  # the rest queue up and leave as one batch
        rest = [
            asyncio.ensure_future(batcher.submit(X, key))
            for X, key in zip(requests[1:], keys[1:], strict=True)
        ]
        await asyncio.sleep(0.01)
        run.release.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert run.calls == [1, 7]
    assert seen[1] == [("a", 0, 2), ("b", 2, 3), ("a", 3, 6), ("bad", 6, 7)]
    for X, key, result in zip(requests[:4], keys, results, strict=False):
        assert result[0] == key
        np.testing.assert_array_equal(result[1], _model(X)[0])
    assert isinstance(results[4], ValueError) and str(results[4]) == "bad key"


class _ThreadRecorder:
    """``run_spans`` of :func:`_model` that records the thread each call ran in."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self, X: np.ndarray, spans: list) -> list[tuple[np.ndarray, np.ndarray]]:
        self.threads.append(threading.get_ident())
        return _slices(X, spans)


def test_small_batches_run_on_the_event_loop_and_large_ones_in_the_worker_thread():
    run = _ThreadRecorder()
    small, large = _requests([2, 5])

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=8, max_wait_ms=0.0, inline_rows=4)
        results = [await batcher.submit(small), await batcher.submit(large)]
        await batcher.close()
        return results

    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    results = asyncio.run(main())
    assert run.threads[0] == loop_thread
    assert run.threads[1] != loop_thread
    for X, (values, _) in zip((small, large), results, strict=True):
        np.testing.assert_array_equal(values, _model(X)[0])


def test_inline_batches_still_coalesce_a_burst():
    calls: list[int] = []

    def run(X: np.ndarray, spans: list) -> list[tuple[np.ndarray, np.ndarray]]:
        calls.append(len(X))
        return _slices(X, spans)

    requests = _requests([1] * 6)

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=8, max_wait_ms=0.0, inline_rows=8)
        # Submitted in one step of the loop: they reach the dispatcher together.
        results = await asyncio.gather(*(batcher.submit(X) for X in requests))
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert calls == [6]
    for X, (values, _) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(values, _model(X)[0])


def test_an_inline_batch_that_raises_fails_its_requests_and_the_batcher_goes_on():
    calls: list[int] = []

    def run(X: np.ndarray, spans: list) -> list[tuple[np.ndarray, np.ndarray]]:
        calls.append(len(X))
        if len(calls) == 1:
            raise RuntimeError("member session failed")
        return _slices(X, spans)

    first, second = _requests([1, 1])

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=8, max_wait_ms=0.0, inline_rows=8)
        failed = await asyncio.gather(batcher.submit(first), return_exceptions=True)
        after = await batcher.submit(second)
        await batcher.close()
        return failed[0], after

    failed, after = asyncio.run(main())
    assert isinstance(failed, RuntimeError) and "member session failed" in str(failed)
    np.testing.assert_array_equal(after[0], _model(second)[0])


def test_negative_inline_rows_are_refused():
    with pytest.raises(ValueError, match="inline_rows must be non-negative"):
        MicroBatcher(_slices, max_batch_rows=4, max_wait_ms=0.0, inline_rows=-1)


@pytest.mark.parametrize("inline_rows", [0, 8])
def test_a_run_that_breaks_its_contract_fails_its_batch_alone(inline_rows):
    calls: list[int] = []

    def run(X: np.ndarray, spans: list) -> list[tuple[np.ndarray, np.ndarray]]:
        calls.append(len(X))
        return [] if len(calls) == 1 else _slices(X, spans)  # first: no part per request

    first, second = _requests([1, 1])

    async def main():
        batcher = MicroBatcher(run, max_batch_rows=8, max_wait_ms=0.0, inline_rows=inline_rows)
        failed = await asyncio.gather(batcher.submit(first), return_exceptions=True)
        after = await asyncio.wait_for(batcher.submit(second), timeout=30)
        await batcher.close()
        return failed[0], after

    failed, after = asyncio.run(main())
    assert isinstance(failed, ValueError)  # zip(strict=True): parts and requests differ
    np.testing.assert_array_equal(after[0], _model(second)[0])
