"""Faults in the store, each followed by a server restart: the server starts, the newest
intact version serves, and ``/v1/ensembles/{name}`` says which one and why."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_fixtures import LiveServer, flip_member_byte, publish_copy

from ensembles.store import CHECKSUM_FILE, LATEST_FILE, MANIFEST_FILE, ModelStore, sha256_bytes
from serving.errors import NotReadyError
from serving.registry import EnsembleRegistry
from serving.scanning import is_transient
from serving.settings import ServingSettings
from tests.synthetic_ensembles import publish_synthetic

ROWS = np.random.default_rng(0).normal(size=(3, 4)).tolist()


def _truncate_member(folder: Path, manifest: dict[str, Any]) -> None:
    """Truncate a member and list its new checksum: only decoding the ONNX can find it."""
    relative = manifest["members"][0]["file"]
    data = (folder / relative).read_bytes()[:100]
    (folder / relative).write_bytes(data)
    manifest["files"][relative] = sha256_bytes(data)


def _list_a_file_outside(folder: Path, manifest: dict[str, Any]) -> None:
    manifest["files"]["../../../etc/hostname"] = "0" * 64


def _one_label_short(folder: Path, manifest: dict[str, Any]) -> None:
    manifest["classes"] = manifest["classes"][:-1]


def _repeated_label(folder: Path, manifest: dict[str, Any]) -> None:
    manifest["classes"] = [manifest["classes"][0]] * len(manifest["classes"])


def _repeated_feature_name(folder: Path, manifest: dict[str, Any]) -> None:
    names = manifest["input"]["feature_names"]
    manifest["input"]["feature_names"] = [names[0]] * len(names)


def _member_as_a_link(folder: Path, manifest: dict[str, Any]) -> None:
    member = folder / manifest["members"][0]["file"]
    member.unlink()
    member.symlink_to("/dev/zero")


def _deeply_nested_manifest(store: ModelStore) -> int:
    """A manifest (with a matching checksum) nested deeper than any parser's recursion."""
    version = publish_copy(store, "toy")
    folder = store.path("toy", version)
    data = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    (folder / MANIFEST_FILE).write_bytes(data)
    (folder / CHECKSUM_FILE).write_text(sha256_bytes(data))
    return version


def _smuggle_member(folder: Path, manifest: dict[str, Any]) -> None:
    shutil.copy(folder / "members" / "m000.onnx", folder / "members" / "m999.onnx")


def _corrupt_manifest(store: ModelStore) -> int:
    """A manifest whose bytes changed after its checksum was written."""

    def change(folder: Path, manifest: dict[str, Any]) -> None:
        manifest["members"][0]["seed"] = 12345

    return publish_copy(store, "toy", change, reseal=False)


def _undecodable_manifest(store: ModelStore) -> int:
    version = publish_copy(store, "toy")
    folder = store.path("toy", version)
    data = b"\xff\xfe" + (folder / MANIFEST_FILE).read_bytes()
    (folder / MANIFEST_FILE).write_bytes(data)
    (folder / CHECKSUM_FILE).write_text(sha256_bytes(data))
    return version


def _latest(content: bytes, then: Callable[[ModelStore], int] | None = None):
    def fault(store: ModelStore) -> int:
        version = then(store) if then is not None else store.versions("toy")[-1]
        (store.root / "toy" / LATEST_FILE).write_bytes(content)
        return version

    return fault


def _latest_names_a_deleted_version(store: ModelStore) -> int:
    """Versions 2 and 3 are intact; ``latest`` names version 1, deleted (below both)."""
    publish_copy(store, "toy")
    version = publish_copy(store, "toy")
    shutil.rmtree(store.path("toy", 1))
    (store.root / "toy" / LATEST_FILE).write_text("1\n")
    return version


