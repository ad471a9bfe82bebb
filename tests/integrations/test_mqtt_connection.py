"""The MQTT session against a real Mosquitto: reconnects, health, live settings, last will."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from aniworld_addon.integrations.supervisor import BrokerConfig

from .conftest import (
    WAIT_S,
    BridgeFactory,
    Mosquitto,
    Services,
    WatchFactory,
    free_port,
    online,
    start_mosquitto,
)

DISCOVERY = "homeassistant/device/aniworld/config"
ROOT = Path(__file__).resolve().parents[2]


async def test_broker_restart_reconnects_and_republishes(
    start_bridge: BridgeFactory, mosquitto: Mosquitto, watch: WatchFactory
) -> None:
    bridge = start_bridge()
    watcher = await online(watch, DISCOVERY, "aniworld/queue")
    assert (await bridge.health()).status == "ok"

    await asyncio.to_thread(mosquitto.stop)
    async with asyncio.timeout(WAIT_S):
        await bridge.connection.wait_connected(False)
    health = await bridge.health()
    assert health.status == "error"
    assert f"127.0.0.1:{mosquitto.port}" in health.message

    mark = len(watcher.messages)
    await asyncio.to_thread(mosquitto.start)  # a new broker: every retained message is gone
    await watcher.wait_message("aniworld/status", "online", after=mark, within=30)
    await watcher.wait_message(DISCOVERY, after=mark)
    await watcher.wait_message("aniworld/queue", after=mark)
    assert (await bridge.health()).status == "ok"


async def test_health_reports_disabled_error_and_ok(
    start_bridge: BridgeFactory, services: Services, mosquitto: Mosquitto
) -> None:
    no_broker = start_bridge(broker=None)
    unreachable = start_bridge(broker=BrokerConfig("127.0.0.1", free_port()))
    working = start_bridge()
    async with asyncio.timeout(WAIT_S):
        await working.connection.wait_connected()
    for bridge in (no_broker, unreachable):
        assert not bridge.connected
    assert (await no_broker.health()).status == "disabled"
    error = await unreachable.health()
    assert error.status == "error"
    assert "127.0.0.1:" in error.message
    assert (await working.health()).status == "ok"


async def test_a_refusing_broker_shows_its_reason_in_health(
    start_bridge: BridgeFactory, tmp_path: Path
) -> None:
    strict = await asyncio.to_thread(start_mosquitto, tmp_path / "strict", anonymous=False)
    try:
        bridge = start_bridge(broker=BrokerConfig(strict.host, strict.port, "nobody", "wrong"))
        health = await bridge.health()
        async with asyncio.timeout(WAIT_S):
            while "refused" not in health.message:
                # Each look waits for the next connection event instead of a fixed time.
                await bridge.connection.wait_change()
                health = await bridge.health()
        assert health.status == "error"
        assert "not authori" in health.message.lower()
    finally:
        await asyncio.to_thread(strict.stop)


async def test_turning_mqtt_off_and_on_live(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    bridge = start_bridge()
    watcher = await online(watch)
    await services.settings.update({"mqtt": {"enabled": False}})
    await watcher.wait_message("aniworld/status", "offline")
    async with asyncio.timeout(WAIT_S):
        await bridge.connection.wait_connected(False)
    health = await bridge.health()
    assert (health.status, health.message) == ("disabled", "MQTT is turned off in the settings")

    mark = len(watcher.messages)
    await services.settings.update({"mqtt": {"enabled": True}})
    await watcher.wait_message("aniworld/status", "online", after=mark)


async def test_changing_prefixes_moves_everything_and_clears_the_old_topics(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    start_bridge()
    watcher = await online(watch, "aniworld/#", "homeassistant/#", "anime/#", "ha/#")
    await watcher.wait_message(DISCOVERY)
    await watcher.wait_message("aniworld/library")
    mark = len(watcher.messages)
    await services.settings.update({"mqtt": {"topic_prefix": "anime", "discovery_prefix": "ha"}})
    config = await watcher.wait_message("ha/device/aniworld/config", after=mark)
    assert config.json()["availability"][0]["topic"] == "anime/status"
    assert config.json()["components"]["aniworld_rescan"]["command_topic"] == (
        "anime/command/rescan"
    )
    await watcher.wait_message("anime/status", "online", after=mark)
    cleared = {m.topic for m in watcher.messages[mark:] if m.payload == ""}
    assert cleared >= {DISCOVERY, "aniworld/status", "aniworld/queue", "aniworld/library"}

    # A newcomer finds nothing under the old prefixes and everything under the new ones.
    late = await watch("aniworld/#", "homeassistant/#", "anime/status", "ha/#")
    await late.wait_message("anime/status", "online")
    await late.wait_message("ha/device/aniworld/config")
    assert not [m for m in late.messages if m.topic.startswith(("aniworld/", "homeassistant/"))]

    mark = len(watcher.messages)
    watcher.publish("anime/queue/paused/set", "ON")
    await watcher.wait_message("anime/queue/paused", "ON", after=mark)


async def test_topics_left_by_a_session_before_a_prefix_change_are_cleared_later(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    # Changed while MQTT was off (or the broker away, or the service stopped): no session
    # could clear the old topics, and Home Assistant kept a second, dead device.
    bridge = start_bridge()
    watcher = await online(watch, "aniworld/#", "homeassistant/#", "anime/#", "ha/#")
    await watcher.wait_message(DISCOVERY)
    await services.settings.update({"mqtt": {"enabled": False}})
    async with asyncio.timeout(WAIT_S):
        await bridge.connection.wait_connected(False)
    await services.settings.update({"mqtt": {"topic_prefix": "anime"}})
    mark = len(watcher.messages)
    await services.settings.update({"mqtt": {"enabled": True}})
    await watcher.wait_message("anime/status", "online", after=mark)
    cleared = {m.topic for m in watcher.messages[mark:] if m.payload == ""}
    assert cleared >= {"aniworld/status", "aniworld/queue", "aniworld/library"}
    assert DISCOVERY not in cleared  # the discovery prefix stayed: the device was updated

    # The same across a restart: the prefixes published under are remembered.
    await bridge.stop()
    await services.settings.update({"mqtt": {"discovery_prefix": "ha"}})
    mark = len(watcher.messages)
    start_bridge()
    await watcher.wait_message("ha/device/aniworld/config", after=mark)
    await watcher.wait_message(DISCOVERY, "", after=mark)
    late = await watch("aniworld/#", "homeassistant/#", "anime/status")
    await late.wait_message("anime/status", "online")
    assert not [m for m in late.messages if m.topic.startswith(("aniworld/", "homeassistant/"))]


async def test_kill_9_makes_the_broker_publish_offline(
    mosquitto: Mosquitto, watch: WatchFactory, tmp_path: Path
) -> None:
    watcher = await watch("aniworld/status")
    script = (
        "import asyncio, sys\n"
        "from tests.integrations.conftest import serve_bridge\n"
        "asyncio.run(serve_bridge(int(sys.argv[1]), sys.argv[2]))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(mosquitto.port), str(tmp_path / "child"), cwd=ROOT
    )
    killed = False
    try:
        await watcher.wait_message("aniworld/status", "online", within=60)
        mark = len(watcher.messages)
        process.kill()  # SIGKILL: no clean disconnect, no goodbye
        killed = True
        await watcher.wait_message("aniworld/status", "offline", after=mark)
    finally:
        # Killing twice could reap the child under asyncio's own waitpid: kill only once.
        if not killed:
            process.kill()
        await process.wait()
    assert process.returncode == -9


async def test_states_dropped_while_the_broker_stalls_are_sent_again(
    start_bridge: BridgeFactory, services: Services, mosquitto: Mosquitto, watch: WatchFactory
) -> None:
    # paho keeps at most 1000 messages for a broker that does not take them and drops the
    # rest; a dropped state was recorded as sent, so the retained "paused" switch stayed OFF
    # after the queue was paused, and another pause did not fix it either.
    start_bridge()
    watcher = await online(watch, "aniworld/queue/paused")
    await watcher.wait_message("aniworld/queue/paused", "OFF")
    mark = len(watcher.messages)
    assert mosquitto.process is not None
    mosquitto.process.send_signal(signal.SIGSTOP)
    try:
        for n in range(1200):  # more queue states than paho keeps
            await services.queue.set_state(running=n % 2 == 0)
            await services.bus.drained()
        await services.queue.set_state(paused=True)
        await services.bus.drained()
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
    await watcher.wait_message("aniworld/queue/paused", "ON", after=mark, within=30)


async def test_a_port_that_hangs_up_before_answering_is_reported(
    start_bridge: BridgeFactory,
) -> None:
    # A TLS or WebSocket listener reads CONNECT and closes: /health said "connecting" for
    # good and the log said nothing.
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        bridge = start_bridge(broker=BrokerConfig("127.0.0.1", port))
        health = await bridge.health()
        async with asyncio.timeout(WAIT_S):
            while "closed the connection" not in health.message:
                await bridge.connection.wait_change()
                health = await bridge.health()
        assert health.status == "error" and f"127.0.0.1:{port}" in health.message
    finally:
        server.close()
        await server.wait_closed()
