"""Every page in light and dark: axe-core finds nothing serious, no console errors, screenshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aniworld_addon import keys
from aniworld_addon.events import EventType
from tests.site import MediaSet
from tests.site.plugin import RunningSite

from .conftest import Service, StartService, Tab, add_series, browser_tab, login_context

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def wait_queue(service: Service, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the queue status until `done` says so (downloads run on their own)."""
    deadline = time.monotonic() + 60
    while True:
        status: dict[str, Any] = await service.call("GET", "api/queue/status")
        if done(status):
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)


async def populate(service: Service, site: RunningSite) -> None:
    """A library with two series and an unmatched folder; a queue with items in every section."""
    await add_series(service, "sky-lantern")
    await add_series(service, "kaiju-academy")
    (service.options.library_path / "Der letzte Sommer (2016)").mkdir()
    op = await service.call("POST", "api/anime/rescan", status=202)
    await service.app[keys.OPERATIONS].wait(op["operation_id"])
    await service.call(
        "POST", "api/anime/kaiju-academy/download", json={"episodes": [{"season": 2, "episode": 2}]}
    )
    await service.call(
        "POST", "api/anime/sky-lantern/download", json={"episodes": [{"season": 1, "episode": 1}]}
    )
    await wait_queue(
        service, lambda s: len(s["completed_downloads"]) == 1 and len(s["failed_downloads"]) == 1
    )
    await service.call("POST", "api/queue/pause")
    await service.call(
        "POST", "api/anime/sky-lantern/download", json={"missing": True, "priority": "LOW"}
    )
    await service.call(
        "POST",
        "api/anime/kaiju-academy/download",
        json={"episodes": [{"season": 1, "episode": 3}], "priority": "HIGH"},
    )
    site.control.media_rate_bps = 20_000  # slow enough that one download stays active
    await service.call("POST", "api/queue/resume")
    await wait_queue(service, lambda s: len(s["active_downloads"]) == 1)


async def openapi_paths(service: Service) -> set[str]:
    spec = await service.call("GET", "api/openapi.json")
    return set(spec["paths"])


async def check_page(
    tab: Tab,
    name: str,
    path: str,
    *,
    wait: Callable[[Tab], Awaitable[None]] | None = None,
    themes: tuple[str, ...] = ("light", "dark"),
    panel: bool = True,
) -> None:
    """Visit in each theme: axe, screenshot, console."""
    if not panel:
        tab.expected_errors.add(tab.url(path))
    for theme in themes:
        await tab.set_theme_cookie(theme)
        await tab.page.goto(tab.url(path))
        if panel:
            await tab.ready()
        assert await tab.page.get_attribute("html", "data-bs-theme") == theme
        if wait is not None:
            await wait(tab)
        await tab.axe(f"{name} ({theme})")
        await tab.screenshot(f"{name}-{theme}")
    tab.assert_clean()


