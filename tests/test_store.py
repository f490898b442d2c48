"""The model store: atomic versions, the latest pointer, checksums and name validation."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ensembles.errors import IntegrityError, NotFoundError, StoreError
from ensembles.manifest import Manifest
from ensembles.store import CHECKSUM_FILE, ModelStore, sha256_bytes, validate_name
from tests.store_toys import assert_second_version_kept, toy_writer


def test_publish_numbers_versions_and_moves_latest(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    first = store.publish("toy", toy_writer())
    second = store.publish("toy", toy_writer(b"other"))
    assert (first.version, second.version) == (1, 2)
    assert store.versions("toy") == [1, 2]
    assert store.latest("toy") == 2
    assert store.names() == ["toy"]
    loaded = store.load_manifest("toy")
    assert loaded.version == 2
    assert set(loaded.files) == {"members/m000.onnx"}


def test_failed_publish_leaves_nothing_visible(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())

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


@pytest.mark.parametrize(
    "failure", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=repr
)
def test_a_failure_after_the_commit_says_the_version_was_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    """Ctrl-C or a full disk while ``latest`` moves: the version is whole and readable by
    number, so the exception must not let its reporter say that nothing was published."""
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    real_replace = os.replace

    def failing_replace(source: str | Path, target: str | Path) -> None:
        if Path(target).name == "latest":
            raise failure
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(type(failure)) as raised:
        store.publish("toy", toy_writer(b"second"))
    assert_second_version_kept(store, raised.value, str(tmp_path / "toy" / "2"))


def test_corrupt_file_is_refused_with_its_name(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    (tmp_path / "toy" / "1" / "members" / "m000.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="m000.onnx is corrupt: sha256"):
        store.load_manifest("toy")


def test_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    (tmp_path / "toy" / "1" / "members" / "m000.onnx").unlink()
    with pytest.raises(IntegrityError, match="m000.onnx is missing"):
        store.load_manifest("toy")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"task": "regression"', '"task": "ranking"', "manifest.json is invalid at 'task'"),
        (
            '"classes": null',
            '"classes": ["a"]',
            "classes are for classification; this task is regression",
        ),
        (
            '"schema_version": 2',
            '"schema_version": 1',
            "has schema version 1; this release reads version 2: train the ensemble again",
        ),
    ],
)
def test_resealed_manifest_edits_are_refused_by_the_schema(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    path = tmp_path / "toy" / "1" / "manifest.json"
    reseal(path, path.read_text().replace(old, new))
    with pytest.raises(IntegrityError, match=message):
        store.load_manifest("toy")


def reseal(path: Path, text: str) -> None:
    """Rewrite a manifest and its checksum consistently, as a careful tamperer would."""
    path.write_text(text)
    (path.parent / CHECKSUM_FILE).write_text(sha256_bytes(text.encode()) + "\n")


def test_changed_manifest_is_refused_by_its_checksum(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    path = tmp_path / "toy" / "1" / "manifest.json"
    path.write_text(path.read_text().replace('"n_outputs": 1', '"n_outputs": 2'))
    with pytest.raises(
        IntegrityError, match=r"manifest.json is corrupt: its sha256 does not match"
    ):
        store.load_manifest("toy")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "manifest.sha256 is missing: version 1 is incomplete or was written by an older"),
        (b"abc\n", "manifest.sha256 does not hold a sha256 digest"),
    ],
)
def test_missing_or_garbage_manifest_checksum_is_refused(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    checksum = tmp_path / "toy" / "1" / CHECKSUM_FILE
    if content is None:
        checksum.unlink()
    else:
        checksum.write_bytes(content)
    with pytest.raises(IntegrityError, match=message):
        store.read_version("toy")


def test_undecodable_manifest_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    path = tmp_path / "toy" / "1" / "manifest.json"
    data = b"\xff\xfe" + path.read_bytes()
    path.write_bytes(data)
    (path.parent / CHECKSUM_FILE).write_text(sha256_bytes(data))
    with pytest.raises(IntegrityError, match="manifest.json is not UTF-8 text"):
        store.load_manifest("toy")


def test_file_not_listed_in_the_manifest_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    (tmp_path / "toy" / "1" / "members" / "m001.onnx").write_bytes(b"smuggled")
    with pytest.raises(
        IntegrityError, match=r"members/m001.onnx is not listed in the manifest's checksums"
    ):
        store.read_version("toy")


def test_read_version_returns_the_verified_bytes(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer(b"weights"))
    stored = store.read_version("toy")
    assert stored.files == {"members/m000.onnx": b"weights"}
    assert stored.manifest.files == {"members/m000.onnx": sha256_bytes(b"weights")}


def test_unknown_ensemble_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(
        NotFoundError, match="ensemble 'ghost' not found .* python scripts/train.py"
    ):
        ModelStore(tmp_path).load_manifest("ghost")


def test_unknown_version_lists_the_available_ones(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    with pytest.raises(NotFoundError, match=r"has no version 7; available: \[1\]"):
        store.load_manifest("toy", 7)


@pytest.mark.parametrize("name", ["../etc", "Upper", "", "a/b", "x" * 65, ".hidden", "toy\n"])
def test_names_that_could_escape_or_confuse_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StoreError, match="invalid ensemble name"):
        ModelStore(tmp_path).publish(name, toy_writer())


@pytest.mark.parametrize(
    ("csv", "name"),
    [
        ("données.csv", "donnees"),
        ("Ünïcode.csv", "unicode"),
        ("My Data (2024).csv", "my-data-2024"),
        ("sales.csv.gz", "sales"),
        ("___.csv", "ensemble"),
        ("数据.csv", "ensemble"),
        ("a" * 70 + ".csv", "a" * 64),
    ],
)
def test_a_csv_file_name_always_gives_a_valid_ensemble_name(csv: str, name: str) -> None:
    """The default name comes from the file: any file name a user has must give one that
    the store accepts (non-ASCII letters and long stems were refused before training)."""
    from ensembles.training.pipeline import TrainRequest

    derived = TrainRequest(csv=csv, target="y").ensemble_name
    assert derived == name and validate_name(derived) == derived


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"banana\n", "'banana'"),
        (b"\xff\xfe", repr("\\xff\\xfe")),  # shown escaped, never decoded
        ("²".encode(), "'²'"),  # str.isdigit() says yes; int() says no
        (b"01", "'01'"),  # no version folder is named 01
        (b"", "''"),
    ],
)
def test_garbage_latest_pointer_is_refused(tmp_path: Path, content: bytes, shown: str) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    (tmp_path / "toy" / "latest").write_bytes(content)
    pattern = f"does not hold a version number: {re.escape(shown)}$"
    with pytest.raises(IntegrityError, match=pattern):
        store.latest("toy")


def test_version_without_manifest_is_incomplete(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    (tmp_path / "toy" / "2").mkdir()
    assert store.versions("toy") == [1]
    with pytest.raises(IntegrityError, match="manifest.json is missing: version 2 is incomplete"):
        store.load_manifest("toy", 2)


def test_check_versions_verifies_every_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    store.publish("toy", toy_writer(b"second"))
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


def test_leftovers_of_a_killed_publish_are_listed_then_removed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    folder = tmp_path / "toy"
    (folder / ".staging-2-deadbeef" / "members").mkdir(parents=True)
    (folder / ".staging-2-deadbeef" / "manifest.json").write_text("{}")
    (folder / ".latest.0badc0de").write_text("2\n")
    assert [p.name for p in store.leftovers("toy")] == [".latest.0badc0de", ".staging-2-deadbeef"]
    assert store.versions("toy") == [1]
    store.publish("toy", toy_writer(b"second"))
    assert store.leftovers("toy") == []
    assert store.versions("toy") == [1, 2] and store.latest("toy") == 2


def test_publish_skips_a_version_number_taken_by_an_incomplete_folder(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.publish("toy", toy_writer())
    (tmp_path / "toy" / "2").mkdir()  # no manifest: not a version, but the name is taken
    assert store.publish("toy", toy_writer(b"next")).version == 3


def test_publish_fsyncs_every_file_and_folder_before_moving_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record what each real fsync call flushed (by its descriptor's path) and in what order."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    ModelStore(tmp_path).publish("toy", toy_writer())
    folder = (tmp_path / "toy").resolve()
    staging = next(Path(p) for p in synced if Path(p).name.startswith(".staging-"))
    for relative in ("members/m000.onnx", "manifest.json", "manifest.sha256", "members", ""):
        assert str(staging / relative).rstrip("/") in synced, relative
    # After the rename: the ensemble folder, the new pointer (a temporary file), the folder.
    tail = synced[-3:]
    assert tail[0] == str(folder) and tail[2] == str(folder)
    assert Path(tail[1]).name.startswith(".latest.")
    assert synced.index(str(staging)) < synced.index(str(folder))


_KILLED_PUBLISHER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from store_toys import toy_manifest
from ensembles.store import ModelStore

store = ModelStore(sys.argv[1])

def write(folder: Path, version: int):
    (folder / "members").mkdir()
    for index in range(4):
        (folder / "members" / f"m{index:03d}.onnx").write_bytes(bytes([version % 256]) * 20_000)
    return toy_manifest("toy", version)

print("ready", flush=True)
while True:
    store.publish("toy", write)
"""


