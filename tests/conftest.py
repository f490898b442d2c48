"""Shared fixtures: tiny training settings and trained stores reused across test modules."""

from __future__ import annotations

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
