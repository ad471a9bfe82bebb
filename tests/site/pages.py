"""HTML of the site's pages, built from the catalogue the way the real engine lays them out."""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from html import escape
from typing import Final, Literal

from tests.site.data import (
    ENGLISH_DUB,
    ENGLISH_SUB,
    GERMAN_DUB,
    GERMAN_SUB,
    Catalogue,
    SiteEpisode,
    SiteSeries,
)

LayoutName = Literal["aniworld", "sto"]


@dataclass(slots=True, frozen=True)
class Language:
    """How one language shows on a site: its key there, flag file and title."""

    key: int
    flag: str
    title: str


@dataclass(slots=True, frozen=True)
class Layout:
    """What differs between aniworld.to and the old s.to engine."""

    name: LayoutName
    site_name: str
    prefix: str
    languages: dict[int, Language]  # catalogue (aniworld) key -> this site's language
    legend: tuple[int, ...]  # the flags every season-page row shows, whatever is offered

    def series_path(self, slug: str) -> str:
        """Path of a series page."""
        return f"{self.prefix}/{slug}"

    def season_path(self, slug: str, season: int) -> str:
        """Path of a season page; season 0 is the films overview."""
        return (
            f"{self.prefix}/{slug}/filme"
            if season == 0
            else f"{self.prefix}/{slug}/staffel-{season}"
        )

    def episode_path(self, slug: str, season: int, number: int) -> str:
        """Path of an episode page; season 0 episodes are films."""
        if season == 0:
            return f"{self.prefix}/{slug}/filme/film-{number}"
        return f"{self.prefix}/{slug}/staffel-{season}/episode-{number}"


LAYOUTS: Final[dict[LayoutName, Layout]] = {
    "aniworld": Layout(
        name="aniworld",
        site_name="AniWorld",
        prefix="/anime/stream",
        languages={
            GERMAN_DUB: Language(1, "german.svg", "Deutsch/German"),
            ENGLISH_SUB: Language(2, "japanese-english.svg", "Mit englischem Untertitel"),
            GERMAN_SUB: Language(3, "japanese-german.svg", "Mit deutschem Untertitel"),
            ENGLISH_DUB: Language(4, "english.svg", "Englisch"),
        },
        legend=(GERMAN_DUB, GERMAN_SUB, ENGLISH_SUB),
    ),
    # The old s.to numbers English Dub 2: only flag file and title tell languages apart.
    "sto": Layout(
        name="sto",
        site_name="S.to",
        prefix="/serie/stream",
        languages={
            GERMAN_DUB: Language(1, "german.svg", "Deutsch/German"),
            ENGLISH_DUB: Language(2, "english.svg", "Englisch"),
            GERMAN_SUB: Language(3, "english-german.svg", "Mit deutschem Untertitel"),
            ENGLISH_SUB: Language(4, "japanese-english.svg", "Mit englischem Untertitel"),
        },
        legend=(GERMAN_DUB, ENGLISH_DUB),
    ),
}


def _flag(lang: Language, attrs: str = ' class="flag"') -> str:
    return (
        f'<img src="/public/img/{lang.flag}" alt="{escape(lang.title)}, Flagge" '
        f'title="{escape(lang.title)}"{attrs}>'
    )


def episode_id(slug: str, season: int, number: int) -> int:
    """A stable numeric id for an episode, like the site's data-episode-id."""
    return zlib.crc32(f"{slug}/{season}/{number}".encode()) % 9_000_000 + 1_000_000


def document(layout: Layout, title: str, main: str) -> str:
    """A full page: head, header navigation, the main part and a footer with decoys."""
    site = layout.site_name
    return f"""<!DOCTYPE html>
<html lang="de">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} | {site}</title>
<link rel="stylesheet" href="/public/css/style.css">
<script src="/public/js/jquery.min.js"></script>
</head>
<body>
<header class="main-header">
  <div class="container row">
    <div class="header-logo"><a href="/"><h1><span>{site}</span></h1></a></div>
    <nav><ul class="primary-navigation">
      <li><a href="{layout.prefix}">Alle Serien</a></li>
      <li><a href="/neue-episoden">Neue Episoden</a></li>
      <li><a href="/support">Support</a></li>
    </ul></nav>
    <form class="searchForm" action="/suche" method="get">
      <input type="text" name="q" id="searchInput" placeholder="Suche...">
    </form>
  </div>
</header>
<div id="wrapper">
{main}
</div>
<footer class="footer">
  <div class="container genreCloud">
    <a class="genreButton" href="/genre/drama">Drama</a>
    <a class="genreButton" href="/genre/action">Action</a>
  </div>
  <ul class="row footer-links">
    <li><a href="/impressum">Impressum</a></li><li><a href="/dmca">DMCA</a></li>
  </ul>
  <h4>Partnerseiten</h4>
  <span itemprop="startDate">2013</span>
</footer>
</body>
</html>
"""


def not_found_page(layout: Layout) -> str:
    """The site's 404 page."""
    main = (
        '<div class="container"><div class="messageAlert danger">'
        "<h2>404</h2><p>Die Seite konnte nicht gefunden werden.</p></div></div>"
    )
    return document(layout, "Seite nicht gefunden", main)


