"""The queue as read at one version of its table, serialized once, and the view that versions it.

GET /api/queue/status lists every item. With thousands of items, reading and serializing them
costs ~100 ms, so the waiting, completed and failed lists are kept as JSON until the table
changes; only the few running items (live progress) are rendered per request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiosqlite

from ..db import Database
from ..jsonutil import dumps

if TYPE_CHECKING:
    from .queue_store import QueueItem

STATUSES: Final = ("downloading", "pending", "completed", "failed", "cancelled")
# The lists of GET /api/queue/status that change only with the table, by the status they hold;
# "downloading" carries live progress and is rendered per request.
_LISTS: Final = {
    "pending_queue": "pending",
    "completed_downloads": "completed",
    "failed_downloads": "failed",
}
STORED_LISTS: Final = tuple(_LISTS.values())


class TrackedDatabase:
    """The queue's view of the shared Database: every write moves `revision` on once done."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.revision = 0

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        """The first row of a read, or None."""
        return await self._db.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        """Every row of a read."""
        return await self._db.fetchall(sql, params)

    # The revision moves after the write (committed or failed), never before: a snapshot read
    # while a write runs carries the old revision and is read again on the next request.
    async def write(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Cursor:
        """One statement in its own transaction."""
        try:
            return await self._db.write(sql, params)
        finally:
            self.revision += 1

    async def write_many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """executemany under the write lock."""
        try:
            await self._db.write_many(sql, rows)
        finally:
            self.revision += 1

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, as Database.transaction."""
        try:
            async with self._db.transaction() as conn:
                yield conn
        finally:
            self.revision += 1

    async def version(self) -> tuple[int, int]:
        """Differs whenever the data may: our writes, or another connection's (the CLI's)."""
        row = await self._db.fetchone("PRAGMA data_version")
        return self.revision, int(row[0]) if row else 0


@dataclass(slots=True, frozen=True)
class QueueSnapshot:
    """Every item grouped by state at one version, the stored lists already as JSON arrays."""

    version: tuple[int, int]
    groups: Mapping[str, Sequence[QueueItem]]
    lists_json: Mapping[str, str]
    downloaded_mb: float

    @classmethod
    def of(
        cls, version: tuple[int, int], items: Iterable[QueueItem], downloaded_mb: float
    ) -> QueueSnapshot:
        """Group items (in queue order) and serialize the stored lists (CPU: run in a thread)."""
        groups: dict[str, list[QueueItem]] = {status: [] for status in STATUSES}
        for item in items:
            groups[item.status].append(item)
        lists_json = {s: dumps([item.to_dict() for item in groups[s]]) for s in STORED_LISTS}
        return cls(version, groups, lists_json, downloaded_mb)


def status_head(
    snapshot: QueueSnapshot,
    *,
    running: bool,
    paused: bool,
    progress: Mapping[int, dict[str, Any]],
    max_concurrent: int,
) -> dict[str, Any]:
    """The status without the stored lists: flags, the running items (live progress), stats."""
    active = []
    for item in snapshot.groups["downloading"]:
        data = item.to_dict()
        if live := progress.get(item.id):  # live progress lives in the queue, not the table
            data["progress"] = live
        active.append(data)
    speeds = [i["progress"].get("speed_mbps") or 0.0 for i in active]
    return {
        "is_running": running,
        "is_paused": paused,
        "active_downloads": active,
        "stats": {
            "pending": len(snapshot.groups["pending"]),
            "active": len(active),
            "completed": len(snapshot.groups["completed"]),
            "failed": len(snapshot.groups["failed"]),
            "downloaded_mb": round(snapshot.downloaded_mb, 2),
            "current_speed_mbps": round(sum(speeds), 3),
            "max_concurrent": max_concurrent,
        },
    }


def status_lists(snapshot: QueueSnapshot) -> dict[str, list[dict[str, Any]]]:
    """The stored lists as objects (status_body splices the same lists as JSON text)."""
    return {name: [i.to_dict() for i in snapshot.groups[s]] for name, s in _LISTS.items()}


def status_body(snapshot: QueueSnapshot, head: Mapping[str, Any]) -> bytes:
    """GET /api/queue/status as JSON: `head` plus the stored lists as the snapshot holds them."""
    parts = [dumps(head)[:-1]]  # the object without its closing brace, then the JSON arrays
    parts += [f",{dumps(name)}:{snapshot.lists_json[s]}" for name, s in _LISTS.items()]
    parts.append("}")
    return "".join(parts).encode()
