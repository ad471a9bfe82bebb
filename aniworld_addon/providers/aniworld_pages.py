"""Pure parsers for the aniworld.to / old s.to pages; every failure is a ProviderParseError."""

from __future__ import annotations

import re
from typing import Final

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ..errors import ProviderParseError
from ..jsonutil import valid_text
from ..library.episode_tags import MAX_SEASON
from .aniworld_fields import (
    ANIWORLD_PREFIX,
    SLUG_RE,
    clean,
    find_year,
    guard,
    site_url,
    to_episode,
    to_number,
    url_path,
)
from .base import EpisodeInfo, EpisodeLinks, HosterLink, Language, NewEpisode, SeriesInfo

_SLUG_IN_PATH: Final = re.compile(r"/stream/([a-z0-9][a-z0-9-]*)")
# [0-9], not \d: \d also matches other scripts' digits, which int() would happily read
_EPISODE_PART: Final = r"(?:staffel-([0-9]{1,4})/episode-([0-9]{1,5})|filme/film-([0-9]{1,5}))/?$"
_EPISODE_IN_PATH: Final = re.compile("/" + _EPISODE_PART)
_SEASON_IN_HREF: Final = re.compile(r"/(?:staffel-([0-9]{1,4})|(filme))/?$")
# start tags of elements that are closed (void elements never are: a season page of a long
# series holds thousands of flag <img>)
_CLOSED_START_TAG: Final = re.compile(
    r"<(?!(?:area|base|br|col|embed|hr|img|input|link|meta|param|source|track|wbr)\b)[A-Za-z]",
    re.IGNORECASE,
)
# The tree builder's time grows with the square of the nesting depth (20,000 unclosed <div>
# took a second, the 8 MB page cap allows days). A page of the site leaves next to none of
# them open; ten thousand is no page of the site.
MAX_UNCLOSED_TAGS: Final = 10_000


def _text(node: LexborNode | None) -> str | None:
    return None if node is None else clean(node.text(deep=True))


def _attr(node: LexborNode | None, name: str) -> str | None:
    return None if node is None else node.attributes.get(name)


def _parse(html: str | bytes, url: str, kind: str, *, whole: bool = False) -> LexborHTMLParser:
    """The page's tree; `whole`: refuse a page cut off before its </html> (_require_whole)."""
    if whole:
        _require_whole(html, url, kind)
    html = html.decode("utf-8", errors="replace") if isinstance(html, bytes) else valid_text(html)
    unclosed = len(_CLOSED_START_TAG.findall(html)) - html.count("</")
    if unclosed > MAX_UNCLOSED_TAGS:
        raise ProviderParseError(
            f"cannot parse {kind} {url}: {unclosed} tags left open, nested too deeply",
            details={"url": url, "page": kind},
        )
    try:
        return LexborHTMLParser(html.replace("\x00", ""))
    except (ValueError, RuntimeError) as err:
        raise ProviderParseError(f"cannot parse {kind} {url}: {err}", details={"url": url}) from err


def _require_whole(html: str | bytes, url: str, kind: str) -> None:
    """Refuse a page that ends before its `</html>`. A series or season page cut off at
    HTTP 200 (an origin or proxy dying mid-render) still parses, as a shorter list, and the
    sync would then delete the episodes it no longer shows."""
    tail = html[-4096:]
    if isinstance(tail, bytes):
        tail = tail.decode("latin-1")
    if "</html" not in tail.lower():
        raise ProviderParseError(
            f"{kind} {url} is cut off (no </html>); the episodes known stay as they were",
            details={"url": url, "page": kind},
        )


def _missing(kind: str, url: str, what: str) -> ProviderParseError:
    return ProviderParseError(f"{kind} {url} has no {what}", details={"url": url, "page": kind})


def slug_from_url(url: str) -> str:
    """The series key inside a `/…/stream/<slug>` URL."""
    match = _SLUG_IN_PATH.search(url_path(url))
    if match is None:
        raise ProviderParseError(f"no series key in {url}", details={"url": url})
    return match.group(1)


