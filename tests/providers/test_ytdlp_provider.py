"""The ytdlp provider against a playlist yt-dlp reads offline: an RSS feed on a local server."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from aniworld_addon.errors import ProviderNotFoundError, ProviderUnavailableError
from aniworld_addon.providers.base import Language
from aniworld_addon.providers.registry import ProviderRegistry
from aniworld_addon.providers.ytdlp_playlist import (
    YtdlpPlaylistProvider,
    number_entries,
    title_number,
)

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Kaiju Academy &amp; Friends (official)</title><description>Official uploads</description>
<item><title>Kaiju Academy Folge 2 – Prüfungsangst</title><link>{base}/v/2.mp4</link></item>
<item><title>Trailer</title>
  <enclosure url="{base}/v/trailer.mp4" type="video/mp4" length="1"/></item>
<item><title>Kaiju Academy S01E01 The First Day</title>
  <enclosure url="{base}/v/1.mp4" type="video/mp4" length="1"/><guid>ep-1</guid></item>
<item><title>Kaiju Academy Episode 12</title><link>{base}/v/12.mp4</link></item>
</channel></rss>"""


class FeedServer:
    """A local server for one RSS playlist that counts its fetches."""

    def __init__(self) -> None:
        self.fetches = 0
        self.base_url = ""
        self.delay_s = 0.0

    async def feed(self, request: web.Request) -> web.Response:
        self.fetches += 1
        await asyncio.sleep(self.delay_s)
        return web.Response(
            text=FEED.format(base=self.base_url), content_type="application/rss+xml"
        )


@pytest.fixture
async def feed_server(aiohttp_server: Any) -> FeedServer:
    state = FeedServer()
    app = web.Application()
    app.router.add_get("/feed.xml", state.feed)
    server = await aiohttp_server(app)
    state.base_url = str(server.make_url("")).rstrip("/")
    return state


async def test_playlist_entries_are_numbered_by_their_titles_the_rest_are_specials(
    feed_server: FeedServer,
) -> None:
    provider = YtdlpPlaylistProvider()
    url = f"{feed_server.base_url}/feed.xml"

    info = await provider.series(url)
    episodes = await provider.all_episodes(url)

    assert info.name == "Kaiju Academy & Friends (official)"
    assert info.seasons == (0, 1)
    assert info.key == url
    numbers = {e.episode: e.title for e in episodes[1]}
    assert numbers == {
        1: "Kaiju Academy S01E01 The First Day",
        2: "Kaiju Academy Folge 2 – Prüfungsangst",
        12: "Kaiju Academy Episode 12",
    }
    assert [e.episode for e in episodes[1]] == [1, 2, 12]
    # A title without a number is a special: numbered in season 1 it took the number of an
    # episode to come, and then counted as that episode.
    assert [(e.episode, e.title) for e in episodes[0]] == [(1, "Trailer")]
    assert (await provider.episode_links(url, 0, 1)).title == "Trailer"


async def test_second_read_within_cache_lifetime_does_not_refetch(feed_server: FeedServer) -> None:
    now = [0.0]
    provider = YtdlpPlaylistProvider(cache_ttl_s=60, clock=lambda: now[0])
    url = f"{feed_server.base_url}/feed.xml"

    await provider.all_episodes(url)
    await provider.series(url)
    assert feed_server.fetches == 1
    now[0] = 61.0
    await provider.series(url)
    assert feed_server.fetches == 2


async def test_episode_links_point_at_the_entry_url(feed_server: FeedServer) -> None:
    provider = YtdlpPlaylistProvider(language=Language.GERMAN_SUB)
    url = f"{feed_server.base_url}/feed.xml"

    links = await provider.episode_links(url, 1, 1)

    assert links.languages == (Language.GERMAN_SUB,)
    (link,) = links.hosters
    assert link.hoster == "yt-dlp"
    # the guid yt-dlp smuggles into the URL is not part of the link
    assert link.redirect_url == f"{feed_server.base_url}/v/1.mp4"
    assert await provider.resolve_redirect(link) == link.redirect_url
    with pytest.raises(ProviderNotFoundError):
        await provider.episode_links(url, 1, 99)
    with pytest.raises(ProviderNotFoundError):
        await provider.episodes(url, 2)