async def test_every_page_is_accessible_in_both_themes(
    browser: Browser, start_service: StartService, provider_site: RunningSite, media_set: MediaSet
) -> None:
    service = await start_service(provider_site, max_concurrent=1)
    async with browser_tab(browser, service.url) as tab:
        # Before a password exists: the setup page.
        await check_page(tab, "setup", "setup")
        await service.setup()
        await check_page(tab, "login", "login")
        await populate(service, provider_site)
        await login_context(tab.page.context, service)
        paths = await openapi_paths(service)

        async def live(tab: Tab) -> None:
            await tab.live()

        async def queue_ready(tab: Tab) -> None:
            await tab.live()
            await tab.page.wait_for_selector(".active-item [data-progress-for]")

        async def results(tab: Tab) -> None:
            await tab.page.wait_for_selector("#search-results article")

        async def history_loaded(tab: Tab) -> None:
            if "/api/history" in paths:
                await tab.page.wait_for_selector("#history[aria-busy=false]")
            else:
                await tab.page.wait_for_selector("#not-available", state="visible")

        async def scheduler_loaded(tab: Tab) -> None:
            if "/api/scheduler/config" in paths:
                await tab.page.wait_for_selector("#scheduler-state:not(:empty)")
            else:
                await tab.page.wait_for_selector("#not-available", state="visible")

        await check_page(tab, "library", "", wait=live)
        await check_page(tab, "library-unmatched", "?filter=unmatched")
        await check_page(tab, "series", "series?key=kaiju-academy&provider=aniworld", wait=live)
        await check_page(tab, "add", "add?q=Kaiju", wait=results)
        await check_page(tab, "match", "match?folder=Der%20letzte%20Sommer%20(2016)", wait=results)
        await check_page(tab, "queue", "queue", wait=queue_ready)
        await check_page(tab, "history", "history", wait=history_loaded)
        await check_page(tab, "scheduler", "scheduler", wait=scheduler_loaded)
        await check_page(tab, "settings", "settings")
        await check_page(tab, "system", "system")
        # Unknown URLs never reach a page handler: without the panel's context processor wired
        # into aiohttp_jinja2 they get the plain (English) error layout.
        await check_page(tab, "404", "no-such-page", panel=False)
        assert await tab.page.locator("h1").inner_text() == "Error 404"

        # The unmatched folder's row links to its match page; the queue shows every section.
        await tab.goto("?filter=unmatched")
        assert await tab.page.locator("a[href*='match?folder=']").count() == 1
        await tab.goto("queue")
        for section, minimum in (("active", 1), ("pending", 1), ("completed", 1), ("failed", 1)):
            count = await tab.page.locator(f"[data-section={section}] [data-item-id]").count()
            assert count >= minimum, section
        reason = await tab.page.locator("[data-section=failed] .failure-reason").inner_text()
        assert reason.strip(), "failed items show why"
        # HIGH priority first, then LOW, each with its position number.
        positions = await tab.page.locator("[data-pending-list] [data-position]").all_inner_texts()
        assert positions == [str(n) for n in range(1, len(positions) + 1)]

        # Mobile layout.
        await tab.set_theme_cookie("light")
        await tab.page.set_viewport_size({"width": 390, "height": 844})
        for name, path in (
            ("library", ""),
            ("queue", "queue"),
            ("series", "series?key=sky-lantern"),
        ):
            await tab.goto(path)
            await tab.axe(f"{name} (mobile)")
            await tab.screenshot(f"{name}-mobile")
            width = await tab.page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 390, f"{name} scrolls sideways on a phone ({width}px)"
        tab.assert_clean()


async def test_internal_error_page(browser: Browser, service: Service) -> None:
    async with browser_tab(browser, service.url, login=service) as tab:

        async def broken() -> Any:
            raise RuntimeError("simulated failure")

        service.app[keys.QUEUE].overview = broken  # type: ignore[method-assign]
        for theme in ("light", "dark"):
            await tab.set_theme_cookie(theme)
            response = await tab.page.goto(tab.url("queue"))
            assert response is not None and response.status == 500
            await tab.ready()
            assert await tab.page.locator("h1").inner_text() == "Error 500"
            body = await tab.page.content()
            assert "simulated failure" not in body and "Traceback" not in body
            await tab.axe(f"500 ({theme})")
            await tab.screenshot(f"500-{theme}")
        tab.expected_errors.add(tab.url("queue"))
        tab.assert_clean()


async def test_pages_redirect_to_login_and_back(browser: Browser, service: Service) -> None:
    async with browser_tab(browser, service.url) as tab:
        await tab.page.goto(tab.url("settings"))
        await tab.ready()
        assert tab.page.url.split("?")[0].endswith("/login") and "settings" in tab.page.url
        await tab.page.fill("#password", "wrong password")
        await tab.page.click("[type=submit]")
        await tab.page.wait_for_selector("#password.is-invalid")
        tab.console_errors.clear()  # the browser logs the 401 of the wrong password
        from tests.conftest import PASSWORD

        await tab.page.fill("#password", PASSWORD)
        await tab.page.click("[type=submit]")
        await tab.page.wait_for_url("**/settings")
        await tab.ready()
        tab.assert_clean()


async def test_a_locked_out_login_says_how_long_the_lock_lasts(
    browser: Browser, service: Service
) -> None:
    # The page said "Try again in 60 s" through a 15-minute lock-out.
    limiter = service.app[keys.LOGIN_LIMITER]
    now = [1000.0]
    limiter.clock = lambda: now[0]
    for attempt in range(10):  # five a minute, ten failures in a row lock the address out
        if attempt == 5:
            now[0] += 61
        await service.call("POST", "api/auth/login", status=401, json={"password": "wrong!!!"})
    async with browser_tab(browser, service.url, path="login") as tab:
        await tab.page.fill("#password", "wrong password")
        await tab.page.click("[type=submit]")
        alert = tab.page.locator("[data-form-error]")
        await alert.wait_for()
        assert await alert.inner_text() == "Too many failed attempts. Try again in 15 min."
        tab.console_errors.clear()  # the browser logs the 429