def episode_from_url(url: str) -> tuple[int, int]:
    """(season, episode) of an episode or film URL; films are season 0."""
    match = _EPISODE_IN_PATH.search(url_path(url))
    if match is None:
        raise ProviderParseError(f"no episode number in {url}", details={"url": url})
    season, episode, film = match.groups()
    return (0, int(film)) if film else (int(season), int(episode))


def parse_series_page(html: str | bytes, url: str, *, provider: str = "aniworld") -> SeriesInfo:
    """A series page (title, years, description, cover, genres, IMDb id, seasons)."""
    doc = _parse(html, url, "series page", whole=True)

    def parse() -> SeriesInfo:
        header = doc.css_first("div.series-title")
        name = _text(doc.css_first("div.series-title h1[itemprop=name] span"))
        name = name or _text(header.css_first("h1") if header else None)
        if not name:
            raise _missing("series page", url, "title")
        stream = doc.css_first("div#stream")
        if stream is None:
            raise _missing("series page", url, "season list (div#stream)")
        seasons: set[int] = set()
        season_list = stream.css_first("ul")
        for link in season_list.css("li a") if season_list else []:
            label = (_text(link) or "").lower()
            href = _SEASON_IN_HREF.search(_attr(link, "href") or "")
            if label in ("filme", "films") or (href and href.group(2)):
                seasons.add(0)
            elif (number := to_number(label)) is not None or (
                href and (number := to_number(href.group(1))) is not None
            ):
                seasons.add(number)
        description_node = doc.css_first("p.seri_des")
        description = clean(_attr(description_node, "data-full-description")) or _text(
            description_node
        )
        cover = doc.css_first("div.seriesCoverBox img")
        genres = dict.fromkeys(
            g for node in doc.css("div.genres a.genreButton") if (g := _text(node))
        )
        # scoped: the footer carries its own itemprop=startDate
        start_node = header.css_first("span[itemprop=startDate]") if header else None
        end_node = header.css_first("span[itemprop=endDate]") if header else None
        seasons = {number for number in seasons if number <= MAX_SEASON}
        return SeriesInfo(
            provider=provider,
            key=slug_from_url(url),
            name=name,
            year=find_year(_text(start_node)),
            end_year=find_year(_text(end_node)),
            description=description,
            cover_url=site_url(url, _attr(cover, "data-src") or _attr(cover, "src")),
            genres=tuple(genres),
            imdb_id=clean(_attr(doc.css_first("a.imdb-link"), "data-imdb")),
            seasons=tuple(sorted(seasons)),
        )

    return guard("series page", url, parse)


def parse_season_page(html: str | bytes, url: str, season: int) -> list[EpisodeInfo]:
    """The episode rows of a season page (or `/filme` for season 0), ordered by number."""
    doc = _parse(html, url, "season page", whole=True)

    def parse() -> list[EpisodeInfo]:
        table = doc.css_first("table.seasonEpisodesList")
        if table is None:
            raise _missing("season page", url, "episode table (table.seasonEpisodesList)")
        body = table.css_first(f"tbody#season{season}") or table
        episodes: dict[int, EpisodeInfo] = {}
        for row in body.css("tr[itemprop=episode]"):
            href = _attr(row.css_first("a[itemprop=url]"), "href")
            match = _EPISODE_IN_PATH.search(url_path(href))
            number = to_episode(match.group(2) or match.group(3)) if match else None
            if number is None:
                number = to_episode(_attr(row.css_first("meta[itemprop=episodeNumber]"), "content"))
            if number is None or number in episodes:
                continue
            cell = row.css_first("td.seasonEpisodeTitle")
            german = _text(cell.css_first("strong")) if cell else None
            english = _text(cell.css_first("span")) if cell else None
            if season == 0 and not german:
                # the films overview fills only the span: that is the film's one title
                german, english = english, None
            episodes[number] = EpisodeInfo(season, number, german, english)
        return [episodes[n] for n in sorted(episodes)]

    return guard("season page", url, parse)


