"""Builds the enabled providers from the settings and searches them together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from ..errors import NotFoundError, ProviderError, ProviderNotFoundError, ProviderUnavailableError
from .aniworld import ANIWORLD_PREFIX, STO_PREFIX, AniworldProvider
from .base import Language, Provider, SearchResult
from .cache import Clock
from .http import HttpOptions, ProviderHttp
from .ytdlp_playlist import YtdlpPlaylistProvider

_LOGGER = logging.getLogger(__name__)
SEARCH_DEADLINE_S: Final = 15.0

SITE_PROVIDERS: Final = ("aniworld", "sto")


class UnknownProviderError(NotFoundError):
    """No provider by that name is configured and enabled."""

    code = "unknown_provider"


class Layout(StrEnum):
    """Which page engine a site URL runs; each layout has its own parser module."""

    ANIWORLD = "aniworld"  # aniworld.to: /anime/stream/<slug>
    STO_OLD = "sto"  # s.to before 2026 and its old mirrors: /serie/stream/<slug>
    SERIENSTREAM = "serienstream"  # serienstream.to since 2026: /serie/<slug> (not built yet)


def detect_layout(name: str, url: str) -> Layout:
    """The layout of a configured site: the new s.to hosts by name, else by provider name."""
    host = (urlsplit(url).hostname or "").lower()
    if host.startswith("serienstream.") or ".serienstream." in host:
        return Layout.SERIENSTREAM
    return Layout.ANIWORLD if name == "aniworld" else Layout.STO_OLD


def _old_engine(prefix: str) -> Callable[[str, str, ProviderHttp], Provider]:
    def build(name: str, url: str, http: ProviderHttp) -> Provider:
        return AniworldProvider(name, url, http, path_prefix=prefix)

    return build


#: the seam for a new layout: add its parser module and one entry here
LAYOUT_BUILDERS: Final[Mapping[Layout, Callable[[str, str, ProviderHttp], Provider]]] = {
    Layout.ANIWORLD: _old_engine(ANIWORLD_PREFIX),
    Layout.STO_OLD: _old_engine(STO_PREFIX),
}


@dataclass(slots=True, frozen=True)
class ProviderFailure:
    """A provider that could not answer a fan-out search."""

    provider: str
    code: str
    message: str
    retry_after: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "provider": self.provider,
            "code": self.code,
            "message": self.message,
            "retry_after": self.retry_after,
        }


@dataclass(slots=True, frozen=True)
class SearchOutcome:
    """Merged hits of every provider that answered, and why the others did not."""

    results: tuple[SearchResult, ...]
    failures: tuple[ProviderFailure, ...]

    def to_list(self) -> list[dict[str, Any]]:
        """The SPEC §5 response body."""
        return [result.to_dict() for result in self.results]


class ProviderRegistry:
    """The enabled providers by name, plus the reasons the unavailable ones are missing."""

    def __init__(
        self, providers: Mapping[str, Provider], unavailable: Mapping[str, str] | None = None
    ) -> None:
        self._providers = dict(providers)
        self.unavailable: dict[str, str] = dict(unavailable or {})
        #: how long a search may take per provider: someone waits on it (the Add page, the
        #: CLI). A site that holds the request open took a minute (three 20 s attempts).
        self.search_deadline_s = SEARCH_DEADLINE_S

    def get(self, name: str) -> Provider:
        """The provider `name`; UnknownProviderError if not configured or disabled."""
        provider = self._providers.get(name)
        if provider is not None:
            return provider
        if name in self.unavailable:
            raise ProviderUnavailableError(
                f"provider {name!r} is unavailable: {self.unavailable[name]}",
                details={"provider": name},
            )
        raise UnknownProviderError(
            f"no enabled provider {name!r}", details={"enabled": sorted(self._providers)}
        )

    @property
    def names(self) -> list[str]:
        """Enabled provider names in settings order."""
        return list(self._providers)

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __len__(self) -> int:
        return len(self._providers)

    async def search_all(self, query: str, *, names: Sequence[str] | None = None) -> SearchOutcome:
        """Search providers in parallel; raise only when every one of them failed."""
        chosen = [self.get(n) for n in names] if names else list(self)
        chosen = [p for p in chosen if p.handles_query(query)]
        outcomes = await asyncio.gather(*(self._search_one(p, query) for p in chosen))
        results: list[SearchResult] = []
        errors: list[tuple[str, ProviderError]] = []
        for provider, outcome in zip(chosen, outcomes, strict=True):
            if isinstance(outcome, ProviderError):
                errors.append((provider.name, outcome))
            else:
                results.extend(outcome)
        if errors and len(errors) == len(chosen):
            raise errors[0][1]
        failures = tuple(
            ProviderFailure(name, err.code, err.message, err.retry_after) for name, err in errors
        )
        return SearchOutcome(tuple(results), failures)

    async def _search_one(
        self, provider: Provider, query: str
    ) -> list[SearchResult] | ProviderError:
        deadline = self.search_deadline_s if provider.search_cancellable else None
        try:
            async with asyncio.timeout(deadline):
                return await provider.search(query)
        except TimeoutError:
            seconds = f"{self.search_deadline_s:g}"
            _LOGGER.warning("search on %s took longer than %s s", provider.name, seconds)
            return ProviderUnavailableError(
                f"the search on {provider.name} took longer than {seconds} s; try again later",
                details={"provider": provider.name},
            )
        except ProviderError as err:
            _LOGGER.warning("search on %s failed: %s", provider.name, err.message)
            return err
        except ProviderNotFoundError:
            return []


def build_providers(
    settings_providers: Mapping[str, Any],
    client: httpx.AsyncClient,
    *,
    languages: Sequence[str] = (),
    http_options: HttpOptions | None = None,
    clock: Clock = time.monotonic,
    http_for: Callable[[str], ProviderHttp] | None = None,
    ytdlp: YtdlpPlaylistProvider | None = None,
) -> ProviderRegistry:
    """The registry of enabled providers; one ProviderHttp (pacing, cache) per site.

    `http_for(url)` and `ytdlp` hand in what a previous build made, so that a rebuild keeps a
    site's cache, its concurrency cap and its refusals, and yt-dlp's playlist cache.
    """
    providers: dict[str, Provider] = {}
    unavailable: dict[str, str] = {}
    for name in SITE_PROVIDERS:
        block = settings_providers.get(name) or {}
        if not block.get("enabled"):
            continue
        url = str(block["url"]).rstrip("/")
        layout = detect_layout(name, url)
        builder = LAYOUT_BUILDERS.get(layout)
        if builder is None:
            unavailable[name] = f"the {layout.value} layout of {url} is not supported yet"
            _LOGGER.warning("provider %s: %s", name, unavailable[name])
            continue
        http = (
            ProviderHttp(client, url, http_options, clock=clock)
            if http_for is None
            else http_for(url)
        )
        providers[name] = builder(name, url, http)
    if (settings_providers.get("ytdlp") or {}).get("enabled"):
        known = [Language(v) for v in languages if v in {lang.value for lang in Language}]
        language = known[0] if known else Language.GERMAN_DUB
        if ytdlp is None:
            ytdlp = YtdlpPlaylistProvider(language=language, clock=clock)
        ytdlp.language = language
        providers["ytdlp"] = ytdlp
    return ProviderRegistry(providers, unavailable)
