"""The provider registry the app uses, rebuilt when the provider settings change."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .http import HttpOptions, ProviderHttp
from .registry import ProviderRegistry, build_providers
from .ytdlp_playlist import YtdlpPlaylistProvider

_LOGGER = logging.getLogger(__name__)


class LiveProviders:
    """Holds the current ProviderRegistry; callers ask for `.registry` each time they need it."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        http_options: HttpOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._options = http_options
        # the sites' cache lifetimes and refusal waits; the app's clock, which the queue's
        # backoff reads too: an item due after Retry-After finds the site's wait over
        self._clock = clock
        self.registry = ProviderRegistry({})
        self._sites: dict[str, ProviderHttp] = {}

    def rebuild(self, settings: Mapping[str, Any]) -> None:
        """Build the providers from the settings' providers and languages blocks.

        A site whose URL stays keeps its ProviderHttp: a new one forgot the cached pages (the
        next rescan cost every page again), started a second set of 4 requests in flight
        beside the old one's, and forgot that the site had asked for a pause.
        """
        previous, self._sites = self._sites, {}

        def site(url: str) -> ProviderHttp:
            http = self._sites.get(url) or previous.get(url)
            if http is None:
                http = ProviderHttp(self._client, url, self._options, clock=self._clock)
            self._sites[url] = http
            return http

        ytdlp = self.registry.get("ytdlp") if "ytdlp" in self.registry else None
        self.registry = build_providers(
            settings["providers"],
            self._client,
            languages=settings["languages"],
            http_options=self._options,
            http_for=site,
            clock=self._clock,
            ytdlp=ytdlp if isinstance(ytdlp, YtdlpPlaylistProvider) else None,
        )
        _LOGGER.info("providers: %s", ", ".join(self.registry.names) or "none enabled")

    def on_settings_change(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """Settings listener: rebuild only when what the providers read has changed."""
        if old["providers"] != new["providers"] or old["languages"] != new["languages"]:
            self.rebuild(new)
