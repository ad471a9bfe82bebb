"""AniworldProvider over real HTTP against the local site, in the aniworld and old s.to layouts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from aniworld_addon.errors import (
    ProviderBlockedError,
    ProviderNotFoundError,
    ProviderParseError,
    ProviderRateLimitedError,
)
from aniworld_addon.providers.aniworld import AniworldProvider
from aniworld_addon.providers.base import Language
from aniworld_addon.providers.http import HttpOptions, ProviderHttp
from tests.providers.conftest import make_http, past_refusal_waits
from tests.site.control import Fault
from tests.site.data import Catalogue
from tests.site.plugin import RunningSite


async def test_series_page_with_entities(aniworld: AniworldProvider) -> None:
    info = await aniworld.series("rock-roll-heroes-reloaded")
    assert info.name == 'Rock & Roll "Heroes" <Reloaded>'
    assert (info.year, info.end_year, info.seasons) == (2019, 2021, (1,))


async def test_rescan_costs_one_series_page_plus_one_per_season_then_nothing(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    control = provider_site.control

    episodes = await aniworld.all_episodes("kaiju-academy")

    assert sorted(episodes) == [0, 1, 2]  # films are season 0
    assert [e.episode for e in episodes[1]] == [1, 2, 3]
    assert episodes[0][0].title == "Der Film"
    assert (control.count("series"), control.count("season"), control.count("episode")) == (1, 3, 0)

    control.reset()
    assert await aniworld.all_episodes("kaiju-academy") == episodes
    assert sum(control.requests.values()) == 0


async def test_rescan_of_the_whole_catalogue_never_reads_an_episode_page(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    expected = 0
    for slug, series in provider_site.catalogue.series.items():
        result = await aniworld.all_episodes(slug)
        assert {s: len(e) for s, e in result.items()} == {
            s: len(e) for s, e in series.seasons.items()
        }
        expected += 1 + len(series.seasons)

    assert sum(provider_site.control.requests.values()) == expected
    assert provider_site.control.count("episode") == 0


async def test_search_uses_the_json_endpoint(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    # whitespace collapsed, "&" sent encoded (a raw one would cut the keyword short)
    (hit,) = await aniworld.search("  rock   &  roll ")
    assert await aniworld.search("rock & rolls") == []

    assert hit.to_dict() == {
        "provider": "aniworld",
        "key": "rock-roll-heroes-reloaded",
        "name": 'Rock & Roll "Heroes" <Reloaded>',
        "year": 2019,
        "description": "Laut & schräg: eine Band <gegen> den Rest der Welt.",
        "cover_url": provider_site.url(
            "/public/img/cover/rock-roll-heroes-reloaded-stream-cover-x9QfW2aLp_220x330.jpg"
        ),
    }
    assert await aniworld.search("   ") == []
    assert provider_site.control.requests["/ajax/search"] == 0


@pytest.mark.parametrize("fault", [Fault.NOT_FOUND, Fault.MALFORMED])
async def test_search_falls_back_to_the_post_endpoint(
    sto: AniworldProvider, sto_site: RunningSite, fault: Fault
) -> None:
    sto_site.control.set_fault("^/ajax/seriesSearch", fault)

    results = await sto.search("ro")

    assert [(r.provider, r.key, r.name) for r in results] == [
        ("sto", "rock-roll-heroes-reloaded", 'Rock & Roll "Heroes" <Reloaded>'),
    ]
    assert sto_site.control.requests["/ajax/search"] == 1


async def test_search_reports_a_block_instead_of_falling_back(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    provider_site.control.set_fault("^/ajax/", Fault.RATE_LIMITED)
    with pytest.raises(ProviderRateLimitedError) as caught:
        await aniworld.search("kaiju")
    assert caught.value.retry_after == 30.0


async def test_episode_links_on_aniworld(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    links = await aniworld.episode_links("kaiju-academy", 1, 2)

    assert links.title == "Prüfungsangst"
    assert [h.hoster for h in links.for_language(Language.GERMAN_DUB)] == [
        "Doodstream",
        "Streamtape",
        "VOE",
    ]
    assert [h.hoster for h in links.for_language(Language.GERMAN_SUB)] == ["Vidmoly"]
    target = await aniworld.resolve_redirect(links.hosters[-1])
    assert target.startswith(provider_site.url("/embed/"))


async def test_episode_links_with_old_sto_language_numbers(sto: AniworldProvider) -> None:
    rock = await sto.episode_links("rock-roll-heroes-reloaded", 1, 1)
    assert {(h.hoster, h.language) for h in rock.hosters} == {
        ("VOE", Language.GERMAN_DUB),
        ("Filemoon", Language.ENGLISH_DUB),  # key 2 on the old s.to
    }
    kaiju = await sto.episode_links("kaiju-academy", 1, 1)
    assert set(kaiju.languages) == {
        Language.GERMAN_DUB,
        Language.GERMAN_SUB,
        Language.ENGLISH_SUB,
    }


async def test_films_are_read_from_the_film_urls(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    links = await aniworld.episode_links("der-letzte-sommer", 0, 1)
    assert (links.season, links.episode, links.languages) == (0, 1, (Language.GERMAN_SUB,))
    assert provider_site.control.requests["/anime/stream/der-letzte-sommer/filme/film-1"] == 1


async def test_new_episodes(sto: AniworldProvider) -> None:
    assert sto.supports_new_episodes
    assert await sto.new_episodes() == [
        ("sky-lantern", 1, 4),
        ("sky-lantern", 1, 3),
        ("kaiju-academy", 2, 2),
    ]


async def test_unknown_series_season_and_episode_are_not_found(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    with pytest.raises(ProviderNotFoundError):
        await aniworld.series("no-such-series")
    with pytest.raises(ProviderNotFoundError):
        await aniworld.episodes("kaiju-academy", 9)
    with pytest.raises(ProviderNotFoundError):
        await aniworld.episode_links("kaiju-academy", 1, 99)
    provider_site.control.reset()
    for bad in ("../../etc/passwd", "Kaiju", "", "a/b", "x?y=1"):
        with pytest.raises(ProviderNotFoundError):
            await aniworld.series(bad)
    assert sum(provider_site.control.requests.values()) == 0


async def test_a_blocked_series_page_is_reported_and_not_cached(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    provider_site.control.set_fault("^/anime/stream/kaiju-academy$", Fault.CHALLENGE_DDOS_GUARD)
    with pytest.raises(ProviderBlockedError):
        await aniworld.all_episodes("kaiju-academy")

    provider_site.control.clear_faults()
    with pytest.raises(ProviderBlockedError, match="not asked again"):
        await aniworld.all_episodes("kaiju-academy")  # the wall's wait is not over
    past_refusal_waits(aniworld.http)
    assert sorted(await aniworld.all_episodes("kaiju-academy")) == [0, 1, 2]


async def test_a_failing_season_page_fails_the_rescan_with_its_error(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    provider_site.control.set_fault("/staffel-2$", Fault.MALFORMED)
    with pytest.raises(ProviderParseError, match="staffel-2"):
        await aniworld.all_episodes("kaiju-academy")


@pytest.mark.parametrize(
    ("path", "read"),
    [
        ("kaiju-academy$", lambda p: p.series("kaiju-academy")),
        ("staffel-1$", lambda p: p.episodes("kaiju-academy", 1)),
        ("episode-1$", lambda p: p.episode_links("kaiju-academy", 1, 1)),
    ],
)
async def test_malformed_pages_are_parse_errors(
    aniworld: AniworldProvider,
    provider_site: RunningSite,
    path: str,
    read: Callable[[AniworldProvider], Awaitable[object]],
) -> None:
    provider_site.control.set_fault(path, Fault.MALFORMED)
    with pytest.raises(ProviderParseError):
        await read(aniworld)


async def test_invalidate_makes_the_next_rescan_read_the_site_again(
    aniworld: AniworldProvider, provider_site: RunningSite
) -> None:
    await aniworld.all_episodes("kaiju-academy")
    provider_site.control.reset()
    aniworld.invalidate("kaiju-academy")
    await aniworld.all_episodes("kaiju-academy")
    assert sum(provider_site.control.requests.values()) == 4


async def test_http_must_belong_to_the_same_site(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ValueError, match="not"):
        AniworldProvider("aniworld", "https://aniworld.to", make_http(provider_site, client))


SERIES_PAGE = (
    '<html><div class="series-title"><h1 itemprop="name"><span>Back Again</span></h1></div>'
    '<div id="stream"><ul><li><a href="/anime/stream/vanished/staffel-1">1</a></li></ul>'
    "</div></html>"
)


async def test_a_series_page_that_redirects_elsewhere_is_not_found(
    aiohttp_server: Any, client: httpx.AsyncClient
) -> None:
    # some mirrors send unknown slugs to the start page instead of answering 404; so does
    # a site in maintenance, so the answer is not kept: the series is there again after it
    maintenance = True

    async def gone(request: web.Request) -> web.Response:
        if maintenance:
            raise web.HTTPFound("/")
        return web.Response(text=SERIES_PAGE, content_type="text/html")

    async def home(request: web.Request) -> web.Response:
        return web.Response(text="<h1>Start</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/anime/stream/{slug}", gone)
    app.router.add_get("/", home)
    server = await aiohttp_server(app, host="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    provider = AniworldProvider("aniworld", base, ProviderHttp(client, base, HttpOptions()))

    with pytest.raises(ProviderNotFoundError, match="redirected"):
        await provider.series("vanished")
    maintenance = False
    assert (await provider.series("vanished")).name == "Back Again"


async def test_a_renamed_series_is_read_through_the_sites_redirect(
    aniworld: AniworldProvider, provider_site: RunningSite, site_catalogue: Catalogue
) -> None:
    # The site answers a renamed series' old slug with a 301 to the new one: that was taken
    # for "not found", so a folder whose sidecar held the old slug failed every rescan.
    site_catalogue.renamed["kaiju-school"] = "kaiju-academy"
    info = await aniworld.series("kaiju-school")
    assert info.key == "kaiju-academy"  # the new key, for whoever adds it
    assert sorted(await aniworld.all_episodes("kaiju-school")) == [0, 1, 2]
    links = await aniworld.episode_links("kaiju-school", 1, 1)
    assert links.hosters
    # Another page than the one asked for is still no answer.
    site_catalogue.renamed["kaiju-school"] = "sky-lantern/staffel-1"
    aniworld.invalidate()
    with pytest.raises(ProviderNotFoundError, match="redirected"):
        await aniworld.series("kaiju-school")
