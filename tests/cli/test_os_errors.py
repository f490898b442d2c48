"""Operating-system errors: one line naming the path, exit status 1, no traceback, every command.

Each error here is real, raised by the kernel without privileges or tricks, so the tests
hold when they run as root (where a read-only chmod stops nothing):

* ENOTDIR: a store below a regular file;
* EPERM as root, EACCES otherwise: a store below ``/sys`` (sysfs makes no folders);
* EACCES: a store folder chmod'ed read-only (skipped as root);
* EROFS: a store on a read-only file system (skipped where none is mounted);
* EISDIR: a ``--csv`` that is a folder;
* ENOSPC: a write to ``/dev/full`` (a full disk names no file).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ensembles.cli import benchmark, diagnose, train
from ensembles.cli.common import os_error_message, run_command

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--dataset", "wine", "--strategy", "repeat", "--members", "2", "--epochs", "1"]
QUICK += ["--hidden-sizes", "4", "--quiet"]


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    """The single ``error:`` line on stderr (log lines of work done before it may precede)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def read_only_folder() -> Path | None:
    """A folder on a read-only file system, if this machine mounts one at a usual place."""
    for candidate in ("/sys/fs/cgroup", "/proc/sys", "/sys", "/usr"):
        path = Path(candidate)
        if path.is_dir() and os.statvfs(path).f_flag & os.ST_RDONLY:
            return path
    return None


def test_a_store_below_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert train.main([*QUICK, "--store", str(blocker / "store")]) == 1  # ENOTDIR
    assert one_error_line(capsys) == (
        f"error: {blocker}/store/wine: Not a directory; a part of the path is a file, not a "
        "folder: choose another path"
    )


def test_a_store_that_cannot_be_written_is_refused_before_the_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Not after every member has trained: the data (here none) come after the store."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    absent = ["--csv", str(tmp_path / "absent.csv"), "--target", "y", "--name", "wine"]
    assert train.main([*QUICK[2:], *absent, "--store", str(blocker / "store")]) == 1
    assert "Not a directory" in one_error_line(capsys)


def test_a_store_where_folders_cannot_be_made_is_one_line(capsys: pytest.CaptureFixture) -> None:
    if not Path("/sys/kernel").is_dir() or os.statvfs("/sys").f_flag & os.ST_RDONLY:
        pytest.skip("no read-write sysfs at /sys (a read-only one gives EROFS, tested below)")
    assert train.main([*QUICK, "--store", "/sys/ensembles-store"]) == 1  # EPERM or EACCES
    line = one_error_line(capsys)
    assert line in {
        "error: /sys/ensembles-store: Operation not permitted; check its permissions or choose "
        "another path",
        "error: /sys/ensembles-store: Permission denied; check its permissions or choose "
        "another path",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o555)
    try:
        assert train.main([*QUICK, "--store", str(store)]) == 1  # EACCES
    finally:
        store.chmod(0o755)
    assert one_error_line(capsys) == (
        f"error: {store}/wine: Permission denied; check its permissions or choose another path"
    )


def test_a_store_on_a_read_only_file_system_is_one_line(capsys: pytest.CaptureFixture) -> None:
    folder = read_only_folder()
    if folder is None:
        pytest.skip("no read-only file system mounted here")
    store = folder / "ensembles-store"
    assert train.main([*QUICK, "--store", str(store)]) == 1  # EROFS
    line = one_error_line(capsys)
    assert line.startswith(f"error: {store}"), line
    assert line.endswith(
        ": Read-only file system; that file system is read-only: choose a path on a writable one"
    )


@pytest.mark.parametrize(
    ("main", "writes"),
    [(train.main, "--store"), (benchmark.main, "--output"), (diagnose.main, "--output")],
    ids=["train", "benchmark", "diagnose"],
)
def test_a_csv_that_is_a_folder_is_one_line_in_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture, main: Callable[[list[str]], int], writes: str
) -> None:
    assert main(["--csv", str(tmp_path), "--target", "y", writes, str(tmp_path / "out")]) == 1
    assert (
        one_error_line(capsys)
        == f"error: {tmp_path}: Is a directory; that is a folder: give a file"
    )


def test_the_script_prints_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "scripts/train.py", "--csv", str(tmp_path), "--target", "y"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 1
    assert result.stderr == f"error: {tmp_path}: Is a directory; that is a folder: give a file\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_names_where_the_command_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    def fill() -> int:
        with open("/dev/full", "w") as handle:  # ENOSPC on flush, with no file name
            handle.write("x")
            handle.flush()
        return 0

    assert run_command(fill, writes=[tmp_path / "store"]) == 1
    assert capsys.readouterr().err == (
        f"error: No space left on device while writing under {tmp_path / 'store'}; free some "
        "disk space or choose a path on another disk\n"
    )


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)),
            f"{os.strerror(errno.EDQUOT)} while writing under s1 or s2; free some of your "
            "disk quota or choose a path on another disk",
        ),
        (
            OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/x"),
            f"/mnt/x: {os.strerror(errno.EROFS)}; that file system is read-only: choose a path "
            "on a writable one",
        ),
        (
            OSError(errno.EACCES, os.strerror(errno.EACCES), "a", None, "b"),
            f"a -> b: {os.strerror(errno.EACCES)}; check its permissions or choose another path",
        ),
        (
            OSError(errno.EPIPE, os.strerror(errno.EPIPE)),  # no path, and not a write error
            os.strerror(errno.EPIPE),
        ),
    ],
)
def test_os_error_messages(error: OSError, message: str) -> None:
    assert os_error_message(error, ["s1", "s2"]) == message
