"""Candidate order, redirect following and resolver plugins against the local provider site."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from aniworld_addon.downloads import (
    ENTRY_POINT_GROUP,
    YTDLP,
    Candidate,
    HosterUnavailableError,
    ResolvedMedia,
    Resolver,
    ResolverPlugin,
    load_plugins,
)
from aniworld_addon.providers import AniworldProvider
from aniworld_addon.providers.base import (
    EpisodeInfo,
    EpisodeLinks,
    HosterLink,
    Language,
    Provider,
    SearchResult,
    SeriesInfo,
)
from tests.site.plugin import RunningSite

GER_DUB, GER_SUB, ENG_SUB = Language.GERMAN_DUB, Language.GERMAN_SUB, Language.ENGLISH_SUB


class SiteMediaPlugin:
    """Stands in for a third-party plugin: it knows where the test site's hoster keeps media."""

    name = "test-site-media"

    def suitable(self, embed_url: str) -> bool:
        return urlsplit(embed_url).path.startswith("/embed/unreadable/")

    async def resolve(self, embed_url: str, client: httpx.AsyncClient) -> ResolvedMedia:
        # Read the page like a real plugin would: proves the service's client is handed over.
        response = await client.get(embed_url)
        response.raise_for_status()
        parts = urlsplit(embed_url)
        media = f"{parts.scheme}://{parts.netloc}/media/{parts.path.rsplit('/', 1)[-1]}.mp4"
        return ResolvedMedia(media, {"Referer": embed_url})


class FailingPlugin:
    """A plugin that claims every page and then fails."""

    name = "failing"

    def suitable(self, embed_url: str) -> bool:
        return True

    async def resolve(self, embed_url: str, client: httpx.AsyncClient) -> ResolvedMedia:
        raise RuntimeError("page layout changed")


class OddPlugin:
    """A plugin whose failure is its own cancelled task, or whose answer is not text."""

    name = "odd"

    def __init__(self, how: str) -> None:
        self.how = how

    def suitable(self, embed_url: str) -> bool:
        return True

    async def resolve(self, embed_url: str, client: httpx.AsyncClient) -> ResolvedMedia:
        if self.how == "cancelled":
            inner = asyncio.ensure_future(asyncio.sleep(60))
            inner.cancel()
            await inner  # raises CancelledError in the caller: the plugin's, not the queue's
        if self.how == "url object":
            return ResolvedMedia(httpx.URL("https://cdn.example/v.mp4"))  # type: ignore[arg-type]
        return ResolvedMedia("https://cdn.example/v.mp4", {"Referer": 1})  # type: ignore[dict-item]


NOT_A_PLUGIN = object()


class FixedRedirectProvider(Provider):
    """A provider whose every redirect leads to one fixed URL."""

    name = "fixed"

    def __init__(self, target: str) -> None:
        self.target = target

    async def search(self, query: str) -> list[SearchResult]:
        return []

    async def series(self, key: str) -> SeriesInfo:
        raise NotImplementedError

    async def episodes(self, key: str, season: int) -> list[EpisodeInfo]:
        return []

    async def episode_links(self, key: str, season: int, episode: int) -> EpisodeLinks:
        raise NotImplementedError

    async def resolve_redirect(self, link: HosterLink) -> str:
        return self.target


def summary(candidates: list[Candidate]) -> list[tuple[str, str]]:
    return [(c.language.value, c.hoster) for c in candidates]


async def test_candidates_follow_language_list_then_page_order(
    provider: AniworldProvider, http_client: httpx.AsyncClient
) -> None:
    resolver = Resolver(http_client, plugins=[])

    candidates = await resolver.candidates(
        provider, "kaiju-academy", 1, 1, [GER_SUB, GER_DUB, GER_SUB]
    )

    # English Sub is offered but not in the list: never tried.
    assert summary(candidates) == [
        ("German Sub", "VOE"),
        ("German Dub", "VOE"),
        ("German Dub", "Filemoon"),
        ("German Dub", "Vidoza"),
    ]


async def test_episode_without_a_wanted_language_has_no_candidates(
    provider: AniworldProvider, http_client: httpx.AsyncClient
) -> None:
    resolver = Resolver(http_client, plugins=[])

    assert await resolver.candidates(provider, "kaiju-academy", 1, 3, [GER_DUB]) == []
    later = await resolver.candidates(provider, "kaiju-academy", 1, 3, [GER_DUB, ENG_SUB])
    assert summary(later) == [("English Sub", "Filemoon")]


async def test_resolve_follows_the_redirect_to_the_embed_page(
    provider: AniworldProvider, provider_site: RunningSite, http_client: httpx.AsyncClient
) -> None:
    resolver = Resolver(http_client, plugins=[SiteMediaPlugin()])
    candidates = await resolver.candidates(provider, "kaiju-academy", 1, 1, [GER_DUB])

    source = await resolver.resolve(provider, candidates[1])

    assert source.url == provider_site.url("/embed/jwplayer/sample")
    assert (source.hoster, source.language, source.resolver) == ("Filemoon", GER_DUB, YTDLP)
    assert source.headers == {}
    # Following the redirect does not fetch the hoster page: yt-dlp does that when downloading.
    assert provider_site.control.count("embed") == 0


