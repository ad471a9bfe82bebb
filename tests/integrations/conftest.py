"""A real Mosquitto per test, a real paho client that watches it, and bridge stand-ins."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from aniworld_addon.downloads.queue_store import Priority
from aniworld_addon.errors import NotFoundError
from aniworld_addon.events import EventBus, EventType
from aniworld_addon.integrations.mqtt import MqttBridge
from aniworld_addon.integrations.mqtt_discovery import DeviceInfo
from aniworld_addon.integrations.supervisor import BrokerConfig
from aniworld_addon.library.records import SeriesRecord
from aniworld_addon.operations import Operation
from aniworld_addon.settings import Settings
from tests.conftest import require_tool

T = TypeVar("T")
WAIT_S = 15.0
_ids = itertools.count(1)


async def wait_until(check: Callable[[], bool], changed: asyncio.Event) -> None:
    """Wait until check() holds; changed is set by whatever may make it hold."""
    async with asyncio.timeout(WAIT_S):
        while True:
            changed.clear()
            if check():
                return
            await changed.wait()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Mosquitto:
    """One broker process on a loopback port; stop() and start() keep the port."""

    executable: str
    port: int
    config: Path
    log: Path
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the broker and return once it accepts connections."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mosquitto did not listen: {self.log.read_text()}"
                    ) from None
            # Waiting on the process is the pause between attempts: it ends early if it died.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=0.02)
            if self.process.returncode is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()}")

    def stop(self) -> None:
        """Stop the broker (retained messages are gone: persistence is off)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()


def start_mosquitto(directory: Path, *, anonymous: bool = True) -> Mosquitto:
    """A broker on a free loopback port with its config and log in directory."""
    executable = require_tool("mosquitto")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous {str(anonymous).lower()}\n"
        "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        "log_type notice\n",
        encoding="utf-8",
    )
    broker = Mosquitto(executable, port, config, directory / "mosquitto.log")
    broker.start()
    return broker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto on a free loopback port, stopped at teardown."""
    broker = start_mosquitto(tmp_path / "mosquitto")
    yield broker
    broker.stop()


@dataclass(frozen=True)
class Received:
    """One message as the watcher got it."""

    topic: str
    payload: str
    retain: bool
    qos: int

    def json(self) -> Any:
        """The payload parsed."""
        return json.loads(self.payload)


class Watcher:
    """A real paho client that records deliveries; waits are awaitable on the test's loop."""

    def __init__(self, broker: Mosquitto, topics: Sequence[str]) -> None:
        self._topics = list(topics)
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._changed = asyncio.Event()
        self.connects = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{next(_ids)}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async(broker.host, broker.port, keepalive=30)

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._changed.set)

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        # Subscribing again after every connect: the broker forgets us when it restarts.
        client.subscribe([(topic, 1) for topic in self._topics])
        with self._lock:
            self.connects += 1
        self._wake()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        received = Received(msg.topic, msg.payload.decode(), bool(msg.retain), int(msg.qos))
        with self._lock:
            self._messages.append(received)
        self._wake()

    @property
    def messages(self) -> list[Received]:
        """Everything received so far, in order."""
        with self._lock:
            return list(self._messages)

    def on(self, topic: str) -> list[Received]:
        """What arrived on one topic."""
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, check: Callable[[Watcher], T], within: float = WAIT_S) -> T:
        """Wait until check(self) returns something truthy, and return it."""
        async with asyncio.timeout(within):
            while True:
                self._changed.clear()
                result = check(self)
                if result:
                    return result
                await self._changed.wait()

    async def wait_message(
        self, topic: str, payload: str | None = None, *, after: int = 0, within: float = WAIT_S
    ) -> Received:
        """The first message on topic (with that payload) among those after index `after`."""

        def found(w: Watcher) -> Received | None:
            for message in w.messages[after:]:
                if message.topic == topic and (payload is None or message.payload == payload):
                    return message
            return None

        return await self.wait_for(found, within)

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        """Publish like Home Assistant would (QoS 1)."""
        self.client.publish(topic, payload, qos=1, retain=retain)

    async def start(self) -> None:
        """Connect and wait until subscribed."""
        self.client.loop_start()
        await self.wait_for(lambda w: w.connects > 0)

    def stop(self) -> None:
        """Disconnect and join the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


WatchFactory = Callable[..., Awaitable[Watcher]]


async def online(watch: WatchFactory, *topics: str) -> Watcher:
    """A watcher on status (and topics) that has seen the bridge come online."""
    watcher = await watch("aniworld/status", *topics)
    await watcher.wait_message("aniworld/status", "online")
    return watcher


@pytest.fixture
async def watch(mosquitto: Mosquitto) -> AsyncIterator[WatchFactory]:
    """watch(*topics) -> a connected Watcher; all are stopped at teardown."""
    watchers: list[Watcher] = []

    async def make(*topics: str) -> Watcher:
        watcher = Watcher(mosquitto, topics)
        watchers.append(watcher)
        await watcher.start()
        return watcher

    yield make
    for watcher in watchers:
        await asyncio.to_thread(watcher.stop)


# --- stand-ins for the services the bridge drives (our own objects; they record calls) -------


class QueueStandIn:
    """Records commands and publishes the events the real DownloadQueue publishes."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.running = True
        self.paused = False
        self.calls: list[dict[str, bool | None]] = []
        self.added: list[tuple[str, str, list[tuple[int, int]], Priority]] = []
        self.active: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def set_state(self, *, running: bool | None = None, paused: bool | None = None) -> None:
        self.calls.append({"running": running, "paused": paused})
        if running is not None:
            self.running = running
        if paused is not None:
            self.paused = paused
        event = {
            (True, None): EventType.QUEUE_STARTED,
            (False, None): EventType.QUEUE_STOPPED,
            (None, True): EventType.QUEUE_PAUSED,
            (None, False): EventType.QUEUE_RESUMED,
        }[(running, paused)]
        self._bus.publish(event, await self.summary())
        self.changed.set()

    async def summary(self) -> dict[str, Any]:
        return {
            "is_running": self.running,
            "is_paused": self.paused,
            "pending": 2,
            "active": len(self.active),
            "completed": 5,
            "failed": 1,
        }

    async def status_head(self) -> dict[str, Any]:
        return {
            "is_running": self.running,
            "is_paused": self.paused,
            "active_downloads": self.active,
        }

    async def add(
        self, provider: str, key: str, episodes: Sequence[tuple[int, int]], priority: Priority
    ) -> list[int]:
        self.added.append((provider, key, list(episodes), priority))
        self.changed.set()
        return list(range(len(episodes)))