async def test_library_match_series_profile_queue_actions_and_tokens(
    browser: Browser, start_service: StartService, provider_site: RunningSite, media_set: MediaSet
) -> None:
    service = await start_service(provider_site)
    await service.setup()
    await add_series(service, "sky-lantern")
    await add_series(service, "kaiju-academy")
    (service.options.library_path / "Der letzte Sommer (2016)").mkdir()
    async with browser_tab(browser, service.url, login=service, path="") as tab:
        page = tab.page
        await tab.live()
        # Rescan from the library: the banner shows progress, a toast says when it is done.
        await page.click("[data-action=rescan]")
        await page.wait_for_selector(".toast:has-text('Rescan finished')")
        await page.wait_for_selector("tr[data-series-key='']")  # the new folder is listed

        # Filter and search swap the list in place (HTMX) and keep the URL in step.
        await page.click("label[for=filter-unmatched]")
        await page.wait_for_function("() => location.search.includes('filter=unmatched')")
        await page.wait_for_function(
            "() => document.querySelectorAll('#library-list tbody tr').length === 1"
        )
        await page.click("label[for=filter-all]")
        await page.fill("#library-q", "Kaiju")
        await page.wait_for_function(
            "() => document.querySelectorAll('#library-list tbody tr').length === 1"
            " && document.querySelector('#library-list tbody tr').dataset.seriesKey"
            " === 'kaiju-academy'"
        )
        await page.fill("#library-q", "")
        await page.wait_for_function(
            "() => document.querySelectorAll('#library-list tbody tr').length === 3"
        )

        # Match the unmatched folder.
        await page.click("a[href*='match?folder=']")
        await tab.ready()
        await page.click("[data-action=match][data-key=der-letzte-sommer]")
        await page.wait_for_url("**/series?key=der-letzte-sommer*")
        await tab.ready()
        assert await page.locator("tr[data-episode='0-1']").count() == 1

        # A series' own language profile.
        await tab.goto("series?key=kaiju-academy&provider=aniworld")
        await page.uncheck("#languages-global")
        english = page.locator("[data-language-list] [data-language='English Sub']")
        await english.locator("[data-move=up]").click()
        await english.locator("[data-move=up]").click()
        await page.click("#languages-form [type=submit]")
        await page.wait_for_selector(".toast:has-text('Language profile saved')")
        detail = await service.call("GET", "api/anime/kaiju-academy")
        assert detail["languages"] == ["English Sub", "German Dub", "German Sub"]

        # Queue one episode that cannot download: it turns failed, live.
        await tab.live()
        await page.check("#ep-2-2")
        assert await page.locator("#selected-count").inner_text() == "1"
        await page.select_option("#priority", "HIGH")
        await page.click("[data-action=queue-selected]")
        await page.wait_for_selector("tr[data-episode='2-2'][data-state=failed]", timeout=60_000)

        # The queue: the failure with its reason; clear it.
        await page.click("a[data-nav=queue]")
        await tab.ready()
        await page.wait_for_selector("[data-section=failed] [data-item-id]")
        await page.click("[data-queue-action=clear-failed]")
        await page.click("#confirm-ok")
        await page.wait_for_selector("[data-section=failed] [data-item-id]", state="detached")

        # API tokens: create (shown once) and revoke.
        await tab.goto("settings")
        await page.fill("#token-name", "home assistant")
        await page.click("#token-form [type=submit]")
        await page.wait_for_selector("#token-created:not(.d-none)")
        assert (await page.locator("#token-value").inner_text()).startswith("aw_")
        await page.click("[data-token-action=revoke]")
        await page.click("#confirm-ok")
        await page.wait_for_selector("#tokens [data-token]", state="detached")
        assert await service.call("GET", "api/auth/tokens") == []

        # The system page's log viewer swaps in another file.
        await tab.goto("system")
        async with page.expect_response(lambda r: "file=error" in r.url) as response_info:
            await page.select_option("#log-file", "error")
        assert (await response_info.value).status == 200
        await page.wait_for_selector("#log")
        tab.assert_clean()