def _rolled_back_to_a_deleted_version(store: ModelStore) -> int:
    """Versions 1 and 3 are intact; ``latest`` names version 2, rolled back to, then deleted."""
    publish_copy(store, "toy")
    publish_copy(store, "toy")
    (store.root / "toy" / LATEST_FILE).write_text("2\n")
    shutil.rmtree(store.path("toy", 2))
    return 3


#: fault -> (what it does to a store serving intact version 1, the version that must
#: serve after a restart, words the info endpoint must give: in ``fallback.reason``, or in
#: ``latest_error`` for a pointer that cannot be read).
FAULTS: dict[str, tuple[Callable[[ModelStore], int], int, str]] = {
    "corrupt member": (
        lambda store: publish_copy(store, "toy", flip_member_byte),
        1,
        "version 2 was refused: toy/2/members/m000.onnx is corrupt: sha256",
    ),
    "truncated onnx": (
        lambda store: publish_copy(store, "toy", _truncate_member),
        1,
        "version 2 was refused: toy/2/members/m000.onnx is not a readable ONNX model",
    ),
    "a listed file outside the version": (
        lambda store: publish_copy(store, "toy", _list_a_file_outside),
        1,
        "toy/2/manifest.json is invalid at 'files': Value error, '../../../etc/hostname' is "
        "not a relative path inside the version folder",
    ),
    "a class label short": (
        lambda store: publish_copy(store, "toy", _one_label_short),
        1,
        "toy/2/manifest.json is invalid at '(root)': Value error, classes has 2 labels for 3 "
        "outputs; it needs one per output",
    ),
    "a repeated class label": (
        lambda store: publish_copy(store, "toy", _repeated_label),
        1,
        "toy/2/manifest.json is invalid at '(root)': Value error, class labels must differ",
    ),
    "a repeated feature name": (
        lambda store: publish_copy(store, "toy", _repeated_feature_name),
        1,
        "toy/2/manifest.json is invalid at '(root)': Value error, feature names must differ; "
        "'x0' repeat",
    ),
    "member replaced by a link": (
        lambda store: publish_copy(store, "toy", _member_as_a_link),
        1,
        "toy/2/members/m000.onnx is not a regular file (a link or a device)",
    ),
    "deeply nested manifest": (_deeply_nested_manifest, 1, "toy/2/manifest.json is not valid"),
    "unlisted member file": (
        lambda store: publish_copy(store, "toy", _smuggle_member),
        1,
        "toy/2/members/m999.onnx is not listed in the manifest's checksums",
    ),
    "corrupt manifest": (
        _corrupt_manifest,
        1,
        "toy/2/manifest.json is corrupt: its sha256 does not match manifest.sha256",
    ),
    "undecodable manifest": (_undecodable_manifest, 1, "toy/2/manifest.json is not UTF-8"),
    "undecodable latest": (
        _latest(b"\xff\xfe", lambda store: publish_copy(store, "toy", flip_member_byte)),
        1,
        "version 2 was refused: toy/2/members/m000.onnx is corrupt",
    ),
    "undecodable latest, shown": (
        _latest(b"\xff\xfe"),
        1,
        "toy/latest does not hold a version number: '\\\\xff\\\\xfe'",
    ),
    "latest like a superscript": (
        _latest("²".encode()),
        1,
        "toy/latest does not hold a version number: '²'",
    ),
    "latest names a missing version": (
        _latest(b"7\n"),
        1,
        "latest names version 7, which has no manifest",
    ),
    "a rollback to a version deleted since stays a rollback": (
        _rolled_back_to_a_deleted_version,
        1,
        "latest names version 2, which has no manifest",
    ),
    "latest names a deleted version older than every other": (
        _latest_names_a_deleted_version,
        3,
        "latest names version 1, which has no manifest",
    ),
}


def _info(live: LiveServer, name: str = "toy") -> dict[str, Any]:
    with live.client() as http:
        response = http.get(f"/v1/ensembles/{name}")
        assert response.status_code == 200, response.text
        return response.json()


