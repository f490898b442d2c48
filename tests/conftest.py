"""Shared fixtures: tiny training settings and trained stores reused across test modules."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY = {
    "hidden_sizes": (16,),
    "epochs": 4,
    "learning_rate": 1e-3,
    "batch_size": 64,
    "dropout": 0.0,
}

#: Per strategy, what a tiny run of it needs beyond TINY (snapshot: epochs for its cycles).
STRATEGY_PARAMS = {
    "bagging": {},
    "kfold": {},
    "subsample": {},
    "repeat": {},
    "horizontal": {},
    "snapshot": {"epochs": 6},
}


def tiny_request(tmp_path: Path, **changes):
    """A TrainRequest that trains in well under a second per member."""
    from ensembles.training.config import TrainConfig
    from ensembles.training.pipeline import TrainRequest

    config = TrainConfig(**{**TINY, **changes.pop("config", {})})
    fields = {"members": 3, "store": tmp_path / "store", "config": config, "progress": False}
    return TrainRequest(**{**fields, **changes})


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a snapshot ensemble on digits and a bagging ensemble on diabetes."""
    from ensembles.training.pipeline import train_ensemble

    root = tmp_path_factory.mktemp("trained")
    train_ensemble(tiny_request(root, dataset="digits", strategy="snapshot", epochs=6))
    train_ensemble(tiny_request(root, dataset="diabetes", strategy="bagging"))
    return root / "store"


#: Dummy credentials for the moto server (it checks none); set for every S3 test.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on a free port (moto's threaded server), for the whole session.

    s3fs finds it through fsspec's configuration, as a user's ``FSSPEC_S3_ENDPOINT_URL``
    would set it (subprocesses get that variable); the credentials are dummies.
    """
    import fsspec.config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in S3_CREDENTIALS.items():
            patch.setenv(key, value)
        patch.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)
        patch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def s3_store(s3_endpoint: str) -> str:
    """``s3://<a new bucket>/models``: an empty model store on the moto server."""
    import fsspec

    bucket = f"store-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(bucket)
    return f"s3://{bucket}/models"
