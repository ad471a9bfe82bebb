"""The queue table: items, their order, and every state change as one short statement."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

import aiosqlite

from ..db import Database
from ..errors import ConflictError, NotFoundError, ValidationError
from .queue_snapshot import QueueSnapshot, TrackedDatabase

_COLUMNS: Final = (
    "id, provider, series_key, season, episode, language, status, priority, position,"
    " retry_count, next_attempt_at, error, attempts, file_path, part_base, size_mb,"
    " created_at, started_at, completed_at, upgrade_from, error_code"
)
# every item, grouped by state and in start order within each (see _ranked)
# The pending items in the order they will start (reorder reads it inside its transaction).
_PENDING_IDS: Final = (
    "SELECT id FROM queue WHERE status = 'pending' ORDER BY priority DESC, position, id"
)
_EVERY_ITEM: Final = f"SELECT {_COLUMNS} FROM queue ORDER BY status, priority DESC, position, id"  # noqa: S608


class Priority(IntEnum):
    """HIGH > NORMAL > LOW; FIFO (then explicit reorder) within one."""

    LOW = 0
    NORMAL = 1
    HIGH = 2

    @classmethod
    def parse(cls, value: str | None) -> Priority:
        """Case-free name, default NORMAL."""
        if value is None:
            return cls.NORMAL
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValidationError(
                "priority must be HIGH, NORMAL or LOW",
                details=[{"path": "priority", "message": "unknown priority"}],
            ) from None


@dataclass(slots=True)
class QueueItem:
    """One queued episode; `progress` lives in memory while it downloads."""

    id: int
    provider: str
    series_key: str
    season: int
    episode: int
    language: str | None
    status: str
    priority: Priority
    position: int
    retry_count: int
    next_attempt_at: float | None
    error: str | None
    attempts: list[dict[str, Any]]
    file_path: str | None
    part_base: str | None
    size_mb: float | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    #: set on an upgrade: the language of the file it replaces once the new one is verified
    upgrade_from: str | None = None
    #: the stable code of `error` (provider_rate_limited, insufficient_space, ...)
    error_code: str | None = None
    rank: int | None = None
    progress: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> QueueItem:
        """Build from a row of _COLUMNS."""
        return cls(
            id=row["id"],
            provider=row["provider"],
            series_key=row["series_key"],
            season=row["season"],
            episode=row["episode"],
            language=row["language"],
            status=row["status"],
            priority=Priority(row["priority"]),
            position=row["position"],
            retry_count=row["retry_count"],
            next_attempt_at=row["next_attempt_at"],
            error=row["error"],
            attempts=json.loads(row["attempts"]),
            file_path=row["file_path"],
            part_base=row["part_base"],
            size_mb=row["size_mb"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            upgrade_from=row["upgrade_from"],
            error_code=row["error_code"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The SPEC §5 item shape (plus provider, attempts and next_attempt_at)."""
        size = self.size_mb
        progress = self.progress or {
            "percent": 100.0 if self.status == "completed" else 0.0,
            "downloaded_mb": size if self.status == "completed" else 0.0,
            "total_mb": size,
            "speed_mbps": None,
            "eta_seconds": None,
        }
        return {
            "id": self.id,
            "provider": self.provider,
            "series_key": self.series_key,
            "season": self.season,
            "episode": self.episode,
            "language": self.language,
            "status": self.status,
            "priority": self.priority.name,
            "position": self.rank,
            "progress": progress,
            "retry_count": self.retry_count,
            "error": self.error,
            "error_code": self.error_code,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "file_path": self.file_path,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "upgrade_from": self.upgrade_from,
        }


def _ranked(items: Iterable[QueueItem]) -> list[QueueItem]:
    """Items in queue order, pending ones numbered in the order they will start."""
    ranked = list(items)
    rank = 0
    for item in ranked:
        if item.status == "pending":
            rank += 1
            item.rank = rank
    return ranked


