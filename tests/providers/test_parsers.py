"""The pure parsers: every page kind of both layouts; fuzzing lets only parse errors escape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from aniworld_addon.errors import ProviderParseError
from aniworld_addon.providers.aniworld import (
    classify_language,
    parse_episode_page,
    parse_new_episodes,
    parse_search_alt_json,
    parse_search_json,
    parse_season_page,
    parse_series_page,
)
from aniworld_addon.providers.aniworld_pages import MAX_UNCLOSED_TAGS
from aniworld_addon.providers.base import Language
from tests.site import pages
from tests.site.app import search_entries, series_search_entry
from tests.site.data import default_catalogue

BASE = "https://aniworld.example"
CATALOGUE = default_catalogue()
ANIWORLD = pages.LAYOUTS["aniworld"]
STO = pages.LAYOUTS["sto"]
KAIJU = CATALOGUE.series["kaiju-academy"]
ROCK = CATALOGUE.series["rock-roll-heroes-reloaded"]


def _series_html(layout: pages.Layout = ANIWORLD, slug: str = "kaiju-academy") -> str:
    return pages.series_page(layout, CATALOGUE, CATALOGUE.series[slug])


def _episode_html(layout: pages.Layout, slug: str, season: int, number: int) -> str:
    series = CATALOGUE.series[slug]
    episode = series.episode(season, number)
    assert episode is not None
    return pages.episode_page(layout, series, season, episode)


def test_series_page_reads_every_field() -> None:
    info = parse_series_page(_series_html(), f"{BASE}/anime/stream/kaiju-academy")

    assert info.to_dict() == {
        "provider": "aniworld",
        "key": "kaiju-academy",
        "name": "Kaiju Academy",
        "year": 2012,
        "end_year": 2018,
        "description": KAIJU.description,
        "cover_url": f"{BASE}{KAIJU.cover}",
        "genres": ["Action", "Comedy", "Mecha"],  # not the footer's genre cloud
        "imdb_id": "tt9000001",
        "seasons": [0, 1, 2],
    }


def test_series_page_decodes_entities_and_reads_the_full_description() -> None:
    html = _series_html(STO, "rock-roll-heroes-reloaded")
    info = parse_series_page(html, f"{BASE}/serie/stream/rock-roll-heroes-reloaded", provider="sto")

    assert info.name == 'Rock & Roll "Heroes" <Reloaded>'
    assert info.description == "Laut & schräg: eine Band <gegen> den Rest der Welt."
    assert info.seasons == (1,)
    assert info.provider == "sto"


def test_a_name_decoded_twice_keeps_an_ampersand_before_letters() -> None:
    # The site encodes some names twice ("&amp;#039;"), so text is decoded again; that second
    # pass read the bare legacy "&not" of "Sticky&notes" and showed "Sticky¬es".
    html = _series_html().replace(
        "<span>Kaiju Academy</span>",
        "<span>Sticky&amp;notes &amp;#039;n&amp;#039; &amp;copy</span>",
    )
    info = parse_series_page(html, f"{BASE}/anime/stream/kaiju-academy")
    assert info.name == "Sticky&notes 'n' &copy"


def test_ongoing_series_has_no_end_year() -> None:
    info = parse_series_page(_series_html(slug="sky-lantern"), f"{BASE}/anime/stream/sky-lantern")
    assert (info.year, info.end_year) == (2023, None)


@pytest.mark.parametrize(
    "parse",
    [
        lambda html, url: parse_series_page(html, url),
        lambda html, url: parse_season_page(html, url, 1),
        lambda html, url: parse_episode_page(html, url),
    ],
    ids=["series", "season", "episode"],
)
def test_a_page_nested_past_reason_is_refused_before_the_tree_is_built(
    parse: Callable[[str, str], object],
) -> None:
    # The tree builder is quadratic in the depth: 80,000 open <div> held a core for 20 s,
    # and the 8 MB body cap admits over a million. A count decides before any tree is built.
    url = f"{BASE}/anime/stream/kaiju-academy/staffel-1/episode-1"
    html = _series_html().replace("</body>", "<div>" * 1_000_000 + "</body>")
    with pytest.raises(ProviderParseError, match="nested too deeply"):
        parse(html, url)
    # a long season's void elements (one flag <img> per language and row) are not nesting
    rows = "<tr><td><img src=/f.svg><img src=/g.svg><br></td></tr>" * (MAX_UNCLOSED_TAGS + 1)
    assert parse_series_page(
        _series_html().replace("</body>", f"<table>{rows}</table></body>"), url
    )


def test_season_page_rows() -> None:
    html = pages.season_page(ANIWORLD, KAIJU, 1)
    episodes = parse_season_page(html, f"{BASE}/anime/stream/kaiju-academy/staffel-1", 1)

    assert [(e.season, e.episode, e.title, e.title_en) for e in episodes] == [
        (1, 1, "Der erste Schultag", "The First Day"),
        (1, 2, "Prüfungsangst", "Exam Jitters"),
        (1, 3, "Nachsitzen", "Detention"),
    ]


def test_films_page_is_season_zero_with_the_single_title() -> None:
    html = pages.season_page(ANIWORLD, KAIJU, 0)
    films = parse_season_page(html, f"{BASE}/anime/stream/kaiju-academy/filme", 0)

    assert [(f.season, f.episode, f.title, f.title_en) for f in films] == [
        (0, 1, "Der Film", None),
        (0, 2, "Tokio brennt", None),
    ]


def test_episode_page_languages_and_hosters_on_aniworld() -> None:
    url = f"{BASE}/anime/stream/kaiju-academy/staffel-1/episode-1"
    links = parse_episode_page(_episode_html(ANIWORLD, "kaiju-academy", 1, 1), url)

    assert (links.season, links.episode, links.title) == (1, 1, "Der erste Schultag")
    assert set(links.languages) == {Language.GERMAN_DUB, Language.GERMAN_SUB, Language.ENGLISH_SUB}
    assert [h.hoster for h in links.for_language(Language.GERMAN_DUB)] == [
        "VOE",
        "Filemoon",
        "Vidoza",
    ]
    first = links.hosters[0]
    assert first.redirect_url == f"{BASE}/redirect/{first.link_id}"


def test_old_sto_numbering_is_classified_by_flag_not_key() -> None:
    # old s.to: key 2 is English Dub, key 3 (english-german.svg) German Sub
    url = f"{BASE}/serie/stream/rock-roll-heroes-reloaded/staffel-1/episode-1"
    links = parse_episode_page(_episode_html(STO, "rock-roll-heroes-reloaded", 1, 1), url)
    assert links.languages == (Language.GERMAN_DUB, Language.ENGLISH_DUB)
    assert [h.language for h in links.hosters] == [Language.GERMAN_DUB, Language.ENGLISH_DUB]

    url = f"{BASE}/serie/stream/kaiju-academy/staffel-1/episode-1"
    kaiju = parse_episode_page(_episode_html(STO, "kaiju-academy", 1, 1), url)
    assert [(h.hoster, h.language) for h in kaiju.hosters][-2:] == [
        ("VOE", Language.GERMAN_SUB),
        ("Filemoon", Language.ENGLISH_SUB),
    ]


def test_film_page_is_season_zero() -> None:
    url = f"{BASE}/anime/stream/kaiju-academy/filme/film-2"
    links = parse_episode_page(_episode_html(ANIWORLD, "kaiju-academy", 0, 2), url)
    assert (links.season, links.episode, links.languages) == (0, 2, (Language.GERMAN_SUB,))


@pytest.mark.parametrize(
    ("flag", "title", "language"),
    [
        ("/public/img/german.svg", "Deutsch/German", Language.GERMAN_DUB),
        ("/public/img/japanese-german.svg", "", Language.GERMAN_SUB),
        ("/public/img/japanese-english.svg", None, Language.ENGLISH_SUB),
        ("/public/img/english.svg?v=2", None, Language.ENGLISH_DUB),
        ("/public/img/english-german.svg", None, Language.GERMAN_SUB),
        ("/img/unknown.png", "Mit deutschem Untertitel", Language.GERMAN_SUB),
        ("/img/unknown.png", "Englisch", Language.ENGLISH_DUB),
        ("/img/unknown.png", "English Sub", Language.ENGLISH_SUB),
        ("/img/unknown.png", "Klingonisch", None),
    ],
)
def test_language_classification(flag: str, title: str | None, language: Language | None) -> None:
    assert classify_language(flag, title) is language


def test_series_search_json_decodes_entities_and_years() -> None:
    body = json.dumps([series_search_entry(ROCK), series_search_entry(KAIJU)])
    results = parse_search_json(body, f"{BASE}/ajax/seriesSearch?keyword=r")

    assert [r.to_dict() for r in results] == [
        {
            "provider": "aniworld",
            "key": "rock-roll-heroes-reloaded",
            "name": 'Rock & Roll "Heroes" <Reloaded>',
            "year": 2019,
            "description": ROCK.description,
            "cover_url": f"{BASE}{ROCK.cover}",
        },
        {
            "provider": "aniworld",
            "key": "kaiju-academy",
            "name": "Kaiju Academy",
            "year": 2012,
            "description": KAIJU.description,
            "cover_url": f"{BASE}{KAIJU.cover}",
        },
    ]


def test_series_search_skips_entries_that_are_not_series() -> None:
    body = json.dumps(
        [
            {"name": "x", "link": "../etc"},
            {"name": 3, "link": "a"},
            "junk",
            {"name": "Ok", "link": "ok"},
        ]
    )
    assert [r.key for r in parse_search_json(body, f"{BASE}/ajax/seriesSearch")] == ["ok"]
    assert parse_search_json("", f"{BASE}/ajax/seriesSearch") == []


@pytest.mark.parametrize(
    ("layout", "prefix"), [(ANIWORLD, "/anime/stream"), (STO, "/serie/stream")]
)
def test_alt_search_keeps_series_only_and_drops_em(layout: pages.Layout, prefix: str) -> None:
    body = json.dumps(search_entries(layout, "ro", [ROCK, KAIJU]))
    results = parse_search_alt_json(body, f"{BASE}/ajax/search", path_prefix=prefix)

    assert [(r.key, r.name, r.year) for r in results] == [
        ("rock-roll-heroes-reloaded", 'Rock & Roll "Heroes" <Reloaded>', None),
        ("kaiju-academy", "Kaiju Academy", None),
    ]


def test_new_episodes_list_ignores_the_popular_aside() -> None:
    html = pages.new_episodes_page(STO, CATALOGUE)
    rows = parse_new_episodes(html, f"{BASE}/neue-episoden", path_prefix="/serie/stream")
    assert rows == [("sky-lantern", 1, 4), ("sky-lantern", 1, 3), ("kaiju-academy", 2, 2)]


@pytest.mark.parametrize(
    "parse",
    [
        lambda html: parse_series_page(html, f"{BASE}/anime/stream/x"),
        lambda html: parse_season_page(html, f"{BASE}/anime/stream/x/staffel-1", 1),
        lambda html: parse_episode_page(html, f"{BASE}/anime/stream/x/staffel-1/episode-1"),
        lambda html: parse_new_episodes(html, f"{BASE}/neue-episoden"),
    ],
)
def test_a_page_without_its_structure_is_a_parse_error_naming_the_page(
    parse: Callable[[str], Any],
) -> None:
    html = pages.not_found_page(ANIWORLD)
    with pytest.raises(ProviderParseError, match=f"{BASE}/"):
        parse(html)


@pytest.mark.parametrize("body", ["{", '{"a": 1}', "<html>", "[" * 100_000])
def test_search_json_that_is_not_an_array_is_a_parse_error(body: str) -> None:
    with pytest.raises(ProviderParseError):
        parse_search_json(body, f"{BASE}/ajax/seriesSearch")
    with pytest.raises(ProviderParseError):
        parse_search_alt_json(body, f"{BASE}/ajax/search")
