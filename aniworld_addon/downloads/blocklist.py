"""Hoster links that keep failing for an episode are skipped for it next time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import aiosqlite

from ..db import Database
from ..errors import NotFoundError

# GET /api/blocklist's sort_key values and what each orders by.
SORT_KEYS: Final = {
    "updated_at": "updated_at",
    "created_at": "created_at",
    "failures": "failures",
    "series_key": "series_key, season, episode",
    "hoster": "hoster",
}
_COLUMNS = (
    "id, provider, series_key, season, episode, hoster, language, link, reason, failures,"
    " created_at, updated_at"
)


@dataclass(slots=True, frozen=True)
class BlockedLink:
    """One blocked (episode, hoster link)."""

    id: int
    provider: str
    series_key: str
    season: int
    episode: int
    hoster: str
    language: str
    link: str
    reason: str | None
    failures: int
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> BlockedLink:
        """Build from a row of _COLUMNS."""
        return cls(*(row[i] for i in range(12)))

    def to_dict(self) -> dict[str, Any]:
        """The API record."""
        return {
            "id": self.id,
            "provider": self.provider,
            "series_key": self.series_key,
            "season": self.season,
            "episode": self.episode,
            "hoster": self.hoster,
            "language": self.language,
            "link": self.link,
            "reason": self.reason,
            "failures": self.failures,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class Blocklist:
    """Counts failures per (episode, link); a link is blocked once it reaches the threshold."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def blocked_links(
        self, provider: str, key: str, season: int, episode: int, *, since: float
    ) -> set[str]:
        """The redirect URLs not to try for this episode: blocked at `since` or later.

        Older entries stay listed but no longer skip the link: kept for good, one outage
        with max_retries 0 blocked every link of an episode, and no Retry ever helped."""
        rows = await self._db.fetchall(
            "SELECT link FROM blocklist WHERE provider = ? AND series_key = ? AND season = ?"
            " AND episode = ? AND blocked = 1 AND updated_at >= ?",
            (provider, key, season, episode, since),
        )
        return {str(r[0]) for r in rows}

    async def record_failure(
        self,
        *,
        provider: str,
        key: str,
        season: int,
        episode: int,
        hoster: str,
        language: str,
        link: str,
        reason: str,
        threshold: int,
        now: float,
    ) -> bool:
        """Count one failure of a link; True when this failure blocks it."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO blocklist (provider, series_key, season, episode, hoster, language,"
                " link, reason, failures, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"
                " ON CONFLICT (provider, series_key, season, episode, link) DO UPDATE SET"
                " failures = failures + 1, reason = excluded.reason,"
                " updated_at = excluded.updated_at",
                (provider, key, season, episode, hoster, language, link, reason, now, now),
            )
            cursor = await conn.execute(
                "UPDATE blocklist SET blocked = 1 WHERE provider = ? AND series_key = ?"
                " AND season = ? AND episode = ? AND link = ? AND blocked = 0 AND failures >= ?",
                (provider, key, season, episode, link, max(1, threshold)),
            )
            return int(cursor.rowcount) == 1

    async def page(
        self, page: int, page_size: int, sort_key: str = "updated_at", descending: bool = True
    ) -> tuple[int, list[BlockedLink]]:
        """Blocked links, newest first unless a SORT_KEYS key says otherwise."""
        order = SORT_KEYS[sort_key]
        direction = "DESC" if descending else "ASC"
        row = await self._db.fetchone("SELECT COUNT(*) FROM blocklist WHERE blocked = 1")
        total = int(row[0]) if row else 0
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM blocklist WHERE blocked = 1"  # noqa: S608 - constants
            f" ORDER BY {order} {direction}, id {direction} LIMIT ? OFFSET ?",
            (page_size, (page - 1) * page_size),
        )
        return total, [BlockedLink.from_row(r) for r in rows]

    async def remove(self, entry_id: int) -> None:
        """Unblock (forget) one entry; 404 if unknown."""
        cursor = await self._db.write("DELETE FROM blocklist WHERE id = ?", (entry_id,))
        if cursor.rowcount == 0:
            raise NotFoundError(f"no blocklist entry {entry_id}", details={"id": entry_id})

    async def forget_episode(self, provider: str, key: str, season: int, episode: int) -> None:
        """A successful download clears the failure counts of the episode's other links."""
        await self._db.write(
            "DELETE FROM blocklist WHERE provider = ? AND series_key = ? AND season = ?"
            " AND episode = ? AND blocked = 0",
            (provider, key, season, episode),
        )
