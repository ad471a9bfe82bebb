"""The MQTT bridge against a real Mosquitto, watched by a real paho client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aniworld_addon.const import VERSION
from aniworld_addon.downloads.queue_store import Priority
from aniworld_addon.events import EventType
from aniworld_addon.integrations.mqtt_discovery import DeviceInfo

from .conftest import (
    BridgeFactory,
    Services,
    Watcher,
    WatchFactory,
    online,
    series,
    wait_until,
)

DISCOVERY = "homeassistant/device/aniworld/config"
ROOT = Path(__file__).resolve().parents[2]


async def test_discovery_is_retained_at_qos1_with_device_origin_and_components(
    start_bridge: BridgeFactory, watch: WatchFactory
) -> None:
    start_bridge()
    await online(watch)
    late = await watch(DISCOVERY)  # subscribes after the fact: only a retained copy can arrive
    message = await late.wait_message(DISCOVERY)
    assert message.retain
    assert message.qos == 1
    config = message.json()
    assert config["device"] == {
        "identifiers": ["aniworld"],
        "name": "AniWorld",
        "manufacturer": "AniWorld add-on",
        "model": "AniWorld add-on",
        "sw_version": VERSION,
        "configuration_url": "http://aniworld.test:8099/",
    }
    assert config["origin"] == {
        "name": "aniworld-addon",
        "sw_version": VERSION,
        "support_url": "https://x.test/",
    }
    assert config["availability"] == [
        {
            "topic": "aniworld/status",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]
    components = config["components"]
    platforms = {uid: c["platform"] for uid, c in components.items()}
    assert platforms == {
        "aniworld_pending": "sensor",
        "aniworld_active_download": "sensor",
        "aniworld_progress": "sensor",
        "aniworld_speed": "sensor",
        "aniworld_missing_episodes": "sensor",
        "aniworld_last_scan": "sensor",
        "aniworld_downloading": "binary_sensor",
        "aniworld_rescan": "button",
        "aniworld_download_missing": "button",
        "aniworld_queue_paused": "switch",
    }
    for uid, component in components.items():
        assert component["unique_id"] == uid
        assert component["default_entity_id"] == f"{component['platform']}.{uid}"
    assert components["aniworld_last_scan"]["device_class"] == "timestamp"
    assert components["aniworld_rescan"]["command_topic"] == "aniworld/command/rescan"
    switch = components["aniworld_queue_paused"]
    assert switch["state_topic"] == "aniworld/queue/paused"
    assert switch["command_topic"] == "aniworld/queue/paused/set"


async def test_connect_publishes_online_and_every_state_retained(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    services.library.store.last_scan = {"finished_at": 1_700_000_000.0}
    start_bridge()
    await online(watch)
    topics = ["queue", "download", "library", "scan", "queue/paused", "status"]
    late = await watch(*(f"aniworld/{t}" for t in topics))
    await late.wait_for(lambda w: len(w.messages) == len(topics))
    got = {m.topic: m for m in late.messages}
    assert all(m.retain for m in got.values())
    assert got["aniworld/status"].payload == "online"
    assert got["aniworld/queue"].json() == {
        "state": "running",
        "is_running": True,
        "is_paused": False,
        "pending": 2,
        "active": 0,
        "completed": 5,
        "failed": 1,
    }
    assert got["aniworld/queue/paused"].payload == "OFF"
    assert got["aniworld/download"].json()["state"] == "idle"
    assert got["aniworld/library"].json() == {
        "series": 0,
        "unmatched": 0,
        "missing": 7,
        "last_scan": "2023-11-14T22:13:20+00:00",
    }
    assert got["aniworld/scan"].json()["state"] == "idle"


async def test_bus_events_update_state_topics_and_are_forwarded(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    services.library.store.rows = [series(1, "frieren", "Frieren", 3)]
    start_bridge()
    watcher = await online(watch, "aniworld/#")
    bus = services.bus
    mark = len(watcher.messages)

    summary = {"is_running": True, "is_paused": False, "pending": 4, "active": 1}
    bus.publish(EventType.QUEUE_STATUS, {"action": "added", "item_ids": [9], **summary})
    queue = await watcher.wait_message("aniworld/queue", after=mark)
    assert queue.json()["pending"] == 4

    item = {"item_id": 9, "series_key": "frieren", "season": 1, "episode": 3}
    bus.publish(EventType.DOWNLOAD_STARTED, {**item, "provider": "aniworld", "hoster": "x"})
    started = await watcher.wait_message("aniworld/download", after=mark)
    assert (started.json()["state"], started.json()["percent"]) == ("downloading", 0.0)

    progress = {"percent": 42.5, "downloaded_mb": 10.0, "total_mb": 20.0, "speed_mbps": 1.25}
    bus.publish(EventType.DOWNLOAD_PROGRESS, {**item, "progress": progress, "eta_seconds": 8})
    download = await watcher.wait_for(
        lambda w: next((m.json() for m in w.on("aniworld/download") if m.json()["percent"]), None)
    )
    assert download["label"] == "Frieren S01E03"
    assert download["percent"] == 42.5
    assert download["speed_mbps"] == 1.25
    assert download["active"] == 1

    services.library.store.missing_total = 2
    bus.publish(EventType.DOWNLOAD_COMPLETE, {**item, "file_path": "/x.mkv"})
    complete = await watcher.wait_message("aniworld/event/download_complete")
    assert complete.json()["type"] == "download_complete"
    assert complete.json()["data"]["item_id"] == 9
    assert not complete.retain
    await watcher.wait_for(
        lambda w: (
            w.on("aniworld/download")[-1].json()["state"] == "idle"
            and w.on("aniworld/library")[-1].json()["missing"] == 2
        )
    )
    # Progress never goes out as an event; events are published in bus order, so by now it would.
    assert not watcher.on("aniworld/event/download_progress")

    bus.publish(EventType.SCAN_STARTED, {"operation_id": "op"})
    bus.publish(EventType.SCAN_PROGRESS, {"operation_id": "op", "done": 1, "total": 4})
    running = await watcher.wait_for(
        lambda w: next((m.json() for m in w.on("aniworld/scan") if m.json()["done"] == 1), None)
    )
    assert running == {
        "state": "running",
        "operation_id": "op",
        "done": 1,
        "total": 4,
        "percent": 25.0,
        "error": None,
    }
    services.library.store.last_scan = {"finished_at": 0}
    bus.publish(EventType.SCAN_COMPLETE, {"operation_id": "op", "refreshed": 3, "errors": [{}]})
    await watcher.wait_for(lambda w: w.on("aniworld/scan")[-1].json()["state"] == "idle")
    await watcher.wait_for(
        lambda w: w.on("aniworld/library")[-1].json()["last_scan"] == "1970-01-01T00:00:00+00:00"
    )
    for kind in ("queue_status", "scan_started", "scan_progress", "scan_complete"):
        assert watcher.on(f"aniworld/event/{kind}"), kind


async def test_download_progress_is_throttled_to_a_percent_or_a_second(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    now = [100.0]
    start_bridge(clock=lambda: now[0])
    watcher = await online(watch, "aniworld/download")
    item = {"item_id": 1, "series_key": "k", "season": 1, "episode": 1}

    def progress(percent: float) -> None:
        services.bus.publish(
            EventType.DOWNLOAD_PROGRESS, {**item, "progress": {"percent": percent}}
        )

    def showing(percent: float) -> Callable[[Watcher], bool]:
        def check(w: Watcher) -> bool:
            shown = w.on("aniworld/download")  # none yet when the first check runs early
            return bool(shown) and shown[-1].json().get("percent") == percent

        return check

    for percent in (10.0, 10.3, 10.6, 11.2):  # 10.3 and 10.6 are within 1 % of what was shown
        progress(percent)
    await watcher.wait_for(showing(11.2))
    now[0] += 1.5
    progress(11.3)  # under 1 %, but a second has passed
    await watcher.wait_for(showing(11.3))
    shown = [m.json()["percent"] for m in watcher.on("aniworld/download")]
    assert shown[-3:] == [10.0, 11.2, 11.3]
    assert 10.3 not in shown and 10.6 not in shown


async def test_rescan_command_starts_a_rescan_and_invalid_payloads_are_ignored(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    start_bridge()
    watcher = await online(watch)
    for payload in ("go", "", "{}", "PRESS"):  # one publisher: handled in this order
        watcher.publish("aniworld/command/rescan", payload)
    await wait_until(lambda: services.library.rescans > 0, services.library.rescanned)
    assert services.library.rescans == 1


async def test_retained_commands_are_never_executed(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    ha = await watch("aniworld/status")
    ha.publish("aniworld/command/rescan", "PRESS", retain=True)  # a stale one, left by mistake
    ha.publish("aniworld/command/queue", "stop", retain=True)
    start_bridge()
    await ha.wait_message("aniworld/status", "online")
    ha.publish("aniworld/command/queue", "pause")
    await wait_until(lambda: bool(services.queue.calls), services.queue.changed)
    assert services.queue.calls == [{"running": None, "paused": True}]
    assert services.library.rescans == 0


async def test_queue_commands_round_trip(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    start_bridge()
    watcher = await online(watch, "aniworld/queue")
    queue = services.queue
    for payload in ("stop", "explode", "START", " pause ", "resume"):
        watcher.publish("aniworld/command/queue", payload)
    await wait_until(lambda: len(queue.calls) == 4, queue.changed)
    assert queue.calls == [
        {"running": False, "paused": None},
        {"running": True, "paused": None},
        {"running": None, "paused": True},
        {"running": None, "paused": False},
    ]
    await watcher.wait_for(lambda w: w.on("aniworld/queue")[-1].json()["state"] == "running")


async def test_paused_switch_pauses_and_resumes_the_queue(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    start_bridge()
    watcher = await online(watch, "aniworld/queue/paused")
    mark = len(watcher.messages)
    watcher.publish("aniworld/queue/paused/set", "maybe")
    watcher.publish("aniworld/queue/paused/set", "ON")
    await watcher.wait_message("aniworld/queue/paused", "ON", after=mark)
    assert services.queue.calls == [{"running": None, "paused": True}]
    assert services.queue.paused
    watcher.publish("aniworld/queue/paused/set", "off")
    await watcher.wait_message("aniworld/queue/paused", "OFF", after=mark)
    assert not services.queue.paused
    late = await watch("aniworld/queue/paused")
    assert (await late.wait_message("aniworld/queue/paused")).retain


async def test_download_missing_queues_every_missing_episode_of_matched_series(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    store = services.library.store
    store.rows = [
        series(1, "frieren", "Frieren", 2),
        series(2, "complete", "Complete", 0),
        series(3, None, "Unmatched", 0),
        series(4, "mushishi", "Mushishi", 1),
    ]
    store.missing_by_id = {1: [(1, 2), (1, 3)], 4: [(0, 1)]}
    start_bridge()
    watcher = await online(watch)
    watcher.publish("aniworld/command/download_missing", "PRESS")
    await wait_until(lambda: len(services.queue.added) == 2, services.queue.changed)
    assert services.queue.added == [
        ("aniworld", "frieren", [(1, 2), (1, 3)], Priority.NORMAL),
        ("aniworld", "mushishi", [(0, 1)], Priority.NORMAL),
    ]


async def test_home_assistant_birth_republishes_state_but_not_unchanged_discovery(
    start_bridge: BridgeFactory, watch: WatchFactory
) -> None:
    start_bridge()
    watcher = await online(watch, DISCOVERY, "aniworld/queue", "aniworld/library")
    await watcher.wait_for(lambda w: w.on("aniworld/library"))
    mark = len(watcher.messages)
    watcher.publish("homeassistant/status", "online")
    await watcher.wait_for(
        lambda w: (
            {m.topic for m in w.messages[mark:]}
            >= {"aniworld/status", "aniworld/queue", "aniworld/library"}
        )
    )
    # Discovery would have gone out before the status: it is unchanged, so it did not.
    assert len(watcher.on(DISCOVERY)) == 1


async def test_a_birth_on_home_assistants_topic_counts_with_another_discovery_prefix(
    start_bridge: BridgeFactory, services: Services, watch: WatchFactory
) -> None:
    # Home Assistant's birth topic stays homeassistant/status when the discovery prefix is
    # changed; listened for on <discovery prefix>/status only, it was never heard.
    await services.settings.update({"mqtt": {"discovery_prefix": "ha"}})
    start_bridge()
    watcher = await online(watch, "aniworld/queue", "aniworld/library")
    await watcher.wait_for(lambda w: w.on("aniworld/library"))
    for birth in ("homeassistant/status", "ha/status"):
        mark = len(watcher.messages)
        watcher.publish(birth, "online")
        await watcher.wait_for(
            lambda w, mark=mark: {m.topic for m in w.messages[mark:]} >= {"aniworld/library"}
        )


async def test_a_burst_of_births_is_answered_once(
    start_bridge: BridgeFactory, watch: WatchFactory
) -> None:
    # 500 births (a Home Assistant in a restart loop, a misbehaving client) made 500 full
    # republishes. Births that come while a reply waits for its jitter are answered by it.
    replies: list[float] = []

    def delay() -> float:
        replies.append(0.3)
        return 0.3

    start_bridge(republish_delay=delay)
    watcher = await online(watch, "aniworld/queue")
    await watcher.wait_message("aniworld/queue")
    mark = len(watcher.messages)
    for _ in range(50):
        watcher.publish("homeassistant/status", "online")
    await watcher.wait_message("aniworld/status", "online", after=mark)
    assert len(replies) == 1
    # A birth after the reply is a new one, and answered again.
    mark = len(watcher.messages)
    watcher.publish("homeassistant/status", "online")
    await watcher.wait_message("aniworld/status", "online", after=mark)
    assert len(replies) == 2


async def test_home_assistant_birth_restores_discovery_it_removed(
    start_bridge: BridgeFactory, watch: WatchFactory
) -> None:
    start_bridge()
    watcher = await online(watch, DISCOVERY)
    await watcher.wait_message(DISCOVERY)
    watcher.publish(DISCOVERY, "", retain=True)  # what HA sends when the user deletes the device
    watcher.publish("homeassistant/status", "offline")
    watcher.publish("homeassistant/status", "online")
    restored = await watcher.wait_for(lambda w: [m for m in w.on(DISCOVERY) if m.payload][1:])
    assert restored[0].json()["device"]["identifiers"] == ["aniworld"]


async def test_discovery_is_sent_again_only_when_its_content_changed(
    start_bridge: BridgeFactory, watch: WatchFactory
) -> None:
    first = start_bridge()
    watcher = await online(watch, DISCOVERY)
    await watcher.wait_message(DISCOVERY)
    await first.stop()
    await watcher.wait_message("aniworld/status", "offline")

    mark = len(watcher.messages)
    second = start_bridge()  # same content: the broker's retained copy is kept as it is
    await watcher.wait_message("aniworld/status", "online", after=mark)
    assert len(watcher.on(DISCOVERY)) == 1
    await second.stop()

    mark = len(watcher.messages)
    start_bridge(device=DeviceInfo(configuration_url="http://elsewhere.test/"))
    await watcher.wait_message("aniworld/status", "online", after=mark)
    assert len(watcher.on(DISCOVERY)) == 2
    assert watcher.on(DISCOVERY)[-1].json()["device"]["configuration_url"] == (
        "http://elsewhere.test/"
    )
