"""Download and library history in SQLite: recorded from the event bus, paged for the API."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiosqlite
from aiohttp import web

from . import keys
from .db import Database
from .events import Event, EventBus, EventType, Subscription

_LOGGER = logging.getLogger(__name__)

HistoryEvent = Literal["grabbed", "downloaded", "failed", "deleted", "upgraded", "scan"]
HISTORY_EVENTS: Final[tuple[HistoryEvent, ...]] = (
    "grabbed",
    "downloaded",
    "failed",
    "deleted",
    "upgraded",
    "scan",
)
# Column expressions, never user text: the API only picks a key of this mapping.
SORT_KEYS: Final = {"at": "at", "event": "event", "series_key": "series_key"}
MAX_ROWS: Final = 10_000
MAX_AGE_S: Final = 90 * 86400
# Prune every so many inserts, so the table stays bounded between the daily prune jobs too.
PRUNE_EVERY: Final = 200
SCAN_ERRORS_KEPT: Final = 20

_COLUMNS: Final = "id, at, event, provider, series_key, season, episode, language, message, data"
# The series' name as the library knows it now (None once it left the library): the panel
# looked names up in one page of the library, and a large library's showed as keys.
_SERIES_NAME: Final = (
    "(SELECT s.name FROM series s"
    " WHERE s.provider = history.provider AND s.key = history.series_key) AS series_name"
)


@dataclass(slots=True, frozen=True)
class HistoryRecord:
    """One row of the history."""

    id: int
    at: float
    event: str
    provider: str | None
    series_key: str | None
    season: int | None
    episode: int | None
    language: str | None
    message: str | None
    data: dict[str, Any]
    series_name: str | None

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> HistoryRecord:
        """Build from a row selected with _COLUMNS and _SERIES_NAME."""
        return cls(
            id=row["id"],
            at=row["at"],
            event=row["event"],
            provider=row["provider"],
            series_key=row["series_key"],
            season=row["season"],
            episode=row["episode"],
            language=row["language"],
            message=row["message"],
            data=json.loads(row["data"]) if row["data"] else {},
            series_name=row["series_name"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The API record."""
        return {
            "id": self.id,
            "at": self.at,
            "event": self.event,
            "provider": self.provider,
            "series_key": self.series_key,
            "series_name": self.series_name,
            "season": self.season,
            "episode": self.episode,
            "language": self.language,
            "message": self.message,
            "data": self.data,
        }


