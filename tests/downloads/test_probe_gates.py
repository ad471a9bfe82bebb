"""Warm ffprobes: started with a download, held at a FIFO gate, verifying the finished file.

Real ffprobe processes, real downloads over loopback from the test site, Linux /proc to see
where a process waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aniworld_addon.downloads import MediaSource, Progress, Resolver, VerificationFailedError
from aniworld_addon.downloads.downloader import Downloader
from aniworld_addon.downloads.probe_gates import INPUT_NAME, ProbeGates, WarmProbe
from aniworld_addon.downloads.verification import verify_download
from aniworld_addon.providers import AniworldProvider
from aniworld_addon.providers.base import Language
from tests.conftest import require_tool
from tests.downloads.test_downloader import ffprobe_children, leftovers, source_for
from tests.site.media import MediaSet
from tests.site.plugin import RunningSite

GATED = "wait_for_partner"  # the kernel function an open() of a FIFO without a reader sleeps in


def wait_until_gated(pid: int, timeout_s: float = 10) -> None:
    """Poll until the process sleeps at its FIFO gate (it loads its libraries first)."""
    deadline = time.monotonic() + timeout_s
    while (where := Path(f"/proc/{pid}/wchan").read_text()) != GATED:
        assert time.monotonic() < deadline, f"ffprobe {pid} never reached its gate: {where}"
        time.sleep(0.005)  # polls a condition: the process reaches the gate


class RecordingGates(ProbeGates):
    """ProbeGates that keep every warm probe they start, for the test to look at."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.started: list[WarmProbe] = []

    def start(self, ffprobe: str) -> WarmProbe | None:
        warm = super().start(ffprobe)
        if warm is not None:
            self.started.append(warm)
        return warm


@pytest.fixture
def gates(tmp_path: Path) -> Iterator[RecordingGates]:
    require_tool("ffprobe")
    gates = RecordingGates(tmp_path / "gates")
    yield gates
    for warm in gates.started:
        warm.close()  # whatever a failing test left


async def test_a_download_is_verified_by_the_ffprobe_that_waited_through_it(
    provider: AniworldProvider,
    resolver: Resolver,
    provider_site: RunningSite,
    media_set: MediaSet,
    final_base: Path,
    gates: RecordingGates,
) -> None:
    source = await source_for(resolver, provider, 1, "VOE")
    provider_site.control.media_rate_bps = media_set.mp4_size // 2  # about two seconds
    halfway = asyncio.Event()

    def on_progress(progress: Progress) -> None:
        if progress.percent >= 50:
            halfway.set()

    task = asyncio.create_task(
        Downloader(probes=gates).download(source, final_base, on_progress=on_progress)
    )
    await halfway.wait()
    [warm] = gates.started
    # Loaded long ago, and its input does not exist: only the gate keeps it from failing.
    await asyncio.to_thread(wait_until_gated, warm.process.pid)
    assert not (warm.gate / INPUT_NAME).exists()

    final = await task

    assert final.read_bytes() == media_set.mp4.read_bytes()
    assert warm.process.returncode == 0  # it read the file and found a video and a duration
    assert not warm.gate.exists() and list(gates.root.iterdir()) == []
    assert leftovers(final_base) == [final.name]


async def test_a_warm_probe_rejects_what_a_cold_one_rejects(
    media_set: MediaSet, tmp_path: Path, gates: RecordingGates
) -> None:
    ffprobe = require_tool("ffprobe")
    source = MediaSource("http://hoster.invalid/e/1", {}, "VOE", Language.GERMAN_DUB)
    not_media = tmp_path / "episode.mp4"
    not_media.write_bytes(b"<html>Video not found</html>" * 100)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(media_set.mp4.read_bytes()[:200])  # cut inside its moov box

    probes: list[list[str]] = []

    def look() -> None:
        probes.append(ffprobe_children())

    for broken in (not_media, truncated):
        for warm in (gates.start(ffprobe), None):
            assert warm is not None or len(gates.started) in (1, 2)  # one warm round per file
            probes.clear()
            with pytest.raises(VerificationFailedError, match=r"not readable media|no video"):
                await asyncio.to_thread(
                    verify_download,
                    *(broken, "mp4", source),
                    ffprobe=ffprobe,
                    warm=warm,
                    meanwhile=look,
                )
            # The warm one checked the file, and no cold one was started beside it.
            target = f"{warm.gate / INPUT_NAME}" if warm is not None else str(broken)
            assert len(probes[0]) == 1 and target in probes[0][0], probes
            if warm is not None:
                warm.close()


