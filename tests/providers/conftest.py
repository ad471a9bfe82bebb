"""Provider test fixtures: the local test site, one httpx client, providers built on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from aniworld_addon.providers.aniworld import ANIWORLD_PREFIX, STO_PREFIX, AniworldProvider
from aniworld_addon.providers.http import BLOCKED_WAIT_S, HttpOptions, ProviderHttp
from tests.site.plugin import *  # noqa: F403  (the site fixtures, found by name)
from tests.site.plugin import RunningSite

# no pacing and no backoff sleeps: the tests count requests, not seconds
FAST: HttpOptions = HttpOptions(min_interval_s=0.0, backoff_s=0.01, timeout_s=5.0)


def past_refusal_waits(http: ProviderHttp) -> None:
    """Move a site client's clock past any refusal's wait (the longest there is)."""
    real_clock = http.clock
    http.clock = lambda: real_clock() + BLOCKED_WAIT_S + 1


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The shared client the app would own; closed after the test."""
    async with httpx.AsyncClient() as shared:
        yield shared


def make_http(site: RunningSite, client: httpx.AsyncClient, **options: Any) -> ProviderHttp:
    """A ProviderHttp for `site` with test-friendly defaults overridden by `options`."""
    fields = {**{k: getattr(FAST, k) for k in FAST.__slots__}, **options}
    clock = fields.pop("clock", None)
    http_options = HttpOptions(**fields)
    if clock is None:
        return ProviderHttp(client, site.base_url, http_options)
    return ProviderHttp(client, site.base_url, http_options, clock=clock)


@pytest.fixture
def aniworld(provider_site: RunningSite, client: httpx.AsyncClient) -> AniworldProvider:
    """The aniworld engine on the aniworld-layout site."""
    http = make_http(provider_site, client)
    return AniworldProvider("aniworld", provider_site.base_url, http, ANIWORLD_PREFIX)


@pytest.fixture
def sto(sto_site: RunningSite, client: httpx.AsyncClient) -> AniworldProvider:
    """The same engine on the old s.to layout."""
    http = make_http(sto_site, client)
    return AniworldProvider("sto", sto_site.base_url, http, STO_PREFIX)
