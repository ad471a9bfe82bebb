"""Real yt-dlp downloads over loopback from the test site: files, progress, cancel, failures."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from aniworld_addon.downloads import (
    Candidate,
    DownloadFailedError,
    HosterUnavailableError,
    InsufficientSpaceError,
    MediaSource,
    NoResolverError,
    Progress,
    ProgressThrottle,
    ResolvedMedia,
    Resolver,
    TargetNotWritableError,
    VerificationFailedError,
    cleanup_partials,
    partial_files,
    progress_from_hook,
)
from aniworld_addon.downloads.downloader import Downloader
from aniworld_addon.downloads.progress import PART_SUFFIX
from aniworld_addon.downloads.verification import verify_download
from aniworld_addon.downloads.ytdlp_sessions import SessionPool, YtdlpSession
from aniworld_addon.fsutil import write_out
from aniworld_addon.providers import AniworldProvider
from aniworld_addon.providers.base import HosterLink, Language
from tests.conftest import require_tool, small_disk
from tests.downloads.test_resolver import FixedRedirectProvider
from tests.site.control import Fault
from tests.site.media import MediaSet
from tests.site.plugin import RunningSite

GER_DUB = Language.GERMAN_DUB
SERIES = "kaiju-academy"


async def candidate(
    resolver: Resolver, provider: AniworldProvider, episode: int, hoster: str
) -> Candidate:
    found = await resolver.candidates(provider, SERIES, 1, episode, [GER_DUB])
    return next(c for c in found if c.hoster == hoster)


async def source_for(
    resolver: Resolver, provider: AniworldProvider, episode: int, hoster: str
) -> MediaSource:
    return await resolver.resolve(provider, await candidate(resolver, provider, episode, hoster))


def leftovers(final_base: Path) -> list[str]:
    """Every file in the target folder whose name starts like the episode's."""
    folder = final_base.parent
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(final_base.name))


def probe(path: Path) -> dict[str, Any]:
    ffprobe = require_tool("ffprobe")
    command = [ffprobe, "-v", "error", "-show_entries", "stream=codec_type:format=duration"]
    done = subprocess.run([*command, "-of", "json", str(path)], capture_output=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def download_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("aniworld-download")]


@pytest.mark.parametrize(("hoster", "kind"), [("VOE", "html5 <video>"), ("Vidoza", "direct .mp4")])
async def test_mp4_hoster_download_is_byte_identical(
    hoster: str,
    kind: str,
    provider: AniworldProvider,
    resolver: Resolver,
    media_set: MediaSet,
    final_base: Path,
) -> None:
    source = await source_for(resolver, provider, 1, hoster)
    reports: list[Progress] = []

    final = await Downloader().download(source, final_base, on_progress=reports.append)

    assert final == final_base.with_name(final_base.name + ".mp4")
    assert final.read_bytes() == media_set.mp4.read_bytes(), kind
    assert leftovers(final_base) == [final.name]
    assert reports[-1].percent == 100.0
    assert reports[-1].total_mb == pytest.approx(media_set.mp4_size / 2**20, abs=0.01)


