"""The panel end to end in Chromium: setup, login, add a series, queue it, watch it download."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aniworld_addon import keys
from aniworld_addon.downloads.queue_store import Priority
from tests.conftest import PASSWORD
from tests.site import MediaSet
from tests.site.plugin import RunningSite

from .conftest import Service, StartService, Tab, add_series, browser_tab

if TYPE_CHECKING:
    from playwright.async_api import Browser

# Records the highest aria-valuenow each episode's progress bar showed, and marks the document
# so a reload (which would lose the mark) is detected.
RECORD_PROGRESS = """() => {
  window.__noReload = true;
  window.__maxProgress = {};
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const row = m.target.closest && m.target.closest('tr[data-episode]');
      if (!row || m.attributeName !== 'aria-valuenow') continue;
      const v = Number(m.target.getAttribute('aria-valuenow'));
      const key = row.dataset.episode;
      window.__maxProgress[key] = Math.max(window.__maxProgress[key] || 0, v);
    }
  }).observe(document.body, {attributes: true, subtree: true, attributeFilter: ['aria-valuenow']});
}"""


async def search_and_add(tab: Tab, query: str, key: str) -> None:
    """Use the "Add series" page: type, wait for the result, press Add."""
    page = tab.page
    await page.click("a[data-nav=add]")
    await tab.ready()
    await page.fill("#search-q", query)
    button = page.locator(f"[data-action=add][data-key={key}]")
    await button.wait_for()
    await button.click()
    await page.wait_for_url(f"**/series?key={key}*")
    await tab.ready()


async def queue_missing_and_watch(tab: Tab, episodes: list[str]) -> dict[str, float]:
    """Press "Queue all missing" and wait until every episode is local, without a reload."""
    page = tab.page
    await tab.live()
    await page.evaluate(RECORD_PROGRESS)
    await page.click("[data-action=queue-missing]")
    for episode in episodes:
        await page.wait_for_selector(
            f"tr[data-episode='{episode}'][data-state=local]", state="attached", timeout=90_000
        )
    assert await page.evaluate("() => window.__noReload === true"), "the page was reloaded"
    seen: dict[str, float] = await page.evaluate("() => window.__maxProgress")
    return seen


async def test_setup_login_add_queue_and_watch_downloads(
    browser: Browser, start_service: StartService, provider_site: RunningSite, media_set: MediaSet
) -> None:
    provider_site.control.media_rate_bps = 200_000  # ~2 s per episode: progress is visible
    service = await start_service(provider_site, max_concurrent=2)
    async with browser_tab(browser, service.url) as tab:
        page = tab.page
        # First run: the library sends us to setup.
        await tab.goto("")
        assert page.url.endswith("/setup")
        await page.fill("#password", "short")
        await page.fill("#confirm", "short")
        await page.click("[type=submit]")
        await page.wait_for_selector("#password.is-invalid")
        await page.fill("#password", PASSWORD)
        await page.fill("#confirm", PASSWORD)
        await page.click("[type=submit]")
        await page.wait_for_url(service.url)
        await tab.ready()
        assert await page.locator("h1").inner_text() == "Library"

        # Log out and back in.
        await page.click("[data-action=logout]")
        await page.wait_for_url("**/login")
        await tab.ready()
        await page.fill("#password", PASSWORD)
        await page.click("[type=submit]")
        await page.wait_for_url(service.url)
        await tab.ready()

        # Search the provider site and add a series.
        await search_and_add(tab, "Sky", "sky-lantern")
        assert "Sky Lantern" in await page.locator("h1").inner_text()
        assert await page.locator("tr[data-state=missing]").count() == 4

        # Queue every missing episode; progress bars move and each episode turns local.
        seen = await queue_missing_and_watch(tab, ["1-1", "1-2", "1-3", "1-4"])
        assert seen and max(seen.values()) == 100, seen
        assert any(0 < v < 100 for v in seen.values()) or len(seen) == 4, seen
        assert (await page.locator("#series-missing").get_attribute("data-missing")) == "0"
        files = sorted(p.name for p in service.options.library_path.rglob("*.mp4"))
        assert len(files) == 4, files

        # The library shows the new counts; the queue lists them as completed.
        await page.click("a[data-nav=library]")
        await tab.ready()
        row = page.locator("tr[data-series-key=sky-lantern]")
        assert await row.locator("[data-count=local]").inner_text() == "4"
        await page.click("a[data-nav=queue]")
        await tab.ready()
        assert await page.locator("[data-section=completed] tbody tr").count() == 4
        await tab.screenshot("flow-queue-completed")
        assert all(u.startswith(service.url) for u in tab.requests), tab.requests
        tab.assert_clean()


async def pending_order(tab: Tab) -> list[str]:
    return await tab.page.eval_on_selector_all(
        "[data-pending-list] tr[data-item-id]", "rows => rows.map(r => r.dataset.episode)"
    )


async def test_queue_reorder_by_drag_and_keyboard_survives_reload(
    browser: Browser, start_service: StartService, provider_site: RunningSite
) -> None:
    service = await start_service(provider_site)
    await service.setup()
    await service.call("POST", "api/queue/pause")
    await add_series(service)
    await service.call("POST", "api/anime/sky-lantern/download", json={"missing": True})
    async with browser_tab(browser, service.url, login=service, path="queue") as tab:
        page = tab.page
        assert await pending_order(tab) == ["1-1", "1-2", "1-3", "1-4"]
        assert await page.locator("[data-pending-list] [data-position]").all_inner_texts() == [
            "1",
            "2",
            "3",
            "4",
        ]

        # Drag the last item's handle onto the top half of the first row.
        first = page.locator("[data-pending-list] tr[data-item-id]").first
        box = await first.bounding_box()
        assert box is not None
        await page.drag_and_drop(
            "tr[data-episode='1-4'] [data-drag-handle]",
            "tr[data-episode='1-1']",
            target_position={"x": box["width"] / 2, "y": 3},
        )
        await page.wait_for_selector(".toast[data-kind=success]")
        assert await pending_order(tab) == ["1-4", "1-1", "1-2", "1-3"]
        await page.reload()
        await tab.ready()
        assert await pending_order(tab) == ["1-4", "1-1", "1-2", "1-3"]

        # Keyboard: grab 1-1 with Space, move it down one, drop it with Space.
        await page.focus("tr[data-episode='1-1'] [data-drag-handle]")
        await page.keyboard.press("Space")
        assert (
            await page.get_attribute("tr[data-episode='1-1'] [data-drag-handle]", "aria-pressed")
            == "true"
        )
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Space")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('[data-pending-list] tr')]"
            ".map(r => r.dataset.episode).join() === '1-4,1-2,1-1,1-3'"
        )
        await page.wait_for_selector("#announcer:has-text('dropped')", state="attached")
        await page.reload()
        await tab.ready()
        assert await pending_order(tab) == ["1-4", "1-2", "1-1", "1-3"]
        status = await service.call("GET", "api/queue/status")
        assert [i["episode"] for i in status["pending_queue"]] == [4, 2, 1, 3]

        # Bulk select and remove two, then resume with the keyboard shortcut.
        await page.check("tr[data-episode='1-2'] [data-select]")
        await page.check("tr[data-episode='1-3'] [data-select]")
        await page.click("[data-bulk=remove][data-section-target=pending]")
        await page.click("#confirm-ok")
        await page.wait_for_function(
            "() => document.querySelectorAll('[data-pending-list] tr').length === 2"
        )
        assert await pending_order(tab) == ["1-4", "1-1"]
        await page.locator("body").press("p")
        await page.wait_for_selector("#queue-state:has-text('Running')")
        tab.assert_clean()


async def test_settings_show_validation_errors_inline_and_save(
    browser: Browser, service: Service
) -> None:
    async with browser_tab(browser, service.url, login=service, path="settings") as tab:
        page = tab.page
        field = "#f-downloads-max_concurrent"
        await page.fill(field, "50")
        error = page.locator("[data-error-for='downloads.max_concurrent']")
        await error.wait_for(state="visible")
        assert "10" in await error.inner_text()
        assert "is-invalid" in (await page.get_attribute(field, "class") or "")
        await page.fill("#f-scheduler-rescan_cron", "every day")
        cron_error = page.locator("[data-error-for='scheduler.rescan_cron']")
        await cron_error.wait_for(state="visible")
        await page.fill("#f-downloads-retry_backoff_s", "60, soon")
        backoff_error = page.locator("[data-error-for='downloads.retry_backoff_s']")
        await backoff_error.wait_for(state="visible")
        assert "whole numbers" in await backoff_error.inner_text()

        # Saving an invalid form saves nothing.
        await page.click("#settings-save")
        await page.wait_for_selector("#settings-status[data-state=invalid]")
        assert (await service.call("GET", "api/config"))["downloads"]["max_concurrent"] == 2

        # Fixed: the errors go away and the save lands.
        await page.fill(field, "3")
        await page.fill("#f-scheduler-rescan_cron", "0 3 * * *")
        await page.fill("#f-downloads-retry_backoff_s", "30, 120")
        await error.wait_for(state="hidden")
        await page.click("#settings-save")
        await page.wait_for_selector("#settings-status[data-state=saved]")
        config = await service.call("GET", "api/config")
        assert config["downloads"]["max_concurrent"] == 3
        assert config["downloads"]["retry_backoff_s"] == [30, 120]
        assert config["scheduler"]["rescan_cron"] == "0 3 * * *"

        # Backups: the save made one; create, restore and delete from the list.
        await page.wait_for_selector("#backups [data-backup]")
        await page.click("[data-action=backup-create]")
        await page.wait_for_function(
            "() => document.querySelectorAll('#backups [data-backup]').length >= 2"
        )
        count = await page.locator("#backups [data-backup]").count()
        await page.locator("#backups [data-backup-action=delete]").first.click()
        await page.click("#confirm-ok")
        await page.wait_for_function(
            f"() => document.querySelectorAll('#backups [data-backup]').length === {count - 1}"
        )
        await page.locator("#backups [data-backup-action=restore]").last.click()
        async with page.expect_navigation():
            await page.click("#confirm-ok")  # restores, then reloads the page
        await tab.ready()
        assert await page.input_value("#f-downloads-max_concurrent") == "2"
        config = await service.call("GET", "api/config")
        assert config["downloads"]["max_concurrent"] == 2  # the oldest backup: the defaults

        # Export downloads the settings as JSON.
        async with page.expect_download() as download_info:
            await page.click("[data-action=export]")
        download = await download_info.value
        assert download.suggested_filename == "aniworld-config.json"
        tab.assert_clean()


async def test_theme_and_language_switch_and_persist(browser: Browser, service: Service) -> None:
    async with browser_tab(browser, service.url, login=service, path="") as tab:
        page = tab.page
        assert await page.get_attribute("html", "data-bs-theme") == "light"
        await tab.set_theme("dark")
        await page.reload()
        await tab.ready()
        assert await page.get_attribute("html", "data-bs-theme") == "dark"
        assert await page.get_attribute("html", "data-theme-pref") == "dark"

        await page.click("#lang-menu")
        await page.click("[data-lang-set=de]")
        await page.wait_for_selector("html[lang=de]", state="attached")
        await tab.ready()
        assert await page.locator("a[data-nav=library]").inner_text() == "Bibliothek"
        assert await page.locator("h1").inner_text() == "Bibliothek"
        await page.click("#lang-menu")
        await page.click("[data-lang-set=en]")
        await page.wait_for_selector("html[lang=en]", state="attached")

        # Automatic theme follows the system's preference.
        await tab.set_theme("auto")
        await page.emulate_media(color_scheme="dark")
        await page.wait_for_selector("html[data-bs-theme=dark]", state="attached")
        await page.emulate_media(color_scheme="light")
        await page.wait_for_selector("html[data-bs-theme=light]", state="attached")
        tab.assert_clean()

    # A browser that prefers German gets German without choosing.
    async with browser_tab(
        browser, service.url, login=service, path="queue", locale="de-DE"
    ) as tab:
        assert await tab.page.get_attribute("html", "lang") == "de"
        assert await tab.page.locator("h1").inner_text() == "Warteschlange"


async def test_live_badge_shows_offline_and_reconnects(browser: Browser, service: Service) -> None:
    async with browser_tab(browser, service.url, login=service, path="queue") as tab:
        page = tab.page
        await tab.live()
        # Drop the page's connection from the server side, as a restart would.
        hub = service.app[keys.WS_HUB]
        for client in list(hub._clients.values()):
            await client.ws.close()
        await page.wait_for_selector("#live-status[data-state=offline]")
        assert "Offline" in await page.locator("#live-status").inner_text()
        await page.wait_for_selector("#live-status[data-state=online]", timeout=15_000)
        tab.assert_clean()


async def test_keyboard_shortcuts_and_help_overlay(browser: Browser, service: Service) -> None:
    async with browser_tab(browser, service.url, login=service, path="") as tab:
        page = tab.page
        await page.locator("body").press("?")
        await page.wait_for_selector("#shortcuts-dialog.show")
        await page.wait_for_function(
            "() => document.activeElement.closest('#shortcuts-dialog') !== null"
        )
        await page.keyboard.press("Escape")
        await page.wait_for_selector("#shortcuts-dialog", state="hidden")
        await page.locator("body").press("/")
        assert await page.evaluate("() => document.activeElement.id") == "library-q"
        await page.keyboard.press("Escape")
        await page.locator("body").press("g")
        await page.locator("body").press("q")
        await page.wait_for_url("**/queue")
        await tab.ready()
        await page.locator("body").press("g")
        await page.locator("body").press("s")
        await page.wait_for_url("**/settings")
        tab.assert_clean()


async def test_the_panel_catches_up_on_connect_and_goes_to_login_when_the_session_ends(
    browser: Browser, service: Service
) -> None:
    queue = service.app[keys.QUEUE]
    await queue.set_state(running=False)
    async with browser_tab(browser, service.url, login=service, path="settings") as tab:
        page = tab.page
        await tab.live()

        # A double click creates one token, the one shown.
        await page.fill("#token-name", "script")
        await page.dblclick("#token-form [type=submit]")
        await page.wait_for_selector("#token-created:not(.d-none)")
        tokens = await service.call("GET", "api/auth/tokens")
        assert [t["name"] for t in tokens] == ["script"]

        # Items queued without an event reaching this page (as before its socket opened)
        # show on the badge once the socket connects again.
        await queue.store.add("aniworld", "kaiju-academy", [(1, 1), (1, 2)], Priority.NORMAL, 0)
        hub = service.app[keys.WS_HUB]
        for client in list(hub._clients.values()):
            await client.ws.close()
        await page.wait_for_selector("#queue-count:not(.d-none)", timeout=15_000)
        assert await page.locator("#queue-count").inner_text() == "2"

        # Logged out elsewhere: the socket closes with 1008 and the page goes to the login.
        await page.wait_for_selector("#live-status[data-state=online]", timeout=15_000)
        for client in list(hub._clients.values()):
            assert client.token_id is not None
            await service.app[keys.AUTH].revoke(client.token_id)  # what a logout does
            hub.drop_credential(client.token_id)
        await page.wait_for_url("**/login?next=%2Fsettings", timeout=10_000)


async def test_back_keeps_the_library_filter_in_step_with_the_address(
    browser: Browser, service: Service
) -> None:
    async with browser_tab(browser, service.url, login=service, path="") as tab:
        page = tab.page
        await page.click("label[for=filter-missing]")
        await page.wait_for_url("**filter=missing**")
        await page.fill("#library-q", "Kaiju")
        await page.wait_for_url("**q=Kaiju**")
        await page.go_back()
        await page.wait_for_function("!location.search.includes('Kaiju')")
        assert "filter=missing" in page.url
        # The form shows what the address says: the next keystroke must not send filter=all.
        await page.wait_for_function("document.querySelector('#filter-missing').checked")
        assert await page.input_value("#library-q") == ""
        tab.assert_clean()
