"""The library tables: series rows, their episodes, and the queries the API pages through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, NamedTuple

import aiosqlite

from ..db import Database, search_text
from ..errors import ConflictError, NotFoundError, ValidationError
from .records import EpisodeRecord, SeriesRecord


class LocalFolder(NamedTuple):
    """What sync_local keeps of one series folder, as the walk found it."""

    provider: str | None
    key: str | None
    name: str
    local: dict[tuple[int, int], str]  # {(season, episode): path relative to the folder}
    scan_error: str | None  # what the walk could not read or refused (None: nothing)
    # False: part of the folder (or its identity file) could not be read, so files missing
    # from `local` may still be there, and an identity the walk did not see may still hold.
    complete: bool = True


Filter = Literal["all", "missing", "unmatched"]
SORT_KEYS: Final = {
    "name": "s.name COLLATE NOCASE",
    "year": "s.year",
    "folder": "s.folder COLLATE NOCASE",
    "local_count": "local_count",
    "missing_count": "missing_count",
    "key": "s.key",
}

_COUNTS: Final = """
    SELECT s.*,
        COALESCE(SUM(e.local_path IS NOT NULL), 0) AS local_count,
        COALESCE(SUM(e.on_provider = 1 AND e.local_path IS NULL), 0) AS missing_count
    FROM series s LEFT JOIN episodes e ON e.series_id = s.id