def _predicts(live: LiveServer, name: str = "toy", rows: list | None = None) -> int:
    with live.client() as http:
        response = http.post(f"/v1/ensembles/{name}/predict", json={"rows": rows or ROWS})
        assert response.status_code == 200, response.text
        return response.json()["version"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_after_a_restart_the_newest_intact_version_serves_and_says_why(
    tmp_path: Path, fault: str
) -> None:
    apply, serving, reason = FAULTS[fault]
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    with LiveServer(store=store.root, poll_interval_s=0) as live:
        assert _info(live)["version"] == 1
    apply(store)
    with LiveServer(store=store.root, poll_interval_s=0) as live:  # the restart
        info = _info(live)
        assert info["version"] == serving
        said = [info["latest_error"] or ""]
        if info["fallback"] is not None:
            assert info["fallback"]["serving"] == serving
            said.append(info["fallback"]["reason"])
        assert any(reason in words for words in said), said
        assert _predicts(live) == serving
        with live.client() as http:  # the server is up and healthy
            assert http.get("/v2/health/ready").status_code == 200


def test_a_tampered_combiner_weight_with_a_consistent_checksum_is_refused(
    trained_store: Path, tmp_path: Path
) -> None:
    """The blend weights change and the manifest is resealed: only reproduction catches it."""
    root = tmp_path / "store"
    shutil.copytree(trained_store / "diabetes", root / "diabetes")
    store = ModelStore(root)

    def tamper(folder: Path, manifest: dict[str, Any]) -> None:
        weights = manifest["combiners"]["blend"]["state"]["fitted"]["weights"]
        weights[0], weights[-1] = weights[-1], weights[0]

    bad = publish_copy(store, "diabetes", tamper)
    with LiveServer(store=root, poll_interval_s=0) as live:
        info = _info(live, "diabetes")
        assert info["version"] == bad - 1
        assert (
            f"version {bad} was refused: diabetes/{bad}: combiner 'blend' does not reproduce "
            "its stored test outputs"
        ) in info["fallback"]["reason"]
        row = np.zeros((1, len(info["features"]))).tolist()
        assert _predicts(live, "diabetes", row) == bad - 1


def test_a_refused_version_is_retried_when_its_files_change(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    member = store.path("toy", 1) / "members" / "m000.onnx"
    intact = member.read_bytes()
    publish_copy(store, "toy", flip_member_byte)
    with LiveServer(store=store.root, poll_interval_s=0.05) as live:
        assert _info(live)["version"] == 1
        loads = live.app.state.registry.loads
        time.sleep(0.3)  # several polls: the unchanged refused version is not reloaded
        assert live.app.state.registry.loads == loads
        (store.path("toy", 2) / "members" / "m000.onnx").write_bytes(intact)  # repaired
        deadline = time.monotonic() + 30
        while _info(live)["version"] != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        info = _info(live)
        assert info["version"] == 2 and info["fallback"] is None
        assert _predicts(live) == 2


def test_an_older_refused_version_repaired_with_its_old_times_loads_on_request(
    tmp_path: Path,
) -> None:
    """Refused below the version served, then restored as ``cp -a`` would: same size and
    modification time. The next scan (a reload here) forgets the refusal."""
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    member = store.path("toy", 1) / "members" / "m000.onnx"
    intact = member.read_bytes()
    bad = publish_copy(store, "toy", flip_member_byte)
    publish_synthetic(store, "toy", seed=2)  # intact, newer: it serves
    bad_member = store.path("toy", bad) / "members" / "m000.onnx"
    times = bad_member.stat()
    with LiveServer(store=store.root, poll_interval_s=3600) as live, live.client() as http:
        assert (
            http.post("/v1/ensembles/toy/predict", json={"rows": ROWS, "version": bad}).status_code
            == 409
        )
        bad_member.write_bytes(intact)  # repaired: same size ...
        os.utime(bad_member, ns=(times.st_atime_ns, times.st_mtime_ns))  # ... and time
        assert http.post("/v1/admin/reload").status_code == 200
        answer = http.post("/v1/ensembles/toy/predict", json={"rows": ROWS, "version": bad})
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == bad
        assert _info(live)["version"] == bad + 1


def test_no_servable_version_keeps_the_server_up_and_says_why(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    publish_synthetic(store, "other", seed=2)
    flip_member_byte(
        store.path("toy", 1), json.loads(store.path("toy", 1).joinpath(MANIFEST_FILE).read_text())
    )
    with LiveServer(store=store.root, poll_interval_s=0) as live:
        info = _info(live)
        assert info["version"] is None
        assert info["fallback"]["serving"] is None
        with live.client() as http:
            response = http.post("/v1/ensembles/toy/predict", json={"rows": ROWS})
        assert response.status_code == 409
        assert "'toy' has no servable version: version 1 was refused" in response.json()["error"]
        assert _predicts(live, "other") == 1


def test_transient_os_errors_are_retried_not_refused() -> None:
    assert is_transient(OSError(24, "Too many open files"))
    assert is_transient(OSError(5, "Input/output error"))
    assert not is_transient(PermissionError(13, "Permission denied"))
    assert not is_transient(ValueError("bad bytes"))


_EMFILE_SCRIPT = """
import asyncio, json, sys
from serving.errors import NotReadyError
from serving.errors import NotReadyError
from serving.registry import EnsembleRegistry
from serving.settings import ServingSettings

async def main():
    registry = EnsembleRegistry(ServingSettings(store=sys.argv[1]))
    await registry.refresh()  # serves version 2; version 1 is loaded on demand below
    held = []
    try:  # use up every file descriptor: the next open() fails with EMFILE, for real
        while True:
            held.append(open("/dev/null"))
    except OSError:
        pass
    try:
        await registry.get("toy", 1)
        error = None
    except NotReadyError as exc:
        error = str(exc)
    first = registry.version_states("toy")
    for handle in held:
        handle.close()
    runtime = await registry.get("toy", 1)
    print(json.dumps({"error": error, "first": first, "then": registry.version_states("toy"),
                      "version": runtime.version}))
    await registry.close()

asyncio.run(main())
"""


def test_running_out_of_file_descriptors_is_retried_not_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    publish_synthetic(store, "toy", seed=2)
    output = subprocess.run(
        [sys.executable, "-c", _EMFILE_SCRIPT, str(store.root)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    report = json.loads(output.splitlines()[-1])
    assert report["error"].startswith("'toy' version 1 could not be loaded (")
    assert "Too many open files" in report["error"] and report["error"].endswith("retry shortly")
    first = {state["version"]: state for state in report["first"]}
    assert first[1]["state"] == "retrying" and first[2]["current"]
    then = {state["version"]: state for state in report["then"]}
    assert then[1]["state"] == "loaded" and report["version"] == 1


def test_fingerprint_changes_with_bytes_and_permissions(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    folder = store.path("toy", 1)
    before = store.fingerprint("toy", 1)
    member = folder / "members" / "m000.onnx"
    member.chmod(0o600)
    after_chmod = store.fingerprint("toy", 1)
    assert after_chmod != before
    member.write_bytes(member.read_bytes() + b"x")
    assert store.fingerprint("toy", 1) != after_chmod


def test_bytes_that_no_reader_accepts_refuse_only_their_version(tmp_path: Path) -> None:
    """A held-out file that is listed with its true checksum but is no npz at all."""
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    garbage = b"PK\x03\x04 not really a zip"

    def replace_heldout(folder: Path, manifest: dict[str, Any]) -> None:
        (folder / "heldout.npz").write_bytes(garbage)
        manifest["files"]["heldout.npz"] = sha256_bytes(garbage)

    publish_copy(store, "toy", replace_heldout)
    registry = EnsembleRegistry(ServingSettings(store=store.root))

    async def scenario() -> dict[int, dict[str, Any]]:
        await registry.refresh()
        states = registry.version_states("toy")
        await registry.close()
        return {state["version"]: state for state in states}

    states = asyncio.run(scenario())
    assert states[1]["current"]
    assert states[2]["state"] == "refused"
    assert states[2]["reason"].startswith("toy/2/heldout.npz cannot be read")


def test_an_unreadable_latest_keeps_an_operators_rollback(tmp_path: Path) -> None:
    """latest moved back to 1 on purpose; garbage in it later must not bring 3 back."""
    store = ModelStore(tmp_path / "store")
    for seed in (1, 2, 3):
        publish_synthetic(store, "toy", seed=seed)
    registry = EnsembleRegistry(ServingSettings(store=store.root))
    pointer = store.root / "toy" / LATEST_FILE

    async def scenario() -> list[int | None]:
        served = []
        await registry.refresh()
        served.append(registry.current("toy").version)
        pointer.write_text("1\n")  # the rollback
        await registry.refresh()
        served.append(registry.current("toy").version)
        pointer.write_bytes(b"1\n2")  # then garbage
        await registry.refresh()
        served.append(registry.current("toy").version)
        assert registry.fallback("toy") is None and registry.latest_error("toy")
        await registry.close()
        return served

    assert asyncio.run(scenario()) == [3, 1, 1]


def test_a_version_that_cannot_be_read_yet_is_a_retry_later_not_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO on the only version: 503 with the reason, and the next poll serves it."""
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    heldout = store.path("toy", 1) / "heldout.npz"
    real_read_bytes = Path.read_bytes

    def failing_read_bytes(path: Path) -> bytes:
        if path == heldout:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_read_bytes(path)

    registry = EnsembleRegistry(ServingSettings(store=store.root))

    async def scenario() -> None:
        monkeypatch.setattr(Path, "read_bytes", failing_read_bytes)
        await registry.refresh()
        with pytest.raises(NotReadyError, match=r"'toy' is not loaded yet \(version 1 could"):
            await registry.get("toy")
        assert "could not be loaded (retrying)" in registry.fallback("toy")["reason"]
        monkeypatch.setattr(Path, "read_bytes", real_read_bytes)
        await registry.refresh()
        assert (await registry.get("toy")).version == 1 and registry.fallback("toy") is None
        await registry.close()

    asyncio.run(scenario())


def test_a_permission_error_refuses_that_version_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests may run as root, where chmod stops nothing: the error is raised where it would be."""
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    publish_synthetic(store, "toy", seed=2)
    member = store.path("toy", 2) / "members" / "m001.onnx"
    real_read_bytes = Path.read_bytes

    def denied(path: Path) -> bytes:
        if path == member:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", denied)
    registry = EnsembleRegistry(ServingSettings(store=store.root))

    async def scenario() -> dict[str, Any]:
        await registry.refresh()
        fallback = registry.fallback("toy")
        await registry.close()
        return fallback

    fallback = asyncio.run(scenario())
    assert fallback["serving"] == 1 and fallback["newest"] == 2
    assert (
        "version 2 was refused: [Errno 13] Permission denied: 'toy/2/members/m001.onnx'"
        in (fallback["reason"])
    )


def test_a_fallback_reason_names_the_newest_refused_versions_and_counts_the_rest(tmp_path):
    """It joined every refused version and grew without bound."""
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    for _ in range(5):
        publish_copy(store, "toy", _repeated_feature_name)
    registry = EnsembleRegistry(ServingSettings(store=store.root))

    async def scenario() -> dict[str, Any] | None:
        await registry.refresh()
        fallback = registry.fallback("toy")
        await registry.close()
        return fallback

    fallback = asyncio.run(scenario())
    assert fallback is not None and (fallback["serving"], fallback["newest"]) == (1, 6)
    named = [f"toy/{v}/manifest.json" in fallback["reason"] for v in range(2, 7)]
    assert named == [False, False, True, True, True]  # the three newest, then a count
    assert fallback["reason"].endswith("; and 2 more")
