"""serving.metrics: served batches are queued, folded after the answers, never lost."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ensembles.store import ModelStore
from serving.metrics import FOLD_ROWS, ServingMetrics
from serving.runtime import EnsembleRuntime


@pytest.fixture(scope="module")
def toy(synthetic_store: ModelStore) -> EnsembleRuntime:
    return EnsembleRuntime.load(synthetic_store, "toy", 1, max_batch_rows=FOLD_ROWS)


def _request_rows(metrics: ServingMetrics) -> float | None:
    """Requests recorded in the request-size histogram (read without a scrape, which folds)."""
    for sample in metrics.request_rows.collect()[0].samples:
        if sample.name.endswith("_count") and sample.labels == {"ensemble": "toy"}:
            return sample.value
    return None


def _observe(metrics: ServingMetrics, runtime: EnsembleRuntime, n_rows: int) -> None:
    X = np.random.default_rng(n_rows).normal(size=(n_rows, runtime.n_features))
    prediction = runtime.predict(X)
    metrics.observe_batch(runtime, X.astype(np.float32), prediction, [n_rows])


def test_batches_wait_for_a_fold_and_a_scrape_records_them(toy):
    metrics = ServingMetrics()
    _observe(metrics, toy, 3)
    _observe(metrics, toy, 2)
    assert _request_rows(metrics) is None  # queued, not recorded before the answers
    text = metrics.render().decode()
    assert 'ensembles_request_rows_count{ensemble="toy"} 2.0' in text
    assert 'ensembles_prediction_variance_count{ensemble="toy"} 5.0' in text


def test_fold_soon_waits_for_enough_rows_then_runs_after_the_answers_queued(toy):
    metrics = ServingMetrics()
    seen: dict[str, float | None] = {}

    async def main():
        loop = asyncio.get_running_loop()
        _observe(metrics, toy, 4)
        metrics.fold_soon()  # far fewer than FOLD_ROWS rows: nothing scheduled
        await asyncio.sleep(0)
        seen["few rows"] = _request_rows(metrics)
        _observe(metrics, toy, FOLD_ROWS)
        # The other answers of a batch are woken before the first one sent calls fold_soon.
        loop.call_soon(lambda: seen.setdefault("other answer", _request_rows(metrics)))
        metrics.fold_soon()
        metrics.fold_soon()  # once scheduled, not twice
        for _ in range(3):
            await asyncio.sleep(0)
        seen["after"] = _request_rows(metrics)

    asyncio.run(main())
    assert seen == {"few rows": None, "other answer": None, "after": 2}


def test_a_swap_folds_the_old_version_first_and_exports_only_the_new_one(
    toy, synthetic_store: ModelStore
):
    metrics = ServingMetrics()
    metrics.now_serving("toy", toy)
    _observe(metrics, toy, 5)
    assert set(metrics.serving_drift()) == {"toy"}
    newer = EnsembleRuntime.load(synthetic_store, "toy", 1, max_batch_rows=FOLD_ROWS)
    _observe(metrics, toy, 5)  # queued for the old version when the swap comes
    metrics.now_serving("toy", newer)
    assert metrics.serving_drift() == {}  # the new version has served nothing yet
    assert metrics.feature_drift(toy) is not None  # the old rows went to the old window
    assert _request_rows(metrics) == 2
    text = metrics.render().decode()
    assert "ensembles_drift_ratio{" not in text and "ensembles_feature_drift{" not in text


def test_drift_series_follow_the_version_serving_not_a_pinned_request(
    toy, synthetic_store: ModelStore
):
    metrics = ServingMetrics()
    pinned = EnsembleRuntime.load(synthetic_store, "toy", 1, max_batch_rows=FOLD_ROWS)
    metrics.now_serving("toy", toy)
    _observe(metrics, toy, 50)
    served = metrics.render().decode()
    X = np.full((5, pinned.n_features), 1e3)  # far off: its window's drift is huge
    metrics.observe_batch(pinned, X.astype(np.float32), pinned.predict(X), [5])
    text = metrics.render().decode()
    drift = [line for line in text.splitlines() if line.startswith("ensembles_")]
    assert [line for line in drift if "drift" in line] == [
        line for line in served.splitlines() if line.startswith("ensembles_") and "drift" in line
    ]
    assert metrics.feature_drift(pinned) != metrics.feature_drift(toy)
