"""Browser tests of the web panel: real headless Chromium (Playwright) against the real service.

Chromium is the system's (/usr/bin/chromium; `make test` installs it as root); Playwright's own
browser download is never used. Without Chromium or Playwright the tests skip with a reason, or
fail when CI=true. Screenshots go to tests/artifacts/panel/ (ignored by git).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from aniworld_addon.app import create_app
from aniworld_addon.options import Options
from aniworld_addon.settings import deep_merge
from aniworld_addon.settings_schema import defaults
from tests.conftest import IN_CI, PASSWORD, require_tool
from tests.site.plugin import RunningSite

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "panel"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Console messages that are not the panel's fault.
IGNORED_CONSOLE = (re.compile(r"Download the React DevTools"),)


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless Chromium per test (closed, with its driver, before the test ends)."""
    chromium = require_tool("chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright; it is in the test extra)")
    before = set(threading.enumerate())
    playwright = await async_playwright().start()
    try:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()
    finally:
        await playwright.stop()
        await _child_watchers_done(before)


async def _child_watchers_done(before: set[threading.Thread], timeout: float = 10.0) -> None:
    """asyncio's per-child waitpid threads (the Playwright driver's) end just after it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and "waitpid" in t.name
        ]
        if not left:
            return
        await asyncio.sleep(0.05)


@dataclass
class Tab:
    """A page plus everything the tests assert about it: console errors and requests."""

    page: Page
    origin: str
    base: str  # the panel's base URL, ending in "/"
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    # Documents that are meant to answer an error status (the 404 and 500 pages): the browser
    # logs their status as a console error, which is not a fault of the page.
    expected_errors: set[str] = field(default_factory=set)

    def url(self, path: str = "") -> str:
        """A panel URL from an app-relative path ("" is the library)."""
        return self.base + path.lstrip("/")

    async def goto(self, path: str = "") -> None:
        """Open a page and wait until its script has started."""
        await self.page.goto(self.url(path))
        await self.ready()

    async def ready(self) -> None:
        """The panel's module has run (and with it the page module)."""
        await self.page.wait_for_selector("html[data-panel-ready=true]", state="attached")

    async def live(self) -> None:
        """The WebSocket is connected and has joined its rooms."""
        await self.page.wait_for_selector("#live-status[data-state=online]")

    def assert_clean(self) -> None:
        """No console errors and no uncaught exceptions so far."""
        errors = [
            e
            for e in self.console_errors
            if not any(p.search(e) for p in IGNORED_CONSOLE)
            and not any(
                e.startswith("Failed to load resource") and f"'url': '{url}'" in e
                for url in self.expected_errors
            )
        ]
        assert not errors, f"console errors: {errors}"

    async def axe(self, name: str) -> list[dict[str, Any]]:
        """Run axe-core on the page; fail on serious or critical violations."""
        if not await self.page.evaluate("() => Boolean(window.axe)"):
            await self.page.add_script_tag(path=str(AXE))
        result = await self.page.evaluate(
            """async () => {
                const r = await window.axe.run(document, {resultTypes: ['violations']});
                return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: '
                        + (n.failureSummary || '').split('\\n').slice(0, 3).join(' '))}));
            }"""
        )
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: axe violations: {json.dumps(bad, indent=1)}"
        return list(result)

    async def screenshot(self, name: str) -> Path:
        """A full-page PNG under tests/artifacts/panel/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        # Toasts come and go; hide them so screenshots show the page itself.
        await self.page.add_style_tag(content="#toasts{display:none!important}")
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def set_theme_cookie(self, theme: str) -> None:
        """Choose the theme by cookie, for the next page load (no menu involved)."""
        await self.page.context.add_cookies(
            [{"name": "aniworld_theme", "value": theme, "url": self.origin}]
        )

    async def set_theme(self, theme: str) -> None:
        """Switch the theme through the navigation menu (as a user would)."""
        await self.page.click("#theme-menu")
        await self.page.click(f"[data-theme-set={theme}]")
        expected = "dark" if theme == "dark" else "light"
        await self.page.wait_for_selector(f"html[data-bs-theme={expected}]", state="attached")


async def open_tab(
    browser: Browser,
    base: str,
    *,
    locale: str = "en-GB",
    viewport: dict[str, int] | None = None,
    color_scheme: str = "light",
) -> tuple[BrowserContext, Tab]:
    """A new browser context and page that records console errors and every request."""
    context = await browser.new_context(
        locale=locale,
        viewport=viewport or {"width": 1280, "height": 900},  # type: ignore[arg-type]
        color_scheme=color_scheme,  # type: ignore[arg-type]
        accept_downloads=True,
    )
    page = await context.new_page()
    match = re.match(r"^(https?://[^/]+)", base)
    assert match
    tab = Tab(page, match.group(1), base)
    page.on(
        "console",
        lambda msg: (
            tab.console_errors.append(f"{msg.text} @ {msg.location}")
            if msg.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda exc: tab.console_errors.append(f"uncaught: {exc}"))
    page.on("request", lambda request: tab.requests.append(request.url))
    page.on("websocket", lambda ws: tab.websockets.append(ws.url))
    page.set_default_timeout(20_000)
    return context, tab


@contextlib.asynccontextmanager
async def browser_tab(
    browser: Browser,
    base: str,
    *,
    login: Service | None = None,
    path: str | None = None,
    **tab_options: Any,
) -> AsyncIterator[Tab]:
    """open_tab, signed in to `login` and at `path` when given; the context closes afterwards."""
    context, tab = await open_tab(browser, base, **tab_options)
    try:
        if login is not None:
            await login_context(context, login)
        if path is not None:
            await tab.goto(path)
        yield tab
    finally:
        await context.close()


@dataclass
class Service:
    """The real service on a TCP port, its app and how to call its API."""

    url: str  # ending in "/"
    app: web.Application
    options: Options
    site: RunningSite | None
    token: str | None = None

    async def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """An API call with the bearer token from setup."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path.lstrip("/"), headers=headers, **kwargs) as r,
        ):
            assert r.status == status, await r.text()
            return await r.json()

    async def setup(self) -> str:
        """First-run setup through the API; returns (and keeps) the access token."""
        body = await self.call("POST", "api/auth/setup", json={"master_password": PASSWORD})
        self.token = str(body["access_token"])
        return self.token


