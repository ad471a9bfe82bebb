"""build_providers and ProviderRegistry: layouts from settings, lookup, fan-out search."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aniworld_addon.errors import NotFoundError, ProviderBlockedError, ProviderUnavailableError
from aniworld_addon.providers.aniworld import AniworldProvider
from aniworld_addon.providers.http import HttpOptions
from aniworld_addon.providers.registry import (
    Layout,
    UnknownProviderError,
    build_providers,
    detect_layout,
)
from aniworld_addon.providers.ytdlp_playlist import YtdlpPlaylistProvider
from aniworld_addon.settings_schema import DEFAULT_CONFIG
from tests.providers.conftest import past_refusal_waits
from tests.site.control import Fault
from tests.site.plugin import RunningSite

FAST = HttpOptions(min_interval_s=0.0, retries=0, timeout_s=5.0)


def settings_for(aniworld: str, sto: str, *, ytdlp: bool = True) -> dict[str, Any]:
    return {
        "aniworld": {"url": aniworld, "enabled": True},
        "sto": {"url": sto, "enabled": True},
        "ytdlp": {"enabled": ytdlp},
    }


@pytest.mark.parametrize(
    ("name", "url", "layout"),
    [
        ("aniworld", "https://aniworld.to", Layout.ANIWORLD),
        ("aniworld", "http://127.0.0.1:8080", Layout.ANIWORLD),
        ("sto", "https://s.to", Layout.STO_OLD),
        ("sto", "http://186.2.175.5", Layout.STO_OLD),
        ("sto", "https://serienstream.to", Layout.SERIENSTREAM),
        ("sto", "https://www.serienstream.cx/", Layout.SERIENSTREAM),
    ],
)
def test_layout_is_picked_from_the_configured_url(name: str, url: str, layout: Layout) -> None:
    assert detect_layout(name, url) is layout


async def test_default_settings_build_aniworld_and_ytdlp_and_explain_sto() -> None:
    async with httpx.AsyncClient() as client:
        registry = build_providers(
            DEFAULT_CONFIG["providers"], client, languages=DEFAULT_CONFIG["languages"]
        )

    assert registry.names == ["aniworld", "ytdlp"]
    aniworld = registry.get("aniworld")
    assert isinstance(aniworld, AniworldProvider)
    assert aniworld.path_prefix == "/anime/stream"
    # the new serienstream.to layout is a seam for later: reported, not half-supported
    assert "serienstream" in registry.unavailable["sto"]
    with pytest.raises(ProviderUnavailableError, match="not supported yet"):
        registry.get("sto")


async def test_unknown_or_disabled_providers_are_not_found(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    settings = settings_for(provider_site.base_url, provider_site.base_url, ytdlp=False)
    settings["sto"]["enabled"] = False
    registry = build_providers(settings, client, languages=["English Sub"])

    for name in ("sto", "ytdlp", "netflix"):
        with pytest.raises(UnknownProviderError) as caught:
            registry.get(name)
        assert isinstance(caught.value, NotFoundError)
        assert caught.value.status == 404
    assert "aniworld" in registry
    assert len(registry) == 1


async def test_ytdlp_links_carry_the_first_configured_language(client: httpx.AsyncClient) -> None:
    registry = build_providers(
        settings_for("https://aniworld.to", "https://s.to"), client, languages=["German Sub"]
    )
    ytdlp = registry.get("ytdlp")
    assert isinstance(ytdlp, YtdlpPlaylistProvider)
    assert ytdlp.language.value == "German Sub"


async def test_search_all_merges_both_sites(
    provider_site: RunningSite, sto_site: RunningSite, client: httpx.AsyncClient
) -> None:
    registry = build_providers(
        settings_for(provider_site.base_url, sto_site.base_url), client, http_options=FAST
    )
    sto = registry.get("sto")
    assert isinstance(sto, AniworldProvider)
    assert sto.path_prefix == "/serie/stream"

    outcome = await registry.search_all("kaiju")

    assert [(r["provider"], r["key"]) for r in outcome.to_list()] == [
        ("aniworld", "kaiju-academy"),
        ("sto", "kaiju-academy"),
    ]
    assert outcome.failures == ()


async def test_a_failing_provider_does_not_lose_the_others_results(
    provider_site: RunningSite, sto_site: RunningSite, client: httpx.AsyncClient
) -> None:
    sto_site.control.set_fault("^/ajax/", Fault.CHALLENGE_DDOS_GUARD)
    registry = build_providers(
        settings_for(provider_site.base_url, sto_site.base_url), client, http_options=FAST
    )

    outcome = await registry.search_all("kaiju")

    assert [r.provider for r in outcome.results] == ["aniworld"]
    (failure,) = outcome.failures
    assert failure.to_dict()["provider"] == "sto"
    assert failure.code == "provider_blocked"


async def test_search_all_raises_when_every_provider_failed(
    provider_site: RunningSite, sto_site: RunningSite, client: httpx.AsyncClient
) -> None:
    provider_site.control.set_fault("^/ajax/", Fault.CHALLENGE_CLOUDFLARE)
    sto_site.control.set_fault("^/ajax/", Fault.CHALLENGE_DDOS_GUARD)
    registry = build_providers(
        settings_for(provider_site.base_url, sto_site.base_url), client, http_options=FAST
    )

    with pytest.raises(ProviderBlockedError):
        await registry.search_all("kaiju")
    # naming one provider searches only that one (once its wall's wait is over)
    sto_site.control.clear_faults()
    sto = registry.get("sto")
    assert isinstance(sto, AniworldProvider)
    past_refusal_waits(sto.http)
    outcome = await registry.search_all("kaiju", names=["sto"])
    assert [r.provider for r in outcome.results] == ["sto"]


async def test_a_site_that_never_answers_a_search_is_given_up_on_in_time(
    provider_site: RunningSite, sto_site: RunningSite, client: httpx.AsyncClient
) -> None:
    # The Add page showed its spinner for a minute (three 20 s attempts) before saying why.
    sto_site.control.set_fault("^/ajax/", Fault.TIMEOUT)
    registry = build_providers(
        settings_for(provider_site.base_url, sto_site.base_url), client, http_options=FAST
    )
    registry.search_deadline_s = 0.5

    outcome = await registry.search_all("kaiju")

    assert [r.provider for r in outcome.results] == ["aniworld"]
    (failure,) = outcome.failures
    assert failure.code == "provider_unavailable"
    assert "took longer than 0.5 s" in failure.message
