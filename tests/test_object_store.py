"""The model store on fsspec filesystems: ``memory://`` and a real S3 API (moto's server).

A version counts only once its manifest and checksum are there and verify; a killed publish
(SIGKILLed for real, in a subprocess, at a chosen point) leaves a prefix no reader accepts,
``store check`` reports it, and the next publish takes a fresh number.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import fsspec
import pytest

from ensembles.cli.store import main
from ensembles.errors import IntegrityError, StoreError
from ensembles.manifest import Manifest
from ensembles.store import CHECKSUM_FILE, MANIFEST_FILE, ModelStore, _object
from ensembles.store._layout import CLAIM_PREFIX
from tests.conftest import tiny_request
from tests.store_toys import assert_second_version_kept, toy_manifest, toy_writer
from tests.synthetic_ensembles import publish_synthetic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["memory", "s3"])
def object_store(request: pytest.FixtureRequest) -> ModelStore:
    """An empty store on ``memory://`` or on the moto S3 server."""
    if request.param == "memory":
        return ModelStore(f"memory://store-{uuid.uuid4().hex[:12]}/models")
    return ModelStore(request.getfixturevalue("s3_store"))


def objects(store: ModelStore, *parts: str | int) -> list[str]:
    """Every object under ``root/part/...``, relative to it (read fresh)."""
    fs, path = fsspec.core.url_to_fs("/".join([str(store.root), *map(str, parts)]))
    fs.invalidate_cache()
    return sorted(p[len(path) + 1 :] for p in fs.find(path))


def put(store: ModelStore, relative: str, data: bytes) -> None:
    fs, path = fsspec.core.url_to_fs(f"{store.root}/{relative}")
    fs.pipe_file(path, data)


def test_publish_read_verify_round_trip(object_store: ModelStore) -> None:
    store = object_store
    assert not store.is_local and not store.exists() and store.names() == []
    first = store.publish("toy", toy_writer(b"weights"))
    second = store.publish("toy", toy_writer(b"other"))
    assert (first.version, second.version) == (1, 2)
    assert store.exists() and store.names() == ["toy"] and store.folder_names() == ["toy"]
    assert store.versions("toy") == [1, 2] and store.latest("toy") == 2
    assert objects(store, "toy") == [
        *(f"{v}/{f}" for v in (1, 2) for f in (MANIFEST_FILE, CHECKSUM_FILE, "members/m000.onnx")),
        "latest",
    ]
    stored = store.read_version("toy")
    assert stored.files == {"members/m000.onnx": b"other"}
    assert stored.folder == f"{store.root}/toy/2"
    assert store.read_version("toy", 1).files == {"members/m000.onnx": b"weights"}
    assert store.check_versions("toy") == {1: None, 2: None}
    assert store.leftovers("toy") == [] and not store.publishing("toy")
    with pytest.raises(StoreError, match="is an object store: its versions have no local folder"):
        store.path("toy", 1)


def test_changed_or_unlisted_objects_are_refused_with_their_url(object_store: ModelStore) -> None:
    store = object_store
    store.publish("toy", toy_writer())
    before = store.fingerprint("toy", 1)
    put(store, "toy/1/members/m000.onnx", b"tampered")
    assert store.fingerprint("toy", 1) != before
    with pytest.raises(IntegrityError, match=f"^{store.root}/toy/1/members/m000.onnx is corrupt"):
        store.read_version("toy")
    put(store, "toy/1/members/m000.onnx", b"weights")
    put(store, "toy/1/members/m001.onnx", b"smuggled")
    with pytest.raises(IntegrityError, match="toy/1/members/m001.onnx is not listed"):
        store.read_version("toy")


