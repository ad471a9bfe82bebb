"""Provider `ytdlp`: any playlist yt-dlp can read is a series; its entries are season 1."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from ..errors import (
    ProviderBlockedError,
    ProviderError,
    ProviderNotFoundError,
    ProviderParseError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from ..jsonutil import valid_text
from .base import (
    EpisodeInfo,
    EpisodeLinks,
    HosterLink,
    Language,
    Provider,
    SearchResult,
    SeriesInfo,
)
from .cache import Coalescer, TtlCache

_LOGGER = logging.getLogger(__name__)

Extractor = Callable[[str], Mapping[str, Any]]

HOSTER: Final = "yt-dlp"
MAX_URL_CHARS: Final = 2048
_TAG: Final = re.compile(r"\bS(\d{1,3})\s*E(\d{1,4})\b", re.IGNORECASE)
_NUMBER: Final = re.compile(r"\b(?:episode|folge|ep\.?)\s*#?\s*(\d{1,4})\b", re.IGNORECASE)


def title_number(title: str | None) -> tuple[int, int] | None:
    """(season, episode) a title states: `S02E03` says both, `Episode 12` / `Folge 3` an
    episode of season 1; None when it states neither (or episode 0)."""
    if (tag := _TAG.search(title or "")) is not None and int(tag.group(2)) > 0:
        return int(tag.group(1)), int(tag.group(2))
    if (plain := _NUMBER.search(title or "")) is not None and int(plain.group(1)) > 0:
        return 1, int(plain.group(1))
    return None


def number_entries(titles: Sequence[str | None]) -> list[tuple[int, int]]:
    """(season, episode) of each entry, distinct: what its title states, else a special.

    When any title states a number, those entries are what they state, and every other
    entry (no number, or one taken already) is a special (season 0), numbered in playlist
    order among the specials. A special used to take the next free number of season 1: once
    an episode of that number came out, the special's file counted as that episode (never
    downloaded) and the special moved to a new number (downloaded again). A playlist whose
    titles state no number at all is season 1 in playlist order.
    """
    stated: list[tuple[int, int] | None] = [None] * len(titles)
    taken: set[tuple[int, int]] = set()
    for index, title in enumerate(titles):
        number = title_number(title)
        if number is not None and number not in taken:
            stated[index] = number
            taken.add(number)
    if not taken:
        return [(1, index) for index in range(1, len(titles) + 1)]
    free = (n for n in range(1, 2 * len(titles) + 2) if (0, n) not in taken)
    return [number if number is not None else (0, next(free)) for number in stated]


def _entry_url(entry: Mapping[str, Any]) -> str | None:
    url = entry.get("url") or entry.get("webpage_url")
    if not isinstance(url, str) or not url:
        return None
    from yt_dlp.utils import unsmuggle_url

    try:
        plain, _ = unsmuggle_url(url)
    # a URL can carry a "#__youtubedl_smuggle" fragment that is no smuggled JSON at all
    except (ValueError, KeyError, IndexError, TypeError):
        return url
    return str(plain)


def playlist_entries(info: Mapping[str, Any]) -> list[tuple[int, int, Mapping[str, Any]]]:
    """(season, episode, entry) for every usable entry of a flat playlist result, in order."""
    raw = info.get("entries")
    if info.get("_type") not in ("playlist", "multi_video") or not isinstance(raw, list | tuple):
        raise ProviderNotFoundError(f"{info.get('webpage_url') or 'the URL'} is not a playlist")
    entries = [e for e in raw if isinstance(e, Mapping) and _entry_url(e)]
    numbers = number_entries([_title(entry) for entry in entries])
    return sorted(
        (
            (season, episode, entry)
            for (season, episode), entry in zip(numbers, entries, strict=True)
        ),
        key=lambda found: found[:2],
    )


def _error_from(url: str, err: Exception) -> ProviderError | ProviderNotFoundError:
    message = str(err)
    details = {"url": url}
    if "HTTP Error 404" in message or "Unsupported URL" in message:
        return ProviderNotFoundError(
            f"yt-dlp found no playlist at {url}: {message}", details=details
        )
    if "HTTP Error 429" in message:
        return ProviderRateLimitedError(f"yt-dlp was rate limited by {url}", details=details)
    if "HTTP Error 403" in message:
        return ProviderBlockedError(f"yt-dlp was refused by {url}", details=details)
    return ProviderUnavailableError(f"yt-dlp cannot read {url}: {message}", details=details)


def _release(err: BaseException) -> None:
    """Close HTTP responses yt-dlp keeps on its errors; their sockets would linger until GC."""
    stack: list[BaseException | None] = [err]
    seen: set[int] = set()
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        close = getattr(getattr(error, "response", None), "close", None)
        if callable(close):
            close()
        exc_info = getattr(error, "exc_info", None)
        if (
            isinstance(exc_info, tuple)
            and len(exc_info) > 1
            and isinstance(exc_info[1], BaseException)
        ):
            stack.append(exc_info[1])
        stack.extend((error.__cause__, error.__context__))


class _YtdlpLogger:
    """Routes yt-dlp's messages to logging instead of the process's stderr."""

    def debug(self, message: str) -> None:
        _LOGGER.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        _LOGGER.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        _LOGGER.debug("yt-dlp warning: %s", message)

    def error(self, message: str) -> None:
        # the failure is raised as a ProviderError; logging it here too would say it twice
        _LOGGER.debug("yt-dlp error: %s", message)


class YtdlpPlaylistProvider(Provider):
    """A yt-dlp playlist URL (the series key) read with a flat extraction in a worker thread."""

    name = "ytdlp"
    search_cancellable = False  # the extraction runs in a thread a timeout cannot stop

    def __init__(
        self,
        *,
        language: Language = Language.GERMAN_DUB,
        cache_ttl_s: float = 6 * 3600,
        clock: Callable[[], float] = time.monotonic,
        socket_timeout_s: float = 20.0,
        max_entries: int = 5000,
        extractor: Extractor | None = None,
    ) -> None:
        self.language = language
        self._socket_timeout_s = socket_timeout_s
        self._max_entries = max_entries
        self._extractor = extractor or self._extract_blocking
        self._cache: TtlCache[str, Mapping[str, Any]] = TtlCache(cache_ttl_s, 256, clock)
        self._inflight: Coalescer[str, Mapping[str, Any]] = Coalescer()

    def handles_query(self, query: str) -> bool:
        """Only a pasted playlist URL: yt-dlp cannot search a site by words."""
        return _is_url(query.strip())

    async def search(self, query: str) -> list[SearchResult]:
        """A playlist URL pasted as the query is its own hit; words find nothing here."""
        query = query.strip()
        if not _is_url(query):
            return []
        info = await self.series(query)
        return [
            SearchResult(
                provider=self.name,
                key=info.key,
                name=info.name,
                year=info.year,
                description=info.description,
                cover_url=info.cover_url,
            )
        ]

    async def series(self, key: str) -> SeriesInfo:
        """The playlist's title, description and thumbnail; one season when it has entries."""
        info = await self._playlist(key)
        thumbnails = info.get("thumbnails")
        last = thumbnails[-1] if isinstance(thumbnails, list) and thumbnails else None
        cover = last.get("url") if isinstance(last, Mapping) else None
        title = _text(info.get("title"))
        return SeriesInfo(
            provider=self.name,
            key=key,
            name=title or key,
            year=None,
            end_year=None,
            description=_text(info.get("description")),
            cover_url=_text(cover) if isinstance(cover, str) and _is_url(cover.strip()) else None,
            genres=(),
            imdb_id=None,
            seasons=tuple(sorted({season for season, _, _ in playlist_entries(info)})),
        )

    async def episodes(self, key: str, season: int) -> list[EpisodeInfo]:
        """Season 1 is the playlist's numbered episodes, season 0 its specials."""
        found = await self.all_episodes(key)
        if season not in found:
            raise ProviderNotFoundError(f"the playlist {key} has no season {season}")
        return found[season]

    async def all_episodes(self, key: str) -> dict[int, list[EpisodeInfo]]:
        """Every season, from a single extraction."""
        seasons: dict[int, list[EpisodeInfo]] = {}
        for season, number, entry in playlist_entries(await self._playlist(key)):
            info = EpisodeInfo(season=season, episode=number, title=_title(entry), title_en=None)
            seasons.setdefault(season, []).append(info)
        return seasons

    async def episode_links(self, key: str, season: int, episode: int) -> EpisodeLinks:
        """One link: the entry's own URL, for yt-dlp to download."""
        for found_season, number, entry in playlist_entries(await self._playlist(key)):
            if (found_season, number) == (season, episode):
                url = _entry_url(entry) or ""
                entry_id = entry.get("id")
                link = HosterLink(
                    language=self.language,
                    hoster=HOSTER,
                    link_id=str(entry_id) if entry_id is not None else f"{season}-{number}",
                    redirect_url=url,
                )
                return EpisodeLinks(season, number, _title(entry), (self.language,), (link,))
        raise ProviderNotFoundError(f"{key} has no S{season:02}E{episode:02}")

    async def _playlist(self, url: str) -> Mapping[str, Any]:
        if not _is_url(url):
            raise ProviderNotFoundError(f"{url!r} is not an http(s) playlist URL")
        if (hit := self._cache.get(url)) is not None:
            return hit
        info, _ = await self._inflight.run(url, lambda: asyncio.to_thread(self._extractor, url))
        if not isinstance(info, Mapping):
            raise ProviderParseError(f"yt-dlp returned nothing for {url}")
        self._cache.put(url, info)
        return info

    def _extract_blocking(self, url: str) -> Mapping[str, Any]:
        options = {
            "extract_flat": "in_playlist",
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "skip_download": True,
            "cachedir": False,
            "logger": _YtdlpLogger(),
            "socket_timeout": self._socket_timeout_s,
            "playlistend": self._max_entries,
        }
        # Imported here, in the worker thread: yt-dlp is heavy and start-up should not wait.
        import yt_dlp
        from yt_dlp.utils import YoutubeDLError

        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(url, download=False)
                return dict(ydl.sanitize_info(info)) if info else {}
        except (YoutubeDLError, OSError) as err:
            _release(err)
            raise _error_from(url, err) from err
        except Exception as err:
            # An extractor's own failure on an odd URL (a ValueError for "http://[", a
            # JSONDecodeError for a smuggled fragment): the provider's, not the service's.
            _LOGGER.warning("yt-dlp failed on %s", url, exc_info=True)
            message = f"yt-dlp cannot read {url}: {type(err).__name__}: {err}"
            raise ProviderUnavailableError(message, details={"url": url}) from err


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:  # "http://[": an unclosed IPv6 host
        return False
    return len(value) <= MAX_URL_CHARS and parts.scheme in ("http", "https") and bool(parts.netloc)


def _text(value: object) -> str | None:
    """A stripped, non-empty string; lone surrogates (JSON allows them) cannot be stored."""
    if not isinstance(value, str):
        return None
    return valid_text(value).strip() or None


def _title(entry: Mapping[str, Any]) -> str | None:
    return _text(entry.get("title"))
