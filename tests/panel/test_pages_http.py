"""The page routes over plain HTTP (no browser): login guard, fragments, redirects, escaping."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from aniworld_addon import keys
from aniworld_addon.options import Options
from aniworld_addon.web.pages.common import safe_next
from tests.conftest import PASSWORD

PAGES = ("/", "/add", "/queue", "/history", "/scheduler", "/settings", "/system")


async def test_pages_send_a_new_install_to_setup_and_then_to_login(
    client: TestClient[Any, Any],
) -> None:
    for path in PAGES:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 302, path
        assert response.headers["Location"].startswith("/setup"), path
    setup = await client.get("/setup")
    assert setup.status == 200
    assert 'id="setup-form"' in await setup.text()
    response = await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    assert response.status == 200
    client.session.cookie_jar.clear()
    response = await client.get("/queue", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] in ("/login?next=/queue", "/login?next=%2Fqueue")
    again = await client.get("/setup", allow_redirects=False)
    assert again.headers["Location"] == "/login"


async def test_htmx_requests_without_a_session_navigate_to_login(
    client: TestClient[Any, Any],
) -> None:
    await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    client.session.cookie_jar.clear()
    response = await client.get("/queue", headers={"HX-Request": "true"}, allow_redirects=False)
    assert response.status == 200
    assert response.headers["HX-Redirect"].startswith("/login?next=")
    assert await response.text() == ""


async def test_pages_and_fragments_for_a_signed_in_user(client: TestClient[Any, Any]) -> None:
    await client.post("/api/auth/setup", json={"master_password": PASSWORD})  # sets the cookie
    for path in PAGES:
        response = await client.get(path)
        assert response.status == 200, path
        assert "immutable" not in response.headers.get("Cache-Control", ""), path
        html = await response.text()
        assert 'id="panel-config"' in html and "<main" in html, path
        assert "cdn" not in html.lower(), path
        assert response.headers["Cache-Control"] == "no-store"
    fragment = await client.get("/?q=x", headers={"HX-Request": "true"})
    text = await fragment.text()
    assert text.lstrip().startswith('<div id="library-list"') and "<html" not in text
    queue = await client.get("/queue", headers={"HX-Request": "true"})
    assert (await queue.text()).lstrip().startswith('<div id="queue-root"')
    log = await client.get("/system?file=error&lines=50", headers={"HX-Request": "true"})
    assert (await log.text()).lstrip().startswith('<div id="log">')
    unknown = await client.get("/series?key=nope")
    assert unknown.status == 404
    assert "Error 404" in await unknown.text()


async def test_user_input_is_escaped(client: TestClient[Any, Any]) -> None:
    await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    response = await client.get("/", params={"q": '"><script>alert(1)</script>'})
    html = await response.text()
    assert "<script>alert(1)</script>" not in html
    assert "&#34;&gt;&lt;script&gt;" in html or "&quot;&gt;&lt;script&gt;" in html


async def test_static_assets_are_vendored(client: TestClient[Any, Any]) -> None:
    for path in (
        "/static/vendor/bootstrap/bootstrap.min.css",
        "/static/vendor/bootstrap/bootstrap.bundle.min.js",
        "/static/vendor/htmx/htmx.min.js",
        "/static/js/panel.js",
        "/static/js/live.js",
        "/static/css/panel.css",
    ):
        response = await client.get(path)
        assert response.status == 200, path
        assert "immutable" not in response.headers.get("Cache-Control", ""), path


def test_only_app_relative_paths_are_followed_after_login() -> None:
    assert safe_next("/queue") == "/queue"
    assert safe_next("/series?key=a-b&provider=aniworld") == "/series?key=a-b&provider=aniworld"
    for bad in ("//evil.example", "https://evil.example", "/\\evil", "javascript:x", "", None):
        assert safe_next(bad) == "/", bad


async def test_the_library_page_reads_odd_addresses_as_what_they_can_mean(
    client: TestClient[Any, Any], options: Options
) -> None:
    for folder in ("Alpha Show", "Beta Show"):
        (options.library_path / folder).mkdir(parents=True)
    token = (
        await (await client.post("/api/auth/setup", json={"master_password": PASSWORD})).json()
    )["access_token"]
    started = await client.post("/api/anime/rescan", headers={"Authorization": f"Bearer {token}"})
    await client.app[keys.OPERATIONS].wait((await started.json())["operation_id"])

    shown = await (await client.get("/")).text()
    assert "Alpha Show" in shown and "Beta Show" in shown
    # A NUL in the search text matched every series (and stood in the search box).
    nul = await (await client.get("/?q=%00zzz")).text()
    assert "Alpha Show" not in nul and "\x00" not in nul
    # A page past the last one (a bookmark, a list that shrank) showed "no series here yet".
    past = await (await client.get("/?page=7")).text()
    assert "Alpha Show" in past and "Beta Show" in past


async def test_static_files_linked_with_their_hash_are_cached_for_good(
    client: TestClient[Any, Any],
) -> None:
    await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    html = await (await client.get("/")).text()
    linked = re.findall(r'(/static/[^"?]+\?v=[^"]+)"', html)
    assert len(linked) >= 4
    for url in linked:
        response = await client.get(url.replace("&amp;", "&"))
        assert response.status == 200, url
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable", url
