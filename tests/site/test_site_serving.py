"""The test site's redirects, counters, fault switches, media serving and yt-dlp compatibility."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yt_dlp
from aiohttp.test_utils import TestServer
from selectolax.parser import HTMLParser

from tests.site import (
    Catalogue,
    Fault,
    SiteEpisode,
    SiteHoster,
    create_site,
    default_catalogue,
)
from tests.site.app import SITE_CONTROL
from tests.site.control import Kind
from tests.site.data import TARGET_DIRECT, TARGET_HTML5, TARGET_JWPLAYER
from tests.site.media import MediaSet
from tests.site.plugin import RunningSite


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(http: aiohttp.ClientSession, url: str) -> HTMLParser:
    async with http.get(url) as resp:
        assert resp.status == 200, url
        return HTMLParser(await resp.text())


async def test_redirect_answers_with_absolute_hoster_url(
    aiohttp_client: Any, provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    html5 = link_id(provider_site, TARGET_HTML5)
    async with http.get(provider_site.url(f"/redirect/{html5}"), allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == provider_site.url("/embed/html5/sample")
    hoster = SiteHoster(7, 1, "VOE", "https://voe.example/e/abc")
    series = default_catalogue().series["sky-lantern"]
    seasons = {1: [SiteEpisode(1, "a", "b", [hoster])]}
    catalogue = Catalogue.of([dataclasses.replace(series, seasons=seasons)], [])
    client = await aiohttp_client(create_site(catalogue))
    resp = await client.get("/redirect/7", allow_redirects=False)
    assert resp.headers["Location"] == "https://voe.example/e/abc"


def link_id(site: RunningSite, target: str) -> int:
    return next(h.link_id for h in site.catalogue.hosters() if h.target == target)


async def test_counter_counts_requests_by_kind(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    control = provider_site.control
    for path in [
        "/anime/stream/kaiju-academy",
        "/anime/stream/kaiju-academy/staffel-1",
        "/anime/stream/kaiju-academy/filme",
        "/anime/stream/kaiju-academy/filme/film-1",
        "/ajax/seriesSearch?keyword=x",
        "/neue-episoden",
        "/embed/html5/sample",
        "/media/none.mp4",
    ]:
        async with http.get(provider_site.url(path)):
            pass
    async with http.get(provider_site.url("/redirect/1000001"), allow_redirects=False):
        pass
    expected: dict[Kind, int] = {"series": 1, "season": 2, "episode": 1, "search": 1, "redirect": 1}
    expected |= {"new_episodes": 1, "embed": 1, "media": 1}
    assert {kind: control.count(kind) for kind in expected} == expected
    assert control.requests["/anime/stream/kaiju-academy/filme"] == 1
    control.reset()
    assert control.count("season") == 0 and not control.requests


@pytest.mark.parametrize(
    ("fault", "status", "header", "body"),
    [
        (Fault.CHALLENGE_DDOS_GUARD, 403, ("Server", "ddos-guard"), "DDoS-Guard"),
        (Fault.CHALLENGE_CLOUDFLARE, 403, ("cf-mitigated", "challenge"), "Just a moment..."),
        (Fault.RATE_LIMITED, 429, ("Retry-After", "30"), ""),
        (Fault.SERVER_ERROR, 500, None, ""),
        (Fault.NOT_FOUND, 404, None, ""),
        (Fault.MALFORMED, 200, None, "<!DOCTYPE html>"),
    ],
)
async def test_fault_switch_answers_matching_paths(
    provider_site: RunningSite,
    http: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    header: tuple[str, str] | None,
    body: str,
) -> None:
    control = provider_site.control
    control.set_fault(r"/staffel-\d+$", fault)
    url = provider_site.url("/anime/stream/kaiju-academy/staffel-1")
    async with http.get(url) as resp:
        assert resp.status == status
        if header:
            assert resp.headers[header[0]] == header[1]
        page = await resp.text()
    assert body in page
    assert HTMLParser(page).css_first("table.seasonEpisodesList") is None
    assert control.count("season") == 1
    await fetch(http, provider_site.url("/anime/stream/kaiju-academy"))  # other paths unaffected
    control.clear_faults()
    await fetch(http, url)


async def test_timeout_fault_holds_then_serves(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    control = provider_site.control
    control.set_fault("^/neue-episoden$", Fault.TIMEOUT)
    url = provider_site.url("/neue-episoden")
    with pytest.raises(asyncio.TimeoutError):
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    control.timeout_hold_s = 0.2
    loop = asyncio.get_running_loop()
    started = loop.time()
    await fetch(http, url)
    assert loop.time() - started >= 0.19  # timers may fire a hair early


async def test_held_response_ends_when_the_server_stops(http: aiohttp.ClientSession) -> None:
    app = create_site(default_catalogue())
    control = app[SITE_CONTROL]
    control.set_fault(".*", Fault.TIMEOUT)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    request = asyncio.ensure_future(http.get(server.make_url("/neue-episoden")))
    await control.wait_for("new_episodes")  # the request is now being held
    async with asyncio.timeout(5):  # far below the 30 s hold
        await server.close()
        resp = await request
    assert resp.status == 503
    resp.release()


async def test_media_supports_ranges_and_throttling(
    provider_site: RunningSite, http: aiohttp.ClientSession, media_set: MediaSet
) -> None:
    data = media_set.mp4.read_bytes()
    url = provider_site.url(media_set.mp4_url_path)
    for throttle in (None, 1_000_000):
        provider_site.control.media_rate_bps = throttle
        async with http.get(url, headers={"Range": "bytes=100-1099"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
            assert await resp.read() == data[100:1100]
        async with http.get(url, headers={"Range": "bytes=-500"}) as resp:
            assert await resp.read() == data[-500:]
        async with http.get(url) as resp:
            assert resp.status == 200 and resp.content_type == "video/mp4"
            assert await resp.read() == data
    provider_site.control.media_rate_bps = 100_000  # 10 kB every 0.1 s
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with http.get(url, headers={"Range": "bytes=0-29999"}) as resp:
        assert await resp.read() == data[:30000]
    assert loop.time() - started >= 0.19  # two pauses between three chunks
    provider_site.control.media_rate_bps = 1_000  # 100 B per 0.1 s: a stalled transfer
    async with http.get(url) as resp:
        first = await resp.content.readexactly(100)
        provider_site.control.media_rate_bps = None  # lifted mid-transfer: the rest flows
        assert first + await resp.read() == data


async def test_latency_delays_pages(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    provider_site.control.latency_s = 0.25
    loop = asyncio.get_running_loop()
    started = loop.time()
    await fetch(http, provider_site.url("/anime/stream/sky-lantern"))
    assert loop.time() - started >= 0.24


def _download(url: str, out: Path) -> dict[str, Any]:
    opts = {"outtmpl": str(out / "%(id)s.%(ext)s"), "quiet": True, "no_warnings": True}
    with yt_dlp.YoutubeDL(opts | {"noprogress": True}) as ydl:
        info: dict[str, Any] = ydl.sanitize_info(ydl.extract_info(url, download=True))
        return info


def _only_file(directory: Path) -> tuple[str, bytes]:
    (file,) = directory.iterdir()
    return file.name, file.read_bytes()


@pytest.mark.parametrize("target", [TARGET_HTML5, TARGET_JWPLAYER, TARGET_DIRECT])
async def test_yt_dlp_downloads_through_a_redirect(
    provider_site: RunningSite, media_set: MediaSet, tmp_path: Path, target: str
) -> None:
    url = provider_site.url(f"/redirect/{link_id(provider_site, target)}")
    info = await asyncio.to_thread(_download, url, tmp_path)
    assert json.dumps(info)  # sanitized info is plain JSON
    name, content = await asyncio.to_thread(_only_file, tmp_path)
    assert name.endswith(".mp4") and len(content) > 50_000
    if target == TARGET_JWPLAYER:
        # HLS: the playlist (read by the extractor and again by the downloader) and each segment.
        assert provider_site.control.count("media") == 2 + len(media_set.segments)
    else:
        assert content == await asyncio.to_thread(media_set.mp4.read_bytes)


async def test_yt_dlp_cannot_read_the_unreadable_hoster(
    provider_site: RunningSite, tmp_path: Path
) -> None:
    url = provider_site.url("/embed/unreadable/sample")
    with pytest.raises(yt_dlp.utils.DownloadError, match="Unsupported URL"):
        await asyncio.to_thread(_download, url, tmp_path)