async def test_scheduler_page_saves_with_inline_errors(browser: Browser, service: Service) -> None:
    assert "/api/scheduler/config" in await openapi_paths(service)
    async with browser_tab(browser, service.url, login=service, path="scheduler") as tab:
        page = tab.page
        await page.wait_for_selector("#next-runs th")
        await page.fill("#f-scheduler-rescan_cron", "61 * * * *")
        await page.wait_for_selector("[data-error-for='scheduler.rescan_cron']:not(:empty)")
        await page.fill("#f-scheduler-rescan_cron", "")
        await page.fill("#f-scheduler-rescan_interval_h", "12")
        await page.wait_for_selector(
            "[data-error-for='scheduler.rescan_cron']:empty", state="attached"
        )
        # A scan completing refreshes the runs, not what the user typed and has not saved.
        await tab.live()
        async with page.expect_response(
            lambda r: r.url.endswith("api/scheduler/config") and r.request.method == "GET"
        ):
            await service.call("POST", "api/anime/rescan", status=202)
        assert await page.input_value("#f-scheduler-rescan_interval_h") == "12"
        await page.click("#scheduler-form [type=submit]")
        await page.wait_for_selector(".toast:has-text('Settings saved')")
        config = await service.call("GET", "api/scheduler/config")
        assert config["rescan_interval_h"] == 12 and config["rescan_cron"] is None
        tab.assert_clean()


async def test_a_failed_episode_stays_failed_when_the_series_page_refreshes(
    browser: Browser, start_service: StartService, provider_site: RunningSite
) -> None:
    # The page renders no "failed" state: a refresh (episodes queued elsewhere, a reconnect)
    # turned the row the live event had marked failed back into "missing".
    service = await start_service(provider_site)
    await service.setup()
    await add_series(service, "kaiju-academy")
    async with browser_tab(
        browser, service.url, login=service, path="series?key=kaiju-academy&provider=aniworld"
    ) as tab:
        page = tab.page
        await tab.live()
        bus = service.app[keys.BUS]
        failed = {"provider": "aniworld", "series_key": "kaiju-academy", "season": 2, "episode": 2}
        error = {"code": "no_resolver", "message": "no hoster works"}
        bus.publish(EventType.DOWNLOAD_FAILED, {**failed, "error": error, "will_retry": False})
        await page.wait_for_selector("tr[data-episode='2-2'][data-state=failed]")
        row = "document.querySelector(\"tr[data-episode='2-2']\")"
        await page.evaluate(f"{row}.dataset.before = 'refresh'")
        bus.publish(EventType.QUEUE_STATUS, {"action": "added", "item_ids": [99]})
        await page.wait_for_function(f"!{row}.dataset.before")  # the rows were read again
        assert await page.get_attribute("tr[data-episode='2-2']", "data-state") == "failed"


async def test_the_series_page_follows_a_stop_and_keeps_every_count(
    browser: Browser, start_service: StartService, provider_site: RunningSite, media_set: MediaSet
) -> None:
    # Stop puts running downloads back without an event per item: their rows said
    # "Downloading" for good. Counts were kept by deltas: the season headers never moved, and
    # a refresh (after a rescan) left the badges at the top stale.
    service = await start_service(provider_site)
    await service.setup()
    await add_series(service, "sky-lantern")
    control = provider_site.control
    control.media_rate_bps = 20_000  # the sample takes far longer than the test
    async with browser_tab(
        browser, service.url, login=service, path="series?key=sky-lantern&provider=aniworld"
    ) as tab:
        page = tab.page
        await tab.live()
        await page.click("[data-action=queue-missing]")
        await page.wait_for_selector("tr[data-state=downloading]")
        await service.call("POST", "api/queue/stop")
        await page.wait_for_selector("tr[data-state=downloading]", state="detached")
        assert await page.locator("tr[data-state=queued]").count() == 4

        control.media_rate_bps = None
        await service.call("POST", "api/queue/start")
        await page.wait_for_function(
            "document.querySelectorAll('tr[data-state=local]').length === 4", timeout=60_000
        )
        assert await page.inner_text("[data-season-counts]") == "4 local · 0 missing"
        assert await page.inner_text("#series-missing") == "0 missing"

        # A file deleted on disk, then a rescan: the row, its season and the badges follow.
        (video,) = [
            p
            for p in service.options.library_path.rglob("*S01E02*")
            if p.suffix in (".mp4", ".mkv")
        ]
        video.unlink()
        await service.call("POST", "api/anime/rescan", status=202)
        await page.wait_for_selector("tr[data-episode='1-2'][data-state=missing]")
        await page.wait_for_function(
            "document.querySelector('#series-missing').textContent === '1 missing'"
        )
        assert await page.inner_text("#series-local") == "3 local"
        assert await page.inner_text("[data-season-counts]") == "3 local · 1 missing"
        tab.assert_clean()
