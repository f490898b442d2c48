"""Sane outputs: rows that drive an output non-finite get a 4xx naming them, never a 200 with
NaN; rows far outside the training range are served and counted in ``/metrics``."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ensembles.store import ModelStore
from serving.errors import InvalidRequestError
from serving.metrics import OUT_OF_RANGE_Z
from serving.runtime import EnsembleRuntime

#: float32 holds up to 3.4e38: rows this large overflow the first layer of any member.
HUGE = 3e38


def _rows(n: int, huge: tuple[int, ...] = ()) -> list[list[float]]:
    rows = np.random.default_rng(0).normal(size=(n, 4))
    rows[list(huge)] = HUGE
    return rows.tolist()


@pytest.mark.parametrize("name", ["toy", "reg"])
def test_rows_that_overflow_the_output_are_refused_by_number_on_v1(client, name):
    response = client.post(f"/v1/ensembles/{name}/predict", json={"rows": _rows(5, (1, 3))})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == "rows"
    assert body["error"].startswith("rows [1, 3] drive the model's output to infinity or NaN")
    assert client.post(f"/v1/ensembles/{name}/predict", json={"rows": _rows(5)}).status_code == 200


@pytest.mark.parametrize("combiner", ["vote", "weight_average"])
def test_overflowing_members_are_refused_even_when_the_combiner_hides_them(client, combiner):
    """vote's shares and the averaged graph can look finite while members are NaN."""
    body = {"rows": _rows(3, (1,)), "combiner": combiner, "members": True, "uncertainty": False}
    response = client.post("/v1/ensembles/toy/predict", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("rows [1] drive the model's output")


def test_rows_that_overflow_the_output_are_refused_on_v2(client):
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 4], "data": _rows(3, (2,))}]
    }
    response = client.post("/v2/models/reg/infer", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("rows [2] drive the model's output")


def _burst_with_one_bad_request(runtime: EnsembleRuntime) -> list[object]:
    """Five concurrent 4-row requests; the third has one overflowing row."""

    async def burst() -> list[object]:
        requests = [np.array(_rows(4, (0,) if i == 2 else ()), dtype=np.float32) for i in range(5)]
        results = await asyncio.gather(
            *(runtime.predict_async(X) for X in requests), return_exceptions=True
        )
        await runtime.aclose()
        return results

    return asyncio.run(burst())


def test_one_bad_request_in_a_micro_batch_fails_alone(synthetic_store: ModelStore):
    batches: list[int] = []
    runtime = EnsembleRuntime.load(
        synthetic_store, "reg", 1, max_wait_ms=20.0, on_batch=batches.append
    )

    results = _burst_with_one_bad_request(runtime)
    assert max(batches) > 4  # the bad request shared a micro-batch with others
    assert isinstance(results[2], InvalidRequestError)
    assert str(results[2]).startswith("rows [0] drive the model's output")
    for index in (0, 1, 3, 4):
        assert np.isfinite(results[index].combined).all()


@pytest.mark.parametrize("batching", [True, False])  # in a micro-batch, and alone
def test_refused_requests_stay_out_of_the_metrics(synthetic_store: ModelStore, batching):
    """A refused row's z-score of ~1e38 would hold the drift signal up for ~1e5 rows."""
    reported: list[tuple[np.ndarray, list[int]]] = []
    runtime = EnsembleRuntime.load(
        synthetic_store,
        "reg",
        1,
        batching=batching,
        max_wait_ms=20.0,
        on_prediction=lambda _, X, __, request_rows: reported.append((X, request_rows)),
    )

    results = _burst_with_one_bad_request(runtime)
    assert isinstance(results[2], InvalidRequestError)
    assert sorted(n for _, rows in reported for n in rows) == [4, 4, 4, 4]
    assert max(float(np.abs(X).max()) for X, _ in reported) < HUGE


def test_rows_far_outside_the_training_range_are_served_and_counted(client):
    def counted() -> float:
        prefix = 'ensembles_out_of_range_rows_total{ensemble="toy"}'
        lines = [
            line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)
        ]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    before = counted()
    rows = np.array(_rows(6))
    rows[[0, 4], 2] = 5 * OUT_OF_RANGE_Z  # held-out features are standard normal
    response = client.post("/v1/ensembles/toy/predict", json={"rows": rows.tolist()})
    assert response.status_code == 200
    assert counted() == before + 2
