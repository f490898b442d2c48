"""The model store: atomic versions, the latest pointer, checksums and name validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ensembles.errors import IntegrityError, NotFoundError, StoreError
from ensembles.manifest import InputSpec, Manifest, OutputSpec, StrategyInfo
from ensembles.store import ModelStore


def manifest(name: str, version: int) -> Manifest:
    return Manifest(
        name=name,
        version=version,
        created="2026-01-01T00:00:00+00:00",
        task="regression",
        input=InputSpec(feature_names=["a"]),
        output=OutputSpec(name="value", n_outputs=1),
        strategy=StrategyInfo(name="repeat"),
        members=[],
        files={},
        default_combiner="mean",
    )


def writer(payload: bytes = b"weights"):
    def write(folder: Path, version: int) -> Manifest:
        (folder / "members").mkdir()
        (folder / "members" / "m000.onnx").write_bytes(payload)
        return manifest("toy", version)

    return write


def test_publish_numbers_versions_and_moves_latest(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first = store.publish("toy", writer())
    second = store.publish("toy", writer(b"other"))
    assert (first.version, second.version) == (1, 2)
    assert store.versions("toy") == [1, 2]
    assert store.latest("toy") == 2
    assert store.names() == ["toy"]
    loaded = store.load_manifest("toy")
    assert loaded.version == 2
    assert set(loaded.files) == {"members/m000.onnx"}


def test_failed_publish_leaves_nothing_visible(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", writer())

    def crash(folder: Path, version: int) -> Manifest:
        (folder / "half.onnx").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.publish("toy", crash)
    assert store.versions("toy") == [1]
    assert store.latest("toy") == 1
    visible = sorted(e.name for e in (tmp_path / "toy").iterdir() if not e.name.startswith("."))
    assert visible == ["1", "latest"]
    assert not list((tmp_path / "toy").glob(".staging-*"))


def test_corrupt_file_is_refused_with_its_name(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", writer())
    (tmp_path / "toy" / "1" / "members" / "m000.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="m000.onnx is corrupt: sha256"):
        store.load_manifest("toy")


def test_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", writer())
    (tmp_path / "toy" / "1" / "members" / "m000.onnx").unlink()
    with pytest.raises(IntegrityError, match="m000.onnx is missing"):
        store.load_manifest("toy")


def test_invalid_manifest_names_the_field(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", writer())
    path = tmp_path / "toy" / "1" / "manifest.json"
    path.write_text(path.read_text().replace('"task": "regression"', '"task": "ranking"'))
    with pytest.raises(IntegrityError, match="manifest.json is invalid at 'task'"):
        store.load_manifest("toy")


def test_unknown_ensemble_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(
        NotFoundError, match="ensemble 'ghost' not found .* python scripts/train.py"
    ):
        ModelStore(tmp_path).load_manifest("ghost")


def test_unknown_version_lists_the_available_ones(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", writer())
    with pytest.raises(NotFoundError, match=r"has no version 7; available: \[1\]"):
        store.load_manifest("toy", 7)


@pytest.mark.parametrize("name", ["../etc", "Upper", "", "a/b", "x" * 65, ".hidden"])
def test_names_that_could_escape_or_confuse_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StoreError, match="invalid ensemble name"):
        ModelStore(tmp_path).publish(name, writer())


def test_garbage_latest_pointer_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", writer())
    (tmp_path / "toy" / "latest").write_text("banana\n")
    with pytest.raises(IntegrityError, match="does not hold a version number: 'banana'"):
        store.latest("toy")


def test_version_without_manifest_is_incomplete(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", writer())
    (tmp_path / "toy" / "2").mkdir()
    assert store.versions("toy") == [1]
    with pytest.raises(IntegrityError, match="manifest.json is missing: version 2 is incomplete"):
        store.load_manifest("toy", 2)


def test_check_versions_verifies_every_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", writer())
    store.publish("toy", writer(b"second"))
    (tmp_path / "toy" / "1" / "members" / "m000.onnx").write_bytes(b"tampered")
    problems = store.check_versions("toy")
    assert problems[2] is None
    assert "m000.onnx is corrupt" in problems[1]


def test_failed_first_publish_leaves_no_folder(tmp_path: Path) -> None:
    def fail(folder: Path, version: int) -> Manifest:
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError):
        ModelStore(tmp_path).publish("fresh", fail)
    assert not (tmp_path / "fresh").exists()