def test_publish_killed_at_random_points_never_leaves_a_visible_partial_version(
    tmp_path: Path,
) -> None:
    """SIGKILL a process that publishes in a loop, at seeded random moments, ten times."""
    rng = random.Random(9)
    store = ModelStore(tmp_path / "store")
    tests_folder = str(Path(__file__).parent)
    for _ in range(10):
        process = subprocess.Popen(
            [sys.executable, "-c", _KILLED_PUBLISHER, str(store.root), tests_folder],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
        versions = store.versions("toy")
        if versions:
            assert store.latest("toy") in versions
        assert all(problem is None for problem in store.check_versions("toy").values())
    before = store.versions("toy")
    published = store.publish("toy", toy_writer())
    assert store.versions("toy") == [*before, published.version]
    assert store.leftovers("toy") == []


def test_a_failed_first_publish_never_pulls_the_lock_from_under_one_that_waits(
    tmp_path: Path,
) -> None:
    """The first publish of an ensemble fails while a second waits for the lock: the second
    publishes, and a third started meanwhile never runs beside it (it used to find the folder
    and lock file gone, or have its staging folder removed as a leftover)."""
    import threading

    store = ModelStore(tmp_path / "store")
    first_writing, fail_now = threading.Event(), threading.Event()

    def failing(folder: Path, version: int) -> Manifest:
        first_writing.set()
        assert fail_now.wait(30)
        raise RuntimeError("the first publish fails")

    results: dict[str, object] = {}

    def run(key: str, write) -> None:
        try:
            results[key] = store.publish("toy", write).version
        except Exception as exc:  # recorded, asserted below
            results[key] = exc

    first = threading.Thread(target=run, args=("first", failing))
    first.start()
    assert first_writing.wait(30)
    second = threading.Thread(target=run, args=("second", toy_writer(b"second")))
    second.start()
    time.sleep(0.3)  # the second is waiting for the lock now (if not, it still must succeed)
    fail_now.set()
    first.join(30)
    third = threading.Thread(target=run, args=("third", toy_writer(b"third")))
    third.start()
    second.join(30)
    third.join(30)
    assert isinstance(results["first"], RuntimeError)
    assert sorted([results["second"], results["third"]]) == [1, 2], results
    assert store.check_versions("toy") == {1: None, 2: None}
    assert store.leftovers("toy") == []


def test_no_version_is_published_past_the_largest_number_a_reader_accepts(tmp_path: Path) -> None:
    """A version folder of 18 nines: the next number would be no version at all (and the
    publish after it failed with 'Directory not empty')."""
    store = ModelStore(tmp_path / "store")
    store.publish("toy", toy_writer())
    (store.root / "toy" / ("9" * 18)).mkdir()
    with pytest.raises(StoreError, match="no version number is left after it"):
        store.publish("toy", toy_writer(b"next"))
    assert store.latest("toy") == 1