async def test_plugin_resolves_the_hoster_it_is_suitable_for(
    provider: AniworldProvider, provider_site: RunningSite, http_client: httpx.AsyncClient
) -> None:
    resolver = Resolver(http_client, plugins=[SiteMediaPlugin()])
    candidates = await resolver.candidates(provider, "kaiju-academy", 1, 2, [GER_DUB])
    assert summary(candidates)[1] == ("German Dub", "Streamtape")

    source = await resolver.resolve(provider, candidates[1])

    assert source.url == provider_site.url("/media/sample.mp4")
    assert source.resolver == "test-site-media"
    assert source.headers == {"Referer": provider_site.url("/embed/unreadable/sample")}
    assert provider_site.control.count("embed") == 1


async def test_failing_plugin_is_a_hoster_unavailable_error(
    provider: AniworldProvider, http_client: httpx.AsyncClient
) -> None:
    resolver = Resolver(http_client, plugins=[FailingPlugin()])
    candidates = await resolver.candidates(provider, "kaiju-academy", 1, 1, [GER_DUB])

    with pytest.raises(HosterUnavailableError) as caught:
        await resolver.resolve(provider, candidates[0])

    assert caught.value.code == "hoster_unavailable"
    assert "resolver failing cannot read hoster VOE (German Dub)" in caught.value.message
    assert "page layout changed" in caught.value.message


@pytest.mark.parametrize("how", ["cancelled", "url object", "header number"])
async def test_a_plugins_odd_failure_is_a_hoster_unavailable_error(
    provider: AniworldProvider, http_client: httpx.AsyncClient, how: str
) -> None:
    # A CancelledError of its own was taken for the queue's: the item stayed "downloading"
    # with nothing running it. An httpx.URL failed later as an internal error, and the other
    # hosters were never tried.
    resolver = Resolver(http_client, plugins=[OddPlugin(how)])
    candidates = await resolver.candidates(provider, "kaiju-academy", 1, 1, [GER_DUB])
    with pytest.raises(HosterUnavailableError, match="resolver odd"):
        await resolver.resolve(provider, candidates[0])


async def test_dead_redirect_link_is_a_hoster_unavailable_error(
    provider: AniworldProvider, provider_site: RunningSite, http_client: httpx.AsyncClient
) -> None:
    link = HosterLink(GER_DUB, "VOE", "999", provider_site.url("/redirect/999"))
    resolver = Resolver(http_client, plugins=[])

    with pytest.raises(HosterUnavailableError, match="does not lead anywhere"):
        await resolver.resolve(provider, Candidate(GER_DUB, "VOE", link))


@pytest.mark.parametrize("target", ["file:///etc/passwd", "data:video/mp4;base64,AAAA", "/x"])
async def test_non_http_embed_url_is_refused(target: str, http_client: httpx.AsyncClient) -> None:
    link = HosterLink(GER_DUB, "VOE", "1", "https://site.example/redirect/1")
    resolver = Resolver(http_client, plugins=[])

    with pytest.raises(HosterUnavailableError, match="not an http"):
        await resolver.resolve(FixedRedirectProvider(target), Candidate(GER_DUB, "VOE", link))


def write_distribution(root: Path, entry_points: str) -> None:
    """An installed-looking distribution whose only content is its entry points."""
    dist = root / "aniworld_test_resolvers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: aniworld-test-resolvers\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(entry_points)


async def test_plugins_load_from_entry_points_and_broken_ones_are_skipped(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    http_client: httpx.AsyncClient,
) -> None:
    write_distribution(
        tmp_path,
        f"[{ENTRY_POINT_GROUP}]\n"
        "a-broken = tests.downloads.no_such_module:Plugin\n"
        "b-not-a-plugin = tests.downloads.test_resolver:NOT_A_PLUGIN\n"
        "c-site-media = tests.downloads.test_resolver:SiteMediaPlugin\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    caplog.set_level(logging.INFO, logger="aniworld_addon.downloads")

    plugins = load_plugins()
    resolver = Resolver(http_client)  # no plugin list given: reads the entry points itself

    ours = [p for p in plugins if isinstance(p, SiteMediaPlugin)]
    assert len(ours) == 1
    assert isinstance(ours[0], ResolverPlugin)
    assert await resolver.plugin_for("http://127.0.0.1/embed/unreadable/x") is not None
    assert await resolver.plugin_for("http://127.0.0.1/embed/html5/x") is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("a-broken" in message for message in errors)
    assert any("b-not-a-plugin" in message for message in errors)


def test_no_entry_points_means_no_plugins() -> None:
    assert load_plugins("aniworld_addon.no_such_group") == []
