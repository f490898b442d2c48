"""EnsembleRegistry without HTTP: loading, refusals, on-demand versions and eviction."""

from __future__ import annotations

import asyncio
import logging

import pytest
from serving_fixtures import publish_corrupt

from ensembles.errors import NotFoundError, StoreError
from ensembles.store import LATEST_FILE, ModelStore
from serving.api_v1 import ensemble_info
from serving.errors import NotReadyError, VersionRefusedError
from serving.registry import EnsembleRegistry
from serving.scanning import StoreScanner
from serving.settings import ServingSettings
from tests.synthetic_ensembles import publish_synthetic


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


def _three_versions(tmp_path) -> ModelStore:
    store = ModelStore(tmp_path / "store")
    for seed in (1, 2, 3):
        publish_synthetic(store, "ens", seed=seed)
    return store


def test_an_old_version_stays_loaded_while_asked_for_lru_eviction(tmp_path):
    store = _three_versions(tmp_path)
    registry = EnsembleRegistry(ServingSettings(store=store.root, max_versions=2))

    async def scenario() -> None:
        await registry.refresh()  # loads 3 only
        assert registry.current("ens").version == 3 and registry.loads == 1
        two = await registry.get("ens", 2)
        one = await registry.get("ens", 1)  # 2 is the least recently used other: evicted
        assert registry.loads == 3
        for _ in range(5):
            again = await registry.get("ens", 1)
            assert again is one and not again._retired
        assert registry.loads == 3, "asking for version 1 again must not reload it"
        states = {s["version"]: s for s in registry.version_states("ens")}
        assert states[1]["state"] == "loaded" and states[3]["current"] is True
        assert states[2]["state"] == "unloaded"
        assert states[2]["reason"] == "evicted: least recently used"
        await asyncio.sleep(0.05)
        assert two._retired and not one._retired
        await registry.close()

    asyncio.run(scenario())


def test_concurrent_requests_share_one_load_of_a_version(tmp_path):
    store = _three_versions(tmp_path)
    registry = EnsembleRegistry(ServingSettings(store=store.root, max_versions=3))

    async def scenario() -> None:
        await registry.refresh()
        before = registry.loads
        runtimes = await asyncio.gather(*(registry.get("ens", 1) for _ in range(8)))
        assert registry.loads == before + 1
        assert all(runtime is runtimes[0] for runtime in runtimes)
        assert runtimes[0].version == 1
        await registry.close()

    asyncio.run(scenario())


def test_refusal_reasons_and_not_found_messages_hide_the_store_path(tmp_path):
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "ens", seed=1)
    registry = EnsembleRegistry(ServingSettings(store=store.root))

    async def scenario() -> None:
        await registry.refresh()
        bad = publish_corrupt(store, "ens")
        await registry.refresh()
        reason = {s["version"]: s for s in registry.version_states("ens")}[bad]["reason"]
        assert reason.startswith(f"ens/{bad}/members/m000.onnx is corrupt: sha256")
        with pytest.raises(VersionRefusedError) as refused:
            await registry.get("ens", bad)
        with pytest.raises(NotFoundError) as unknown:
            await registry.get("nope")
        for message in (reason, str(refused.value), str(unknown.value)):
            assert str(tmp_path) not in message
        assert str(unknown.value) == (
            "ensemble 'nope' not found in the model store (known ensembles: ens)"
        )
        await registry.close()

    asyncio.run(scenario())


def test_only_version_refused_means_no_servable_version(tmp_path):
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "ens", seed=1)
    member = store.path("ens", 1) / "members" / "m000.onnx"
    member.write_bytes(member.read_bytes()[::-1])
    registry = EnsembleRegistry(ServingSettings(store=store.root))

    async def scenario() -> None:
        await registry.refresh()
        with pytest.raises(
            VersionRefusedError, match=r"'ens' has no servable version: version 1 was refused: "
        ):
            await registry.get("ens")
        await registry.close()

    asyncio.run(scenario())


def test_not_loaded_yet_is_a_retry_later(tmp_path):
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "ens", seed=1)
    registry = EnsembleRegistry(ServingSettings(store=store.root))
    with pytest.raises(NotReadyError, match=r"'ens' is not loaded yet; retry shortly"):
        asyncio.run(registry.get("ens"))


def test_garbage_latest_is_logged_once_and_shown(tmp_path, caplog):
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "ens", seed=1)
    registry = EnsembleRegistry(ServingSettings(store=store.root))

    async def scenario() -> None:
        await registry.refresh()
        (store.root / "ens" / LATEST_FILE).write_text("two\n")
        with caplog.at_level(logging.ERROR, logger="serving.registry"):
            for _ in range(3):
                await registry.refresh()
        lines = [r for r in caplog.records if "cannot read the latest version" in r.message]
        assert len(lines) == 1
        error = registry.latest_error("ens")
        assert error == "ens/latest does not hold a version number: 'two'"
        info = ensemble_info(registry, "ens")
        assert info["latest_error"] == error and info["version"] == 1  # still serving
        (store.root / "ens" / LATEST_FILE).write_text("1\n")
        await registry.refresh()
        assert registry.latest_error("ens") is None
        await registry.close()

    asyncio.run(scenario())


def test_a_store_that_is_a_file_is_named_a_file(tmp_path, caplog):
    root = tmp_path / "train.csv"
    root.write_text("a,label\n1,0\n")
    registry = EnsembleRegistry(ServingSettings(store=root))

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="serving.registry"):
            await registry.refresh()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            f"model store {root} is a file, not a folder: give --store the folder that "
            "training published into. Serving nothing until it is a folder."
        ]
        assert registry.store_info()["exists"] is False and registry.ready
        await registry.close()

    asyncio.run(scenario())


def test_missing_store_folder_warns_once_and_is_picked_up_when_it_appears(tmp_path, caplog):
    root = tmp_path / "later"
    registry = EnsembleRegistry(ServingSettings(store=root))

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="serving.registry"):
            await registry.refresh()
            await registry.refresh()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert f"model store folder {root} does not exist" in warnings[0]
        assert f"python scripts/train.py --store {root}" in warnings[0]
        assert registry.store_info()["exists"] is False and registry.ready
        publish_synthetic(ModelStore(root), "ens", seed=1)
        await registry.refresh()
        assert registry.current("ens").version == 1
        assert registry.store_info() == {"exists": True, "ensembles": 1}
        await registry.close()

    asyncio.run(scenario())


def test_the_store_root_is_removed_from_messages_only_where_it_is_a_path(tmp_path, monkeypatch):
    """A store named ``m`` (relative) must not eat the m of "match" or "manifest"."""
    monkeypatch.chdir(tmp_path)
    scanner = StoreScanner(ModelStore("m"))
    corrupt = "heldout.npz is corrupt: sha256 1f2e does not match the manifest's 9a8b"
    assert scanner.relative(f"{tmp_path}/m/digits/6/{corrupt}") == f"digits/6/{corrupt}"
    assert scanner.relative(f"'m/digits/6/{corrupt}'") == f"'digits/6/{corrupt}'"
    assert scanner.relative(f"cannot list {tmp_path}/m: denied") == "cannot list <store>: denied"
    assert scanner.relative("cannot list m: denied") == "cannot list <store>: denied"
    assert scanner.relative(f"the store {tmp_path}/m.") == "the store <store>."
    assert scanner.relative(f"{tmp_path}/m-old and {tmp_path}/m.bak") == (
        f"{tmp_path}/m-old and {tmp_path}/m.bak"  # other folders, named as they are
    )