"""


class LibraryStore:
    """SQL for the library; every method is one short statement or one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Held from a walk of the disk until its listing is stored (LibraryService.sync_disk),
        # and by mark_local: a download landing in between was stored, then overwritten by
        # the older listing (the episode "missing" again, its language gone for good).
        self.files_lock = asyncio.Lock()

    async def page(
        self,
        *,
        filter_: Filter,
        query: str | None,
        page: int,
        page_size: int,
        sort_key: str,
        descending: bool,
    ) -> tuple[int, list[SeriesRecord]]:
        """One page of series with counts, and the total matching the filter."""
        if sort_key not in SORT_KEYS:
            raise ValidationError(
                f"sort_key must be one of {', '.join(SORT_KEYS)}",
                details=[{"path": "sort_key", "message": "unknown sort key"}],
            )
        where, having, params = [], [], []
        if filter_ == "unmatched":
            where.append("s.key IS NULL")
        elif filter_ == "missing":
            having.append("missing_count > 0")
        if query:
            where.append(
                "(instr(search_text(s.name), ?) OR instr(search_text(s.folder), ?)"
                " OR instr(search_text(s.key), ?))"
            )
            needle = str(search_text(query))
            params += [needle, needle, needle]
        sql = _COUNTS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY s.id"
        if having:
            sql += " HAVING " + " AND ".join(having)
        async with self._db.execute(f"SELECT COUNT(*) FROM ({sql})", params) as cursor:  # noqa: S608 - fixed fragments only
            row = await cursor.fetchone()
        total = int(row[0]) if row else 0
        direction = "DESC" if descending else "ASC"
        order = f" ORDER BY {SORT_KEYS[sort_key]} {direction}, s.id LIMIT ? OFFSET ?"
        async with self._db.execute(
            sql + order, [*params, page_size, (page - 1) * page_size]
        ) as cur:
            rows = await cur.fetchall()
        return total, [SeriesRecord.from_row(r) for r in rows]

    async def name_of(self, provider: str, key: str) -> str | None:
        """A series' name (what people call it, for messages), None when it is not here."""
        row = await self._db.fetchone(
            "SELECT name FROM series WHERE provider = ? AND key = ?", (provider, key)
        )
        return None if row is None else str(row[0])

    async def by_key(self, key: str, provider: str | None = None) -> SeriesRecord:
        """The series with this provider key; 404 if none, 409 if two providers share it and
        `provider` does not say which."""
        sql = _COUNTS + " WHERE s.key = ?" + (" AND s.provider = ?" if provider else "")
        params = [key, provider] if provider else [key]
        rows = await self._db.fetchall(sql + " GROUP BY s.id", params)
        if not rows:
            raise NotFoundError(f"no series {key!r} in the library", details={"key": key})
        if len(rows) > 1:
            providers = sorted(str(r["provider"]) for r in rows)
            raise ConflictError(
                f"{key!r} is a series of several providers ({', '.join(providers)}):"
                " name the provider",
                details={"providers": providers},
            )
        return SeriesRecord.from_row(rows[0])

    async def by_folder(self, folder: str) -> SeriesRecord | None:
        """The series row of a folder, if the scan has seen it."""
        async with self._db.execute(_COUNTS + " WHERE s.folder = ? GROUP BY s.id", [folder]) as c:
            row = await c.fetchone()
        return SeriesRecord.from_row(row) if row else None

    async def matched(self) -> list[SeriesRecord]:
        """Every series with a provider identity."""
        async with self._db.execute(_COUNTS + " WHERE s.key IS NOT NULL GROUP BY s.id") as cursor:
            return [SeriesRecord.from_row(r) for r in await cursor.fetchall()]

    async def episodes(self, series_id: int) -> list[EpisodeRecord]:
        """Every episode row of a series, in order, with its queue state if it is queued."""
        rows = await self._db.fetchall(
            "SELECT e.season, e.episode, e.title, e.title_en, e.on_provider, e.local_path,"
            " (SELECT q.status FROM queue q WHERE q.provider = s.provider"
            "  AND q.series_key = s.key AND q.season = e.season AND q.episode = e.episode"
            "  AND q.status IN ('pending', 'downloading')) AS queued, e.local_language"
            " FROM episodes e JOIN series s ON s.id = e.series_id"
            " WHERE e.series_id = ? ORDER BY e.season = 0, e.season, e.episode",
            [series_id],
        )
        return [EpisodeRecord(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7]) for r in rows]

    async def missing(self, series_id: int) -> list[tuple[int, int]]:
        """(season, episode) the provider lists and the disk lacks."""
        rows = await self._db.fetchall(
            "SELECT season, episode FROM episodes WHERE series_id = ? AND on_provider = 1"
            " AND local_path IS NULL ORDER BY season = 0, season, episode",
            [series_id],
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def episode_title(self, series_id: int, season: int, episode: int) -> str | None:
        """The title the provider gave an episode (German, else English)."""
        row = await self._db.fetchone(
            "SELECT COALESCE(title, title_en) FROM episodes WHERE series_id = ? AND season = ?"
            " AND episode = ?",
            [series_id, season, episode],
        )
        return row[0] if row else None

    async def mark_local(
        self,
        provider: str,
        key: str,
        season: int,
        episode: int,
        relative: str,
        language: str | None = None,
        *,
        at: float,
    ) -> None:
        """A download landed at `at`: the episode is local (path relative to the library root)."""
        folder_relative = relative.split("/", 1)[1] if "/" in relative else relative
        # The series id in the same statement: by_key() would count every episode to say it.
        async with self.files_lock:
            cursor = await self._db.write(
                "INSERT INTO episodes"
                " (series_id, season, episode, local_path, local_language, landed_at)"
                " SELECT id, ?, ?, ?, ?, ? FROM series WHERE provider = ? AND key = ?"
                " ON CONFLICT (series_id, season, episode)"
                " DO UPDATE SET local_path = excluded.local_path,"
                " local_language = excluded.local_language, landed_at = excluded.landed_at",
                [season, episode, folder_relative, language, at, provider, key],
            )
        if cursor.rowcount == 0:
            raise NotFoundError(f"no series {key!r} in the library", details={"key": key})

    async def totals(self) -> dict[str, int]:
        """Counts for MQTT/health: series, unmatched, missing episodes."""
        async with self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(key IS NULL), 0) FROM series"
        ) as cursor:
            series_row = await cursor.fetchone()
        async with self._db.execute(
            "SELECT COUNT(*) FROM episodes WHERE on_provider = 1 AND local_path IS NULL"
        ) as cursor:
            missing_row = await cursor.fetchone()
        assert series_row is not None and missing_row is not None
        return {"series": series_row[0], "unmatched": series_row[1], "missing": missing_row[0]}

    async def scan_errors(self) -> dict[str, str]:
        """{folder: what the last walk of it could not read}, for the folders it concerns."""
        async with self._db.execute(
            "SELECT folder, scan_error FROM series WHERE scan_error IS NOT NULL"
        ) as cursor:
            return {row[0]: row[1] for row in await cursor.fetchall()}

    async def sync_local(
        self,
        found: Mapping[str, LocalFolder],
        now: float,
        walked_at: float | None = None,
    ) -> list[dict[str, Any]]:
        """Make the table match the disk as a walk that began at `walked_at` saw it (a file a
        download landed since is kept); return the episode files that disappeared."""
        removed: list[dict[str, Any]] = []
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT id, folder, provider, key, scan_error, languages, upgrade FROM series"
            ) as cur:
                existing = {r["folder"]: r for r in await cur.fetchall()}
            vanished = set(existing) - set(found)
            # A folder renamed on disk: its identity shows up in a folder new to the table.
            # The row moves along (settings, downloaded files' languages); deleted and made
            # anew, it lost them and every file was reported deleted.
            arrived = {
                (entry.provider, entry.key): folder
                for folder, entry in found.items()
                if folder not in existing and entry.key is not None
            }
            for folder in sorted(vanished):
                old = existing[folder]
                moved_to = arrived.pop((old["provider"], old["key"]), None)
                if old["key"] is not None and moved_to is not None:
                    await conn.execute(
                        "UPDATE series SET folder = ? WHERE id = ?", [moved_to, old["id"]]
                    )
                    existing[moved_to] = existing.pop(folder)
                    vanished.discard(folder)
            # A series' own language order and upgrade switch go where its identity goes (a
            # sidecar moved to another folder, two folders swapping names): they stayed with
            # the folder, and the series matched to it next inherited them. An identity that
            # only leaves (a sidecar broken for one rescan) leaves them where they are.
            carried: dict[tuple[str | None, str | None], tuple[Any, Any, int | None]] = {}
            for folder in vanished:
                old = existing[folder]
                if old["key"] is not None:
                    profile = (old["languages"], old["upgrade"], None)
                    carried[old["provider"], old["key"]] = profile
                async with conn.execute(
                    "SELECT season, episode, local_path FROM episodes WHERE series_id = ?"
                    " AND local_path IS NOT NULL",
                    [old["id"]],
                ) as cur:
                    gone = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
                removed += [_removed(old["provider"], old["key"], folder, *g) for g in gone]
                await conn.execute("DELETE FROM series WHERE id = ?", [old["id"]])
            held = {f: (r["provider"], r["key"]) for f, r in existing.items() if f in found}
            claims = _claims(found, held)
            # Identities that leave a folder are released first: one moving to another folder
            # (or two folders swapping theirs) never holds a key twice, even for a moment.
            for folder, identity in held.items():
                if identity != claims[folder][:2]:
                    leaving = existing[folder]
                    if identity[0] is not None and identity[1] is not None:
                        profile = (leaving["languages"], leaving["upgrade"], leaving["id"])
                        carried[identity] = profile
                    await conn.execute(
                        "UPDATE series SET provider = NULL, key = NULL, error = NULL,"
                        " refreshed_at = NULL WHERE id = ?",
                        [leaving["id"]],
                    )
                    # The old provider's episode list is stale; the files and what is known
                    # of them (the language a download landed them in) are not: deleted, a
                    # sidecar broken for one rescan lost every language, and upgrades stopped.
                    await conn.execute(
                        "DELETE FROM episodes WHERE series_id = ? AND local_path IS NULL",
                        [leaving["id"]],
                    )
                    await conn.execute(
                        "UPDATE episodes SET on_provider = 0, title = NULL, title_en = NULL"
                        " WHERE series_id = ?",
                        [leaving["id"]],
                    )
            moved_from: set[int] = set()  # rows whose identity (and profile) went elsewhere
            given: set[int] = set()  # rows that took a profile along with an identity
            for folder, entry in found.items():
                provider, key, scan_error = claims[folder]
                row = existing.get(folder)
                came = carried.get((provider, key)) if key is not None else None
                if row is None:
                    languages, upgrade = came[:2] if came is not None else (None, None)
                    cursor = await conn.execute(
                        "INSERT INTO series (folder, provider, key, name, added_at, scan_error,"
                        " languages, upgrade) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [folder, provider, key, entry.name, now, scan_error, languages, upgrade],
                    )
                    series_id = cursor.lastrowid
                    if came is not None and came[2] is not None:
                        moved_from.add(came[2])
                else:
                    series_id = row["id"]
                    if row["scan_error"] != scan_error:
                        await conn.execute(
                            "UPDATE series SET scan_error = ? WHERE id = ?", [scan_error, series_id]
                        )
                    if held[folder] != (provider, key) and key is not None:
                        await conn.execute(
                            "UPDATE series SET provider = ?, key = ? WHERE id = ?",
                            [provider, key, series_id],
                        )
                        if came is not None and came[2] != series_id:
                            await conn.execute(
                                "UPDATE series SET languages = ?, upgrade = ? WHERE id = ?",
                                [came[0], came[1], series_id],
                            )
                            given.add(series_id)
                            if came[2] is not None:
                                moved_from.add(came[2])
                assert series_id is not None
                gone = await _sync_episodes_local(
                    conn, series_id, entry.local, entry.complete, walked_at
                )
                removed += [_removed(provider, key, folder, *g) for g in gone]
            for series_id in moved_from - given:  # what another series took along is not theirs
                await conn.execute(
                    "UPDATE series SET languages = NULL, upgrade = NULL WHERE id = ?", [series_id]
                )
        return removed

    async def sync_provider(
        self,
        series_id: int,
        info: Mapping[str, Any],
        episodes: Iterable[tuple[int, int, str | None, str | None]],
        now: float,
        *,
        identity: tuple[str, str],
    ) -> list[tuple[int, int]] | None:
        """Store what the provider listed: series fields and every (season, episode, titles);
        only while the series still has `identity` (provider, key), else None.

        Returns the episodes the provider lists for the first time and no file holds: new
        episodes, announced however they were found. None of a series' first listing is new.
        A folder matched anew while its refresh read the old series' pages took that
        series' name and episodes under the new key."""
        listed = {(s, e): (t, te) for s, e, t, te in episodes}
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT refreshed_at FROM series WHERE id = ? AND provider = ? AND key = ?",
                [series_id, *identity],
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            new: list[tuple[int, int]] = []
            if row[0] is not None:  # listed before: what it did not list then is new
                async with conn.execute(
                    "SELECT season, episode FROM episodes"
                    " WHERE series_id = ? AND (on_provider = 1 OR local_path IS NOT NULL)",
                    [series_id],
                ) as cursor:
                    known = {(s, e) for s, e in await cursor.fetchall()}
                new = sorted(pair for pair in listed if pair not in known)
            await conn.execute(
                "UPDATE series SET name = ?, year = ?, description = ?, cover_url = ?,"
                " error = NULL, refreshed_at = ? WHERE id = ?",
                [
                    info["name"],
                    info["year"],
                    info["description"],
                    info["cover_url"],
                    now,
                    series_id,
                ],
            )
            await conn.execute(
                "UPDATE episodes SET on_provider = 0 WHERE series_id = ?", [series_id]
            )
            await conn.executemany(
                "INSERT INTO episodes (series_id, season, episode, title, title_en, on_provider)"
                " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (series_id, season, episode) DO UPDATE"
                " SET title = excluded.title, title_en = excluded.title_en, on_provider = 1",
                [(series_id, s, e, t, te) for (s, e), (t, te) in listed.items()],
            )
            await conn.execute(
                "DELETE FROM episodes WHERE series_id = ? AND on_provider = 0"
                " AND local_path IS NULL",
                [series_id],
            )
        return new

    async def set_error(self, series_id: int, error: dict[str, Any] | None) -> None:
        """Remember why the last refresh of a series failed (None clears it)."""
        await self._db.write(
            "UPDATE series SET error = ? WHERE id = ?",
            [json.dumps(error) if error else None, series_id],
        )

    async def set_languages(
        self, series_id: int, languages: list[str] | None, upgrade: bool | None
    ) -> None:
        """The series' own language order and upgrade switch (None = the global ones)."""
        await self._db.write(
            "UPDATE series SET languages = ?, upgrade = ? WHERE id = ?",
            [
                json.dumps(languages) if languages is not None else None,
                None if upgrade is None else int(upgrade),
                series_id,
            ],
        )

    async def set_meta(self, name: str, value: Any) -> None:
        """Small facts such as the last scan's time and summary."""
        await self._db.write(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
            " SET value = excluded.value",
            [name, json.dumps(value)],
        )

    async def meta(self, name: str) -> Any:
        """A value stored with set_meta, or None."""
        async with self._db.execute("SELECT value FROM meta WHERE name = ?", [name]) as cursor:
            row = await cursor.fetchone()
        return json.loads(row[0]) if row else None