class QueueStore:
    """SQL for the queue; ordering is priority, then position, then id."""

    def __init__(self, db: Database) -> None:
        self._db = TrackedDatabase(db)
        self._snapshot: QueueSnapshot | None = None
        self._snapshot_lock = asyncio.Lock()

    async def add(
        self,
        provider: str,
        key: str,
        episodes: Sequence[tuple[int, int]],
        priority: Priority,
        now: float,
        *,
        upgrade_from: str | None = None,
    ) -> tuple[list[int], list[int], list[int]]:
        """Insert each episode not already waiting or downloading; return (new ids, all ids,
        ids of waiting items whose priority the request raised)."""
        new: list[int] = []
        every: list[int] = []
        raised: list[int] = []
        async with self._db.transaction() as conn:
            async with conn.execute("SELECT COALESCE(MAX(position), 0) FROM queue") as cursor:
                row = await cursor.fetchone()
            position = int(row[0]) if row else 0
            for season, episode in episodes:
                async with conn.execute(
                    "SELECT id, status, priority FROM queue WHERE provider = ? AND series_key = ?"
                    " AND season = ? AND episode = ? AND status IN ('pending', 'downloading')",
                    (provider, key, season, episode),
                ) as cursor:
                    existing = await cursor.fetchone()
                if existing is not None:
                    every.append(int(existing[0]))
                    # Queued again more urgently: a waiting item takes the higher priority (it
                    # kept its old one, and no route changes an item's priority).
                    if existing[1] == "pending" and int(existing[2]) < int(priority):
                        await conn.execute(
                            "UPDATE queue SET priority = ? WHERE id = ?",
                            (int(priority), int(existing[0])),
                        )
                        raised.append(int(existing[0]))
                    continue
                position += 1
                cursor = await conn.execute(
                    "INSERT INTO queue (provider, series_key, season, episode, status, priority,"
                    " position, created_at, upgrade_from)"
                    " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                    (provider, key, season, episode, int(priority), position, now, upgrade_from),
                )
                assert cursor.lastrowid is not None
                new.append(cursor.lastrowid)
                every.append(cursor.lastrowid)
        return new, every, raised

    async def get(self, item_id: int) -> QueueItem:
        """One item or 404."""
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM queue WHERE id = ?", (item_id,))  # noqa: S608
        if row is None:
            raise NotFoundError(f"no queue item {item_id}", details={"id": item_id})
        return QueueItem.from_row(row)

    async def existing_ids(self, ids: Iterable[int]) -> set[int]:
        """Which of these ids exist."""
        wanted = list(ids)
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        rows = await self._db.fetchall(f"SELECT id FROM queue WHERE id IN ({marks})", wanted)  # noqa: S608
        return {int(r[0]) for r in rows}

    async def all(self) -> list[QueueItem]:
        """Every item: pending ranked in the order they will start."""
        rows = await self._db.fetchall(_EVERY_ITEM)
        return _ranked(QueueItem.from_row(r) for r in rows)

    async def pending_ids(self) -> list[int]:
        """The pending items' ids in the order they will start."""
        rows = await self._db.fetchall(_PENDING_IDS)
        return [int(r[0]) for r in rows]

    async def snapshot(self) -> QueueSnapshot:
        """Every item as of now, read and serialized again only after the table changed."""
        async with self._snapshot_lock:  # concurrent requests share one rebuild
            version = await self._db.version()
            if self._snapshot is None or self._snapshot.version != version:
                rows = await self._db.fetchall(_EVERY_ITEM)
                downloaded_mb = await self.completed_mb()
                # Building thousands of items and their JSON is CPU work: off the loop.
                self._snapshot = await asyncio.to_thread(
                    lambda: QueueSnapshot.of(
                        version, _ranked(QueueItem.from_row(r) for r in rows), downloaded_mb
                    )
                )
            return self._snapshot

    async def next_pending(self, now: float) -> QueueItem | None:
        """The first pending item whose backoff has passed."""
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM queue WHERE status = 'pending'"  # noqa: S608
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " ORDER BY priority DESC, position, id LIMIT 1",
            (now,),
        )
        return QueueItem.from_row(row) if row else None

    async def next_wakeup(self, now: float) -> float | None:
        """The earliest future backoff deadline of a pending item."""
        row = await self._db.fetchone(
            "SELECT MIN(next_attempt_at) FROM queue WHERE status = 'pending'"
            " AND next_attempt_at > ?",
            (now,),
        )
        return float(row[0]) if row and row[0] is not None else None

    async def claim(self, item_id: int, now: float) -> bool:
        """pending -> downloading; False if another process (a CLI run) took it first."""
        cursor = await self._db.write(
            "UPDATE queue SET status = 'downloading', started_at = ?, error = NULL,"
            " error_code = NULL WHERE id = ? AND status = 'pending'",
            (now, item_id),
        )
        return int(cursor.rowcount) == 1

    async def set_part_base(self, item_id: int, part_base: str, language: str) -> None:
        """Remember where this attempt writes, so a restart can clean up after a crash."""
        await self._db.write(
            "UPDATE queue SET part_base = ?, language = ? WHERE id = ?",
            (part_base, language, item_id),
        )

    async def back_to_pending(self, item_ids: Iterable[int]) -> None:
        """downloading -> pending (stop, shutdown, crash recovery); retries are not counted."""
        await self._db.write_many(
            "UPDATE queue SET status = 'pending', started_at = NULL WHERE id = ?"
            " AND status = 'downloading'",
            [(i,) for i in item_ids],
        )

    async def interrupted(self) -> list[QueueItem]:
        """Items a crash left in 'downloading'."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM queue WHERE status = 'downloading'"  # noqa: S608
        )
        return [QueueItem.from_row(r) for r in rows]

    async def complete(
        self,
        item_id: int,
        file_path: str,
        language: str,
        size_mb: float,
        now: float,
        attempts: list[dict[str, Any]],
    ) -> None:
        """downloading -> completed."""
        await self._db.write(
            "UPDATE queue SET status = 'completed', file_path = ?, language = ?, size_mb = ?,"
            " completed_at = ?, error = NULL, error_code = NULL, part_base = NULL,"
            " next_attempt_at = NULL,"
            " attempts = ? WHERE id = ?",
            (file_path, language, size_mb, now, json.dumps(attempts), item_id),
        )

    async def retry_later(
        self, item_id: int, error: str, code: str, attempts: list[dict[str, Any]], at: float
    ) -> None:
        """downloading -> pending with a backoff deadline and one more retry counted."""
        await self._db.write(
            "UPDATE queue SET status = 'pending', retry_count = retry_count + 1, error = ?,"
            " error_code = ?, attempts = ?, next_attempt_at = ?, started_at = NULL WHERE id = ?",
            (error, code, json.dumps(attempts), at, item_id),
        )

    async def fail(
        self, item_id: int, error: str, code: str, attempts: list[dict[str, Any]], now: float
    ) -> None:
        """downloading -> failed with the reason."""
        await self._db.write(
            "UPDATE queue SET status = 'failed', error = ?, error_code = ?, attempts = ?,"
            " completed_at = ?, next_attempt_at = NULL WHERE id = ?",
            (error, code, json.dumps(attempts), now, item_id),
        )

    async def delete(self, item_ids: Iterable[int]) -> int:
        """Remove rows; returns how many."""
        ids = list(item_ids)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        cursor = await self._db.write(f"DELETE FROM queue WHERE id IN ({marks})", ids)  # noqa: S608
        return int(cursor.rowcount)

    async def delete_status(self, status: str) -> list[int]:
        """Remove every item in one state (clear completed / failed); returns their ids."""
        rows = await self._db.fetchall("SELECT id FROM queue WHERE status = ?", (status,))
        ids = [int(r[0]) for r in rows]
        await self.delete(ids)
        return ids

    async def retry(self, item_ids: Sequence[int]) -> list[int]:
        """failed/cancelled -> pending with a fresh retry budget; [] ids = every failed one.

        Returns the ids now pending: not those dropped for a newer item of the same episode,
        nor listed ones in another state. A listed id that does not exist is a 404.
        """
        if item_ids:
            await self._must_exist(item_ids)
            marks = ",".join("?" * len(item_ids))
            where, params = f"id IN ({marks}) AND status IN ('failed', 'cancelled')", list(item_ids)
        else:
            where, params = "status = 'failed'", []
        async with self._db.transaction() as conn:
            async with conn.execute(f"SELECT id FROM queue WHERE {where}", params) as cursor:  # noqa: S608
                ids = [int(r[0]) for r in await cursor.fetchall()]
            async with conn.execute("SELECT COALESCE(MAX(position), 0) FROM queue") as cursor:
                row = await cursor.fetchone()
            position = int(row[0]) if row else 0
            retried: list[int] = []
            for item_id in ids:
                # A newer item for the same episode may be waiting already: drop the old one.
                async with conn.execute(
                    "DELETE FROM queue WHERE id = ? AND EXISTS (SELECT 1 FROM queue q, queue o"
                    " WHERE o.id = ? AND q.id != o.id AND q.provider = o.provider"
                    " AND q.series_key = o.series_key AND q.season = o.season"
                    " AND q.episode = o.episode AND q.status IN ('pending', 'downloading'))",
                    (item_id, item_id),
                ) as cursor:
                    if cursor.rowcount:
                        continue
                position += 1
                retried.append(item_id)
                await conn.execute(
                    "UPDATE queue SET status = 'pending', retry_count = 0, error = NULL,"
                    " error_code = NULL, next_attempt_at = NULL, completed_at = NULL,"
                    " position = ? WHERE id = ?",
                    (position, item_id),
                )
        return retried

    async def _must_exist(self, item_ids: Sequence[int]) -> None:
        """NotFoundError naming the ids no item has."""
        marks = ",".join("?" * len(item_ids))
        query = f"SELECT id FROM queue WHERE id IN ({marks})"  # noqa: S608 - placeholders
        rows = await self._db.fetchall(query, list(item_ids))
        unknown = sorted(set(item_ids) - {int(r[0]) for r in rows})
        if unknown:
            raise NotFoundError(f"no queue item {unknown[0]}", details={"ids": unknown})

    async def reorder(self, item_ids: Sequence[int]) -> None:
        """Give the listed pending items positions in this order, ahead of the rest."""
        async with self._db.transaction() as conn:
            async with conn.execute(_PENDING_IDS) as cursor:
                pending = [int(r[0]) for r in await cursor.fetchall()]
            not_pending = [i for i in item_ids if i not in set(pending)]
            if not_pending:
                await self._must_exist(not_pending)  # 404 for an id no item has
                raise ConflictError(  # as for a move: it exists, but is not waiting
                    "only pending items can be reordered", details={"not_pending": not_pending}
                )
            listed = set(item_ids)
            order = list(item_ids) + [i for i in pending if i not in listed]
            await conn.executemany(
                "UPDATE queue SET position = ? WHERE id = ?",
                [(n, i) for n, i in enumerate(order, 1)],
            )

    async def failed_episodes(self) -> set[tuple[str, str, int, int]]:
        """(provider, series key, season, episode) of every item that failed for good."""
        rows = await self._db.fetchall(
            "SELECT provider, series_key, season, episode FROM queue WHERE status = 'failed'"
        )
        return {(r[0], r[1], int(r[2]), int(r[3])) for r in rows}

    async def failed_untried(self) -> list[tuple[int, str, str, int, int]]:
        """(id, provider, series key, season, episode) of failed items that tried no hoster:
        none offered the episode in a wanted language (no_hoster)."""
        rows = await self._db.fetchall(
            "SELECT id, provider, series_key, season, episode FROM queue"
            " WHERE status = 'failed' AND attempts = '[]'"
        )
        return [(int(r[0]), r[1], r[2], int(r[3]), int(r[4])) for r in rows]

    async def counts(self) -> dict[str, int]:
        """Items per state."""
        rows = await self._db.fetchall("SELECT status, COUNT(*) FROM queue GROUP BY status")
        found = {r[0]: int(r[1]) for r in rows}
        return {s: found.get(s, 0) for s in ("pending", "downloading", "completed", "failed")}

    async def completed_mb(self) -> float:
        """Megabytes downloaded by completed items still in the queue."""
        row = await self._db.fetchone(
            "SELECT COALESCE(SUM(size_mb), 0) FROM queue WHERE status = 'completed'"
        )
        return float(row[0]) if row else 0.0
