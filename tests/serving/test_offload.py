"""Large bodies are decoded in a worker thread (the loop keeps answering), with the same
answers and errors as small ones."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest
from serving_fixtures import LiveServer

from ensembles.store import ModelStore
from serving.offload import COMPRESSION_FACTOR, OFF_LOOP_BODY_BYTES, body_is_large, run_sized

ROW = [0.1, 0.2, 0.3, 0.4]
PADDING = b" " * (OFF_LOOP_BODY_BYTES + 1)  # JSON whitespace: a large body of a small request


@pytest.fixture(scope="module")
def client(synthetic_store: ModelStore) -> Iterator[httpx.Client]:
    """A server that takes bodies of a few MiB."""
    limit = 8 * OFF_LOOP_BODY_BYTES
    live = LiveServer(store=synthetic_store.root, poll_interval_s=0, max_body_bytes=limit)
    with live, live.client() as http:
        yield http


def test_large_work_runs_in_a_worker_thread_and_small_work_on_the_loop() -> None:
    async def both() -> tuple[int, int, int]:
        loop = threading.get_ident()
        return (
            loop,
            await run_sized(False, threading.get_ident),
            await run_sized(True, threading.get_ident),
        )

    loop, small, large = asyncio.run(both())
    assert small == loop and large != loop


def test_a_compressed_body_counts_as_large_sooner() -> None:
    size = OFF_LOOP_BODY_BYTES // COMPRESSION_FACTOR + 1
    assert body_is_large(b"x" * size, "gzip") and not body_is_large(b"x" * size, None)
    assert body_is_large(b"x" * (OFF_LOOP_BODY_BYTES + 1), "identity")


def test_a_large_v1_body_is_answered_as_a_small_one(client) -> None:
    small = orjson.dumps({"rows": [ROW]})
    large = small[:-1] + PADDING + b"}"
    json_body = {"Content-Type": "application/json"}
    gzipped = {**json_body, "Content-Encoding": "gzip"}
    cases = [(small, json_body), (large, json_body), (gzip.compress(large), gzipped)]
    answers = [
        client.post("/v1/ensembles/toy/predict", content=body, headers=headers)
        for body, headers in cases
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    probabilities = [a.json()["predictions"]["probabilities"] for a in answers]
    assert probabilities[0] == probabilities[1] == probabilities[2]  # same process, same rows


def test_a_large_v2_body_gets_the_same_errors(client) -> None:
    lying = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW * 2}]}
    small = orjson.dumps(lying)
    for body in (small, small[:-1] + PADDING + b"}"):
        response = client.post("/v2/models/toy/infer", content=body)
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "input 'input' has 8 values but shape [1, 4] needs 4"}
    assert client.get("/v2/health/live").status_code == 200
