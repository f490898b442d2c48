"""Toy versions for the store tests: a minimal manifest and a writer of one member file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ensembles.manifest import InputSpec, Manifest, OutputSpec, StrategyInfo
from ensembles.store import ModelStore


def toy_manifest(name: str, version: int) -> Manifest:
    """A valid manifest with no members (the store does not look inside)."""
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


def toy_writer(payload: bytes = b"weights", name: str = "toy") -> Callable[[Path, int], Manifest]:
    """A ``publish`` writer of ``members/m000.onnx`` holding ``payload``."""

    def write(folder: Path, version: int) -> Manifest:
        (folder / "members").mkdir()
        (folder / "members" / "m000.onnx").write_bytes(payload)
        return toy_manifest(name, version)

    return write


def assert_second_version_kept(store: ModelStore, error: BaseException, folder: str) -> None:
    """After a failure between the commit of version 2 and the move of ``latest``: the
    error notes that ``folder`` was published, and version 2 is whole beside latest's 1."""
    assert error.__notes__ == [f"{folder} was published in full, but latest was not moved to it"]
    assert store.latest("toy") == 1 and store.versions("toy") == [1, 2]
    assert store.read_version("toy", 2).files == {"members/m000.onnx": b"second"}
    assert store.leftovers("toy") == []
