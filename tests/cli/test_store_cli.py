"""``ensembles-store check``: one line per version, pointer and leftover; exit 1 when not intact."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import pytest

from ensembles.cli.store import main
from ensembles.store import CHECKSUM_FILE, MANIFEST_FILE, ModelStore, sha256_bytes
from tests.synthetic_ensembles import publish_synthetic


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """Two versions of real ONNX members, combiners and stored test outputs."""
    store = ModelStore(tmp_path / "store")
    publish_synthetic(store, "toy", seed=1)
    publish_synthetic(store, "toy", seed=2)
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


def _swap_ends(weights: list) -> list:
    return [weights[-1], *weights[1:-1], weights[0]]


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (_swap_ends, "combiner 'blend' does not reproduce its stored test"),
        (lambda weights: "abc", "combiner 'blend' cannot be rebuilt: The fitted state of"),
        (lambda weights: weights[:-1], "combiner 'blend' cannot run on the stored test rows"),
    ],
    ids=["other weights", "not numbers", "one weight short"],
)
def test_a_tampered_combiner_with_a_consistent_checksum_fails_the_check(
    trained_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper, words
) -> None:
    """Checksums agree after a careful edit; only rebuilding and re-running the combiner
    can tell, and a malformed state is one line like any other fault, not a traceback."""
    root = tmp_path / "store"
    shutil.copytree(trained_store / "diabetes", root / "diabetes")
    manifest_path = root / "diabetes" / "1" / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    fitted = manifest["combiners"]["blend"]["state"]["fitted"]
    fitted["weights"] = tamper(fitted["weights"])
    text = json.dumps(manifest)
    manifest_path.write_text(text)
    (manifest_path.parent / CHECKSUM_FILE).write_text(sha256_bytes(text.encode()))
    assert main(["check", "--store", str(root)]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"diabetes/1: {words}"), line


def test_a_publish_in_progress_is_not_a_leftover(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    (store.root / "toy" / ".staging-3-0123abcd").mkdir()
    with (store.root / "toy" / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a publish holds it
        assert main(["check", "--store", str(store.root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "toy: a publish is in progress (its staging folder is no leftover)"
    )


def _reseal(folder: Path) -> None:
    """Make the manifest's checksums agree with the files again, as a careful edit would."""
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    for file in manifest["files"]:
        manifest["files"][file] = sha256_bytes((folder / file).read_bytes())
    text = json.dumps(manifest)
    path.write_text(text)
    (folder / CHECKSUM_FILE).write_text(sha256_bytes(text.encode()))


def _averaged_members_as_a_number(folder: Path) -> None:
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["combiners"]["weight_average"]["state"]["members"] = 3
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (
            lambda folder: (folder / "members" / "m001.onnx").write_bytes(b"\x08\x07garbage"),
            "toy/2/members/m001.onnx is not a readable ONNX model",
        ),
        (
            lambda folder: shutil.copy(
                folder / "members" / "m000.onnx", folder / "members" / "m001.onnx"
            ),
            "member outputs",
        ),
        (
            lambda folder: (folder / "averaged.onnx").write_bytes(b"garbage"),
            "toy/2/averaged.onnx is not a readable ONNX model",
        ),
        (  # numpy would advise loading it 'unsafely using the allow_pickle= keyword'
            lambda folder: (folder / "heldout.npz").write_bytes(b"random bytes"),
            "toy/2/heldout.npz cannot be read: it is not a numpy .npz archive",
        ),
        (  # a TypeError, not one of ours: one line like any other fault, not a traceback
            _averaged_members_as_a_number,
            "cannot be loaded: TypeError:",
        ),
    ],
    ids=[
        "member unreadable",
        "member swapped",
        "averaged unreadable",
        "held-out not npz",
        "averaged members not a list",
    ],
)
def test_graphs_a_server_would_refuse_fail_the_check(
    store: ModelStore, capsys: pytest.CaptureFixture[str], damage, words
) -> None:
    # The checksums agree after the edit: only running the graphs, as a server does at
    # load, can tell (the check used to rerun the combiners on stored predictions only).
    folder = store.path("toy", 2)
    damage(folder)
    _reseal(folder)
    assert main(["check", "--store", str(store.root)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "toy/1: ok"
    assert lines[1].startswith("toy/2: ") and words in lines[1], lines[1]
    assert lines[2] == "toy/latest: version 2, which is not intact"


def test_a_version_folder_without_its_manifest_is_reported(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    (store.path("toy", 1) / MANIFEST_FILE).unlink()
    assert main(["check", "--store", str(store.root)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"toy/1: the folder has no {MANIFEST_FILE}, so it is no version (damaged or edited by "
        "hand); remove it, or publish again",
        "toy/2: ok",
        "toy/latest: version 2",
    ]


def test_a_pointer_or_lock_that_cannot_be_read_is_its_own_line_not_the_end_of_the_check(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    (store.root / "toy" / "latest").unlink()
    (store.root / "toy" / "latest").mkdir()  # an OS error, not a garbage pointer
    assert main(["check", "--store", str(store.root)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["toy/1: ok", "toy/2: ok"]
    assert lines[2].startswith("toy/latest: ") and "latest" in lines[2]


def test_an_intact_version_above_latest_is_named_without_failing_the_check(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rollback (or a publish stopped before it moved latest): served is 1, 2 is intact."""
    (store.root / "toy" / "latest").write_text("1\n")
    assert main(["check", "--store", str(store.root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "toy/latest: version 1; intact version 2 above it is not served (a rollback, or a "
        "publish stopped before it moved latest: write its number to latest to serve it)"
    )
