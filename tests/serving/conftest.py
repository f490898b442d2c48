"""Serving fixtures: stores (synthetic and trained), live uvicorn servers and HTTP clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_fixtures import LiveServer

from ensembles.store import ModelStore
from tests.synthetic_ensembles import publish_synthetic


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """'toy': 3-member classifier (4 features, 3 classes); 'reg': Gaussian-head regressor."""
    store = ModelStore(tmp_path_factory.mktemp("synthetic") / "store")
    publish_synthetic(store, "toy", seed=1)
    publish_synthetic(store, "reg", task="regression", n_outputs=2, variance_head=True, seed=2)
    return store


@pytest.fixture(scope="session")
def server(synthetic_store: ModelStore) -> Iterator[LiveServer]:
    """A server on the synthetic store with small limits (64 rows, 64 KiB bodies)."""
    with LiveServer(
        store=synthetic_store.root, poll_interval_s=0, max_batch_rows=64, max_body_bytes=65536
    ) as live:
        yield live


@pytest.fixture(scope="session")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """httpx client of :func:`server`."""
    with server.client() as http:
        yield http


@pytest.fixture(scope="session")
def trained_server(trained_store: Path) -> Iterator[LiveServer]:
    """A server on the trained store (digits snapshot, diabetes bagging) with defaults."""
    with LiveServer(store=trained_store, poll_interval_s=0) as live:
        yield live


@pytest.fixture
def rows() -> np.ndarray:
    """Five rows for the synthetic ensembles (4 features)."""
    return np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
