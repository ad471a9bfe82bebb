"""Shared bench helpers: the service and the test site, each in a subprocess of its own.

The service is driven over HTTP like a user would (setup, config, rescan, queue); the site is
`tests.site` serving the default catalogue and a media directory on loopback. Both are plain
subprocesses, so neither competes with the benchmark's own interpreter for the GIL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"

_SITE_SCRIPT = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from aiohttp import web
from tests.site.app import create_site
from tests.site.data import default_catalogue

async def main() -> None:
    app = create_site(default_catalogue(), media_dir=Path(sys.argv[2]))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()  # until terminated

asyncio.run(main())
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without ANIWORLD_* overrides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANIWORLD_")}


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU of a process (all threads), plus its waited-for children."""
    # The command name may hold spaces; the fields after it are fixed.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (ffprobe, ...)
    return ticks / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[bytes] | None, limit_s: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class SiteProcess:
    """The local provider site (default catalogue, /media from `media_dir`) in a subprocess."""

    def __init__(self, media_dir: Path) -> None:
        self.media_dir = media_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SITE_SCRIPT, str(ROOT), str(self.media_dir)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line.strip():
                raise RuntimeError(f"the test site did not start (exit {self.proc.wait(5)})")
            self.port = int(line)
        except BaseException:
            _stop(self.proc)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        _stop(self.proc)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class ServiceProcess:
    """`python -m aniworld_addon` in a subprocess on a free port, driven over HTTP."""

    def __init__(self, data: Path, library: Path, *, log: Path | None = None) -> None:
        self.data = data
        self.library = library
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(timeout=30)
        self.headers: dict[str, str] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Self:
        out = subprocess.DEVNULL if self.log is None else self.log.open("ab")
        try:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "aniworld_addon"),
                    *("--host", "127.0.0.1", "--port", str(self.port)),
                    *("--data-path", str(self.data), "--library-path", str(self.library)),
                ],
                cwd=ROOT,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        try:
            self.until(self._healthy, "the service to answer /health")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.client.close()
        _stop(self.proc)

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the service exited with {self.proc.returncode}{self._log_tail()}")
        try:
            return self.client.get(self.base + "/health").status_code == 200
        except httpx.TransportError:
            return False

    def _log_tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; raises on any status >= 300."""
        response = self.client.request(method, self.base + path, headers=self.headers, **kwargs)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def until(
        self, condition: Callable[[], Any], what: str, limit_s: float = 60, every_s: float = 0.02
    ) -> None:
        """Poll a condition of another process until it holds."""
        deadline = time.monotonic() + limit_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {limit_s} s for {what}{self._log_tail()}")
            time.sleep(every_s)

    def setup(self, site_url: str, settings: dict[str, Any] | None = None) -> None:
        """First login, the aniworld provider at `site_url` (others off), settings, rescan."""
        token = self.call("POST", "/api/auth/setup", json={"master_password": PASSWORD})
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}
        config: dict[str, Any] = {
            "providers": {
                "aniworld": {"url": site_url},
                "sto": {"enabled": False},
                "ytdlp": {"enabled": False},
            }
        }
        for section, values in (settings or {}).items():
            config.setdefault(section, {}).update(values)
        self.call("PUT", "/api/config", json=config)
        op = self.call("POST", "/api/anime/rescan")["operation_id"]

        def scanned() -> bool:
            status = self.call("GET", f"/api/operations/{op}")["status"]
            if status == "failed":
                raise RuntimeError(f"the rescan failed{self._log_tail()}")
            return bool(status == "completed")

        self.until(scanned, "the rescan")

    def queue_items(self) -> list[dict[str, Any]]:
        """Every queue item, whatever its state."""
        status = self.call("GET", "/api/queue/status")
        groups = ("active_downloads", "pending_queue", "completed_downloads", "failed_downloads")
        return [item for group in groups for item in status[group]]


def write_sidecar(library: Path, folder: str, provider: str, key: str) -> Path:
    """A series folder in `library` that the scanner maps to `provider`/`key`."""
    series = library / folder
    series.mkdir(parents=True, exist_ok=True)
    (series / ".aniworld.json").write_text(json.dumps({"provider": provider, "key": key}))
    return series
