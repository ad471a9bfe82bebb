"""The log files: what reaches them, and that a flood of one message cannot rotate them away."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aniworld_addon.logging_setup import FileLogging, RepeatThrottle


@pytest.fixture
def file_logging(tmp_path: Path) -> Iterator[FileLogging]:
    logs = FileLogging(tmp_path, "info")
    logs.start()
    yield logs
    logs.stop()


def test_an_asyncio_error_flood_leaves_one_line_and_other_errors(
    file_logging: FileLogging,
) -> None:
    # Out of file descriptors, asyncio logs this on every loop turn: 300,000 lines rotated every
    # log file away in an adversarial run.
    flood = logging.getLogger("asyncio")
    for _ in range(5000):
        flood.error("socket.accept() out of system resource\nsocket: %s", "<socket>")
    flood.error("Task exception was never retrieved")
    logging.getLogger("aniworld_addon.test").error("an error of our own")
    file_logging.stop()
    errors = (file_logging.log_dir / "error.log").read_text().splitlines()
    assert sum("out of system resource" in line for line in errors) == 1
    assert any("Task exception was never retrieved" in line for line in errors)
    assert any("an error of our own" in line for line in errors)


def test_a_held_back_message_says_how_many_it_held() -> None:
    now = [0.0]
    throttle = RepeatThrottle(60.0, clock=lambda: now[0])

    def record() -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "boom %s", ("x",), None)

    assert throttle.filter(record())
    assert not any(throttle.filter(record()) for _ in range(9))
    now[0] = 61.0
    later = record()
    assert throttle.filter(later)
    assert later.getMessage() == "boom x (9 more like it in the last 60 s)"


def test_the_console_never_shows_a_requested_url(tmp_path: Path) -> None:
    # httpx logs each request's full URL at info, and a webhook's URL carries its secret
    # token: it stood in the add-on log. A real console set-up, a real request, at debug.
    script = (
        "import asyncio, httpx\n"
        "from aiohttp import web\n"
        "from aniworld_addon.logging_setup import configure_console\n"
        "configure_console('debug')\n"
        "async def main():\n"
        "    app = web.Application()\n"
        "    app.router.add_post('/{tail:.*}', lambda r: web.Response(text='ok'))\n"
        "    runner = web.AppRunner(app); await runner.setup()\n"
        "    site = web.TCPSite(runner, '127.0.0.1', 0); await site.start()\n"
        "    port = site._server.sockets[0].getsockname()[1]\n"
        "    async with httpx.AsyncClient() as client:\n"
        "        r = await client.post(f'http://127.0.0.1:{port}/api/webhooks/1/SECRET-TOKEN')\n"
        "    print('status', r.status_code)\n"
        "    await runner.cleanup()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "status 200" in done.stdout
    assert "SECRET-TOKEN" not in done.stdout + done.stderr