def _series_header(layout: Layout, series: SiteSeries) -> str:
    name = escape(series.name)
    year = series.start_year
    start = f'<span itemprop="startDate"><a href="/jahr/{year}">{year}</a></span>'
    end_text = "Heute" if series.end_year is None else str(series.end_year)
    end = f'<span itemprop="endDate"><a href="/jahr/{end_text}">{end_text}</a></span>'
    cover = escape(series.cover)
    main_genre = escape(series.genres[0].lower()) if series.genres else ""
    genres = "".join(
        f'<li><a href="/genre/{escape(g.lower())}" class="genreButton clearbutton" '
        f'itemprop="genre">{escape(g)}</a></li>'
        for g in series.genres
    )
    short = escape(series.description[:40])
    return f"""<section class="seriesContentBox" itemscope itemtype="http://schema.org/TVSeries">
  <div class="container row">
    <div class="seriesCoverBox">
      <img src="/public/img/lazy.svg" data-src="{cover}" alt="{name}" itemprop="image">
    </div>
    <div class="series-title">
      <h1 itemprop="name" title="{name} Stream"><span>{name}</span></h1>
      <small>{start} - {end}</small>
      <div class="fsk fsk{series.fsk}" data-fsk="{series.fsk}" title="FSK {series.fsk}"></div>
      <a class="imdb-link" data-imdb="{series.imdb_id}" href="https://www.imdb.com/title/{series.imdb_id}"
         target="_blank" rel="noopener" title="{name} auf IMDb">IMDb</a>
    </div>
    <p class="seri_des" itemprop="accessibilitySummary" data-description-type="review"
       data-full-description="{escape(series.description)}">{short}&hellip;
       <span class="showMore">mehr anzeigen</span></p>
    <div class="genres" data-main-genre="{main_genre}">
      <ul>{genres}</ul>
    </div>
    <meta itemprop="numberOfSeasons" content="{len(series.regular_seasons())}">
  </div>
</section>
"""


def _stream_nav(layout: Layout, series: SiteSeries, season: int | None, episode: int | None) -> str:
    items = ["<li><span><strong>Staffeln:</strong></span></li>"]
    for number in ([0] if 0 in series.seasons else []) + series.regular_seasons():
        label, title = ("Filme", "Filme") if number == 0 else (str(number), f"Staffel {number}")
        active = ' class="active"' if number == season else ""
        href = layout.season_path(series.slug, number)
        items.append(f'<li><a{active} href="{href}" title="{title}">{label}</a></li>')
    shown = season if season is not None else (series.regular_seasons() or [0])[0]
    episodes = ["<li><span><strong>Episoden:</strong></span></li>"]
    for ep in series.seasons.get(shown, []):
        active = ' class="active"' if season == shown and ep.number == episode else ""
        href = layout.episode_path(series.slug, shown, ep.number)
        eid = episode_id(series.slug, shown, ep.number)
        episodes.append(
            f'<li><a{active} href="{href}" data-episode-id="{eid}">{ep.number}</a></li>'
        )
    return (
        f'<div id="stream" class="hosterSiteDirectNav"><ul>{"".join(items)}</ul>'
        f"<ul>{''.join(episodes)}</ul></div>"
    )


def _related(layout: Layout, catalogue: Catalogue, series: SiteSeries) -> str:
    others = itertools.islice((s for s in catalogue.series.values() if s is not series), 3)
    cards = "".join(
        f'<div class="coverListItem"><a href="{layout.series_path(s.slug)}">'
        f'<img data-src="{escape(s.cover)}" alt=""><h3>{escape(s.name)}</h3>'
        f"<small>{s.start_year}</small></a></div>"
        for s in others
    )
    return (
        f'<aside class="container"><h2>Ähnliche Serien</h2><div class="row">{cards}</div></aside>'
    )


def series_page(layout: Layout, catalogue: Catalogue, series: SiteSeries) -> str:
    """The series overview page."""
    main = (
        _series_header(layout, series)
        + _stream_nav(layout, series, None, None)
        + _related(layout, catalogue, series)
    )
    return document(layout, f"{series.name} Stream", main)


def _season_row(layout: Layout, series: SiteSeries, season: int, ep: SiteEpisode) -> str:
    href = layout.episode_path(series.slug, season, ep.number)
    label = f"Film {ep.number}" if season == 0 else f"Folge {ep.number}"
    # The films overview leaves the German title empty and shows one title in the span.
    strong, span = ("", ep.title_de) if season == 0 else (ep.title_de, ep.title_en)
    icons = "".join(
        f'<i class="icon {escape(name)}" title="{escape(name)}"></i>'
        for name in dict.fromkeys(h.name for h in ep.hosters)
    )
    flags = "".join(_flag(layout.languages[key]) for key in layout.legend)
    return f"""<tr class="" data-episode-id="{episode_id(series.slug, season, ep.number)}"
    data-episode-season-id="{ep.number}" itemprop="episode" itemscope
    itemtype="http://schema.org/Episode">
  <td class="season{season}EpisodeID"><meta itemprop="episodeNumber" content="{ep.number}">
    <a itemprop="url" href="{href}">{label}</a></td>
  <td class="seasonEpisodeTitle"><a href="{href}"><strong>{escape(strong)}</strong> -
    <span>{escape(span)}</span></a></td>
  <td><a href="{href}">{icons}</a></td>
  <td class="editFunctions"><a href="{href}">{flags}</a></td>
</tr>"""


