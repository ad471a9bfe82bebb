"""Fixtures of the download tests: the provider and resolver on the test site, a target path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aniworld_addon.downloads import Resolver
from aniworld_addon.providers import AniworldProvider, HttpOptions, ProviderHttp
from tests.downloads.test_resolver import SiteMediaPlugin
from tests.site.media import MediaSet
from tests.site.plugin import RunningSite


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def provider(
    media_set: MediaSet, provider_site: RunningSite, http_client: httpx.AsyncClient
) -> AniworldProvider:
    http = ProviderHttp(http_client, provider_site.base_url, HttpOptions(min_interval_s=0))
    return AniworldProvider("aniworld", provider_site.base_url, http)


@pytest.fixture
def resolver(http_client: httpx.AsyncClient) -> Resolver:
    return Resolver(http_client, plugins=[SiteMediaPlugin()])


@pytest.fixture
def final_base(tmp_path: Path) -> Path:
    """A library path without extension; the "%" would break an unescaped yt-dlp template."""
    folder = tmp_path / "library" / "Kaiju Academy (2012)" / "Season 01"
    return folder / "Kaiju Academy - S01E01 - 100% Der erste Schultag"
