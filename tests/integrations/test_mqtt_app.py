"""The whole app with the MQTT bridge, against a real Mosquitto (runs once mqtt_ctx is wired)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from aniworld_addon import keys
from aniworld_addon.app import create_app
from aniworld_addon.options import Options
from tests.conftest import PASSWORD, AiohttpClient
from tests.site.plugin import RunningSite

from .conftest import Mosquitto, Watcher, WatchFactory


@dataclasses.dataclass
class Running:
    """The app's client, its auth header, and a watcher that saw the bridge come online."""

    client: TestClient[Any, Any]
    headers: dict[str, str]
    watcher: Watcher


@pytest.fixture
async def running(
    options: Options, mosquitto: Mosquitto, aiohttp_client: AiohttpClient, watch: WatchFactory
) -> Running:
    """create_app() with the test broker as --mqtt-host/--mqtt-port, set up and online."""
    watcher = await watch("aniworld/#", "homeassistant/device/aniworld/config")
    wired = dataclasses.replace(options, mqtt_host=mosquitto.host, mqtt_port=mosquitto.port)
    client = await aiohttp_client(create_app(wired))
    response = await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    assert response.status == 200, await response.text()
    token = (await response.json())["access_token"]
    await watcher.wait_message("aniworld/status", "online")
    return Running(client, {"Authorization": f"Bearer {token}"}, watcher)


async def test_health_shows_mqtt_ok_and_discovery_is_published(running: Running) -> None:
    body = await (await running.client.get("/health")).json()
    assert body["checks"]["mqtt"]["status"] == "ok", body["checks"]["mqtt"]
    config = await running.watcher.wait_message("homeassistant/device/aniworld/config")
    assert config.json()["device"]["identifiers"] == ["aniworld"]
    assert running.client.app[keys.MQTT].connected


async def test_rescan_command_starts_a_scan_operation(running: Running) -> None:
    watcher = running.watcher
    watcher.publish("aniworld/command/rescan", "PRESS")
    complete = await watcher.wait_message("aniworld/event/scan_complete")
    operation_id = complete.json()["data"]["operation_id"]
    response = await running.client.get(f"/api/operations/{operation_id}", headers=running.headers)
    assert response.status == 200
    operation = await response.json()
    assert (operation["kind"], operation["status"]) == ("rescan", "completed")
    scan = await watcher.wait_for(
        lambda w: next(
            (m.json() for m in w.on("aniworld/scan") if m.json()["operation_id"] == operation_id),
            None,
        )
    )
    assert scan["state"] in ("running", "idle")
    await watcher.wait_for(lambda w: w.on("aniworld/library")[-1].json()["last_scan"] is not None)


async def test_paused_switch_pauses_and_resumes_the_real_queue(running: Running) -> None:
    watcher, client = running.watcher, running.client
    mark = len(watcher.messages)
    watcher.publish("aniworld/queue/paused/set", "ON")
    await watcher.wait_message("aniworld/queue/paused", "ON", after=mark)
    status = await (await client.get("/api/queue/status", headers=running.headers)).json()
    assert status["is_paused"] is True
    assert client.app[keys.QUEUE].paused

    watcher.publish("aniworld/command/queue", "resume")
    await watcher.wait_message("aniworld/queue/paused", "OFF", after=mark)
    status = await (await client.get("/api/queue/status", headers=running.headers)).json()
    assert status["is_paused"] is False
    queue_state = watcher.on("aniworld/queue")[-1].json()
    assert (queue_state["state"], queue_state["is_paused"]) == ("running", False)


async def test_a_huge_command_payload_is_ignored_without_logging_it(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    # Logged whole, four 6 MiB payloads from any client on the broker rotated every log away.
    watcher = running.watcher
    mark = len(watcher.messages)
    watcher.publish("aniworld/command/queue", "X" * 2**20)
    watcher.publish("aniworld/command/queue", "pause")  # after it, on the same topic
    await watcher.wait_message("aniworld/queue/paused", "ON", after=mark)
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert ignored == ["MQTT: ignored a 1048576-character payload on aniworld/command/queue"]
    assert max(len(r.getMessage()) for r in caplog.records) < 1000


async def test_adding_a_series_updates_the_library_sensors_at_once(
    running: Running, provider_site: RunningSite
) -> None:
    # Nothing republished the library state after an add or a match: Home Assistant's
    # "missing episodes" stayed at its old value until the next rescan or download.
    client, watcher = running.client, running.watcher
    config = {"providers": provider_site.providers_config()}
    assert (await client.put("/api/config", json=config, headers=running.headers)).status == 200
    await watcher.wait_message("aniworld/library")
    body = {"provider": "aniworld", "key": "rock-roll-heroes-reloaded"}
    added = await client.post("/api/anime", json=body, headers=running.headers)
    assert added.status == 201, await added.text()
    missing = (await added.json())["missing_count"]
    assert missing > 0
    state = await watcher.wait_for(
        lambda w: next((m.json() for m in w.on("aniworld/library") if m.json()["series"]), None)
    )
    assert (state["series"], state["missing"]) == (1, missing)