class History:
    """The history table: record, page and prune; subscribes to the bus when started."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        max_rows: int = MAX_ROWS,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self._db = db
        self._clock = clock
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._since_prune = 0
        self._subscription: Subscription | None = None
        self.handled = 0
        self._handled = asyncio.Condition()

    def start(self, bus: EventBus) -> None:
        """Record every relevant event published from now on."""
        self._subscription = bus.subscribe(self.on_event, name="history", maxsize=5000)

    async def close(self) -> None:
        """Stop recording."""
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None

    async def record(
        self,
        event: HistoryEvent,
        *,
        provider: str | None = None,
        series_key: str | None = None,
        season: int | None = None,
        episode: int | None = None,
        language: str | None = None,
        message: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> None:
        """Insert one row; every PRUNE_EVERY rows the table is cut back to its bounds."""
        await self._db.write(
            "INSERT INTO history (at, event, provider, series_key, season, episode, language,"
            " message, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                self._clock() if at is None else at,
                event,
                provider,
                series_key,
                season,
                episode,
                language,
                message,
                json.dumps(dict(data or {}), ensure_ascii=False, default=str),
            ],
        )
        self._since_prune += 1
        if self._since_prune >= PRUNE_EVERY:
            await self.prune()

    async def prune(self) -> int:
        """Drop rows older than max_age_s and all but the newest max_rows; return how many."""
        self._since_prune = 0
        cutoff = self._clock() - self.max_age_s
        async with self._db.transaction() as conn:
            old = await conn.execute("DELETE FROM history WHERE at < ?", [cutoff])
            excess = await conn.execute(
                "DELETE FROM history WHERE id NOT IN"
                " (SELECT id FROM history ORDER BY at DESC, id DESC LIMIT ?)",
                [self.max_rows],
            )
        removed = max(old.rowcount, 0) + max(excess.rowcount, 0)
        if removed:
            _LOGGER.debug("history: %d old rows pruned", removed)
        return removed

    async def count(self) -> int:
        """Rows in the table."""
        row = await self._db.fetchone("SELECT COUNT(*) FROM history")
        return int(row[0]) if row else 0

    async def page(
        self,
        page: int,
        page_size: int,
        sort_key: str = "at",
        descending: bool = True,
        *,
        series_key: str | None = None,
        event: str | None = None,
    ) -> tuple[int, list[HistoryRecord]]:
        """(total matching, the records of one 1-based page)."""
        order = SORT_KEYS[sort_key]
        direction = "DESC" if descending else "ASC"
        where: list[str] = []
        params: list[Any] = []
        if series_key is not None:
            where.append("series_key = ?")
            params.append(series_key)
        if event is not None:
            where.append("event = ?")
            params.append(event)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total_row = await self._db.fetchone(f"SELECT COUNT(*) FROM history{clause}", params)  # noqa: S608
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS}, {_SERIES_NAME} FROM history{clause}"  # noqa: S608
            f" ORDER BY {order} {direction}, id {direction} LIMIT ? OFFSET ?",
            [*params, page_size, (page - 1) * page_size],
        )
        total = int(total_row[0]) if total_row else 0
        return total, [HistoryRecord.from_row(r) for r in rows]

    async def on_event(self, event: Event) -> None:
        """Bus subscriber: turn download and library events into history rows."""
        try:
            await self._record_event(event)
        finally:
            async with self._handled:
                self.handled += 1
                self._handled.notify_all()

    async def wait_handled(self, count: int) -> None:
        """Return once the subscriber has handled `count` events in total."""
        async with self._handled:
            await self._handled.wait_for(lambda: self.handled >= count)

    async def _record_event(self, event: Event) -> None:
        data = event.data
        match event.type:
            case EventType.DOWNLOAD_STARTED:
                await self.record(
                    "grabbed",
                    **_episode(data),
                    message=f"{data.get('language')} from {data.get('hoster')}",
                    data=_pick(data, "item_id", "hoster"),
                )
            case EventType.DOWNLOAD_COMPLETE if data.get("upgrade_from"):
                await self.record(
                    "upgraded",
                    **_episode(data),
                    message=f"{data.get('upgrade_from')} -> {data.get('language')}",
                    data=_pick(data, "item_id", "file_path", "size_mb", "upgrade_from", "replaced"),
                )
            case EventType.DOWNLOAD_COMPLETE:
                await self.record(
                    "downloaded",
                    **_episode(data),
                    message=data.get("file_path"),
                    data=_pick(data, "item_id", "file_path", "size_mb"),
                )
            case EventType.DOWNLOAD_FAILED:
                # Every failed attempt is kept with its reason, final or not: a run of retries
                # is what tells a user which hoster or language keeps failing.
                error = data.get("error") or {}
                await self.record(
                    "failed",
                    **_episode(data),
                    message=error.get("message"),
                    data={
                        **_pick(data, "item_id", "retry_count", "will_retry", "next_attempt_at"),
                        "code": error.get("code"),
                    },
                )
            case EventType.EPISODE_FILES_REMOVED:
                for file in data.get("files", []):
                    await self.record(
                        "deleted",
                        provider=file.get("provider"),
                        series_key=file.get("series_key"),
                        season=file.get("season"),
                        episode=file.get("episode"),
                        message=file.get("path"),
                        data=_pick(file, "path"),
                    )
            case EventType.SCAN_COMPLETE:
                await self.record("scan", message=_scan_message(data), data=_scan_data(data))
            case _:
                return


def _episode(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "provider": data.get("provider"),
        "series_key": data.get("series_key"),
        "season": data.get("season"),
        "episode": data.get("episode"),
        "language": data.get("language"),
    }


def _pick(data: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: data[name] for name in names if name in data}


def _scan_message(data: Mapping[str, Any]) -> str:
    errors = int(data.get("error_count", len(data.get("errors") or [])))
    text = f"{data.get('series', 0)} series, {data.get('missing', 0)} missing episodes"
    return text + (f", {errors} errors" if errors else "")


def _scan_data(data: Mapping[str, Any]) -> dict[str, Any]:
    # A scan of a large broken library can list thousands of errors; keep the row small.
    summary = dict(data)
    errors = list(data.get("errors") or [])
    summary["error_count"] = int(data.get("error_count", len(errors)))
    summary["errors"] = errors[:SCAN_ERRORS_KEPT]
    summary["scan_errors"] = list(data.get("scan_errors") or [])[:SCAN_ERRORS_KEPT]
    return summary


async def history_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the History store, recording from the bus while the app runs."""
    history = History(app[keys.DB], clock=app[keys.CLOCK])
    history.start(app[keys.BUS])
    app[keys.HISTORY] = history
    yield
    await history.close()