async def test_search_takes_a_playlist_url_and_ignores_words(feed_server: FeedServer) -> None:
    provider = YtdlpPlaylistProvider()
    url = f"{feed_server.base_url}/feed.xml"

    assert await provider.search("kaiju academy") == []
    (hit,) = await provider.search(f"  {url} ")
    assert hit.to_dict()["key"] == url
    assert hit.name == "Kaiju Academy & Friends (official)"


async def test_missing_playlist_is_not_found(feed_server: FeedServer) -> None:
    provider = YtdlpPlaylistProvider()
    with pytest.raises(ProviderNotFoundError):
        await provider.series(f"{feed_server.base_url}/nothing-here.xml")
    with pytest.raises(ProviderNotFoundError):
        await provider.series("file:///etc/passwd")


async def test_unreachable_host_is_unavailable(unused_tcp_port: int) -> None:
    provider = YtdlpPlaylistProvider(socket_timeout_s=2)
    with pytest.raises(ProviderUnavailableError):
        await provider.series(f"http://127.0.0.1:{unused_tcp_port}/feed.xml")


async def test_odd_urls_are_provider_errors_not_crashes(feed_server: FeedServer) -> None:
    # A bare ValueError or JSONDecodeError from urlsplit or an extractor failed the search of
    # every provider with a 500, and one such sidecar failed the whole rescan.
    provider = YtdlpPlaylistProvider()
    assert await provider.search("http://[") == []
    smuggled = f"{feed_server.base_url}/feed.xml#__youtubedl_smuggle=not-json"
    for key in ("http://[", smuggled):
        with pytest.raises((ProviderNotFoundError, ProviderUnavailableError)):
            await provider.series(key)


async def test_single_video_is_not_a_series() -> None:
    def extractor(url: str) -> Mapping[str, Any]:
        return {"_type": "video", "id": "x", "title": "One clip", "url": url}

    provider = YtdlpPlaylistProvider(extractor=extractor)
    with pytest.raises(ProviderNotFoundError):
        await provider.series("https://example.invalid/watch?v=x")


@pytest.mark.parametrize(
    ("title", "number"),
    [
        ("Show S01E02 Title", (1, 2)),
        ("show s2e7", (2, 7)),
        ("Episode 12: The End", (1, 12)),
        ("Folge 3 - Anfang", (1, 3)),
        ("Ep. 4", (1, 4)),
        ("Making-of", None),
        ("Episode 0", None),
        (None, None),
    ],
)
def test_title_number(title: str | None, number: tuple[int, int] | None) -> None:
    assert title_number(title) == number


@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=40))
def test_entry_numbers_are_distinct_and_positive(titles: list[str | None]) -> None:
    numbers = number_entries(titles)
    assert len(numbers) == len(titles)
    assert len(set(numbers)) == len(numbers)
    assert all(season >= 0 and episode > 0 for season, episode in numbers)


def test_a_new_episode_never_takes_a_specials_number() -> None:
    extras = ["Episode 1", "Episode 2", "Trailer", "Making of", "Recap"]
    before = number_entries(extras)
    after = number_entries([*extras, "Episode 3"])
    assert before == [(1, 1), (1, 2), (0, 1), (0, 2), (0, 3)]
    assert after == [*before, (1, 3)]
    # The season a title states is kept; a special stated as S00E01 keeps its number too.
    assert number_entries(["S02E01", "S02E02", "S00E01 Pilot", "Bloopers"]) == [
        (2, 1),
        (2, 2),
        (0, 1),
        (0, 2),
    ]
    # Titles without any number: the playlist order.
    assert number_entries(["Cats", "Dogs"]) == [(1, 1), (1, 2)]


async def test_a_slow_playlist_is_searched_to_the_end_not_cut_at_the_site_deadline(
    feed_server: FeedServer,
) -> None:
    # The deadline of a site's search cancelled the await, not yt-dlp's thread: every try
    # started another extraction and threw its result away.
    registry = ProviderRegistry({"ytdlp": YtdlpPlaylistProvider()})
    registry.search_deadline_s = 0.1
    feed_server.delay_s = 0.4
    outcome = await registry.search_all(f"{feed_server.base_url}/feed.xml")
    assert outcome.failures == () and len(outcome.results) == 1
    assert feed_server.fetches == 1
