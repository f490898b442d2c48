"""Shared serving test helpers: live servers, free ports, corrupt publishes, schemathesis runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ensembles.store import (
    CHECKSUM_FILE,
    LATEST_FILE,
    MANIFEST_FILE,
    ModelStore,
    sha256_bytes,
)
from serving.app import create_app
from serving.settings import ServingSettings

TOKEN = "s3cret-token"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The real app under uvicorn (uvloop + httptools) in a thread, on a free port."""

    def __init__(self, **settings: object) -> None:
        self.settings = ServingSettings(port=free_port(), **settings)
        self.app = create_app(self.settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.settings.port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.address = f"127.0.0.1:{self.settings.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client on this server."""
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def publish_copy(
    store: ModelStore,
    name: str,
    change: Callable[[Path, dict[str, Any]], None] | None = None,
    *,
    reseal: bool = True,
) -> int:
    """Publish a copy of the latest version as the next one, changed on the way; return it.

    ``change(folder, manifest_dict)`` edits the copied files and the manifest (as a dict)
    in place. With ``reseal`` the manifest's checksum is rewritten to match, as a careful
    tamperer (or a buggy tool) would; without it the old checksum stays. The copy is renamed
    into place and ``latest`` moved, as a real publish would, so a polling server sees it.
    """
    source = store.path(name, store.latest(name))
    version = store.versions(name)[-1] + 1
    staging = source.parent / f".copy-{version}"
    shutil.copytree(source, staging)
    manifest = json.loads((staging / MANIFEST_FILE).read_text())
    manifest["version"] = version
    if change is not None:
        change(staging, manifest)
    text = json.dumps(manifest, indent=2) + "\n"
    (staging / MANIFEST_FILE).write_text(text)
    if reseal:
        (staging / CHECKSUM_FILE).write_text(sha256_bytes(text.encode()))
    os.rename(staging, store.path(name, version))
    (store.root / name / LATEST_FILE).write_text(f"{version}\n")
    return version


def flip_member_byte(folder: Path, manifest: dict[str, Any]) -> None:
    """Flip one byte in the middle of the first member's ONNX file."""
    member = folder / manifest["members"][0]["file"]
    data = bytearray(member.read_bytes())
    data[len(data) // 2] ^= 0xFF
    member.write_bytes(bytes(data))


def publish_corrupt(store: ModelStore, name: str) -> int:
    """Publish a copy of the latest version with one member's bytes flipped; return it."""
    return publish_copy(store, name, flip_member_byte)


#: Per-operation settings: the answers a static schema cannot rule out (see the file).
CONFIG = Path(__file__).with_name("openapi.toml")
#: Every check, a fixed seed, one worker and no example database: with a bounded number
#: of examples per operation, the same cases on every run.
OPTIONS = (
    "--checks=all",
    "--seed=1",
    "--workers=1",
    "--generation-database=none",
    "--request-timeout=30",
    "--no-color",
)


def run_schemathesis(server: LiveServer, cwd: Path, *options: str, examples: int) -> str:
    """Run ``schemathesis run <server>/openapi.json`` and return its report.

    Fails the test, showing the report, unless every generated case passed.
    """
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        f"--config-file={CONFIG}",
        "run",
        f"{server.url}/openapi.json",
        *OPTIONS,
        f"--max-examples={examples}",
        *options,
    ]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-8000:]
    assert re.search(r"(\d+) generated, \1 passed", report), report[-8000:]
    return report