def classify_language(flag_src: str | None, title: str | None) -> Language | None:
    """The language a flag stands for, by its file name first and its title second."""
    flag = (flag_src or "").rsplit("/", 1)[-1].split("?", 1)[0].lower()
    by_flag = {
        "japanese-german.svg": Language.GERMAN_SUB,
        "japanese-english.svg": Language.ENGLISH_SUB,
        "english-german.svg": Language.GERMAN_SUB,  # old s.to: English audio, German subtitles
        "german.svg": Language.GERMAN_DUB,
        "english.svg": Language.ENGLISH_DUB,
    }
    if flag in by_flag:
        return by_flag[flag]
    label = (title or "").lower()
    subtitled = "untertitel" in label or "sub" in label
    if "deutsch" in label or "german" in label:
        return Language.GERMAN_SUB if subtitled else Language.GERMAN_DUB
    if "englisch" in label or "english" in label:
        return Language.ENGLISH_SUB if subtitled else Language.ENGLISH_DUB
    return None


def parse_episode_page(html: str | bytes, url: str) -> EpisodeLinks:
    """An episode page: its title, the languages offered and every hoster per language."""
    doc = _parse(html, url, "episode page")

    def parse() -> EpisodeLinks:
        season, episode = episode_from_url(url)
        box = doc.css_first("div.hosterSiteVideo")
        if box is None:
            raise _missing("episode page", url, "hoster list (div.hosterSiteVideo)")
        by_key: dict[str, Language] = {}
        for flag in doc.css("div.changeLanguageBox img[data-lang-key]"):
            language = classify_language(_attr(flag, "src"), _attr(flag, "title"))
            key = (_attr(flag, "data-lang-key") or "").strip()
            if language is not None and key:
                by_key.setdefault(key, language)
        hosters: dict[tuple[Language, str], HosterLink] = {}
        for item in box.css("li[class*=episodeLink]"):
            language_or_none = by_key.get((_attr(item, "data-lang-key") or "").strip())
            hoster = _text(item.css_first("h4"))
            target = _attr(item, "data-link-target") or _attr(
                item.css_first("a.watchEpisode"), "href"
            )
            redirect = site_url(url, target)
            if language_or_none is None or not hoster or redirect is None:
                continue
            hosters.setdefault(
                (language_or_none, hoster.lower()),
                HosterLink(
                    language=language_or_none,
                    hoster=hoster,
                    link_id=(_attr(item, "data-link-id") or "").strip(),
                    redirect_url=redirect,
                ),
            )
        german = _text(doc.css_first("span.episodeGermanTitle"))
        english = _text(doc.css_first("small.episodeEnglishTitle"))
        return EpisodeLinks(
            season=season,
            episode=episode,
            title=german or english,
            languages=tuple(dict.fromkeys(by_key.values())),
            hosters=tuple(hosters.values()),
        )

    return guard("episode page", url, parse)


def parse_new_episodes(
    html: str | bytes, url: str, *, path_prefix: str = ANIWORLD_PREFIX
) -> list[NewEpisode]:
    """The `/neue-episoden` rows as (key, season, episode), in page order."""
    doc = _parse(html, url, "new-episodes page")
    row_link = re.compile(rf"^{re.escape(path_prefix)}/([a-z0-9-]+)/" + _EPISODE_PART)

    def parse() -> list[NewEpisode]:
        lists = doc.css(".newEpisodeList")
        if not lists:
            raise _missing("new-episodes page", url, "list (.newEpisodeList)")
        found: dict[NewEpisode, None] = {}
        for block in lists:
            for link in block.css("a[href]"):
                match = row_link.match(url_path(_attr(link, "href")))
                if match is None or not SLUG_RE.match(match.group(1)):
                    continue
                key, season, episode, film = match.groups()
                number = to_episode(film or episode)
                if number is not None:
                    found[NewEpisode(key, 0 if film else int(season), number)] = None
        return list(found)

    return guard("new-episodes page", url, parse)
