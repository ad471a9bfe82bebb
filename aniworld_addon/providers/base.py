"""Provider domain values and the Provider interface every site engine implements."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple


class Language(StrEnum):
    """An audio/subtitle combination a site offers; values are the settings' language names."""

    GERMAN_DUB = "German Dub"
    GERMAN_SUB = "German Sub"
    ENGLISH_SUB = "English Sub"
    ENGLISH_DUB = "English Dub"


@dataclass(slots=True, frozen=True)
class SearchResult:
    """One search hit."""

    provider: str
    key: str
    name: str
    year: int | None
    description: str | None
    cover_url: str | None

    def to_dict(self) -> dict[str, Any]:
        """The SPEC §5 search record."""
        return {
            "provider": self.provider,
            "key": self.key,
            "name": self.name,
            "year": self.year,
            "description": self.description,
            "cover_url": self.cover_url,
        }


@dataclass(slots=True, frozen=True)
class SeriesInfo:
    """What a series page says about a series; `seasons` holds 0 for films."""

    provider: str
    key: str
    name: str
    year: int | None
    end_year: int | None
    description: str | None
    cover_url: str | None
    genres: tuple[str, ...]
    imdb_id: str | None
    seasons: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "provider": self.provider,
            "key": self.key,
            "name": self.name,
            "year": self.year,
            "end_year": self.end_year,
            "description": self.description,
            "cover_url": self.cover_url,
            "genres": list(self.genres),
            "imdb_id": self.imdb_id,
            "seasons": list(self.seasons),
        }


@dataclass(slots=True, frozen=True)
class EpisodeInfo:
    """One row of a season page; season 0 holds the films."""

    season: int
    episode: int
    title: str | None
    title_en: str | None

    @property
    def display_title(self) -> str:
        """The German title, else the English one, else a generic label."""
        return self.title or self.title_en or f"Episode {self.episode}"


@dataclass(slots=True, frozen=True)
class HosterLink:
    """One hoster offering an episode in one language; `redirect_url` is absolute."""

    language: Language
    hoster: str
    link_id: str
    redirect_url: str


@dataclass(slots=True, frozen=True)
class EpisodeLinks:
    """The languages and hosters of an episode page."""

    season: int
    episode: int
    title: str | None
    languages: tuple[Language, ...]
    hosters: tuple[HosterLink, ...]

    def for_language(self, language: Language) -> tuple[HosterLink, ...]:
        """The hosters offering `language`, in page order."""
        return tuple(link for link in self.hosters if link.language is language)


class NewEpisode(NamedTuple):
    """A (key, season, episode) row of a site's new-episodes list."""

    key: str
    season: int
    episode: int


class Provider(ABC):
    """A site (or source) that lists series and their episodes."""

    #: capability flags, in the manner of Music Assistant's provider features
    supports_search: ClassVar[bool] = True
    supports_new_episodes: ClassVar[bool] = False
    #: whether a search stops when its awaiting task is cancelled (a deadline can cut it off);
    #: False for one that runs on in a thread, whose result a cut-off would throw away
    search_cancellable: ClassVar[bool] = True

    name: str

    @abstractmethod
    async def search(self, query: str) -> list[SearchResult]:
        """Series matching `query`."""

    def handles_query(self, query: str) -> bool:
        """Whether a fan-out search should ask this provider about `query`."""
        return self.supports_search

    @abstractmethod
    async def series(self, key: str) -> SeriesInfo:
        """The series page of `key`."""

    @abstractmethod
    async def episodes(self, key: str, season: int) -> list[EpisodeInfo]:
        """The episodes of one season (0 = films), ordered by number."""

    async def all_episodes(self, key: str) -> dict[int, list[EpisodeInfo]]:
        """Every season's episodes: one series page plus one page per season."""
        info = await self.series(key)
        results: dict[int, list[EpisodeInfo]] = {}
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {s: group.create_task(self.episodes(key, s)) for s in info.seasons}
        except BaseExceptionGroup as group_error:
            raise first_leaf(group_error) from None
        for season, task in tasks.items():
            results[season] = task.result()
        return results

    @abstractmethod
    async def episode_links(self, key: str, season: int, episode: int) -> EpisodeLinks:
        """Languages and hosters of one episode (read only when it is about to be downloaded)."""

    async def resolve_redirect(self, link: HosterLink) -> str:
        """The hoster embed URL behind `link`; sources without a redirect step return it as is."""
        return link.redirect_url

    async def new_episodes(self) -> list[NewEpisode]:
        """The site's recently released episodes; empty unless `supports_new_episodes`."""
        return []


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first non-group exception of a (nested) exception group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


__all__ = [
    "EpisodeInfo",
    "EpisodeLinks",
    "HosterLink",
    "Language",
    "NewEpisode",
    "Provider",
    "SearchResult",
    "SeriesInfo",
    "first_leaf",
]