def write_config(options: Options, site: RunningSite | None, **downloads: Any) -> None:
    """config.json before the first start: the providers point at the test site."""
    patch: dict[str, Any] = {
        "downloads": {"min_free_space_mb": 0, "max_retries": 0, "retry_backoff_s": [1]},
        "mqtt": {"enabled": False},
    }
    patch["downloads"].update(downloads)
    if site is not None:
        patch["providers"] = {
            "aniworld": {"url": site.base_url, "enabled": True},
            "sto": {"enabled": False},
            "ytdlp": {"enabled": False},
        }
    config = deep_merge(defaults(), patch)
    options.data_path.mkdir(parents=True, exist_ok=True)
    (options.data_path / "config.json").write_text(json.dumps(config), encoding="utf-8")


StartService = Callable[..., Any]


@pytest.fixture
def start_service(aiohttp_server: AiohttpServer, options: Options) -> StartService:
    """Start the real app on 127.0.0.1 with its providers pointed at `site`."""

    async def start(site: RunningSite | None, **downloads: Any) -> Service:
        write_config(options, site, **downloads)
        app = create_app(options)
        server = await aiohttp_server(app, host="127.0.0.1")
        return Service(str(server.make_url("/")), app, options, site)

    return start


@pytest.fixture
async def service(start_service: StartService) -> Service:
    """The service without a provider site, its first-run setup done."""
    started: Service = await start_service(None)
    await started.setup()
    return started


async def add_series(service: Service, key: str = "sky-lantern") -> dict[str, Any]:
    """Add a series from the test site through the API."""
    result: dict[str, Any] = await service.call(
        "POST", "api/anime", status=201, json={"provider": "aniworld", "key": key}
    )
    return result


async def login_context(context: BrowserContext, service: Service) -> None:
    """Give a browser context a session cookie through the real login endpoint."""
    response = await context.request.post(
        service.url + "api/auth/login", data={"password": PASSWORD}
    )
    assert response.ok, await response.text()