def test_a_probe_that_is_no_longer_waiting_leaves_the_check_to_a_cold_one(
    media_set: MediaSet, gates: RecordingGates
) -> None:
    ffprobe = require_tool("ffprobe")
    source = MediaSource("http://hoster.invalid/e/1", {}, "VOE", Language.GERMAN_DUB)
    warm = gates.start(ffprobe)
    assert warm is not None
    warm.process.kill()
    warm.process.wait()

    size = verify_download(media_set.mp4, "mp4", source, ffprobe=ffprobe, warm=warm)

    assert size == media_set.mp4_size
    assert warm.release(media_set.mp4) is None
    warm.close()
    warm.close()  # twice is harmless: the error path and the finally both may
    assert not warm.gate.exists()


def test_the_sweep_ends_the_probes_of_a_killed_process_and_spares_live_ones(
    tmp_path: Path, gates: RecordingGates
) -> None:
    ffprobe = require_tool("ffprobe")
    orphan, ours = gates.start(ffprobe), gates.start(ffprobe)
    assert orphan is not None and ours is not None
    wait_until_gated(orphan.process.pid)
    # The gate of a process that has ended: a pid that is gone.
    gone = _a_pid_that_is_gone()
    dead_gate = orphan.gate.with_name(f"{gone}-12345-abc_1")
    orphan.gate.rename(dead_gate)
    # A gate of an earlier process that had our pid (a container restarted): its start time
    # differs from ours. It holds no waiting ffprobe; sweeping removes it all the same.
    reused = gates.root / f"{os.getpid()}-1-abc_2"
    reused.mkdir()
    stranger = gates.root / "not-a-gate"
    stranger.mkdir()

    assert gates.sweep() == 2

    assert orphan.process.wait(timeout=10) != 0  # released into a missing input: it ended
    assert not dead_gate.exists() and not reused.exists()
    assert ours.gate.exists() and ours.process.poll() is None
    assert stranger.exists()
    orphan.gate = dead_gate  # so that the fixture's close finds nothing left to remove


def test_gates_refuse_an_unsafe_shared_or_replaced_folder(tmp_path: Path) -> None:
    ffprobe = require_tool("ffprobe")
    odd = ProbeGates(tmp_path / "a:b")  # ":" would split FFREPORT's file name
    assert odd.start(ffprobe) is None
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert ProbeGates(shared).start(ffprobe) is None
    assert ProbeGates(shared).sweep() == 0
    planted = tmp_path / "planted"
    planted.symlink_to(tmp_path)
    assert ProbeGates(planted).start(ffprobe) is None
    # Checked at every start: a root removed and made again open to others is not used.
    gates = ProbeGates(tmp_path / "gates")
    first = gates.start(ffprobe)
    assert first is not None
    first.close()
    gates.root.rmdir()
    gates.root.mkdir()
    gates.root.chmod(0o777)
    assert gates.start(ffprobe) is None
    assert list(gates.root.iterdir()) == []


def test_a_warm_rejection_is_checked_again_cold(media_set: MediaSet, tmp_path: Path) -> None:
    real = require_tool("ffprobe")
    # An ffprobe behind a wrapper that drops FFREPORT does not wait at the gate: it fails on
    # the missing input at once, and is still running (sleeping) when the file is released.
    wrapper = tmp_path / "ffprobe"
    wrapper.write_text(f'#!/bin/sh\nunset FFREPORT\n"{real}" "$@"\nrc=$?\nsleep 1\nexit $rc\n')
    wrapper.chmod(0o755)
    gates = ProbeGates(tmp_path / "gates")
    warm = gates.start(str(wrapper))
    assert warm is not None
    deadline = time.monotonic() + 10
    while b"sleep" not in b"".join(child_commands(warm.process.pid)):
        assert time.monotonic() < deadline, "the wrapped ffprobe never ended"
        time.sleep(0.005)  # polls a condition: the wrapped ffprobe has failed and exited
    source = MediaSource("http://hoster.invalid/e/1", {}, "VOE", Language.GERMAN_DUB)
    try:
        size = verify_download(media_set.mp4, "mp4", source, ffprobe=str(wrapper), warm=warm)
    finally:
        warm.close()
    assert warm.used and warm.process.returncode != 0  # the warm one did fail
    assert size == media_set.mp4_size  # the cold one, on the real path, decided


def child_commands(pid: int) -> list[bytes]:
    """The command lines of a process's children."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            with contextlib.suppress(OSError):
                found.append(Path(f"/proc/{child}/cmdline").read_bytes())
    return found


def _a_pid_that_is_gone() -> int:
    true = shutil.which("true") or "/bin/true"
    pid = os.spawnv(os.P_NOWAIT, true, [true])
    os.waitpid(pid, 0)
    return pid
