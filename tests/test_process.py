"""The real process: defaults need nothing, /health answers fast, SIGTERM shuts down cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(port: int, proc: subprocess.Popen[bytes], limit_s: float) -> float:
    """Seconds until /health answered; fails if the process dies or the limit passes."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if proc.poll() is not None:
            pytest.fail(f"service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.02)  # polling a port that is not open yet; the condition is the answer
    pytest.fail(f"/health did not answer within {limit_s} s")


def test_serves_health_quickly_with_defaults_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIWORLD_")}
    env["ANIWORLD_PORT"] = str(port)
    env["ANIWORLD_HOST"] = "127.0.0.1"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aniworld_addon"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_health(port, proc, 10)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"/health took {elapsed:.2f} s from process start"
        assert (tmp_path / "data" / "config.json").is_file()
        assert (tmp_path / "data" / "aniworld.db").is_file()
        assert (tmp_path / "library").is_dir()
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=15)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output
    assert "Traceback" not in output
    assert (tmp_path / "data" / "logs" / "app.log").is_file()
