"""kill -9 at three moments of a download: nothing half-done at a final path, nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.site import Fault, MediaSet
from tests.site.plugin import RunningSite

from .conftest import IN_CI, PASSWORD, require_tool
from .test_process import free_port

KEY = "sky-lantern"
SERIES_DIR = "Sky Lantern (2023)"


class ServiceProcess:
    """`python -m aniworld_addon` in a subprocess, driven over HTTP like a user would."""

    def __init__(self, data: Path, library: Path, env: dict[str, str]) -> None:
        self.data = data
        self.library = library
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.headers: dict[str, str] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aniworld_addon",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-path",
                str(self.data),
                "--library-path",
                str(self.library),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.session = aiohttp.ClientSession()
        await self.until(self._healthy, "the service to answer /health")

    async def _healthy(self) -> bool:
        assert self.proc is not None and self.session is not None
        if self.proc.poll() is not None:
            pytest.fail(f"the service exited with {self.proc.returncode}")
        try:
            async with self.session.get(self.base + "/health") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    async def login(self, first: bool) -> None:
        path, body = (
            ("/api/auth/setup", {"master_password": PASSWORD})
            if first
            else ("/api/auth/login", {"password": PASSWORD})
        )
        token = (await self.call("POST", path, json=body))["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self.session is not None
        async with self.session.request(
            method, self.base + path, headers=self.headers, **kwargs
        ) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def until(self, condition: Callable[[], Any], what: str, limit: float = 30) -> None:
        """Poll a condition of another process (no event reaches us from there)."""
        async with asyncio.timeout(limit):
            while not await condition():
                await asyncio.sleep(0.02)

    async def item(self) -> dict[str, Any]:
        status = await self.call("GET", "/api/queue/status")
        items = [
            *status["active_downloads"],
            *status["pending_queue"],
            *status["completed_downloads"],
            *status["failed_downloads"],
        ]
        assert len(items) == 1, items
        return dict(items[0])

    async def kill(self) -> None:
        assert self.proc is not None and self.session is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        await self.session.close()

    async def stop(self) -> None:
        if self.session is not None and not self.session.closed:
            await self.session.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            # Waited for off the loop: the test site runs on it, and a download that is
            # reading a page when the service stops waits for the answer.
            await asyncio.to_thread(self.proc.wait, 15)


@pytest.fixture
async def service_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the service process, with a slow ffprobe first on PATH.

    The shim marks when verification starts and takes a second, which opens a window between
    'the .part file is complete' and 'the rename' that a kill can hit on purpose.
    """
    real = require_tool("ffprobe")
    shims = tmp_path / "shims"
    shims.mkdir()
    marker = tmp_path / "verifying"
    shim = shims / "ffprobe"
    shim.write_text(f'#!/bin/sh\ntouch "{marker}"\nsleep 1\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIWORLD_")}
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    env["ANIWORLD_TEST_MARKER"] = str(marker)
    return env


@pytest.fixture
async def running(
    tmp_path: Path, provider_site: RunningSite, media_set: MediaSet, service_env: dict[str, str]
) -> AsyncIterator[ServiceProcess]:
    """A service with Sky Lantern in its library, scanned, queue stopped."""
    library = tmp_path / "library"
    (library / SERIES_DIR).mkdir(parents=True)
    (library / SERIES_DIR / ".aniworld.json").write_text(
        json.dumps({"provider": "aniworld", "key": KEY})
    )
    service = ServiceProcess(tmp_path / "data", library, service_env)
    await service.start()
    try:
        await service.login(first=True)
        await service.call(
            "PUT",
            "/api/config",
            json={
                "providers": provider_site.providers_config(),
                "downloads": {"min_free_space_mb": 0},
            },
        )
        op = await service.call("POST", "/api/anime/rescan")

        async def scanned() -> bool:
            result = await service.call("GET", f"/api/operations/{op['operation_id']}")
            return bool(result["status"] == "completed")

        await service.until(scanned, "the rescan")
        yield service
    finally:
        await service.stop()


def final_videos(library: Path) -> list[Path]:
    return [p for p in library.rglob("*.mp4") if ".part" not in p.name]


def part_files(library: Path) -> list[Path]:
    return [p for p in library.rglob("*") if ".part" in p.name]


async def _restart_and_finish(service: ServiceProcess, media_set: MediaSet) -> None:
    assert final_videos(service.library) == [], "a file appeared at a final path"
    await service.start()
    await service.login(first=False)
    item = await service.item()
    assert item["status"] in ("pending", "downloading")  # the crashed item was not lost

    async def completed() -> bool:
        return bool((await service.item())["status"] == "completed")

    await service.until(completed, "the download to complete after the restart", 60)
    (video,) = final_videos(service.library)
    assert video.read_bytes() == media_set.mp4.read_bytes()
    assert part_files(service.library) == []


async def download_until_half_written(service: ServiceProcess) -> None:
    """Queue S01E01 and return once its .part file holds over 20 KB (throttle it first)."""

    async def half_written() -> bool:
        parts = part_files(service.library)
        return bool(parts) and max(p.stat().st_size for p in parts) > 20_000

    await service.call(
        "POST", f"/api/anime/{KEY}/download", json={"episodes": [{"season": 1, "episode": 1}]}
    )
    await service.until(half_written, "a half-written .part file")


async def test_kill_before_the_first_byte(
    running: ServiceProcess, provider_site: RunningSite, media_set: MediaSet
) -> None:
    control = provider_site.control
    control.set_fault(r"^/embed/", Fault.TIMEOUT)  # the hoster page never answers
    await running.call(
        "POST", f"/api/anime/{KEY}/download", json={"episodes": [{"season": 1, "episode": 1}]}
    )
    await control.wait_for("embed")
    await running.kill()
    control.clear_faults()
    await _restart_and_finish(running, media_set)


async def test_kill_mid_file(
    running: ServiceProcess, provider_site: RunningSite, media_set: MediaSet
) -> None:
    control = provider_site.control
    control.media_rate_bps = 50_000  # ~9 s for the sample: plenty of time to land mid-file
    await download_until_half_written(running)
    await running.kill()
    assert part_files(running.library), "the .part file should still be there after a kill"
    control.media_rate_bps = None
    await _restart_and_finish(running, media_set)


async def test_kill_during_verify_and_rename(
    running: ServiceProcess, service_env: dict[str, str], media_set: MediaSet
) -> None:
    marker = Path(service_env["ANIWORLD_TEST_MARKER"])

    async def verifying() -> bool:
        return marker.exists()

    await running.call(
        "POST", f"/api/anime/{KEY}/download", json={"episodes": [{"season": 1, "episode": 1}]}
    )
    await running.until(verifying, "verification of the finished .part file")
    await running.kill()
    marker.unlink()
    await _restart_and_finish(running, media_set)


async def test_sigterm_while_the_hoster_stalls_stops_before_home_assistant_kills(
    running: ServiceProcess, provider_site: RunningSite, media_set: MediaSet
) -> None:
    # A stalled hoster calls no progress hook: the shutdown waited for the socket timeout
    # (30 s), and Home Assistant kills an add-on 15 s after asking it to stop.
    control = provider_site.control
    control.timeout_hold_s = 120
    control.set_fault(r"^/media/", Fault.TIMEOUT)  # the file's request is never answered
    await running.call(
        "POST", f"/api/anime/{KEY}/download", json={"episodes": [{"season": 1, "episode": 1}]}
    )
    await control.wait_for("media")
    assert running.proc is not None
    began = time.monotonic()
    await running.stop()  # SIGTERM
    assert time.monotonic() - began < 10
    assert running.proc.returncode == 0
    control.clear_faults()
    await _restart_and_finish(running, media_set)  # still queued, and nothing half-written


async def test_a_download_abandoned_at_shutdown_leaves_no_partial_file_after_a_restart(
    running: ServiceProcess, provider_site: RunningSite
) -> None:
    # An abandoned download went back to pending, and start-up cleans only items it finds
    # downloading: its .part stayed in the library.
    control = provider_site.control
    control.media_rate_bps = 50_000
    await download_until_half_written(running)
    control.media_rate_bps = 1  # the hoster all but stops: no progress, no retry notice
    await running.call("POST", "/api/queue/pause")  # so that nothing starts after the restart
    assert running.proc is not None
    began = time.monotonic()
    await running.stop()
    assert time.monotonic() - began < 10 and running.proc.returncode == 0
    assert part_files(running.library), "the abandoned thread's .part is left at the stop"
    await running.start()
    await running.login(first=False)
    assert part_files(running.library) == []
    assert (await running.item())["status"] == "pending"


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """folder bind-mounted read-only onto itself for the block (root and mount needed)."""
    mount = shutil.which("mount") or "/usr/bin/mount"
    bound = os.geteuid() == 0 and (
        subprocess.run([mount, "--bind", str(folder), str(folder)], check=False).returncode == 0
    )
    if not bound:
        if IN_CI:
            pytest.fail("cannot bind-mount a folder read-only (needs root and mount)")
        pytest.skip("a read-only folder needs root and mount")
    try:
        remount = [mount, "-o", "remount,ro,bind", str(folder)]
        subprocess.run(remount, check=True, timeout=10)
        yield
    finally:
        subprocess.run([shutil.which("umount") or "umount", str(folder)], check=True, timeout=10)


async def test_a_library_read_only_after_the_crash_does_not_stop_the_start(
    running: ServiceProcess, provider_site: RunningSite, media_set: MediaSet
) -> None:
    # The crash left a .part file the start-up clean-up could not remove (a share remounted
    # read-only, a NAS gone): the error escaped the start-up, and the service then neither
    # answered nor exited (the database's thread kept it alive).
    control = provider_site.control
    control.media_rate_bps = 50_000
    retries = {"downloads": {"retry_backoff_s": [1], "max_retries": 20}}
    await running.call("PUT", "/api/config", json=retries)
    await download_until_half_written(running)
    await running.kill()
    (part,) = part_files(running.library)
    control.media_rate_bps = None
    with read_only(part.parent):
        await running.start()  # /health answers
        await running.login(first=False)

        async def refused() -> bool:
            error = str((await running.item())["error"])
            return error.startswith("cannot write") and "Read-only file system" in error

        await running.until(refused, "an attempt refused by the read-only folder")
        assert (await running.item())["status"] in ("pending", "downloading")  # kept
        assert part.exists()
        await running.stop()
    await _restart_and_finish(running, media_set)


async def start_cli(service: ServiceProcess, *argv: str) -> asyncio.subprocess.Process:
    """`python -m aniworld_addon argv...` on the service's data, left running."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aniworld_addon",
        *argv,
        "--data-path",
        str(service.data),
        "--library-path",
        str(service.library),
        env=service.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def cli(service: ServiceProcess, *argv: str) -> tuple[int, str]:
    """`python -m aniworld_addon argv...` on the service's data, beside it; (code, output)."""
    process = await start_cli(service, *argv)
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_cli_run_beside_the_service_leaves_its_downloads_alone(
    running: ServiceProcess, provider_site: RunningSite, media_set: MediaSet
) -> None:
    # Every CLI command ran the crash recovery on the shared database: `queue` removed the
    # service's .part file and set its running item pending; the service then claimed it a
    # second time, two tasks wrote one file, and a half file landed marked completed.
    control = provider_site.control
    control.media_rate_bps = 50_000
    await download_until_half_written(running)
    (part,) = part_files(running.library)

    code, output = await cli(running, "queue")
    assert code == 0, output
    assert "interrupted" not in output and part.exists()
    assert "downloading" in output

    # A download asked for on the command line is queued for the service to run.
    code, output = await cli(running, "download", KEY, "--season", "1", "--episode", "2")
    assert code == 0, output
    assert "the running service downloads them" in output
    control.media_rate_bps = None

    async def both_completed() -> bool:
        status = await running.call("GET", "/api/queue/status")
        return len(status["completed_downloads"]) == 2

    await running.until(both_completed, "both downloads to complete in the service", 60)
    status = await running.call("GET", "/api/queue/status")
    assert [i["retry_count"] for i in status["completed_downloads"]] == [0, 0]
    videos = final_videos(running.library)
    assert len(videos) == 2
    assert all(v.read_bytes() == media_set.mp4.read_bytes() for v in videos)
    assert control.count("media") == 2  # one transfer each: nothing was fetched twice

    # With the service's queue paused, nothing downloads them: not a success (exit 1).
    await running.call("POST", "/api/queue/pause")
    code, output = await cli(running, "download", KEY, "--season", "1", "--episode", "3")
    assert code == 1, output
    assert "queue is paused" in output and "downloads them" not in output


def children(pid: int) -> set[int]:
    """The processes `pid` started that still run (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(child) for child in task.read_text().split())
    return found


async def test_download_commands_without_a_service_take_turns_and_end_cleanly_on_sigterm(
    running: ServiceProcess, provider_site: RunningSite, media_set: MediaSet
) -> None:
    # A second `download` found the queue taken and, taking the first command for a service,
    # left its episode queued for nobody; a SIGTERM left a .part, the item `downloading` and
    # ffprobes running without a parent.
    await running.stop()
    control = provider_site.control
    control.media_rate_bps = 50_000
    first = await start_cli(running, "download", KEY, "--season", "1", "--episode", "1")

    async def half_written() -> bool:
        parts = part_files(running.library)
        return bool(parts) and max(p.stat().st_size for p in parts) > 20_000

    await running.until(half_written, "the first command's .part file")
    second = await start_cli(running, "download", KEY, "--season", "1", "--episode", "2")
    assert second.stdout is not None
    said = b""
    async with asyncio.timeout(30):
        while b"another download command" not in said:
            line = await second.stdout.readline()
            assert line, said.decode()
            said += line
    assert f"(process {first.pid})".encode() in said

    probes = children(first.pid)
    assert probes  # the ffprobe that waits for the file (probe_gates)
    first.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        assert await first.wait() == 128 + signal.SIGTERM
    assert all(not Path(f"/proc/{pid}").exists() for pid in probes)

    control.media_rate_bps = None
    async with asyncio.timeout(60):
        rest, _ = await second.communicate()
    assert second.returncode == 0, (said + rest).decode()
    (video,) = (v for v in final_videos(running.library) if "S01E02" in v.name)
    assert video.read_bytes() == media_set.mp4.read_bytes()
    assert part_files(running.library) == []

    await running.start()
    await running.login(first=False)
    status = await running.call("GET", "/api/queue/status")
    items = [*status["active_downloads"], *status["pending_queue"], *status["completed_downloads"]]
    assert sorted((i["episode"], i["status"] == "completed") for i in items)[1] == (2, True)
    assert {i["episode"] for i in items} == {1, 2}  # the interrupted one was not lost


async def test_a_waiting_download_command_sees_its_episode_done_by_the_other_one(
    running: ServiceProcess, provider_site: RunningSite, media_set: MediaSet
) -> None:
    # The command holding the queue starts whatever is pending, the waiting command's episode
    # included; the waiting one heard only its own process's events and waited for good.
    await running.stop()
    control = provider_site.control
    control.set_fault(r"/staffel-1/episode-1$", Fault.TIMEOUT)  # its own episode never starts
    first = await start_cli(running, "download", KEY, "--season", "1", "--episode", "1")
    await control.wait_for("episode")
    second = await start_cli(running, "download", KEY, "--season", "1", "--episode", "2")
    assert second.stdout is not None
    said = await second.stdout.readline() + await second.stdout.readline()

    async def second_done_by_the_first() -> bool:
        with contextlib.closing(sqlite3.connect(running.data / "aniworld.db", timeout=5)) as db:
            row = db.execute("SELECT status FROM queue WHERE episode = 2").fetchone()
        return row is not None and row[0] == "completed"

    try:
        await running.until(second_done_by_the_first, "the first command to fetch S01E02", 60)
        first.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await first.wait() == 128 + signal.SIGTERM
            rest, _ = await second.communicate()
    finally:
        for command in (first, second):
            if command.returncode is None:
                command.kill()
                await command.communicate()
    assert second.returncode == 0, (said + rest).decode()
    assert b"S01E02: " in rest
    assert b"/100 S01E02" not in rest  # seen in the table: not fetched a second time
