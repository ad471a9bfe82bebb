"""The real process: defaults need nothing, /health answers fast, SIGTERM shuts down cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from aniworld_addon import __main__ as main_module


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


def start_service(cwd: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """`python -m aniworld_addon` with defaults on 127.0.0.1:port, output in stdout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANIWORLD_")}
    clean |= {"ANIWORLD_PORT": str(port), "ANIWORLD_HOST": "127.0.0.1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "aniworld_addon"],
        cwd=cwd,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_service(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM, then its output once it ended (killed after 15 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=15)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serves_health_quickly_with_defaults_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    proc = start_service(tmp_path, port)
    try:
        wait_for_health(port, proc, 10)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"/health took {elapsed:.2f} s from process start"
        assert (tmp_path / "data" / "config.json").is_file()
        assert (tmp_path / "data" / "aniworld.db").is_file()
        assert (tmp_path / "library").is_dir()
    finally:
        output = stop_service(proc)
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output
    assert "Traceback" not in output
    assert (tmp_path / "data" / "logs" / "app.log").is_file()


def test_a_time_zone_tzlocal_cannot_read_leaves_the_schedule_in_utc(tmp_path: Path) -> None:
    # A POSIX rule is a valid TZ for the C library; tzlocal refuses it, and the scheduler
    # then never started: no rescan, backup or auto-download for the process' lifetime.
    port = free_port()
    proc = start_service(tmp_path, port, TZ="CET-1CEST,M3.5.0,M10.5.0/3")
    try:
        wait_for_health(port, proc, 10)
        deadline = time.monotonic() + 20
        while True:
            url = f"http://127.0.0.1:{port}/health"
            with urllib.request.urlopen(url, timeout=5) as resp:
                check = json.load(resp)["checks"]["scheduler"]
            if check["message"] != "starting" or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polling the check until the scheduler has started
        assert check["status"] == "ok", check
        assert "times are in UTC" in check["message"] and "CET-1CEST" in check["message"]
        assert check["details"]["backup"].endswith("T03:15:00+00:00"), check
    finally:
        output = stop_service(proc)
    assert proc.returncode == 0, output
    assert "Traceback" not in output


@pytest.mark.parametrize("host", ["::1", "::"])
def test_an_ipv6_host_is_listened_on(tmp_path: Path, host: str) -> None:
    # The socket was always IPv4: "Address family for hostname not supported".
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as err:
        pytest.skip(f"this machine has no IPv6 loopback: {err}")
    port = free_port()
    proc = start_service(tmp_path, port, ANIWORLD_HOST=host)
    try:
        deadline = time.monotonic() + 10
        while True:  # polling a port that is not open yet
            if proc.poll() is not None:
                pytest.fail(f"exited with {proc.returncode}: {proc.communicate()[0].decode()}")
            try:
                with urllib.request.urlopen(f"http://[::1]:{port}/health", timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "/health over IPv6 did not answer"
                time.sleep(0.02)
        if host == "::":  # every address: IPv4 too
            wait_for_health(port, proc, 5)
    finally:
        output = stop_service(proc)
    assert proc.returncode == 0, output
    shown = "localhost" if host == "::" else "[::1]"
    assert f"http://{shown}:{port}/" in output


def test_a_name_with_both_families_is_listened_on_over_ipv4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # glibc lists ::1 first for "localhost" where /etc/hosts names both: --host localhost
    # listened on IPv6 only, and the health check of 127.0.0.1 was refused. (This machine's
    # resolver names one family, so its answer is stood in for.)
    resolve = socket.getaddrinfo

    def both(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host != "dual.example":
            return resolve(host, port, *args, **kwargs)
        return [
            *resolve("::1", port, *args, **kwargs),
            *resolve("127.0.0.1", port, *args, **kwargs),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", both)
    with main_module._listen("dual.example", 0) as listening:
        assert listening.family == socket.AF_INET
        assert listening.getsockname()[0] == "127.0.0.1"


def run_command(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m aniworld_addon argv...` as a user runs it, without ANIWORLD_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIWORLD_")}
    return subprocess.run(
        [sys.executable, "-m", "aniworld_addon", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flags_count_before_and_after_the_command(tmp_path: Path) -> None:
    # The usage line shows the flags before the command; there they were read and then
    # replaced by the command's own defaults: `--host 127.0.0.1 serve` listened on 0.0.0.0.
    data, library = tmp_path / "mine", tmp_path / "lib"
    done = run_command(tmp_path, "--data-path", str(data), "--library-path", str(library), "queue")
    assert done.returncode == 0, done.stderr
    assert (data / "aniworld.db").is_file() and library.is_dir()
    assert not (tmp_path / "data").exists() and not (tmp_path / "library").exists()
    # Given again after the command, the later one counts.
    other = tmp_path / "other"
    done = run_command(tmp_path, "--data-path", str(data), "queue", "--data-path", str(other))
    assert done.returncode == 0, done.stderr
    assert (other / "aniworld.db").is_file()


def test_what_stops_a_command_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    paths = ("--data-path", str(tmp_path / "data"), "--library-path", str(tmp_path / "lib"))
    unknown = run_command(tmp_path, "download", "no-such-series", "--missing", *paths)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines()[-1].startswith("aniworld_addon: ")
    assert "no-such-series" in unknown.stderr and "Traceback" not in unknown.stderr

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    misplaced = run_command(tmp_path, "queue", "--data-path", str(a_file))
    assert misplaced.returncode == 2 and "Traceback" not in misplaced.stderr
    assert f"invalid option 'data_path': {a_file} is not a folder" in misplaced.stderr
    both = run_command(tmp_path, "download", "x", "--missing", "--episode", "3", *paths)
    assert both.returncode == 2 and "--episode goes with --season" in both.stderr

    numbers = run_command(tmp_path, "download", "x", "--season", "-5", "--episode", "0", *paths)
    assert numbers.returncode == 2 and "-5 is not from 0 to 10000" in numbers.stderr

    # a terminal in Latin-1: the argument's bytes are no UTF-8
    latin1 = run_command(tmp_path, "search", os.fsdecode(b"Caf\xe9"), *paths)
    assert latin1.returncode == 2 and "Traceback" not in latin1.stderr
    assert "argument query: is not valid UTF-8 text" in latin1.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_command(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(port), *paths)
    assert busy.returncode == 1 and "Traceback" not in busy.stderr
    assert f"cannot start: cannot listen on 127.0.0.1:{port}: Address already in use" in busy.stderr

    # A data folder whose database is no SQLite file (a bad restore, a disk error).
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "aniworld.db").write_text("not a database, not at all")
    for command in ("queue", "serve"):
        port_flag = ("--host", "127.0.0.1", "--port", str(free_port()))
        unreadable = run_command(tmp_path, command, "--data-path", str(broken), *port_flag)
        assert unreadable.returncode == 1 and "Traceback" not in unreadable.stderr, unreadable
        assert "cannot be read (file is not a database)" in unreadable.stderr


def test_a_command_prints_its_result_on_stdout_and_its_log_on_stderr(tmp_path: Path) -> None:
    paths = ("--data-path", str(tmp_path / "data"), "--library-path", str(tmp_path / "Animé 日本"))
    (tmp_path / "Animé 日本" / "Série ü").mkdir(parents=True)
    done = run_command(tmp_path, "scan", *paths)
    assert done.returncode == 0, done.stderr
    assert "INFO" in done.stderr  # the log: "providers: aniworld, ..."
    assert "INFO" not in done.stdout and done.stdout.startswith("folder")
    assert "Série ü" in done.stdout

    # A terminal that cannot show the name gets "?" for what it lacks, not a traceback.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIWORLD_")}
    latin1 = subprocess.run(
        [sys.executable, "-m", "aniworld_addon", "scan", *paths],
        cwd=tmp_path,
        env={**env, "PYTHONIOENCODING": "latin-1"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert latin1.returncode == 0, latin1.stderr
    assert "Série ü".encode("latin-1") in latin1.stdout
    assert b"Traceback" not in latin1.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    paths = ("--data-path", str(tmp_path / "data"), "--library-path", str(tmp_path / "lib"))
    for n in range(50):
        (tmp_path / "lib" / f"Series {n}").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIWORLD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aniworld_addon", "scan", *paths],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `... | head -0`: every write the command makes meets a closed pipe
    with proc.stderr:
        errors = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert "Traceback" not in errors and "Logging error" not in errors
