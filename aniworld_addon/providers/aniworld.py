"""The aniworld.to / old s.to engine as a Provider; the path prefix tells the two apart."""

from __future__ import annotations

import asyncio
import logging
from typing import Final
from urllib.parse import quote, urlsplit

from ..errors import ProviderNotFoundError, ProviderParseError
from .aniworld_fields import ANIWORLD_PREFIX, SLUG_RE, STO_PREFIX
from .aniworld_pages import (
    classify_language,
    parse_episode_page,
    parse_new_episodes,
    parse_season_page,
    parse_series_page,
)
from .aniworld_search import parse_search_alt_json, parse_search_json
from .base import (
    EpisodeInfo,
    EpisodeLinks,
    HosterLink,
    NewEpisode,
    Provider,
    SearchResult,
    SeriesInfo,
)
from .http import Page, ProviderHttp

_LOGGER = logging.getLogger(__name__)

MAX_QUERY_CHARS: Final = 100
_XHR: Final = {"X-Requested-With": "XMLHttpRequest"}


class AniworldProvider(Provider):
    """aniworld.to (`/anime/stream`) or an old-layout s.to mirror (`/serie/stream`)."""

    supports_new_episodes = True

    def __init__(
        self, name: str, base_url: str, http: ProviderHttp, path_prefix: str = ANIWORLD_PREFIX
    ) -> None:
        if base_url.rstrip("/") != http.base_url:
            raise ValueError(f"ProviderHttp is for {http.base_url}, not {base_url}")
        self.name = name
        self.base_url = http.base_url
        self.path_prefix = "/" + path_prefix.strip("/")
        self._http = http

    def __repr__(self) -> str:
        return f"AniworldProvider({self.name!r}, {self.base_url!r}, {self.path_prefix!r})"

    async def search(self, query: str) -> list[SearchResult]:
        """Series matching `query`: the JSON search, else the alternative POST search."""
        keyword = " ".join(query.split())[:MAX_QUERY_CHARS]
        if not keyword:
            return []
        try:
            page = await self._http.get(f"/ajax/seriesSearch?keyword={quote(keyword, safe='')}")
            return await asyncio.to_thread(
                parse_search_json, page.text, page.url, provider=self.name
            )
        except (ProviderNotFoundError, ProviderParseError) as err:
            # older mirrors only answer the POST search
            _LOGGER.debug("%s: seriesSearch unusable (%s); trying /ajax/search", self.name, err)
        page = await self._http.post_form("/ajax/search", {"keyword": keyword}, headers=_XHR)
        return await asyncio.to_thread(
            parse_search_alt_json,
            page.text,
            page.url,
            provider=self.name,
            path_prefix=self.path_prefix,
        )

    @property
    def http(self) -> ProviderHttp:
        """The site's HTTP client (pacing, cache, refusals)."""
        return self._http

    async def series(self, key: str) -> SeriesInfo:
        """The series page of `key` (cached)."""
        path = self._series_path(key)

        async def parse(page: Page) -> SeriesInfo:
            self._landed(path, page)
            return await asyncio.to_thread(
                parse_series_page, page.text, page.url, provider=self.name
            )

        return await self._http.read(path, parse)

    async def episodes(self, key: str, season: int) -> list[EpisodeInfo]:
        """One season page (cached); season 0 is the films overview."""
        path = self._season_path(key, season)

        async def parse(page: Page) -> list[EpisodeInfo]:
            self._landed(path, page)
            return await asyncio.to_thread(parse_season_page, page.text, page.url, season)

        # a copy each time: the cached list is shared by every caller until it expires
        return list(await self._http.read(path, parse))

    async def episode_links(self, key: str, season: int, episode: int) -> EpisodeLinks:
        """The episode page, always fresh: languages and hosters change."""
        if episode < 1:
            raise ProviderNotFoundError(f"{self.name}: no episode {episode}")
        path = self._season_path(key, season)
        path += f"/film-{episode}" if season == 0 else f"/episode-{episode}"
        page = await self._http.get(path)
        self._landed(path, page)
        return await asyncio.to_thread(parse_episode_page, page.text, page.url)

    async def resolve_redirect(self, link: HosterLink) -> str:
        """Where the site's `/redirect/<id>` sends us (the hoster embed page)."""
        return await self._http.resolve_redirect(link.redirect_url)

    async def new_episodes(self) -> list[NewEpisode]:
        """The `/neue-episoden` list."""
        page = await self._http.get("/neue-episoden")
        return await asyncio.to_thread(
            parse_new_episodes, page.text, page.url, path_prefix=self.path_prefix
        )

    def _renamed(self, path: str, landed: str) -> bool:
        """Whether `landed` is `path` with another series slug."""
        head = self.path_prefix + "/"
        if not (path.startswith(head) and landed.startswith(head)):
            return False
        slug, sep, rest = path.removeprefix(head).partition("/")
        new_slug, new_sep, new_rest = landed.removeprefix(head).partition("/")
        return (
            new_slug != slug
            and SLUG_RE.fullmatch(new_slug) is not None
            and (sep, rest) == (new_sep, new_rest)
        )

    def invalidate(self, key: str | None = None) -> None:
        """Forget the cached pages of one series, or of the whole site."""
        self._http.invalidate(None if key is None else self._series_path(key))

    def _series_path(self, key: str) -> str:
        if not isinstance(key, str) or not SLUG_RE.match(key):
            raise ProviderNotFoundError(f"{self.name}: {key!r} is not a series key")
        return f"{self.path_prefix}/{key}"

    def _season_path(self, key: str, season: int) -> str:
        if season < 0:
            raise ProviderNotFoundError(f"{self.name}: no season {season}")
        base = self._series_path(key)
        return f"{base}/filme" if season == 0 else f"{base}/staffel-{season}"

    def _landed(self, path: str, page: Page) -> None:
        """Raise not found when the site sent the request for `path` elsewhere: it does so
        (often to the start page) for unknown series and episodes instead of a 404. Nothing
        of it is cached: a site in maintenance sends every page to its start page too, and the
        series would read as gone for the cache's six hours.

        The same page of another slug is a renamed series (a 301 from its old slug): that is
        the page asked for, and its series page names the new key."""
        landed = urlsplit(page.url).path.rstrip("/")
        if landed != path and not self._renamed(path, landed):
            raise ProviderNotFoundError(
                f"{self.name}: {path} redirected to {page.url}", details={"path": path}
            )


__all__ = [
    "ANIWORLD_PREFIX",
    "STO_PREFIX",
    "AniworldProvider",
    "classify_language",
    "parse_episode_page",
    "parse_new_episodes",
    "parse_search_alt_json",
    "parse_search_json",
    "parse_season_page",
    "parse_series_page",
]
