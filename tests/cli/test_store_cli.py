"""``ensembles-store check``: one line per version, pointer and leftover; exit 1 when not intact."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_toys import toy_writer

from ensembles.cli.store import main
from ensembles.store import ModelStore


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "store")
    store.publish("toy", toy_writer())
    store.publish("toy", toy_writer())
    return store


def test_an_intact_store_checks_ok(store: ModelStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--store", str(store.root)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "toy/1: ok",
        "toy/2: ok",
        "toy/latest: version 2",
    ]


def test_corrupt_versions_bad_pointers_and_leftovers_are_listed(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    (store.path("toy", 2) / "members" / "m000.onnx").write_bytes(b"tampered")
    (store.root / "toy" / ".staging-3-deadbeef").mkdir()
    assert main(["check", "toy", "--store", str(store.root)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "toy/1: ok"
    assert lines[1].startswith("toy/2: ") and "members/m000.onnx is corrupt: sha256" in lines[1]
    assert lines[2] == "toy/latest: version 2, which is not intact"
    assert lines[3] == "toy: leftover .staging-3-deadbeef (left by a killed publish)"

    (store.root / "toy" / "latest").write_bytes(b"\xff\xfe")
    assert main(["check", "--store", str(store.root), "--remove-leftovers"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("toy/latest: ") and "does not hold a version number" in lines[2]
    assert lines[3] == "toy: removed .staging-3-deadbeef (left by a killed publish)"
    assert store.leftovers("toy") == []


def test_a_missing_store_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--store", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'nowhere'} is not a folder: there is no model store there\n"
