"""The in-process event bus and the event catalogue every transport (WS, MQTT, webhooks) reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)


class Room(StrEnum):
    """WebSocket rooms (SPEC §6); every event belongs to exactly one."""

    DOWNLOADS = "downloads"
    DOWNLOAD_PROGRESS = "download_progress"
    SCAN_PROGRESS = "scan_progress"
    SYSTEM = "system"


class EventType(StrEnum):
    """The event catalogue: the one list of names services may publish."""

    DOWNLOAD_STARTED = "download_started"
    DOWNLOAD_COMPLETE = "download_complete"
    DOWNLOAD_FAILED = "download_failed"
    DOWNLOAD_PROGRESS = "download_progress"
    QUEUE_STATUS = "queue_status"
    QUEUE_STARTED = "queue_started"
    QUEUE_STOPPED = "queue_stopped"
    QUEUE_PAUSED = "queue_paused"
    QUEUE_RESUMED = "queue_resumed"
    SCAN_STARTED = "scan_started"
    SCAN_PROGRESS = "scan_progress"
    SCAN_COMPLETE = "scan_complete"
    SCAN_FAILED = "scan_failed"
    NEW_EPISODES_FOUND = "new_episodes_found"
    AUTO_DOWNLOAD_QUEUED = "auto_download_queued"
    SCHEDULED_RESCAN_STARTED = "scheduled_rescan_started"
    SCHEDULED_RESCAN_COMPLETE = "scheduled_rescan_complete"
    EPISODE_FILES_REMOVED = "episode_files_removed"
    SERIES_CHANGED = "series_changed"  # added or matched: {action, folder, provider, key}
    OPERATION_UPDATED = "operation_updated"
    SYSTEM_STATUS = "system_status"

    @property
    def room(self) -> Room:
        """The WebSocket room this event is delivered to."""
        return _ROOMS.get(self, Room.SYSTEM)


_ROOMS: Final[dict[EventType, Room]] = {
    EventType.DOWNLOAD_STARTED: Room.DOWNLOADS,
    EventType.DOWNLOAD_COMPLETE: Room.DOWNLOADS,
    EventType.DOWNLOAD_FAILED: Room.DOWNLOADS,
    EventType.QUEUE_STATUS: Room.DOWNLOADS,
    EventType.QUEUE_STARTED: Room.DOWNLOADS,
    EventType.QUEUE_STOPPED: Room.DOWNLOADS,
    EventType.QUEUE_PAUSED: Room.DOWNLOADS,
    EventType.QUEUE_RESUMED: Room.DOWNLOADS,
    EventType.AUTO_DOWNLOAD_QUEUED: Room.DOWNLOADS,
    EventType.EPISODE_FILES_REMOVED: Room.SCAN_PROGRESS,
    EventType.SERIES_CHANGED: Room.SCAN_PROGRESS,
    EventType.DOWNLOAD_PROGRESS: Room.DOWNLOAD_PROGRESS,
    EventType.SCAN_STARTED: Room.SCAN_PROGRESS,
    EventType.SCAN_PROGRESS: Room.SCAN_PROGRESS,
    EventType.SCAN_COMPLETE: Room.SCAN_PROGRESS,
    EventType.SCAN_FAILED: Room.SCAN_PROGRESS,
    EventType.SCHEDULED_RESCAN_STARTED: Room.SCAN_PROGRESS,
    EventType.SCHEDULED_RESCAN_COMPLETE: Room.SCAN_PROGRESS,
}


@dataclass(slots=True, frozen=True)
class Event:
    """One published fact: its type, a JSON-ready payload and when it happened."""

    type: EventType
    data: Mapping[str, Any]
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def room(self) -> Room:
        """Shortcut for the type's room."""
        return self.type.room

    def to_dict(self) -> dict[str, Any]:
        """The wire shape shared by WebSocket and MQTT: {type, timestamp, data}."""
        return {"type": str(self.type), "timestamp": self.timestamp.isoformat(), "data": self.data}


Subscriber = Callable[[Event], Awaitable[None]]


class Subscription:
    """One subscriber's queue and the task that drains it; owned and cancelled by the bus."""

    def __init__(self, bus: EventBus, callback: Subscriber, maxsize: int, name: str) -> None:
        self._bus = bus
        self._callback = callback
        self.name = name
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"events:{name}")

    def offer(self, event: Event) -> None:
        """Queue without waiting; a full queue drops the event so the publisher never waits."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                _LOGGER.warning("Subscriber %s is slow: %d events dropped", self.name, self.dropped)

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._callback(event)
            except Exception:
                _LOGGER.exception("Subscriber %s failed on %s", self.name, event.type)
            finally:
                self.queue.task_done()

    async def cancel(self) -> None:
        """Stop delivering to this subscriber."""
        self._bus.remove(self)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class EventBus:
    """Fans each event out to every subscriber; publishing is synchronous and never blocks."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.published = 0

    def subscribe(self, callback: Subscriber, *, name: str, maxsize: int = 1000) -> Subscription:
        """Deliver every future event to callback, in order, from a task of its own."""
        subscription = Subscription(self, callback, maxsize, name)
        self._subscriptions.append(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Forget a subscription (its task is cancelled by Subscription.cancel)."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, type_: EventType, data: Mapping[str, Any]) -> Event:
        """Publish an event to all subscribers and return it."""
        event = Event(type_, data)
        self.published += 1
        for subscription in self._subscriptions:
            subscription.offer(event)
        return event

    async def drained(self) -> None:
        """Return once every subscriber has handled every event published so far."""
        await asyncio.gather(*(s.queue.join() for s in list(self._subscriptions)))

    async def close(self) -> None:
        """Cancel every subscriber task (called from the bus's cleanup context)."""
        for subscription in list(self._subscriptions):
            await subscription.cancel()
