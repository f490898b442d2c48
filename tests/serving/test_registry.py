"""EnsembleRegistry without HTTP: loading, refusals, on-demand versions and eviction."""

from __future__ import annotations

import asyncio
import logging

import pytest
from serving_fixtures import publish_corrupt

from ensembles.errors import NotFoundError, StoreError
from ensembles.store import ModelStore
from serving.errors import VersionRefusedError
from serving.registry import EnsembleRegistry
from serving.settings import ServingSettings
from serving.synthetic import publish_synthetic


def test_corrupt_version_is_refused_and_the_previous_keeps_serving(tmp_path, caplog):
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "ens", seed=1)
    registry = EnsembleRegistry(ServingSettings(store=store.root, max_versions=2))

    async def scenario() -> None:
        await registry.refresh()
        assert registry.current("ens").version == 1
        bad = publish_corrupt(store, "ens")
        with caplog.at_level(logging.ERROR, logger="serving.registry"):
            await registry.refresh()
        assert registry.current("ens").version == 1
        states = {s["version"]: s for s in registry.version_states("ens")}
        assert states[bad]["state"] == "refused" and "m000.onnx is corrupt" in states[bad]["reason"]
        assert states[1]["current"] is True
        assert "refused ens version 2" in caplog.text
        with pytest.raises(VersionRefusedError, match="version 2 was refused"):
            await registry.get("ens", bad)
        publish_synthetic(store, "ens", seed=3)  # version 3, good: replaces 1
        await registry.refresh()
        assert registry.current("ens").version == 3
        assert (await registry.get("ens", 1)).version == 1  # loaded on demand
        with pytest.raises(NotFoundError, match=r"no version 7; available versions: \[1, 2, 3\]"):
            await registry.get("ens", 7)
        with pytest.raises(NotFoundError, match="ensemble 'nope' not found"):
            await registry.get("nope")
        with pytest.raises(StoreError, match="invalid ensemble name"):
            await registry.get("../etc")
        await registry.close()

    asyncio.run(scenario())
