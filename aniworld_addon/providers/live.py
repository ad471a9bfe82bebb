"""The provider registry the app uses, rebuilt when the provider settings change."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from .http import HttpOptions
from .registry import ProviderRegistry, build_providers

_LOGGER = logging.getLogger(__name__)


class LiveProviders:
    """Holds the current ProviderRegistry; callers ask for `.registry` each time they need it."""

    def __init__(self, client: httpx.AsyncClient, http_options: HttpOptions) -> None:
        self._client = client
        self._options = http_options
        self.registry = ProviderRegistry({})

    def rebuild(self, settings: Mapping[str, Any]) -> None:
        """Build the providers from the settings' providers and languages blocks."""
        self.registry = build_providers(
            settings["providers"],
            self._client,
            languages=settings["languages"],
            http_options=self._options,
        )
        _LOGGER.info("providers: %s", ", ".join(self.registry.names) or "none enabled")

    def on_settings_change(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """Settings listener: rebuild only when what the providers read has changed."""
        if old["providers"] != new["providers"] or old["languages"] != new["languages"]:
            self.rebuild(new)
