"""What the test site serves: series, seasons, episodes and their hoster links."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

# Language keys in aniworld numbering; the "sto" layout renumbers them (see pages.LANGUAGES).
GERMAN_DUB: Final = 1
ENGLISH_SUB: Final = 2
GERMAN_SUB: Final = 3
ENGLISH_DUB: Final = 4

MEDIA_NAME: Final = "sample"
# Site-relative hoster targets; /redirect/<id> makes them absolute, so they work on any port.
TARGET_HTML5: Final = f"/embed/html5/{MEDIA_NAME}"
TARGET_JWPLAYER: Final = f"/embed/jwplayer/{MEDIA_NAME}"
TARGET_DIRECT: Final = f"/media/{MEDIA_NAME}.mp4"
TARGET_UNREADABLE: Final = f"/embed/unreadable/{MEDIA_NAME}"
TARGET_DEAD: Final = f"/embed/gone/{MEDIA_NAME}"

_FIRST_LINK_ID: Final = 1_000_001


@dataclass(slots=True, frozen=True)
class SiteHoster:
    """One hoster link of an episode in one language."""

    link_id: int
    lang_key: int
    name: str
    target: str


@dataclass(slots=True, frozen=True)
class SiteEpisode:
    """An episode (or a film when its season is 0)."""

    number: int
    title_de: str
    title_en: str
    hosters: list[SiteHoster] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class SiteSeries:
    """A series with its metadata and seasons (season 0 holds the films)."""

    slug: str
    name: str
    start_year: int
    end_year: int | None
    description: str
    cover: str
    genres: list[str]
    imdb_id: str
    fsk: int
    seasons: dict[int, list[SiteEpisode]]

    def regular_seasons(self) -> list[int]:
        """Season numbers without the films, ascending."""
        return sorted(n for n in self.seasons if n > 0)

    def episode(self, season: int, number: int) -> SiteEpisode | None:
        """The episode `number` of `season`, or None."""
        return next((e for e in self.seasons.get(season, []) if e.number == number), None)

    def production_year(self) -> str:
        """The search API's year range, e.g. "(2012 - 2018)"."""
        end = "Heute" if self.end_year is None else str(self.end_year)
        return f"({self.start_year} - {end})"


@dataclass(slots=True, frozen=True)
class SiteNewEpisode:
    """One row of /neue-episoden."""

    slug: str
    season: int
    episode: int
    lang_key: int
    date: str  # dd.mm.yyyy, as the site prints it


@dataclass(slots=True, frozen=True)
class Catalogue:
    """All series of the site by slug, plus the /neue-episoden list."""

    series: dict[str, SiteSeries]
    new_episodes: list[SiteNewEpisode] = field(default_factory=list)
    #: old slug -> new slug: the site answers the old one's pages with a 301 to the new one's
    renamed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A broken catalogue would make tests fail far from the cause; refuse it here.
        seen: set[int] = set()
        for hoster in self.hosters():
            if hoster.link_id in seen:
                raise ValueError(f"duplicate link id {hoster.link_id}")
            seen.add(hoster.link_id)
        for new in self.new_episodes:
            series = self.series.get(new.slug)
            if series is None or series.episode(new.season, new.episode) is None:
                raise ValueError(f"new episode {new} is not in the catalogue")

    @classmethod
    def of(cls, series: list[SiteSeries], new_episodes: list[SiteNewEpisode]) -> Catalogue:
        """Build a catalogue from a list of series."""
        return cls({s.slug: s for s in series}, new_episodes)

    def hosters(self) -> Iterator[SiteHoster]:
        """Every hoster link of every episode."""
        for series in self.series.values():
            for episodes in series.seasons.values():
                for episode in episodes:
                    yield from episode.hosters

    def search(self, keyword: str) -> list[SiteSeries]:
        """Series whose name or slug contains the keyword, case-insensitively."""
        needle = keyword.strip().casefold()
        if not needle:
            return []
        return [s for s in self.series.values() if needle in s.name.casefold() or needle in s.slug]


def _episode(
    ids: Iterator[int], number: int, title_de: str, title_en: str, *hosters: tuple[int, str, str]
) -> SiteEpisode:
    links = [SiteHoster(next(ids), lang, name, target) for lang, name, target in hosters]
    return SiteEpisode(number, title_de, title_en, links)


def _cover(slug: str) -> str:
    return f"/public/img/cover/{slug}-stream-cover-x9QfW2aLp_220x330.jpg"


