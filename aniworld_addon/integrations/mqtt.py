"""The MQTT bridge: bus events to retained state and events, commands to the services (SPEC §6)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from aiohttp import web

from .. import keys
from ..downloads.queue_store import Priority
from ..errors import AppError
from ..events import Event, EventBus, EventType, Subscription
from ..health import CheckResult
from ..library.records import SeriesRecord
from ..operations import Operation
from ..options import Options
from ..scheduler_start import start_rescan
from ..settings import Settings
from .mqtt_connection import RESOLVE_RETRY_S, MqttConnection, OwnedTasks, birth_delay
from .mqtt_discovery import (
    COMMAND_DOWNLOAD_MISSING,
    COMMAND_QUEUE,
    COMMAND_RESCAN,
    PAYLOAD_OFF,
    PAYLOAD_ON,
    PAYLOAD_PRESS,
    DeviceInfo,
    Topics,
    download_state,
    dumps,
    library_state,
    queue_state,
    scan_state,
)
from .supervisor import (
    BrokerConfig,
    SupervisorClient,
    addon_ingress_url,
    resolve_broker,
    supervisor_token,
)

_LOGGER = logging.getLogger(__name__)

QUEUE_COMMANDS: Final[dict[str, dict[str, bool]]] = {
    "start": {"running": True},
    "stop": {"running": False},
    "pause": {"paused": True},
    "resume": {"paused": False},
}
SWITCH_PAYLOADS: Final = {PAYLOAD_ON: True, PAYLOAD_OFF: False}
PROGRESS_STEP: Final = 1.0  # percent
MAX_COMMAND_CHARS: Final = 64  # the longest command is a few letters
_QUEUE_EVENTS: Final = frozenset(
    {
        EventType.QUEUE_STATUS,
        EventType.QUEUE_STARTED,
        EventType.QUEUE_STOPPED,
        EventType.QUEUE_PAUSED,
        EventType.QUEUE_RESUMED,
    }
)
_LIBRARY_EVENTS: Final = frozenset(
    {
        EventType.NEW_EPISODES_FOUND,
        EventType.SCHEDULED_RESCAN_COMPLETE,
        EventType.EPISODE_FILES_REMOVED,
        EventType.SERIES_CHANGED,  # an add or a match changes the counts at once
    }
)


class QueueControl(Protocol):
    """What the bridge uses of the DownloadQueue."""

    async def set_state(self, *, running: bool | None = None, paused: bool | None = None) -> None:
        """start/stop/pause/resume."""

    async def summary(self) -> dict[str, Any]:
        """Counts and flags."""

    async def status_head(self) -> dict[str, Any]:
        """Flags, the running items and stats (no lists of waiting or finished items)."""

    async def add(
        self, provider: str, key: str, episodes: Sequence[tuple[int, int]], priority: Priority
    ) -> list[int]:
        """Queue episodes of a series."""


class LibraryView(Protocol):
    """What the bridge reads of the LibraryStore."""

    async def totals(self) -> dict[str, int]:
        """series, unmatched, missing."""

    async def meta(self, name: str) -> Any:
        """A stored fact such as last_scan."""

    async def set_meta(self, name: str, value: Any) -> None:
        """Store a fact."""

    async def matched(self) -> list[SeriesRecord]:
        """Series with a provider identity."""

    async def missing(self, series_id: int) -> list[tuple[int, int]]:
        """Missing (season, episode) of a series."""

    async def by_key(self, key: str, provider: str | None = None) -> SeriesRecord:
        """A series by key."""


class LibraryControl(Protocol):
    """What the bridge uses of the LibraryService."""

    @property
    def store(self) -> LibraryView:
        """The library tables."""

    def rescan(self) -> Operation:
        """Start a rescan operation."""


class MqttBridge:
    """Turns bus events into MQTT state and events, and MQTT commands into service calls."""

    def __init__(
        self,
        resolve: Callable[[], Awaitable[BrokerConfig | None]],
        settings: Settings,
        bus: EventBus,
        queue: QueueControl,
        library: LibraryControl,
        *,
        device: DeviceInfo,
        republish_delay: Callable[[], float] = birth_delay,
        reconnect_delay: tuple[int, int] = (1, 60),
        resolve_retry_s: Sequence[float] = RESOLVE_RETRY_S,
        progress_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._queue = queue
        self._library = library
        self._progress_interval_s = progress_interval_s
        self._clock = clock
        self.connection = MqttConnection(
            resolve,
            settings,
            device,
            on_ready=self._publish_states,
            on_command=self._command,
            republish_delay=republish_delay,
            reconnect_delay=reconnect_delay,
            resolve_retry_s=resolve_retry_s,
            memory=library.store,
        )
        self._downloads: dict[int, Mapping[str, Any]] = {}  # active item id -> last progress
        self._shown: tuple[Any, float, float] = (None, 0.0, float("-inf"))  # item, %, when
        self._names: dict[tuple[str | None, str], str] = {}
        self._scan = scan_state("idle")
        self._tasks = OwnedTasks()
        self._subscription: Subscription | None = None

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up."""
        return self.connection.connected

    @property
    def topics(self) -> Topics:
        """The topics in use."""
        return self.connection.topics

    def start(self) -> None:
        """Listen to the bus and connect in the background; never waits for the broker."""
        self._subscription = self._bus.subscribe(self._on_event, name="mqtt")
        self.connection.start()

    async def stop(self) -> None:
        """Stop listening, cancel running commands, then publish offline and disconnect."""
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
        await self._tasks.cancel()
        await self.connection.stop()

    async def health(self) -> CheckResult:
        """The `mqtt` health check: the real connection state."""
        return await self.connection.health()

    # --- state -------------------------------------------------------------------------------

    def _send(self, topic: str, payload: str, *, retain: bool = True, force: bool = False) -> None:
        self.connection.send(topic, payload, retain=retain, force=force)

    async def _publish_states(self) -> None:
        """Every state topic from the services (after a connect or Home Assistant's birth)."""
        status = await self._queue.status_head()
        active = {int(d["id"]): d for d in status.get("active_downloads", [])}
        for item_id in [i for i in self._downloads if i not in active]:
            del self._downloads[item_id]
        for item_id, item in active.items():
            self._downloads.setdefault(
                item_id,
                {
                    "item_id": item_id,
                    "series_key": item["series_key"],
                    "season": item["season"],
                    "episode": item["episode"],
                    "progress": item.get("progress") or {},
                },
            )
        self._publish_queue(await self._queue.summary(), force=True)
        await self._publish_download(force=True)
        await self._publish_library(force=True)
        self._send(self.topics.scan, dumps(self._scan), force=True)

    def _publish_queue(self, summary: Mapping[str, Any], *, force: bool = False) -> None:
        state = queue_state(summary)
        self._send(self.topics.queue, dumps(state), force=force)
        paused = PAYLOAD_ON if state["is_paused"] else PAYLOAD_OFF
        self._send(self.topics.paused, paused, force=force)

    async def _publish_download(self, *, force: bool = False) -> None:
        shown = next(iter(self._downloads.values()), None)
        name = (
            await self._series_name(str(shown["series_key"]), shown.get("provider"))
            if shown
            else None
        )
        payload = download_state(shown, len(self._downloads), name)
        self._shown = (payload.get("item_id"), float(payload["percent"]), self._clock())
        self._send(self.topics.download, dumps(payload), force=force)

    async def _series_name(self, key: str, provider: str | None) -> str:
        if (provider, key) not in self._names:
            try:
                name = (await self._library.store.by_key(key, provider)).name
            except AppError:
                return key
            self._names[provider, key] = name
        return self._names[provider, key]

    async def _publish_library(self, *, force: bool = False) -> None:
        if not self.connection.connected:
            return  # read from the database on the next connect instead
        store = self._library.store
        state = library_state(await store.totals(), await store.meta("last_scan"))
        self._send(self.topics.library, dumps(state), force=force)

    def _set_scan(self, state: dict[str, Any]) -> None:
        self._scan = state
        self._send(self.topics.scan, dumps(state))

    # --- bus events --------------------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        kind, data = event.type, event.data
        if kind is not EventType.DOWNLOAD_PROGRESS:  # progress goes to the download state only
            self._send(self.topics.event(kind), dumps(event.to_dict()), retain=False)
        if kind in _QUEUE_EVENTS and "pending" in data:
            if int(data.get("active", 0)) == 0:
                self._downloads.clear()  # stopped: running items went back to pending
            if data.get("action") == "removed":
                for item_id in data.get("item_ids", []):
                    self._downloads.pop(int(item_id), None)
            self._publish_queue(data)
            await self._publish_download()
        elif kind is EventType.DOWNLOAD_PROGRESS:
            await self._on_progress(data)
        elif kind is EventType.DOWNLOAD_STARTED:  # each hoster attempt: keep progress already shown
            self._downloads.setdefault(int(data["item_id"]), {**data, "progress": {}})
            await self._publish_download()
        elif kind in (EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED):
            self._downloads.pop(int(data["item_id"]), None)
            await self._publish_download()
            if kind is EventType.DOWNLOAD_COMPLETE:
                await self._publish_library()
        elif kind in (EventType.SCAN_STARTED, EventType.SCAN_PROGRESS):
            done, total = int(data.get("done", 0)), int(data.get("total", 0))
            operation = data.get("operation_id")
            self._set_scan(scan_state("running", operation_id=operation, done=done, total=total))
        elif kind is EventType.SCAN_COMPLETE:
            total = int(data.get("refreshed", 0)) + int(data.get("error_count", 0))
            operation = data.get("operation_id")
            self._set_scan(scan_state("idle", operation_id=operation, done=total, total=total))
            await self._publish_library()
        elif kind is EventType.SCAN_FAILED:
            operation, error = data.get("operation_id"), data.get("error")
            self._set_scan(scan_state("failed", operation_id=operation, error=error))
        elif kind in _LIBRARY_EVENTS:
            await self._publish_library()

    async def _on_progress(self, data: Mapping[str, Any]) -> None:
        item_id = int(data["item_id"])
        self._downloads[item_id] = data
        if next(iter(self._downloads)) != item_id:
            return  # the state shows the oldest active download only
        shown_id, shown_percent, shown_at = self._shown
        percent = float((data.get("progress") or {}).get("percent") or 0.0)
        # Throttled like the WebSocket room: a 1 % step or a second, whichever comes first.
        if (
            shown_id == item_id
            and abs(percent - shown_percent) < PROGRESS_STEP
            and self._clock() - shown_at < self._progress_interval_s
        ):
            return
        await self._publish_download()

    # --- commands ----------------------------------------------------------------------------

    def _command(self, topic: str, text: str) -> None:
        topics = self.topics
        if len(text) > MAX_COMMAND_CHARS:  # no command is this long; never log all of it
            _LOGGER.warning("MQTT: ignored a %d-character payload on %s", len(text), topic)
            return
        if topic in (topics.command(COMMAND_RESCAN), topics.command(COMMAND_DOWNLOAD_MISSING)):
            if text.upper() != PAYLOAD_PRESS:
                _LOGGER.warning("MQTT: ignored %r on %s (expected PRESS)", text, topic)
            elif topic == topics.command(COMMAND_RESCAN):
                operation = self._library.rescan()
                _LOGGER.info("MQTT: rescan requested (operation %s)", operation.id)
            else:
                self._tasks.spawn(self._download_missing(), "mqtt:download_missing")
        elif topic == topics.command(COMMAND_QUEUE):
            change = QUEUE_COMMANDS.get(text.lower())
            if change is None:
                _LOGGER.warning(
                    "MQTT: ignored %r on %s (expected %s)", text, topic, "|".join(QUEUE_COMMANDS)
                )
                return
            self._tasks.spawn(self._queue.set_state(**change), f"mqtt:queue:{text.lower()}")
        elif topic == topics.paused_set:
            paused = SWITCH_PAYLOADS.get(text.upper())
            if paused is None:
                _LOGGER.warning("MQTT: ignored %r on %s (expected ON or OFF)", text, topic)
                return
            self._tasks.spawn(self._queue.set_state(paused=paused), "mqtt:queue:paused")

    async def _download_missing(self) -> None:
        store = self._library.store
        queued = 0
        for series in await store.matched():
            episodes = await store.missing(series.id)
            if not episodes or series.provider is None or series.key is None:
                continue
            try:
                ids = await self._queue.add(series.provider, series.key, episodes, Priority.NORMAL)
            except AppError as err:
                _LOGGER.warning("MQTT: cannot queue %s: %s", series.key, err.message)
                continue
            queued += len(ids)
        _LOGGER.info("MQTT: download_missing queued %d episodes", queued)


