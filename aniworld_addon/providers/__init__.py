"""Provider sites: search, series and episode lists, episode hosters."""

from __future__ import annotations

from .aniworld import AniworldProvider
from .base import (
    EpisodeInfo,
    EpisodeLinks,
    HosterLink,
    Language,
    NewEpisode,
    Provider,
    SearchResult,
    SeriesInfo,
)
from .http import HttpOptions, ProviderHttp
from .registry import (
    ProviderRegistry,
    SearchOutcome,
    UnknownProviderError,
    build_providers,
)
from .ytdlp_playlist import YtdlpPlaylistProvider

__all__ = [
    "AniworldProvider",
    "EpisodeInfo",
    "EpisodeLinks",
    "HosterLink",
    "HttpOptions",
    "Language",
    "NewEpisode",
    "Provider",
    "ProviderHttp",
    "ProviderRegistry",
    "SearchOutcome",
    "SearchResult",
    "SeriesInfo",
    "UnknownProviderError",
    "YtdlpPlaylistProvider",
    "build_providers",
]
