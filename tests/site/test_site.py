"""The test site reproduces the page structure and search APIs that SITE.md describes."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from selectolax.parser import HTMLParser, Node

from tests.site import (
    Catalogue,
    SiteEpisode,
    SiteHoster,
    default_catalogue,
    generated_catalogue,
)
from tests.site.plugin import RunningSite

SERIES_LINK = re.compile(r"^/anime/stream/[a-z0-9-]+/?$")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(http: aiohttp.ClientSession, url: str) -> HTMLParser:
    async with http.get(url) as resp:
        assert resp.status == 200, url
        return HTMLParser(await resp.text())


def one(tree: HTMLParser | Node, selector: str) -> Node:
    found = tree.css(selector)
    assert len(found) == 1, f"{selector}: {len(found)} matches"
    return found[0]


def text(tree: HTMLParser | Node, selector: str) -> str:
    return one(tree, selector).text(strip=True)


async def test_series_page_has_the_site_structure(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    url = provider_site.url("/anime/stream/rock-roll-heroes-reloaded")
    async with http.get(url) as resp:
        raw = await resp.text()
    assert "&amp; Roll &quot;Heroes&quot; &lt;Reloaded&gt;" in raw
    tree = HTMLParser(raw)
    assert (
        text(tree, "div.series-title h1[itemprop=name] span") == 'Rock & Roll "Heroes" <Reloaded>'
    )
    assert text(tree, "div.series-title small span[itemprop=startDate] a") == "2019"
    assert text(tree, "div.series-title small span[itemprop=endDate] a") == "2021"
    desc = one(tree, "p.seri_des[data-full-description]").attributes["data-full-description"]
    assert desc == "Laut & schräg: eine Band <gegen> den Rest der Welt."
    cover = one(tree, "div.seriesCoverBox img[data-src]").attributes["data-src"]
    assert cover == provider_site.catalogue.series["rock-roll-heroes-reloaded"].cover
    genres = [a.text() for a in tree.css("div.genres a.genreButton[itemprop=genre]")]
    assert genres == ["Musik", "Drama"]
    assert one(tree, "a.imdb-link[data-imdb]").attributes["data-imdb"] == "tt9000002"
    assert one(tree, "div.fsk[data-fsk]").attributes["data-fsk"] == "6"

    kaiju = await fetch(http, provider_site.url("/anime/stream/kaiju-academy"))
    seasons = one(kaiju, "div#stream").css_first("ul")
    assert seasons is not None
    links = [
        (a.text(), a.attributes.get("title"), a.attributes["href"]) for a in seasons.css("li a")
    ]
    assert links == [
        ("Filme", "Filme", "/anime/stream/kaiju-academy/filme"),
        ("1", "Staffel 1", "/anime/stream/kaiju-academy/staffel-1"),
        ("2", "Staffel 2", "/anime/stream/kaiju-academy/staffel-2"),
    ]
    assert one(kaiju, "meta[itemprop=numberOfSeasons]").attributes["content"] == "2"
    lantern = await fetch(http, provider_site.url("/anime/stream/sky-lantern"))
    assert text(lantern, "div.series-title small span[itemprop=endDate] a") == "Heute"


async def test_season_and_films_pages_list_episodes(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    base = "/anime/stream/kaiju-academy"
    tree = await fetch(http, provider_site.url(base + "/staffel-1"))
    rows = one(tree, "table.seasonEpisodesList").css("tbody#season1 > tr[itemprop=episode]")
    assert [r.attributes["data-episode-season-id"] for r in rows] == ["1", "2", "3"]
    assert all(r.attributes["data-episode-id"] for r in rows)
    first = rows[0]
    assert one(first, "meta[itemprop=episodeNumber]").attributes["content"] == "1"
    assert one(first, "a[itemprop=url]").attributes["href"] == base + "/staffel-1/episode-1"
    assert text(first, "td.seasonEpisodeTitle a strong") == "Der erste Schultag"
    assert text(first, "td.seasonEpisodeTitle a span") == "The First Day"
    assert [i.attributes["class"] for i in first.css("i.icon")] == [
        "icon VOE",
        "icon Filemoon",
        "icon Vidoza",
    ]
    # Static legend: episode 3 has no German Dub, yet its row shows the same flags.
    legends = [[i.attributes["src"] for i in r.css("td.editFunctions img")] for r in rows]
    assert legends[0] == legends[2] and "/public/img/german.svg" in legends[2]

    films = await fetch(http, provider_site.url(base + "/filme"))
    film_rows = films.css("table.seasonEpisodesList tbody#season0 > tr[itemprop=episode]")
    assert [one(r, "a[itemprop=url]").attributes["href"] for r in film_rows] == [
        base + "/filme/film-1",
        base + "/filme/film-2",
    ]
    assert text(film_rows[0], "td.seasonEpisodeTitle a strong") == ""
    assert text(film_rows[0], "td.seasonEpisodeTitle a span") == "Der Film"


async def test_episode_page_lists_languages_and_hosters(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    url = provider_site.url("/anime/stream/kaiju-academy/staffel-1/episode-1")
    tree = await fetch(http, url)
    assert text(tree, "span.episodeGermanTitle") == "Der erste Schultag"
    assert text(tree, "small.episodeEnglishTitle") == "The First Day"
    langs = {
        img.attributes["data-lang-key"]: img.attributes["src"]
        for img in tree.css("div.changeLanguageBox img[data-lang-key]")
    }
    assert langs == {
        "1": "/public/img/german.svg",
        "2": "/public/img/japanese-english.svg",
        "3": "/public/img/japanese-german.svg",
    }
    items = tree.css("div.hosterSiteVideo ul.row > li[class*=episodeLink]")
    found = [
        (li.attributes["data-lang-key"], text(li, "h4"), li.attributes["data-link-target"])
        for li in items
    ]
    episode = provider_site.catalogue.series["kaiju-academy"].seasons[1][0]
    assert found == [(str(h.lang_key), h.name, f"/redirect/{h.link_id}") for h in episode.hosters]
    assert [name for key, name, _ in found if key == "1"] == ["VOE", "Filemoon", "Vidoza"]
    li = items[0]
    assert f"episodeLink{li.attributes['data-link-id']}" in (li.attributes["class"] or "")
    assert one(li, "a.watchEpisode").attributes["href"] == li.attributes["data-link-target"]

    film = await fetch(http, provider_site.url("/anime/stream/kaiju-academy/filme/film-2"))
    assert text(film, "small.episodeEnglishTitle") == "Tokyo Burns"


async def test_sto_layout_numbers_english_dub_two(
    sto_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    tree = await fetch(
        http, sto_site.url("/serie/stream/rock-roll-heroes-reloaded/staffel-1/episode-1")
    )
    langs = {
        img.attributes["data-lang-key"]: (img.attributes["src"], img.attributes["title"])
        for img in tree.css("div.changeLanguageBox img[data-lang-key]")
    }
    assert langs == {
        "1": ("/public/img/german.svg", "Deutsch/German"),
        "2": ("/public/img/english.svg", "Englisch"),
    }
    keys = [li.attributes["data-lang-key"] for li in tree.css("li[class*=episodeLink]")]
    assert keys == ["1", "2"]
    async with http.get(sto_site.url("/anime/stream/rock-roll-heroes-reloaded")) as resp:
        assert resp.status == 404


async def test_series_search_returns_entity_names_and_bare_slugs(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    url = provider_site.url("/ajax/seriesSearch")
    async with http.get(url, params={"keyword": "ROCK"}) as resp:
        hits = await resp.json()
    assert hits == [
        {
            "name": "Rock &amp; Roll &quot;Heroes&quot; &lt;Reloaded&gt;",
            "link": "rock-roll-heroes-reloaded",
            "description": "Laut &amp; schräg: eine Band &lt;gegen&gt; den Rest der Welt.",
            "cover": provider_site.catalogue.series["rock-roll-heroes-reloaded"].cover,
            "productionYear": "(2019 - 2021)",
        }
    ]
    async with http.get(url, params={"keyword": "lantern"}) as resp:
        assert [h["productionYear"] for h in await resp.json()] == ["(2023 - Heute)"]
    async with http.get(url, params={"keyword": ""}) as resp:
        assert await resp.json() == []


async def test_ajax_search_mixes_in_hits_that_are_not_series(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    url = provider_site.url("/ajax/search")
    xhr = {"X-Requested-With": "XMLHttpRequest"}
    async with http.post(url, data={"keyword": "kaiju"}, headers=xhr) as resp:
        hits: list[dict[str, Any]] = await resp.json()
    assert all(set(h) == {"title", "description", "link"} for h in hits)
    assert any(h["link"].startswith("/support/") for h in hits)
    assert any(h["link"].endswith("/staffel-1") for h in hits)
    series = [h for h in hits if SERIES_LINK.match(h["link"])]
    assert series == [
        {
            "title": "<em>Kaiju</em> Academy",
            "description": provider_site.catalogue.series["kaiju-academy"].description,
            "link": "/anime/stream/kaiju-academy",
        }
    ]
    async with http.post(url, data={"keyword": "kaiju"}) as resp:
        assert resp.status == 400


async def test_new_episodes_rows_sit_in_the_list(
    provider_site: RunningSite, http: aiohttp.ClientSession
) -> None:
    tree = await fetch(http, provider_site.url("/neue-episoden"))
    rows = one(tree, ".newEpisodeList").css("a[href]")
    assert [
        (a.attributes["href"], text(a, "strong"), text(a, "span.elementFloatRight")) for a in rows
    ] == [
        ("/anime/stream/sky-lantern/staffel-1/episode-4", "Sky Lantern", "17.07.2025"),
        ("/anime/stream/sky-lantern/staffel-1/episode-3", "Sky Lantern", "16.07.2025"),
        ("/anime/stream/kaiju-academy/staffel-2/episode-2", "Kaiju Academy", "15.07.2025"),
    ]
    assert one(rows[1], "img").attributes["src"] == "/public/img/japanese-german.svg"
    assert len(tree.css("a strong")) > len(rows)  # decoys outside the list exist


@pytest.mark.parametrize(
    "path",
    [
        "/anime/stream/no-such-series",
        "/anime/stream/kaiju-academy/staffel-9",
        "/anime/stream/kaiju-academy/staffel-0",
        "/anime/stream/kaiju-academy/staffel-1/episode-99",
        "/anime/stream/kaiju-academy/filme/film-9",
        "/anime/stream/sky-lantern/filme",
        "/redirect/1",
        "/embed/gone/sample",
        "/nowhere",
    ],
)
async def test_unknown_pages_are_html_404(
    provider_site: RunningSite, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(provider_site.url(path)) as resp:
        assert resp.status == 404
        assert resp.content_type == "text/html"
        assert "nicht gefunden" in await resp.text()


def test_catalogues_are_consistent() -> None:
    big = generated_catalogue(200, 3, 12, films=1)
    assert len(big.series) == 200 and len(list(big.hosters())) == 200 * 37 * 2
    assert big == generated_catalogue(200, 3, 12, films=1)
    series = default_catalogue().series["sky-lantern"]
    twice = {1: [SiteEpisode(1, "a", "b", [SiteHoster(5, 1, "VOE", "/x")] * 2)]}
    with pytest.raises(ValueError, match="duplicate link id 5"):
        Catalogue.of([dataclasses.replace(series, seasons=twice)], [])