def test_an_exception_inside_write_leaves_nothing(s3_store: str) -> None:
    store = ModelStore(s3_store)
    store.publish("toy", toy_writer())

    def crash(folder: Path, version: int) -> Manifest:
        (folder / "members").mkdir()
        (folder / "members" / "m000.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.publish("toy", crash)
    assert store.versions("toy") == [1] and store.latest("toy") == 1
    assert [o for o in objects(store, "toy") if not o.startswith("1/")] == ["latest"]
    assert store.leftovers("toy") == []
    assert store.publish("toy", toy_writer(b"next")).version == 2


@pytest.mark.parametrize("where", ["commit answer lost", "read back", "latest"])
def test_a_failure_after_the_commit_says_the_version_was_published(
    object_store: ModelStore, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C once the checksum landed (its answer lost), while the version is read back,
    or while ``latest`` moves: the version is whole, kept, and the exception says so
    (nobody may report "nothing was published")."""
    store = object_store
    store.publish("toy", toy_writer())
    fs = store._backend.fs
    real_pipe_file, real_cat_file = fs.pipe_file, fs.cat_file
    committed: list[str] = []

    def interrupted_pipe_file(path: str, data: bytes, **kwargs: object) -> None:
        committing = path.endswith(f"/{CHECKSUM_FILE}") and not data.startswith(b"claimed")
        if where == "latest" and path.endswith("/toy/latest"):
            raise KeyboardInterrupt
        real_pipe_file(path, data, **kwargs)
        if committing:
            committed.append(path)
            if where == "commit answer lost":
                raise KeyboardInterrupt

    def interrupted_cat_file(path: str, *args: object, **kwargs: object) -> bytes:
        if where == "read back" and committed:
            committed.clear()
            raise KeyboardInterrupt
        return real_cat_file(path, *args, **kwargs)

    monkeypatch.setattr(fs, "pipe_file", interrupted_pipe_file)
    monkeypatch.setattr(fs, "cat_file", interrupted_cat_file)
    with pytest.raises(KeyboardInterrupt) as raised:
        store.publish("toy", toy_writer(b"second"))
    assert_second_version_kept(store, raised.value, f"{store.root}/toy/2")


_KILLED_PUBLISHER = """
import os, signal, sys
sys.path.insert(0, sys.argv[3])
from store_toys import toy_manifest
from ensembles.store import ModelStore

url, point, name = sys.argv[1], sys.argv[2], sys.argv[4]

def die_at(frame, event, arg):
    code = frame.f_code
    if event == "call" and code.co_name == point and code.co_filename.endswith("_object.py"):
        os.kill(os.getpid(), signal.SIGKILL)

def write(folder, version):
    (folder / "members").mkdir()
    (folder / "members" / "m000.onnx").write_bytes(b"killed")
    if point == "write":
        os.kill(os.getpid(), signal.SIGKILL)
    return toy_manifest(name, version)

sys.setprofile(die_at)
ModelStore(url).publish(name, write)
"""


def publish_killed_at(url: str, point: str, name: str = "toy") -> None:
    """Run a publish of ``name`` in a subprocess and SIGKILL it when it reaches ``point``.

    ``write``: inside the write callback, after it wrote a file; ``_commit``: after the
    files and the manifest were uploaded, before the checksum replaced the claim.
    """
    process = subprocess.run(
        [sys.executable, "-c", _KILLED_PUBLISHER, url, point, str(ROOT / "tests"), name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr


def backdate_claim(store: ModelStore, name: str, version: int, age: dt.timedelta) -> None:
    """Rewrite the claim of ``name/version`` as if its publish had claimed it ``age`` ago."""
    relative = f"{name}/{version}/{CHECKSUM_FILE}"
    fs, path = fsspec.core.url_to_fs(f"{store.root}/{relative}")
    claim = fs.cat_file(path).decode()
    assert claim.startswith(CLAIM_PREFIX), claim
    stamp, rest = claim[len(CLAIM_PREFIX) :].split(" ", 1)
    then = dt.datetime.fromisoformat(stamp) - age
    put(store, relative, f"{CLAIM_PREFIX}{then.isoformat(timespec='seconds')} {rest}".encode())


@pytest.mark.parametrize(
    ("point", "left", "refusal"),
    [
        ("write", [CHECKSUM_FILE], "manifest.json is missing: version 2 is incomplete"),
        (
            "_commit",
            [MANIFEST_FILE, CHECKSUM_FILE, "members/m000.onnx"],
            "manifest.sha256 holds no checksum: version 2 is incomplete",
        ),
    ],
)
def test_a_killed_publish_is_no_version_and_store_check_reports_it(
    s3_store: str,
    point: str,
    left: list[str],
    refusal: str,
    capsys: pytest.CaptureFixture,
) -> None:
    store = ModelStore(s3_store)
    publish_synthetic(store, "toy", seed=1)  # real graphs: store check runs them
    publish_killed_at(s3_store, point)
    assert objects(store, "toy", 2) == sorted(left)
    fresh = ModelStore(s3_store)  # another process's view: nothing cached
    for reader in (store, fresh):
        assert reader.versions("toy") == [1] and reader.latest("toy") == 1
        assert [p.name for p in reader.leftovers("toy")] == ["2"]
    with pytest.raises(IntegrityError, match=refusal):
        fresh.read_version("toy", 2)

    assert main(["check", "--store", s3_store]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "toy/1: ok",
        "toy/latest: version 1",
        "toy: leftover 2 (left by a killed publish)",
    ]
    assert publish_synthetic(store, "toy", seed=2).version == 3
    assert store.versions("toy") == [1, 3] and store.latest("toy") == 3

    # a claim of a moment ago may be a publish still running: left alone
    assert main(["check", "--store", s3_store, "--remove-leftovers"]) == 1
    assert "toy: leftover 2" in capsys.readouterr().out
    assert [p.name for p in store.leftovers("toy")] == ["2"]
    backdate_claim(store, "toy", 2, _object.LEFTOVER_AGE + dt.timedelta(minutes=1))
    assert main(["check", "--store", s3_store, "--remove-leftovers"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "toy: removed 2 (left by a killed publish)"
    assert store.leftovers("toy") == [] and objects(store, "toy", 2) == []


def test_a_publish_that_starts_meanwhile_takes_the_next_number(object_store: ModelStore) -> None:
    """A's claim holds version 2 while A writes; B publishes 3; A's latest never goes back."""
    store = object_store
    store.publish("toy", toy_writer())
    claimed, finish = threading.Event(), threading.Event()

    def slow(folder: Path, version: int) -> Manifest:
        claimed.set()
        assert finish.wait(30)
        (folder / "members").mkdir()
        (folder / "members" / "m000.onnx").write_bytes(b"slow")
        return toy_manifest("toy", version)

    results: list[Manifest] = []
    thread = threading.Thread(target=lambda: results.append(store.publish("toy", slow)))
    thread.start()
    assert claimed.wait(30)
    assert store.publish("toy", toy_writer(b"fast")).version == 3
    finish.set()
    thread.join(30)
    assert [m.version for m in results] == [2]
    assert store.versions("toy") == [1, 2, 3] and store.latest("toy") == 3
    assert store.check_versions("toy") == {1: None, 2: None, 3: None}


def test_store_check_on_s3_through_fsspec_configuration(s3_store: str) -> None:
    """``python scripts/store.py`` finds the endpoint in ``FSSPEC_S3_ENDPOINT_URL`` alone."""
    publish_synthetic(ModelStore(s3_store), "toy", seed=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "store.py"), "check", "--store", s3_store],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["toy/1: ok", "toy/latest: version 1"]


def test_a_missing_bucket_is_one_line_naming_the_url(
    s3_endpoint: str, capsys: pytest.CaptureFixture
) -> None:
    url = f"s3://absent-{uuid.uuid4().hex[:12]}/models"
    assert main(["check", "--store", url]) == 1
    bucket = url.split("/")[2]
    assert capsys.readouterr().err == (
        f"error: {url}: there is no bucket '{bucket}': create it, or correct the URL\n"
    )
    with pytest.raises(FileNotFoundError) as caught:
        ModelStore(url).publish("toy", toy_writer())
    assert caught.value.filename == f"{url}/toy/1/{CHECKSUM_FILE}"
    assert "The specified bucket does not exist" in str(caught.value)


def test_an_unreachable_endpoint_is_one_line_naming_the_url(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": "http://127.0.0.1:9"})
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert main(["check", "--store", "s3://models/store"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: s3://models/store: Could not connect to the endpoint URL")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_protocols_mangled_urls_and_local_urls(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the model store nope://x: .*nope"):
        ModelStore("nope://x")
    with pytest.raises(StoreError, match="names no bucket or folder"):
        ModelStore("s3://")
    with pytest.raises(StoreError, match="looks like a URL that lost a '/'"):
        ModelStore(Path("s3://bucket/models"))
    local = ModelStore(f"file://{tmp_path}/store")
    assert local.is_local and local.root == tmp_path / "store"
    local.publish("toy", toy_writer())
    assert ModelStore(tmp_path / "store").versions("toy") == [1]


def test_training_refuses_a_store_it_cannot_open_before_any_member_trains(
    tmp_path: Path,
) -> None:
    from ensembles.training import pipeline

    # Members that diverge at their first epoch: had any trained, the run would fail with
    # "diverged" (a ConfigError), not with the store's error.
    diverging = {"optimizer": "sgd", "learning_rate": 1e30}
    request = tiny_request(tmp_path, dataset="wine", config=diverging, store="s4://bucket/prefix")
    with pytest.raises(StoreError, match="^cannot open the model store s4://bucket/prefix"):
        pipeline.run_training(request)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("manifest", "manifest.json is corrupt"),
        ("checksum", "manifest.sha256 does not hold a sha256 digest"),
        ("no checksum", "manifest.sha256 is missing"),
    ],
)
def test_a_damaged_committed_version_is_reported_and_never_removed_as_a_leftover(
    object_store: ModelStore, damage: str, reason: str, capsys: pytest.CaptureFixture
) -> None:
    """A committed version whose manifest or checksum changed is no killed publish: removing
    it as one (what --remove-leftovers did, at once, with no claim to date it) loses it."""
    store = object_store
    publish_synthetic(store, "toy", seed=1)
    publish_synthetic(store, "toy", seed=2)
    if damage == "manifest":
        put(store, f"toy/1/{MANIFEST_FILE}", b'{"tampered": true}')
    elif damage == "checksum":
        put(store, f"toy/1/{CHECKSUM_FILE}", b"not a checksum\n")
    else:
        fs, path = fsspec.core.url_to_fs(f"{store.root}/toy/1/{CHECKSUM_FILE}")
        fs.rm_file(path)
    fresh = ModelStore(str(store.root))  # another process's view: nothing cached
    assert fresh.leftovers("toy") == [] and fresh.unlisted_versions("toy") == [1]
    assert main(["check", "--store", str(store.root), "--remove-leftovers"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("toy/1: ") and reason in lines[0], lines
    assert lines[1:] == ["toy/2: ok", "toy/latest: version 2"]
    assert MANIFEST_FILE in objects(store, "toy", 1)  # still there, for someone to look at


def test_remove_leftovers_reports_what_it_left_and_fails_while_any_remain(
    capsys: pytest.CaptureFixture,
) -> None:
    """One old claim is removed, a fresh one (a publish that may be running) stays: the check
    says both and exits 1 (it said only "removed" and exited 0)."""
    store = ModelStore(f"memory://store-{uuid.uuid4().hex[:12]}/models")
    publish_synthetic(store, "toy", seed=1)
    now = dt.datetime.now(dt.UTC)
    for version, age in ((2, dt.timedelta(0)), (3, _object.LEFTOVER_AGE * 2)):
        stamp = (now - age).isoformat(timespec="seconds")
        put(store, f"toy/{version}/{CHECKSUM_FILE}", f"{CLAIM_PREFIX}{stamp} by a test\n".encode())
    assert main(["check", "--store", str(store.root), "--remove-leftovers"]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "toy: removed 3 (left by a killed publish)",
        "toy: leftover 2 (left by a killed publish)",
    ]