async def test_a_dollar_in_a_name_is_no_environment_variable(
    provider: AniworldProvider,
    resolver: Resolver,
    media_set: MediaSet,
    final_base: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # yt-dlp expands $VARS in its output template: a series titled "... $HOME ..." had its
    # .part written to another folder of the library (or outside it), made there first.
    monkeypatch.setenv("ANIWORLD_ELSEWHERE", "Elsewhere")
    library = final_base.parent.parent.parent
    base = library / "Ca$ANIWORLD_ELSEWHERE" / "S01E01 - ${ANIWORLD_ELSEWHERE}"
    source = await source_for(resolver, provider, 1, "VOE")

    final = await Downloader().download(source, base)

    assert final == base.with_name(base.name + ".mp4")
    assert final.read_bytes() == media_set.mp4.read_bytes()
    made = sorted(str(p.relative_to(library)) for p in library.rglob("*"))
    assert made == ["Ca$ANIWORLD_ELSEWHERE", f"Ca$ANIWORLD_ELSEWHERE/{final.name}"]


async def test_downloads_reuse_an_idle_ytdlp_session_but_never_a_failed_one(
    provider: AniworldProvider,
    resolver: Resolver,
    media_set: MediaSet,
    final_base: Path,
) -> None:
    pool = SessionPool[YtdlpSession](4)
    downloader = Downloader(sessions=pool)
    first: list[Progress] = []
    second: list[Progress] = []
    other_base = final_base.with_name("Kaiju Academy - S01E01 - again")

    one = await downloader.download(
        await source_for(resolver, provider, 1, "VOE"), final_base, on_progress=first.append
    )
    seen_by_first = len(first)
    two = await downloader.download(
        await source_for(resolver, provider, 1, "Vidoza"), other_base, on_progress=second.append
    )

    assert pool.made == 1  # the second download borrowed the first one's instance
    assert one.read_bytes() == two.read_bytes() == media_set.mp4.read_bytes()
    assert len(first) == seen_by_first  # its hooks now report to the second download only
    assert second[-1].percent == 100.0
    with pytest.raises(HosterUnavailableError):
        await downloader.download(await source_for(resolver, provider, 2, "Doodstream"), final_base)
    assert pool.made == 1  # the failure borrowed the idle one, then closed it
    two.unlink()
    await downloader.download(await source_for(resolver, provider, 1, "VOE"), other_base)
    assert pool.made == 2
    pool.close()
    two.unlink()
    await downloader.download(await source_for(resolver, provider, 1, "VOE"), other_base)
    assert pool.made == 3  # a closed pool keeps nothing


def ffprobe_children() -> list[str]:
    """The command lines of this process's ffprobe children (Linux /proc)."""
    found = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                command = command_line(int(pid))
                if command and command[0].endswith(b"ffprobe"):
                    found.append(b" ".join(command).decode())
    return found


def command_line(pid: int) -> list[bytes]:
    """A process's arguments; a child that is still inside exec() has none yet, so wait."""
    deadline = time.monotonic() + 5
    while not (raw := Path(f"/proc/{pid}/cmdline").read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.001)  # polls a condition: the arguments appear when exec() completes
    return raw.split(b"\0")


def test_the_fsync_runs_beside_ffprobe_and_a_failing_one_stops_it(
    media_set: MediaSet, tmp_path: Path
) -> None:
    ffprobe = require_tool("ffprobe")
    video = tmp_path / "episode.mp4"
    video.write_bytes(media_set.mp4.read_bytes())
    source = MediaSource("http://hoster.invalid/e/1", {}, "VOE", GER_DUB)
    seen: list[list[str]] = []

    size = verify_download(
        video, "mp4", source, ffprobe=ffprobe, meanwhile=lambda: seen.append(ffprobe_children())
    )

    assert size == media_set.mp4_size
    assert len(seen) == 1 and any(str(video) in command for command in seen[0])

    def fail() -> None:
        raise TargetNotWritableError("cannot write: no space")

    with pytest.raises(TargetNotWritableError):
        verify_download(video, "mp4", source, ffprobe=ffprobe, meanwhile=fail)
    assert ffprobe_children() == []  # stopped and reaped, not left running


async def test_jwplayer_hls_download_is_a_valid_video(
    provider: AniworldProvider, resolver: Resolver, media_set: MediaSet, final_base: Path
) -> None:
    require_tool("ffmpeg")
    source = await source_for(resolver, provider, 1, "Filemoon")

    final = await Downloader().download(source, final_base)

    assert final.suffix == ".mp4"
    report = await asyncio.to_thread(probe, final)
    assert "video" in {s["codec_type"] for s in report["streams"]}
    assert float(report["format"]["duration"]) == pytest.approx(media_set.duration_s, abs=0.5)
    assert leftovers(final_base) == [final.name]


async def test_a_disk_too_small_for_the_hls_remux_is_no_fault_of_the_hoster(
    provider: AniworldProvider, resolver: Resolver, media_set: MediaSet, tmp_path: Path
) -> None:
    # The fragments fit, then ffmpeg's remux needs a second copy and hits ENOSPC; yt-dlp says
    # only "Conversion failed!", so the hoster was blamed (and blocklisted) and the item
    # retried into the same full disk.
    require_tool("ffmpeg")
    fragments = sum(segment.stat().st_size for segment in media_set.segments)
    source = await source_for(resolver, provider, 1, "Filemoon")
    with small_disk(tmp_path / "disk", fragments * 3 // 2) as disk:
        base = disk / "Kaiju Academy - S01E01"
        with pytest.raises(InsufficientSpaceError) as caught:
            await Downloader(min_free_space_mb=0).download(source, base)
        assert not caught.value.next_candidate
        assert "remux" in caught.value.message
        assert leftovers(base) == []
    gc.collect()  # an abandoned file or socket would warn now, inside this test


async def test_the_free_space_check_counts_what_other_downloads_still_need(
    provider: AniworldProvider,
    resolver: Resolver,
    provider_site: RunningSite,
    media_set: MediaSet,
    tmp_path: Path,
) -> None:
    # Each download checked the disk for itself alone: two that each fit passed together,
    # and then filled the disk under both (the minimum free space was never kept).
    size = media_set.mp4_size
    provider_site.control.media_rate_bps = size  # a second or so each: they overlap
    downloader = Downloader(min_free_space_mb=0)
    with small_disk(tmp_path / "disk", size * 3 // 2) as disk:
        first_base, second_base = disk / "S01E01", disk / "S01E02"
        started = asyncio.Event()
        first = asyncio.create_task(
            downloader.download(
                await source_for(resolver, provider, 1, "VOE"),
                first_base,
                on_progress=lambda _: started.set(),
            )
        )
        await started.wait()
        with pytest.raises(InsufficientSpaceError) as caught:
            await downloader.download(await source_for(resolver, provider, 2, "VOE"), second_base)
        assert "other downloads" in caught.value.message
        assert (await first).read_bytes() == media_set.mp4.read_bytes()
        assert leftovers(second_base) == []
    gc.collect()  # an abandoned file or socket would warn now, inside this test


async def test_progress_is_throttled_on_the_loop_and_ends_at_100(
    provider: AniworldProvider,
    resolver: Resolver,
    provider_site: RunningSite,
    media_set: MediaSet,
    final_base: Path,
) -> None:
    source = await source_for(resolver, provider, 1, "VOE")
    provider_site.control.media_rate_bps = media_set.mp4_size // 2  # about two seconds
    reports: list[tuple[float, Progress, int]] = []

    def on_progress(progress: Progress) -> None:
        reports.append((time.monotonic(), progress, threading.get_ident()))

    await Downloader().download(source, final_base, on_progress=on_progress)

    assert {ident for _, _, ident in reports} == {threading.get_ident()}
    percents = [p.percent for _, p, _ in reports]
    assert percents == sorted(percents)
    assert percents[-1] == 100.0 and percents.count(100.0) == 1
    # yt-dlp calls its hook every few KB (hundreds of times here); we pass on far fewer.
    assert 3 <= len(reports) <= 60
    for (t0, p0, _), (t1, p1, _) in itertools.pairwise(reports):
        assert p1.percent - p0.percent >= 1.0 or t1 - t0 >= 0.9, (p0, p1)
    assert all(p.total_mb for _, p, _ in reports)
    assert any(p.speed_mbps for _, p, _ in reports)


async def test_cancel_while_the_hoster_stalls_ends_at_the_next_retry(
    provider: AniworldProvider, resolver: Resolver, provider_site: RunningSite, final_base: Path
) -> None:
    # A stalled hoster calls no progress hook: a cancel (Remove, Stop, shutdown) waited for
    # every retry's socket timeout, 90 s by default, and the queue's commands behind it.
    source = await source_for(resolver, provider, 1, "VOE")
    provider_site.control.set_fault("^/media/", Fault.TIMEOUT)
    provider_site.control.timeout_hold_s = 120
    downloader = Downloader(socket_timeout_s=1, retries=60)  # a minute of retries
    task = asyncio.create_task(downloader.download(source, final_base))
    await provider_site.control.wait_for("media", 2)  # one timeout, and the first retry

    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert time.monotonic() - began < 10  # a socket timeout and then some, not a minute
    assert leftovers(final_base) == []
    assert download_threads() == []
    gc.collect()  # an abandoned file or socket would warn now, inside this test


@pytest.mark.parametrize(("hoster", "kind"), [("VOE", "http"), ("Filemoon", "hls")])
async def test_cancel_mid_download_leaves_no_file_and_no_thread(
    hoster: str,
    kind: str,
    provider: AniworldProvider,
    resolver: Resolver,
    provider_site: RunningSite,
    media_set: MediaSet,
    final_base: Path,
) -> None:
    source = await source_for(resolver, provider, 1, hoster)
    provider_site.control.media_rate_bps = 20_000  # the file would take over 20 s
    started = asyncio.Event()
    task = asyncio.create_task(
        Downloader().download(source, final_base, on_progress=lambda _: started.set())
    )
    await provider_site.control.wait_for("media")
    await started.wait()
    assert leftovers(final_base), f"a .part file should exist while downloading ({kind})"

    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert time.monotonic() - began < 5
    assert leftovers(final_base) == []
    assert download_threads() == []
    gc.collect()  # an abandoned file or socket would warn now, inside this test


async def test_the_part_is_written_to_disk_during_the_transfer_by_a_thread_it_owns(
    provider: AniworldProvider,
    resolver: Resolver,
    provider_site: RunningSite,
    media_set: MediaSet,
    final_base: Path,
) -> None:
    source = await source_for(resolver, provider, 1, "VOE")
    provider_site.control.media_rate_bps = media_set.mp4_size * 2  # about half a second
    written: list[tuple[str, int, str]] = []
    two_written = threading.Event()

    def write(path: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # yt-dlp renamed it after the last block
            written.append((path, os.stat(path).st_size, threading.current_thread().name))
        write_out(path)
        if len(written) >= 2:
            two_written.set()

    downloader = Downloader(writeback_step=media_set.mp4_size // 8, write_out=write)
    final = await downloader.download(source, final_base)

    assert final.read_bytes() == media_set.mp4.read_bytes()
    sizes = [size for _, size, _ in written]
    assert len(set(sizes)) >= 2 and max(sizes) < media_set.mp4_size  # while the bytes came in
    # yt-dlp's own temp file for our "<base>.part.mp4" (what is renamed to the final path)
    assert {path for path, _, _ in written} == {f"{final_base}{PART_SUFFIX}.mp4{PART_SUFFIX}"}
    assert all(name.endswith("-writeback") for _, _, name in written)
    assert download_threads() == []

    # Cancelled mid-transfer, the download waits for its write-out thread too.
    final.unlink()
    written.clear()
    two_written.clear()
    provider_site.control.media_rate_bps = media_set.mp4_size // 4  # four seconds
    task = asyncio.create_task(downloader.download(source, final_base))
    assert await asyncio.to_thread(two_written.wait, 10)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert download_threads() == []
    assert leftovers(final_base) == []


async def test_cancel_while_reading_the_hoster_page_waits_for_the_thread(
    provider: AniworldProvider,
    resolver: Resolver,
    provider_site: RunningSite,
    final_base: Path,
) -> None:
    source = await source_for(resolver, provider, 1, "VOE")
    provider_site.control.latency_s = 0.5  # the embed page is slow: yt-dlp sits in a read
    task = asyncio.create_task(Downloader().download(source, final_base))
    await provider_site.control.wait_for("embed")

    task.cancel()
    # One loop turn delivers that cancel: the task sets the thread's stop flag and parks in
    # the wait for the thread, which is where the second cancel has to land.
    await asyncio.sleep(0)
    assert download_threads() != []  # still waiting for the thread
    task.cancel()  # a second cancel must not cut the wait for the thread short
    with pytest.raises(asyncio.CancelledError):
        await task

    assert download_threads() == []
    assert provider_site.control.count("media") == 0
    assert leftovers(final_base) == []


async def test_dead_hoster_raises_hoster_unavailable(
    provider: AniworldProvider, resolver: Resolver, final_base: Path
) -> None:
    source = await source_for(resolver, provider, 2, "Doodstream")

    with pytest.raises(HosterUnavailableError) as caught:
        await Downloader().download(source, final_base)

    assert caught.value.code == "hoster_unavailable"
    assert caught.value.details["status"] == 404
    assert "hoster Doodstream answered HTTP 404" in caught.value.message
    assert caught.value.next_candidate
    assert leftovers(final_base) == []


async def test_unreadable_hoster_raises_no_resolver(
    provider: AniworldProvider, http_client: httpx.AsyncClient, final_base: Path
) -> None:
    plain = Resolver(http_client, plugins=[])
    source = await source_for(plain, provider, 2, "Streamtape")

    with pytest.raises(NoResolverError) as caught:
        await Downloader().download(source, final_base)

    assert caught.value.code == "no_resolver"
    assert caught.value.message.startswith("no resolver for hoster Streamtape")
    assert isinstance(caught.value, HosterUnavailableError)  # "next hoster" for the queue
    assert leftovers(final_base) == []


async def test_episode_falls_through_to_the_first_working_hoster(
    provider: AniworldProvider, http_client: httpx.AsyncClient, final_base: Path
) -> None:
    resolver, downloader = Resolver(http_client, plugins=[]), Downloader()
    codes: list[str] = []
    final: Path | None = None
    for option in await resolver.candidates(provider, SERIES, 1, 2, [GER_DUB]):
        try:
            final = await downloader.download(await resolver.resolve(provider, option), final_base)
            break
        except DownloadFailedError as err:
            codes.append(f"{option.hoster}: {err.code}, next: {err.next_candidate}")

    assert codes == [
        "Doodstream: hoster_unavailable, next: True",
        "Streamtape: no_resolver, next: True",
    ]
    assert final is not None and final.is_file()


async def test_plugin_resolved_hoster_downloads_the_media(
    provider: AniworldProvider, resolver: Resolver, media_set: MediaSet, final_base: Path
) -> None:
    source = await source_for(resolver, provider, 2, "Streamtape")
    assert source.resolver == "test-site-media"

    final = await Downloader().download(source, final_base)

    assert final.read_bytes() == media_set.mp4.read_bytes()


@pytest.fixture
async def fake_video_server(aiohttp_server: AiohttpServer) -> dict[str, Any]:
    """Serves text labelled video/mp4 and remembers the headers it was asked with."""
    seen: dict[str, Any] = {}

    async def clip(request: web.Request) -> web.Response:
        seen["headers"] = dict(request.headers)
        return web.Response(body=b"this is not a video\n" * 100, content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/clip.mp4", clip)
    server = await aiohttp_server(app, host="127.0.0.1")
    seen["url"] = str(server.make_url("/clip.mp4"))
    return seen


async def test_non_video_file_fails_verification_and_is_removed(
    fake_video_server: dict[str, Any], http_client: httpx.AsyncClient, final_base: Path
) -> None:
    require_tool("ffprobe")

    class FakeVideoPlugin:
        name = "fake-video"

        def suitable(self, embed_url: str) -> bool:
            return True

        async def resolve(self, embed_url: str, client: httpx.AsyncClient) -> ResolvedMedia:
            return ResolvedMedia(fake_video_server["url"], {"X-Resolver-Token": "t0k3n"})

    resolver = Resolver(http_client, plugins=[FakeVideoPlugin()])
    hoster_page = FixedRedirectProvider("https://hoster.example/e/1")
    source = await resolver.resolve(hoster_page, fake_candidate())

    with pytest.raises(VerificationFailedError) as caught:
        await Downloader().download(source, final_base)

    assert caught.value.code == "verification_failed"
    assert "not readable media" in caught.value.message
    assert fake_video_server["headers"]["X-Resolver-Token"] == "t0k3n"
    assert leftovers(final_base) == []


def fake_candidate() -> Candidate:
    link = HosterLink(GER_DUB, "VOE", "1", "https://site.example/redirect/1")
    return Candidate(GER_DUB, "VOE", link)


async def test_low_free_space_refuses_to_start(
    provider: AniworldProvider, resolver: Resolver, provider_site: RunningSite, final_base: Path
) -> None:
    source = await source_for(resolver, provider, 1, "VOE")
    provider_site.control.reset()

    with pytest.raises(InsufficientSpaceError) as caught:
        await Downloader(min_free_space_mb=2**40).download(source, final_base)

    assert caught.value.code == "insufficient_space"
    assert not caught.value.next_candidate
    assert caught.value.details["min_free_space_mb"] == 2**40
    assert provider_site.control.count("embed") + provider_site.control.count("media") == 0
    assert leftovers(final_base) == []


def test_cleanup_partials_removes_only_that_downloads_temp_files(tmp_path: Path) -> None:
    base = tmp_path / "Show - S01E01 - A.B"
    temps = [".part", ".part.mp4", ".part.mp4.part", ".part.mp4.part-Frag3", ".part.temp.mp4"]
    temps += [".part.mp4.ytdl", ".part.f137.mp4"]
    keep = ["Show - S01E01 - A.B.mp4", "Show - S01E02 - A.B.part.mp4", "Show - S01E01 - A.Bx.part"]
    keep += ["Show - S01E01 - A.B.partial.txt"]
    for name in [base.name + t for t in temps] + keep:
        (tmp_path / name).write_bytes(b"x")

    assert [p.name for p in partial_files(base)] == sorted(base.name + t for t in temps)
    removed = cleanup_partials(base)

    assert len(removed) == len(temps)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    assert cleanup_partials(tmp_path / "missing" / "x") == []


def test_progress_from_hook_reads_bytes_estimates_and_fragments() -> None:
    mib = 2**20
    exact = progress_from_hook(
        {"downloaded_bytes": mib, "total_bytes": 4 * mib, "speed": mib / 2, "eta": 6.4}
    )
    assert exact == Progress(25.0, 1.0, 4.0, 0.5, 6)
    estimate = progress_from_hook({"downloaded_bytes": mib, "total_bytes_estimate": 2 * mib})
    assert estimate is not None and estimate.percent == 50.0 and estimate.speed_mbps is None
    fragments = progress_from_hook(
        {"downloaded_bytes": 10, "fragment_index": 1, "fragment_count": 4}
    )
    assert fragments is not None and fragments.percent == 25.0 and fragments.total_mb is None
    assert progress_from_hook({"status": "downloading"}) is None


def test_throttle_passes_one_point_steps_or_one_second_and_never_goes_back() -> None:
    now = [0.0]
    throttle = ProgressThrottle(clock=lambda: now[0])

    def offer(percent: float) -> float | None:
        sent = throttle.offer(Progress(percent, 0.0, None, None, None))
        return None if sent is None else sent.percent

    assert offer(0.0) == 0.0
    assert offer(0.5) is None
    assert offer(1.0) == 1.0
    now[0] = 0.5
    assert offer(1.4) is None
    now[0] = 1.6
    assert offer(1.4) == 1.4  # a second passed: speed and eta are fresh
    assert offer(0.2) is None  # an HLS estimate grew: shown as 1.4, too soon to repeat
    now[0] = 3.0
    assert offer(0.2) == 1.4
    assert offer(100.0) is None  # the downloader reports 100 % itself, once the file is final


async def test_unwritable_target_folder_is_reported_and_not_a_hoster_fault(
    provider: AniworldProvider, resolver: Resolver, tmp_path: Path
) -> None:
    source = await source_for(resolver, provider, 1, "VOE")
    blocker = tmp_path / "Kaiju Academy (2012)"
    blocker.write_text("a file where the series folder should be")

    with pytest.raises(TargetNotWritableError) as caught:
        await Downloader().download(source, blocker / "Season 01" / "Kaiju Academy - S01E01")

    assert caught.value.code == "target_not_writable"
    assert not caught.value.next_candidate
