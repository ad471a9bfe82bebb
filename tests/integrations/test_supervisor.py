"""The Supervisor lookup, against a small aiohttp stand-in (the real Supervisor cannot run here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aniworld_addon.integrations.mqtt import MqttBridge
from aniworld_addon.integrations.supervisor import (
    BrokerConfig,
    SupervisorClient,
    SupervisorError,
    addon_ingress_url,
    resolve_broker,
    supervisor_token,
)
from aniworld_addon.options import Options

from .conftest import DEVICE, WAIT_S, Mosquitto, Services, free_port

TOKEN = "supervisor-token"
SERVICE = {
    "host": "core-mosquitto",
    "port": 1883,
    "ssl": False,
    "protocol": "3.1.1",
    "username": "addons",
    "password": "s3cret",
    "addon": "core_mosquitto",
}


@dataclass
class StandIn:
    """What the stand-in answers (the last answer repeats) and what it was asked."""

    url: str = ""
    answers: list[tuple[int, Any]] = field(default_factory=lambda: [(200, {"data": SERVICE})])
    authorization: list[str | None] = field(default_factory=list)

    def client(self, http: httpx.AsyncClient) -> SupervisorClient:
        return SupervisorClient(http, TOKEN, base_url=self.url)


@pytest.fixture
async def stand_in(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> StandIn:
    """GET /services/mqtt the way the Supervisor serves it."""
    state = StandIn()

    async def services_mqtt(request: web.Request) -> web.Response:
        state.authorization.append(request.headers.get("Authorization"))
        status, body = state.answers[min(len(state.authorization), len(state.answers)) - 1]
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(
            {"result": "ok" if status == 200 else "error", **body}, status=status
        )

    app = web.Application()
    app.router.add_get("/services/mqtt", services_mqtt)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("")).rstrip("/")
    return state


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The kind of client the app shares."""
    async with httpx.AsyncClient() as client:
        yield client


async def test_mqtt_service_is_read_with_the_bearer_token(
    stand_in: StandIn, http: httpx.AsyncClient
) -> None:
    broker = await stand_in.client(http).mqtt_service()
    assert broker == BrokerConfig(
        host="core-mosquitto",
        port=1883,
        username="addons",
        password="s3cret",
        ssl=False,
        source="supervisor",
    )
    assert stand_in.authorization == [f"Bearer {TOKEN}"]
    assert "s3cret" not in repr(broker)


async def test_no_mqtt_service_installed_means_no_broker(
    stand_in: StandIn, http: httpx.AsyncClient
) -> None:
    stand_in.answers = [(400, {"message": "No mqtt service available"})]
    assert await stand_in.client(http).mqtt_service() is None


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, {"message": "boom"}, "answered 500"),
        (403, {"message": "no permission"}, "no permission"),
        (200, "<html>not json</html>", "invalid"),
        (200, {"data": {"port": 1883}}, "invalid"),
        (200, {"data": {"host": "h", "port": 99999}}, "invalid"),
    ],
)
async def test_unusable_answers_raise_supervisor_error(
    stand_in: StandIn, http: httpx.AsyncClient, status: int, body: Any, reason: str
) -> None:
    stand_in.answers = [(status, body)]
    with pytest.raises(SupervisorError, match=reason):
        await stand_in.client(http).mqtt_service()


async def test_an_unreachable_supervisor_raises_supervisor_error(http: httpx.AsyncClient) -> None:
    client = SupervisorClient(http, TOKEN, base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SupervisorError, match="did not answer"):
        await client.mqtt_service()


async def test_broker_options_win_over_the_supervisor(
    stand_in: StandIn, http: httpx.AsyncClient
) -> None:
    options = Options(addon=True, mqtt_host="broker.lan", mqtt_port=1884, mqtt_username="me")
    broker = await resolve_broker(options, stand_in.client(http))
    assert broker == BrokerConfig("broker.lan", 1884, "me", None)
    assert stand_in.authorization == []  # not even asked


async def test_addon_login_options_apply_to_the_supervisor_broker(
    stand_in: StandIn, http: httpx.AsyncClient
) -> None:
    options = Options(addon=True, mqtt_username="me", mqtt_password="mine")
    broker = await resolve_broker(options, stand_in.client(http))
    assert broker is not None
    assert (broker.host, broker.port, broker.username, broker.password, broker.source) == (
        "core-mosquitto",
        1883,
        "me",
        "mine",
        "supervisor",
    )
    assert await resolve_broker(Options(), None) is None


def test_supervisor_token_and_ingress_link_exist_only_in_the_addon() -> None:
    env = {"SUPERVISOR_TOKEN": TOKEN, "HOSTNAME": "a0d7b954-aniworld"}
    assert supervisor_token(Options(addon=True), env) == TOKEN
    assert supervisor_token(Options(addon=False), env) is None
    assert supervisor_token(Options(addon=True), {}) is None
    assert addon_ingress_url(env) == "homeassistant://hassio/ingress/a0d7b954_aniworld"
    assert addon_ingress_url({"HOSTNAME": "laptop"}) is None


async def test_bridge_retries_the_supervisor_then_connects_to_its_broker(
    stand_in: StandIn, http: httpx.AsyncClient, mosquitto: Mosquitto, services: Services
) -> None:
    stand_in.answers = [
        (502, "Bad Gateway"),
        (200, {"data": {**SERVICE, "host": mosquitto.host, "port": mosquitto.port}}),
    ]
    supervisor = stand_in.client(http)

    async def resolve() -> BrokerConfig | None:
        return await resolve_broker(Options(addon=True), supervisor)

    bridge = MqttBridge(
        resolve,
        services.settings,
        services.bus,
        services.queue,
        services.library,
        device=DEVICE,
        resolve_retry_s=(0.0,),
    )
    bridge.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await bridge.connection.wait_connected()
        health = await bridge.health()
        assert health.status == "ok"
        assert health.details == {"broker": f"{mosquitto.host}:{mosquitto.port}"}
        assert len(stand_in.authorization) == 2
    finally:
        await bridge.stop()
