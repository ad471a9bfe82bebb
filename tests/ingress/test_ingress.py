"""Home Assistant ingress through a proxy that behaves like the Supervisor's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from aniworld_addon.app import create_app
from aniworld_addon.options import Options

from ..conftest import PASSWORD
from ..test_process import free_port

SESSION = web.AppKey("session", aiohttp.ClientSession)
SUPERVISOR = "127.0.0.2"  # stands in for 172.30.32.2; any loopback address works on Linux
TOKEN = "Zx8_abcDEF123"
PREFIX = f"/api/hassio_ingress/{TOKEN}"


def supervisor_proxy(upstream: str) -> web.Application:
    """Strips the ingress prefix, adds X-Ingress-Path and the user headers, connects from the
    Supervisor's address: what Home Assistant does in front of an add-on."""

    async def on_startup(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(SUPERVISOR, 0)), auto_decompress=False
        )

    async def on_cleanup(app: web.Application) -> None:
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        headers.update(
            {
                "X-Ingress-Path": PREFIX,
                "X-Remote-User-Id": "u1",
                "X-Remote-User-Name": "ada",
                "X-Remote-User-Display-Name": "Ada",
            }
        )
        url = f"{upstream}/{tail}"
        if request.query_string:
            url += "?" + request.query_string
        session = request.app[SESSION]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _forward_ws(request, session, url, headers)
        async with session.request(
            request.method, url, headers=headers, data=await request.read(), allow_redirects=False
        ) as upstream_r:
            body = await upstream_r.read()
            keep = {
                k: v
                for k, v in upstream_r.headers.items()
                if k.lower() in ("content-type", "location", "set-cookie", "cache-control")
            }
            return web.Response(status=upstream_r.status, body=body, headers=keep)

    app = web.Application()
    app.router.add_route("*", PREFIX + "/{tail:.*}", forward)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def _forward_ws(
    request: web.Request, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> web.WebSocketResponse:
    for hop in (
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
    ):
        headers.pop(hop, None)
    client_ws = web.WebSocketResponse()
    await client_ws.prepare(request)
    async with session.ws_connect(url.replace("http", "ws", 1), headers=headers) as server_ws:

        async def pump(source: Any, target: Any) -> None:
            async for msg in source:
                if msg.type == WSMsgType.TEXT:
                    await target.send_str(msg.data)

        tasks = [
            asyncio.create_task(pump(client_ws, server_ws)),
            asyncio.create_task(pump(server_ws, client_ws)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await client_ws.close()
    return client_ws


@dataclasses.dataclass
class Deployment:
    ingress: str
    direct: str
    proxy: str


@pytest.fixture
async def deployment(options: Options) -> AsyncIterator[Deployment]:
    """The add-on's two listeners and the Supervisor's proxy in front of the ingress one."""
    addon = dataclasses.replace(
        options,
        addon=True,
        host="127.0.0.1",
        port=free_port(),
        direct_port=free_port(),
        ingress_address=SUPERVISOR,
    )
    runner = web.AppRunner(create_app(addon))
    await runner.setup()
    for port in (addon.port, addon.direct_port):
        await web.TCPSite(runner, "127.0.0.1", port).start()
    proxy_runner = web.AppRunner(supervisor_proxy(f"http://127.0.0.1:{addon.port}"))
    await proxy_runner.setup()
    proxy_port = free_port()
    await web.TCPSite(proxy_runner, "127.0.0.1", proxy_port).start()
    try:
        yield Deployment(
            f"http://127.0.0.1:{addon.port}",
            f"http://127.0.0.1:{addon.direct_port}",
            f"http://127.0.0.1:{proxy_port}{PREFIX}",
        )
    finally:
        await proxy_runner.cleanup()
        await runner.cleanup()


async def test_pages_and_api_work_under_the_prefix_without_login(deployment: Deployment) -> None:
    async with aiohttp.ClientSession() as browser:
        async with browser.get(deployment.proxy + "/") as page:
            assert page.status == 200
            html = await page.text()
        # Every link the page emits stays under the ingress prefix.
        assert f'href="{PREFIX}/api/openapi.json"' in html
        assert f'href="{PREFIX}/health"' in html
        async with browser.get(deployment.proxy + "/api/config") as config:
            assert config.status == 200  # the Supervisor authenticated the user
        async with browser.get(deployment.proxy + "/api/auth/status") as status:
            assert (await status.json())["authenticated"] is True
        async with browser.get(deployment.proxy + "/nope") as missing:
            assert missing.status == 404
            assert f'href="{PREFIX}/"' in await missing.text()


async def test_websocket_connects_through_the_prefix(deployment: Deployment) -> None:
    async with (
        aiohttp.ClientSession() as browser,
        browser.ws_connect(deployment.proxy.replace("http", "ws", 1) + "/ws/connect") as ws,
    ):
        assert (await ws.receive_json(timeout=10))["type"] == "connected"
        await ws.send_json({"action": "join", "room": "downloads"})
        assert (await ws.receive_json(timeout=10))["type"] == "joined"


async def test_other_addresses_are_refused_on_the_ingress_listener(
    deployment: Deployment,
) -> None:
    async with aiohttp.ClientSession() as stranger:
        for path in ("/", "/health", "/api/config"):
            async with stranger.get(
                deployment.ingress + path,
                headers={"X-Remote-User-Name": "mallory", "X-Ingress-Path": PREFIX},
            ) as response:
                assert response.status == 403, path


async def test_the_direct_port_needs_normal_auth(deployment: Deployment) -> None:
    async with aiohttp.ClientSession() as user:
        headers = {"X-Remote-User-Name": "mallory", "X-Ingress-Path": PREFIX}
        async with user.get(deployment.direct + "/api/config", headers=headers) as refused:
            assert refused.status == 401  # the Supervisor's headers mean nothing here
        async with user.post(
            deployment.direct + "/api/auth/setup", json={"master_password": PASSWORD}
        ) as setup:
            token = (await setup.json())["access_token"]
        async with user.get(
            deployment.direct + "/api/config", headers={"Authorization": f"Bearer {token}"}
        ) as ok:
            assert ok.status == 200
        async with user.get(deployment.direct + "/health") as health:
            assert health.status == 200


async def test_a_forged_ingress_path_is_rejected(options: Options) -> None:
    addon = dataclasses.replace(
        options, addon=True, host="127.0.0.1", port=free_port(), ingress_address="127.0.0.1"
    )
    runner = web.AppRunner(create_app(addon))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", addon.port).start()
    try:
        async with aiohttp.ClientSession() as supervisor:
            for bad in ("/evil", "/api/hassio_ingress/../../x", 'http://x"><script>'):
                async with supervisor.get(
                    f"http://127.0.0.1:{addon.port}/", headers={"X-Ingress-Path": bad}
                ) as response:
                    assert response.status == 400, bad
    finally:
        await runner.cleanup()