def configuration_url(options: Options) -> str:
    """Where Home Assistant's device page links: the ingress panel, else the web UI."""
    if options.addon and (ingress := addon_ingress_url()):
        return ingress
    host = options.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{options.port}/"


class _UserLibrary:
    """The library as the bridge's commands reach it: the rescan button is a user's rescan
    (scheduler_start.start_rescan), followed by auto-download and upgrades."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    @property
    def store(self) -> LibraryView:
        return self._app[keys.LIBRARY].store

    def rescan(self) -> Operation:
        return start_rescan(self._app)


async def mqtt_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: start the bridge in the background; stop it before the queue closes."""
    options = app[keys.OPTIONS]
    token = supervisor_token(options)
    supervisor = SupervisorClient(app[keys.HTTP_CLIENT], token) if token else None

    async def resolve() -> BrokerConfig | None:
        return await resolve_broker(options, supervisor)

    bridge = MqttBridge(
        resolve,
        app[keys.SETTINGS],
        app[keys.BUS],
        app[keys.QUEUE],
        _UserLibrary(app),
        device=DeviceInfo(configuration_url=configuration_url(options)),
    )
    app[keys.MQTT] = bridge
    unregister = app[keys.HEALTH].register("mqtt", bridge.health)
    bridge.start()
    yield
    unregister()
    await bridge.stop()