def season_page(layout: Layout, series: SiteSeries, season: int) -> str:
    """A season page (season 0: the films overview)."""
    rows = "\n".join(_season_row(layout, series, season, ep) for ep in series.seasons[season])
    heading = "Filme" if season == 0 else f"Staffel {season}"
    table = f"""<div class="container">
<h2>{escape(series.name)} {heading}</h2>
<table class="seasonEpisodesList" data-season-id="{season}">
<thead><tr><th>Folge</th><th>Titel</th><th>Hoster</th><th>Sprache</th></tr></thead>
<tbody id="season{season}">
{rows}
</tbody>
</table>
</div>"""
    main = _series_header(layout, series) + _stream_nav(layout, series, season, None) + table
    return document(layout, f"{series.name} {heading}", main)


def episode_page(layout: Layout, series: SiteSeries, season: int, ep: SiteEpisode) -> str:
    """An episode (or film) page with its languages and hoster links."""
    keys = sorted({h.lang_key for h in ep.hosters}, key=lambda k: layout.languages[k].key)
    flags = "".join(
        _flag(
            layout.languages[k],
            f' data-lang-key="{layout.languages[k].key}"'
            + (' class="selectedLanguage"' if i == 0 else ""),
        )
        for i, k in enumerate(keys)
    )
    links = "\n".join(
        f"""<li class="col-md-3 col-xs-12 col-sm-6 episodeLink{h.link_id}"
    data-lang-key="{layout.languages[h.lang_key].key}" data-link-id="{h.link_id}"
    data-link-target="/redirect/{h.link_id}" data-external-embed="false">
  <div><a class="watchEpisode" itemprop="url" href="/redirect/{h.link_id}" target="_blank">
    <i class="icon {escape(h.name)}" title="Hoster {escape(h.name)}"></i>
    <h4>{escape(h.name)}</h4>
    <div class="hosterSiteVideoButton">Video ansehen</div></a></div>
</li>"""
        for h in ep.hosters
    )
    first = f"/redirect/{ep.hosters[0].link_id}" if ep.hosters else "about:blank"
    body = f"""<div class="container">
<div class="hosterSiteTitle" data-episode-id="{episode_id(series.slug, season, ep.number)}"
     data-season-id="{season}">
  <h2><span class="episodeGermanTitle">{escape(ep.title_de)}</span>
      <small class="episodeEnglishTitle">{escape(ep.title_en)}</small></h2>
  <div class="changeLanguage"><div class="changeLanguageBox">{flags}</div></div>
</div>
<div class="hosterSiteVideo">
  <ul class="row">
{links}
  </ul>
  <div class="inSiteWebStream"><iframe src="{first}" allowfullscreen></iframe></div>
</div>
</div>"""
    main = _series_header(layout, series) + _stream_nav(layout, series, season, ep.number) + body
    kind = f"Film {ep.number}" if season == 0 else f"Staffel {season} Episode {ep.number}"
    return document(layout, f"{series.name} {kind}", main)


def new_episodes_page(layout: Layout, catalogue: Catalogue) -> str:
    """The /neue-episoden list, with a decoy list of popular episodes beside it."""
    rows = []
    for new in catalogue.new_episodes:
        series = catalogue.series[new.slug]
        href = layout.episode_path(new.slug, new.season, new.episode)
        rows.append(
            f"""<div class="row"><div class="col-md-12"><a href="{href}">
  <strong>{escape(series.name)}</strong>
  <span class="listTag bigListTag blue">S{new.season:02d} E{new.episode:02d}</span>
  {_flag(layout.languages[new.lang_key])}
  <span class="elementFloatRight">{new.date}</span>
</a></div></div>"""
        )
    popular = "".join(
        f'<li><a href="{layout.episode_path(s.slug, 1, 1)}"><strong>{escape(s.name)}</strong>'
        f'<span class="elementFloatRight">Beliebt</span></a></li>'
        for s in itertools.islice(catalogue.series.values(), 2)
        if s.episode(1, 1) is not None
    )
    main = f"""<div class="container">
<h2>Neue Episoden</h2>
<div class="newEpisodeList">
{"".join(rows)}
</div>
<aside class="popularEpisodes"><h3>Beliebte Episoden</h3><ul>{popular}</ul></aside>
</div>"""
    return document(layout, "Neue Episoden", main)


def home_page(layout: Layout, catalogue: Catalogue) -> str:
    """A start page linking the first few series."""
    links = "".join(
        f'<li><a href="{layout.series_path(s.slug)}">{escape(s.name)}</a></li>'
        for s in itertools.islice(catalogue.series.values(), 20)
    )
    return document(layout, "Start", f'<div class="container"><ul>{links}</ul></div>')