def series(series_id: int, key: str | None, name: str, missing: int) -> SeriesRecord:
    """A library row as the store returns it."""
    return SeriesRecord(
        id=series_id,
        key=key,
        provider="aniworld" if key else None,
        name=name,
        year=2023,
        folder=name,
        local_count=1,
        missing_count=missing,
        description=None,
        cover_url=None,
        languages=None,
        error=None,
        refreshed_at=None,
    )


@dataclass
class StoreStandIn:
    """The LibraryStore reads the bridge makes, from fixed data."""

    rows: list[SeriesRecord] = field(default_factory=list)
    missing_by_id: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    last_scan: Any = None
    missing_total: int = 7
    stored: dict[str, Any] = field(default_factory=dict)  # what set_meta kept

    async def totals(self) -> dict[str, int]:
        return {"series": len(self.rows), "unmatched": 0, "missing": self.missing_total}

    async def meta(self, name: str) -> Any:
        return self.last_scan if name == "last_scan" else self.stored.get(name)

    async def set_meta(self, name: str, value: Any) -> None:
        self.stored[name] = value

    async def matched(self) -> list[SeriesRecord]:
        return [row for row in self.rows if row.key is not None]

    async def missing(self, series_id: int) -> list[tuple[int, int]]:
        return self.missing_by_id.get(series_id, [])

    async def by_key(self, key: str, provider: str | None = None) -> SeriesRecord:
        for row in self.rows:
            if row.key == key:
                return row
        raise NotFoundError(f"no series {key!r}")


class LibraryStandIn:
    """Counts rescans; serves a StoreStandIn."""

    def __init__(self) -> None:
        self.store = StoreStandIn()
        self.rescans = 0
        self.rescanned = asyncio.Event()

    def rescan(self) -> Operation:
        self.rescans += 1
        self.rescanned.set()
        return Operation(id=f"op-{self.rescans}", kind="rescan")


@dataclass
class Services:
    """Real settings and bus, stand-in queue and library."""

    settings: Settings
    bus: EventBus
    queue: QueueStandIn
    library: LibraryStandIn


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """Settings on a tmp data dir, a real EventBus, and the stand-ins."""
    settings = Settings(tmp_path / "data")
    await settings.load()
    bus = EventBus()
    yield Services(settings, bus, QueueStandIn(bus), LibraryStandIn())
    await bus.close()


DEVICE = DeviceInfo(configuration_url="http://aniworld.test:8099/", support_url="https://x.test/")
BridgeFactory = Callable[..., MqttBridge]


def build_bridge(services: Services, broker: BrokerConfig | None, **kwargs: Any) -> MqttBridge:
    """A bridge with test timings: no birth jitter, quick reconnects."""

    async def resolve() -> BrokerConfig | None:
        return broker

    options: dict[str, Any] = {
        "device": DEVICE,
        "republish_delay": lambda: 0.0,
        "reconnect_delay": (1, 2),
        **kwargs,
    }
    return MqttBridge(
        resolve, services.settings, services.bus, services.queue, services.library, **options
    )


@pytest.fixture
async def start_bridge(mosquitto: Mosquitto, services: Services) -> AsyncIterator[BridgeFactory]:
    """start_bridge(**kwargs) -> a started bridge against the test broker; stopped at teardown."""
    bridges: list[MqttBridge] = []

    def start(broker: BrokerConfig | Literal["test"] | None = "test", **kwargs: Any) -> MqttBridge:
        if broker == "test":
            broker = BrokerConfig(mosquitto.host, mosquitto.port)
        bridge = build_bridge(services, broker, **kwargs)
        bridge.start()
        bridges.append(bridge)
        return bridge

    yield start
    for bridge in bridges:
        await bridge.stop()


async def serve_bridge(port: int, data_path: str) -> None:
    """Run one bridge until killed (the subprocess of the kill -9 test)."""
    settings = Settings(Path(data_path))
    await settings.load()
    bus = EventBus()
    services = Services(settings, bus, QueueStandIn(bus), LibraryStandIn())
    bridge = build_bridge(services, BrokerConfig("127.0.0.1", port))
    bridge.start()
    await asyncio.Event().wait()