def _removed(
    provider: str | None, key: str | None, folder: str, season: int, episode: int, path: str
) -> dict[str, Any]:
    return {
        "provider": provider,
        "series_key": key,
        "folder": folder,
        "season": season,
        "episode": episode,
        "path": f"{folder}/{path}",
    }


def _claims(
    found: Mapping[str, LocalFolder], held: Mapping[str, tuple[str | None, str | None]]
) -> dict[str, tuple[str | None, str | None, str | None]]:
    """(provider, key, scan_error) each folder ends up with.

    A folder the walk could not fully read keeps the identity it held. When two folders name
    the same series (a copied folder, a sidecar copied along), the one that held it keeps it,
    else the first by name; the others stay unmatched and say which folder has it.
    """
    wanted: dict[str, tuple[str | None, str | None]] = {}
    for folder, entry in found.items():
        keeps = not entry.complete and entry.key is None and folder in held
        wanted[folder] = held[folder] if keeps else (entry.provider, entry.key)
    owners: dict[tuple[str | None, str | None], str] = {}
    for folder in sorted(wanted, key=lambda f: (held.get(f) != wanted[f], f)):
        if wanted[folder][1] is not None:
            owners.setdefault(wanted[folder], folder)
    claims: dict[str, tuple[str | None, str | None, str | None]] = {}
    for folder, identity in wanted.items():
        error = found[folder].scan_error
        owner = owners.get(identity)
        if owner is not None and owner != folder:
            taken = (
                f"{identity[0]}/{identity[1]} already belongs to the folder {owner!r}: remove"
                " this folder's sidecar or key file, or the other folder"
            )
            error = f"{error}; {taken}" if error else taken
            identity = (None, None)
        claims[folder] = (*identity, error)
    return claims


