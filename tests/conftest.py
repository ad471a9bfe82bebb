"""Shared fixtures: the real app on a tmp data dir, and checks that nothing is left running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aniworld_addon.app import create_app
from aniworld_addon.options import Options

pytest_plugins = ["tests.site.plugin"]

PASSWORD = "correct horse battery"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def series_folder(library: Path, folder: str, key: str, provider: str = "aniworld") -> Path:
    """A series folder in `library` with the minimal sidecar a user or an old version writes."""
    path = library / folder
    path.mkdir(parents=True)
    (path / ".aniworld.json").write_text(json.dumps({"provider": provider, "key": key}))
    return path


def require_tool(name: str) -> str:
    """The path of a real component; fail in CI, skip with a reason elsewhere."""
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if found:
        return found
    message = f"{name} is not installed (make test installs it when run as root)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def verify_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running (paho loops, executors, log listeners)."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith(("asyncio_", "waitpid"))
    ]
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture(autouse=True)
async def verify_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks behind after its app was torn down."""
    yield
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leftover, f"tasks left running: {[t.get_name() for t in leftover]}"


@pytest.fixture
def options(tmp_path: Path) -> Options:
    """Options for a test service: tmp paths, cheap bcrypt, no broker."""
    return Options(
        data_path=tmp_path / "data",
        library_path=tmp_path / "library",
        host="127.0.0.1",
        port=0,
        bcrypt_rounds=4,
    )


@pytest.fixture
def app(options: Options) -> web.Application:
    """The real application."""
    return create_app(options)


AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[Any, Any]:
    """An HTTP client for the real app, not logged in."""
    return await aiohttp_client(app)


@dataclass
class Authed:
    """A client plus the bearer header of a session made through the real setup endpoint."""

    client: TestClient[Any, Any]
    token: str
    csrf_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def authed(client: TestClient[Any, Any]) -> Authed:
    """A client after first-run setup, holding the returned access token."""
    response = await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    assert response.status == 200, await response.text()
    body = await response.json()
    return Authed(client, body["access_token"], body["csrf_token"])


def open_client_sockets(port: int) -> int:
    """How many TCP sockets this process holds open to 127.0.0.1:`port` (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    with open("/proc/self/net/tcp", encoding="ascii") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    # Columns: sl local_address rem_address st ... inode (the 10th); addresses are HEX:PORT.
    return sum(1 for row in rows if row[9] in inodes and int(row[2].split(":")[1], 16) == port)


#: how long database_lock waits for its process to take or let go of the lock
LOCK_WAIT_S = 20.0
_LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
print("released", flush=True)
"""


@contextlib.asynccontextmanager
async def database_lock(path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process holds BEGIN EXCLUSIVE on the database until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LOCKER,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(LOCK_WAIT_S):
            assert await proc.stdout.readline() == b"locked\n"
        yield proc
        proc.stdin.write(b"\n")
        await proc.stdin.drain()
        async with asyncio.timeout(LOCK_WAIT_S):
            assert await proc.stdout.readline() == b"released\n"
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@contextlib.contextmanager
def small_disk(folder: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted on `folder` (made if missing) for the block: a real
    disk that fills up (root and mount needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount") or "/usr/bin/mount"
    command = [mount, "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder)]
    mounted = os.geteuid() == 0 and subprocess.run(command, check=False).returncode == 0
    if not mounted:
        if IN_CI:
            pytest.fail("cannot mount a small tmpfs (needs root and mount)")
        pytest.skip("a small disk needs root and mount")
    try:
        yield folder
    finally:
        subprocess.run([shutil.which("umount") or "umount", str(folder)], check=True, timeout=10)
