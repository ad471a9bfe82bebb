"""The whole panel behind a Supervisor-like proxy under /api/hassio_ingress/<token>/.

Every request the browser makes (documents, scripts, styles, API calls, the WebSocket) must stay
under the prefix: the browser's network log proves it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from aniworld_addon.app import create_app
from aniworld_addon.options import Options
from tests.ingress.test_ingress import PREFIX, SUPERVISOR, supervisor_proxy
from tests.site import MediaSet
from tests.site.plugin import RunningSite
from tests.test_process import free_port

from .conftest import browser_tab, write_config
from .test_flow import queue_missing_and_watch, search_and_add

if TYPE_CHECKING:
    from playwright.async_api import Browser


@pytest.fixture
async def ingress_url(
    options: Options, provider_site: RunningSite, media_set: MediaSet
) -> AsyncIterator[str]:
    """The add-on's ingress listener behind the proxy; the panel's URL under the prefix."""
    addon = dataclasses.replace(
        options,
        addon=True,
        host="127.0.0.1",
        port=free_port(),
        direct_port=free_port(),
        ingress_address=SUPERVISOR,
    )
    provider_site.control.media_rate_bps = 200_000
    write_config(addon, provider_site, max_concurrent=2)
    runner = web.AppRunner(create_app(addon))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", addon.port).start()
    proxy = web.AppRunner(supervisor_proxy(f"http://127.0.0.1:{addon.port}"))
    await proxy.setup()
    port = free_port()
    await web.TCPSite(proxy, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}{PREFIX}/"
    finally:
        await proxy.cleanup()
        await runner.cleanup()


async def test_the_panel_works_under_the_ingress_prefix(
    browser: Browser, ingress_url: str, options: Options
) -> None:
    async with browser_tab(browser, ingress_url) as tab:
        page = tab.page
        # Home Assistant authenticated the user: no setup or login page.
        await tab.goto("")
        assert page.url == ingress_url
        assert await page.locator("h1").inner_text() == "Library"
        assert await page.locator("[data-action=logout]").count() == 0

        await search_and_add(tab, "Sky", "sky-lantern")
        assert page.url.startswith(ingress_url + "series?")
        seen = await queue_missing_and_watch(tab, ["1-1", "1-2", "1-3", "1-4"])
        assert max(seen.values()) == 100, seen
        assert len(list(options.library_path.rglob("*.mp4"))) == 4

        # Every page, every link, every redirect stays under the prefix.
        for path in ("", "queue", "history", "scheduler", "settings", "system", "add"):
            await tab.goto(path)
            assert page.url == ingress_url + path
            hrefs = await page.eval_on_selector_all(
                "a[href]", "links => links.map(a => a.getAttribute('href'))"
            )
            outside = [h for h in hrefs if not (h.startswith(PREFIX + "/") or h.startswith("#"))]
            assert not outside, f"{path}: links leave the prefix: {outside}"
        await page.click("a[data-nav=queue]")
        await tab.ready()
        await tab.live()
        assert await page.locator("[data-section=completed] tbody tr").count() == 4
        await tab.screenshot("ingress-queue")

        prefix_url = ingress_url  # http://127.0.0.1:<proxy>/api/hassio_ingress/<token>/
        escaped = [u for u in tab.requests if not u.startswith(prefix_url)]
        assert not escaped, f"requests outside the ingress prefix: {escaped}"
        ws_prefix = prefix_url.replace("http://", "ws://", 1)
        assert tab.websockets and all(u.startswith(ws_prefix) for u in tab.websockets), (
            tab.websockets
        )
        tab.assert_clean()