def default_catalogue() -> Catalogue:
    """Four series covering seasons, films, escaped names, languages and hoster fallbacks."""
    ids = itertools.count(_FIRST_LINK_ID)
    voe, moon = ("VOE", TARGET_HTML5), ("Filemoon", TARGET_JWPLAYER)
    kaiju = SiteSeries(
        slug="kaiju-academy",
        name="Kaiju Academy",
        start_year=2012,
        end_year=2018,
        description="Eine Schule für Riesenmonster. Wer besteht die Abschlussprüfung?",
        cover=_cover("kaiju-academy"),
        genres=["Action", "Comedy", "Mecha"],
        imdb_id="tt9000001",
        fsk=12,
        seasons={
            0: [
                _episode(ids, 1, "Der Film", "The Movie", (GERMAN_DUB, *voe)),
                _episode(ids, 2, "Tokio brennt", "Tokyo Burns", (GERMAN_SUB, *moon)),
            ],
            1: [
                # Several hosters for one language, plus both subtitle languages.
                _episode(
                    ids,
                    1,
                    "Der erste Schultag",
                    "The First Day",
                    (GERMAN_DUB, *voe),
                    (GERMAN_DUB, *moon),
                    (GERMAN_DUB, "Vidoza", TARGET_DIRECT),
                    (GERMAN_SUB, *voe),
                    (ENGLISH_SUB, *moon),
                ),
                # German Dub only works on the third hoster: dead, unreadable, then VOE.
                _episode(
                    ids,
                    2,
                    "Prüfungsangst",
                    "Exam Jitters",
                    (GERMAN_DUB, "Doodstream", TARGET_DEAD),
                    (GERMAN_DUB, "Streamtape", TARGET_UNREADABLE),
                    (GERMAN_DUB, *voe),
                    (GERMAN_SUB, "Vidmoly", TARGET_JWPLAYER),
                ),
                _episode(
                    ids, 3, "Nachsitzen", "Detention", (GERMAN_SUB, *voe), (ENGLISH_SUB, *moon)
                ),
            ],
            2: [
                _episode(
                    ids, 1, "Neue Gegner", "New Rivals", (GERMAN_DUB, *voe), (ENGLISH_SUB, *voe)
                ),
                # No hoster of this episode yields media.
                _episode(
                    ids,
                    2,
                    "Das Ende?",
                    "The End?",
                    (GERMAN_DUB, "Doodstream", TARGET_DEAD),
                    (GERMAN_DUB, "Streamtape", TARGET_UNREADABLE),
                ),
            ],
        },
    )
    rock = SiteSeries(
        slug="rock-roll-heroes-reloaded",
        name='Rock & Roll "Heroes" <Reloaded>',
        start_year=2019,
        end_year=2021,
        description="Laut & schräg: eine Band <gegen> den Rest der Welt.",
        cover=_cover("rock-roll-heroes-reloaded"),
        genres=["Musik", "Drama"],
        imdb_id="tt9000002",
        fsk=6,
        seasons={
            1: [
                _episode(
                    ids,
                    1,
                    "Erste Probe",
                    "First Rehearsal",
                    (GERMAN_DUB, *voe),
                    (ENGLISH_DUB, *moon),
                ),
                _episode(ids, 2, "Tour & Tränen", "Tour & Tears", (ENGLISH_DUB, *voe)),
            ]
        },
    )
    lantern = SiteSeries(
        slug="sky-lantern",
        name="Sky Lantern",
        start_year=2023,
        end_year=None,
        description="Ein Laternenmacher reist durch eine Welt ohne Nacht.",
        cover=_cover("sky-lantern"),
        genres=["Fantasy", "Abenteuer"],
        imdb_id="tt9000003",
        fsk=0,
        seasons={
            1: [
                _episode(
                    ids, n, f"Laterne {n}", f"Lantern {n}", (GERMAN_DUB, *voe), (GERMAN_SUB, *moon)
                )
                for n in range(1, 5)
            ]
        },
    )
    summer = SiteSeries(
        slug="der-letzte-sommer",
        name="Der letzte Sommer",
        start_year=2016,
        end_year=2016,
        description="Ein Film über einen Sommer, der nicht enden will.",
        cover=_cover("der-letzte-sommer"),
        genres=["Drama", "Romanze"],
        imdb_id="tt9000004",
        fsk=6,
        seasons={0: [_episode(ids, 1, "Der letzte Sommer", "The Last Summer", (GERMAN_SUB, *voe))]},
    )
    new = [
        SiteNewEpisode("sky-lantern", 1, 4, GERMAN_DUB, "17.07.2025"),
        SiteNewEpisode("sky-lantern", 1, 3, GERMAN_SUB, "16.07.2025"),
        SiteNewEpisode("kaiju-academy", 2, 2, GERMAN_DUB, "15.07.2025"),
    ]
    return Catalogue.of([kaiju, rock, lantern, summer], new)


def generated_catalogue(
    n_series: int, seasons: int, episodes_per_season: int, *, films: int = 0
) -> Catalogue:
    """A large deterministic catalogue for benchmarks: two hosters per episode."""
    ids = itertools.count(_FIRST_LINK_ID)
    all_series: list[SiteSeries] = []
    for i in range(1, n_series + 1):
        slug = f"generated-series-{i:05d}"
        season_map: dict[int, list[SiteEpisode]] = {}
        for season in ([0] if films else []) + list(range(1, seasons + 1)):
            count = films if season == 0 else episodes_per_season
            season_map[season] = [
                SiteEpisode(
                    n,
                    f"Folge {n}",
                    f"Episode {n}",
                    [
                        SiteHoster(next(ids), GERMAN_DUB, "VOE", TARGET_HTML5),
                        SiteHoster(next(ids), GERMAN_SUB, "Filemoon", TARGET_JWPLAYER),
                    ],
                )
                for n in range(1, count + 1)
            ]
        all_series.append(
            SiteSeries(
                slug=slug,
                name=f"Generated Series {i}",
                start_year=2000 + i % 25,
                end_year=None if i % 3 == 0 else 2001 + i % 25,
                description=f"Generierte Serie Nummer {i}.",
                cover=_cover(slug),
                genres=["Action"],
                imdb_id=f"tt{8_000_000 + i}",
                fsk=12,
                seasons=season_map,
            )
        )
    new = [
        SiteNewEpisode(s.slug, seasons, episodes_per_season, GERMAN_DUB, "01.01.2025")
        for s in all_series[:20]
        if seasons and episodes_per_season
    ]
    return Catalogue.of(all_series, new)