async def _sync_episodes_local(
    conn: aiosqlite.Connection,
    series_id: int,
    local: dict[tuple[int, int], str],
    complete: bool = True,
    walked_at: float | None = None,
) -> list[tuple[int, int, str]]:
    """Update local paths of one series; return (season, episode, old path) of vanished files.

    When the walk was not complete, a file it did not see is not taken for gone; nor is one a
    download landed after the walk began (LibraryStore.files_lock covers this process only).
    """
    gone: list[tuple[int, int, str]] = []
    async with conn.execute(
        "SELECT season, episode, local_path, on_provider, landed_at FROM episodes"
        " WHERE series_id = ?",
        [series_id],
    ) as cursor:
        rows = {(r[0], r[1]): (r[2], r[3], r[4]) for r in await cursor.fetchall()}
    for (season, episode), (path, on_provider, landed_at) in rows.items():
        wanted = local.get((season, episode))
        if wanted == path or (wanted is None and not complete):
            continue
        if walked_at is not None and landed_at is not None and landed_at > walked_at:
            continue  # landed after the walk looked: what the walk saw is older
        if wanted is None and path is not None:
            gone.append((season, episode, path))
        if wanted is None and not on_provider:
            await conn.execute(
                "DELETE FROM episodes WHERE series_id = ? AND season = ? AND episode = ?",
                [series_id, season, episode],
            )
        else:
            await conn.execute(
                "UPDATE episodes SET local_path = ?, local_language = NULL WHERE series_id = ?"
                " AND season = ? AND episode = ?",
                [wanted, series_id, season, episode],
            )
    await conn.executemany(
        "INSERT INTO episodes (series_id, season, episode, local_path) VALUES (?, ?, ?, ?)",
        [(series_id, s, e, p) for (s, e), p in local.items() if (s, e) not in rows],
    )
    return gone
