"""SQLite storage: one aiosqlite connection, WAL, and PRAGMA user_version migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from .errors import (
    DatabaseBusyError,
    DatabaseTooNewError,
    DatabaseUnreadableError,
    DatabaseWriteError,
)

T = TypeVar("T")

_LOGGER = logging.getLogger(__name__)

#: how long a statement waits for another process's lock before it gives up
BUSY_TIMEOUT_S: Final = 10.0
WRITE_RETRY_S: Final = 0.05  # between tries of a write that met another process's lock

# Each step is a list of statements run in one transaction with the version bump, so a step
# either lands whole or not at all. Append only: a released step is never edited.
MIGRATIONS: Final[Sequence[Sequence[str]]] = (
    # 1: authentication
    (
        """CREATE TABLE auth_master (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            password_hash TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE auth_tokens (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            csrf_token TEXT,
            created_at REAL NOT NULL,
            expires_at REAL,
            last_used_at REAL
        )""",
        "CREATE INDEX auth_tokens_expiry ON auth_tokens (expires_at)",
    ),
    # 2: the library (series folders and their episodes, local and on the provider)
    (
        """CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            folder TEXT NOT NULL UNIQUE,
            provider TEXT,
            key TEXT,
            name TEXT NOT NULL,
            year INTEGER,
            description TEXT,
            cover_url TEXT,
            languages TEXT,
            error TEXT,
            refreshed_at REAL,
            added_at REAL NOT NULL
        )""",
        "CREATE UNIQUE INDEX series_identity ON series (provider, key) WHERE key IS NOT NULL",
        """CREATE TABLE episodes (
            series_id INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
            season INTEGER NOT NULL,
            episode INTEGER NOT NULL,
            title TEXT,
            title_en TEXT,
            on_provider INTEGER NOT NULL DEFAULT 0,
            local_path TEXT,
            PRIMARY KEY (series_id, season, episode)
        ) WITHOUT ROWID""",
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    # 3: the download queue
    (
        # AUTOINCREMENT: an id is never reused, so a client holding an old id cannot end up
        # acting on a different episode.
        """CREATE TABLE queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            provider TEXT NOT NULL,
            series_key TEXT NOT NULL,
            season INTEGER NOT NULL,
            episode INTEGER NOT NULL,
            language TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('pending', 'downloading', 'completed', 'failed', 'cancelled')),
            priority INTEGER NOT NULL DEFAULT 1,
            position INTEGER NOT NULL,
            retry_count INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            error TEXT,
            attempts TEXT NOT NULL DEFAULT '[]',
            file_path TEXT,
            part_base TEXT,
            size_mb REAL,
            created_at REAL NOT NULL,
            started_at REAL,
            completed_at REAL
        )""",
        # The same episode is never queued twice while it is waiting or downloading.
        """CREATE UNIQUE INDEX queue_active_episode ON queue (provider, series_key, season, episode)
            WHERE status IN ('pending', 'downloading')""",
        "CREATE INDEX queue_order ON queue (status, priority DESC, position)",
    ),
    # 4: history and the hoster-link blocklist
    (
        """CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            event TEXT NOT NULL,
            provider TEXT,
            series_key TEXT,
            season INTEGER,
            episode INTEGER,
            language TEXT,
            message TEXT,
            data TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX history_at ON history (at)",
        "CREATE INDEX history_series ON history (series_key, at)",
        """CREATE TABLE blocklist (
            id INTEGER PRIMARY KEY,
            provider TEXT NOT NULL,
            series_key TEXT NOT NULL,
            season INTEGER NOT NULL,
            episode INTEGER NOT NULL,
            hoster TEXT NOT NULL,
            language TEXT NOT NULL,
            link TEXT NOT NULL,
            reason TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            blocked INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (provider, series_key, season, episode, link)
        )""",
    ),
    # 5: language upgrades: the language a downloaded file holds, a series' upgrade switch
    # (NULL = the global downloads.upgrade) and, on a queue item, the language it replaces
    (
        "ALTER TABLE episodes ADD COLUMN local_language TEXT",
        "ALTER TABLE series ADD COLUMN upgrade INTEGER",
        "ALTER TABLE queue ADD COLUMN upgrade_from TEXT",
    ),
    # 6: what the last walk of a series folder could not read (a broken sidecar, a folder
    # without permission, names that are not UTF-8); NULL when it read everything
    ("ALTER TABLE series ADD COLUMN scan_error TEXT",),
    # 7: the stable code of a queue item's error beside its message (provider_rate_limited,
    # insufficient_space, ...): scripts decided on the message text
    ("ALTER TABLE queue ADD COLUMN error_code TEXT",),
    # 8: when a download landed an episode's file: a walk of the disk that began before then,
    # in this process or another (a scan command beside the service), did not see the file
    # and must not undo it
    ("ALTER TABLE episodes ADD COLUMN landed_at REAL",),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)


def search_text(value: object) -> object:
    """A name as searches compare it: case folded ("Ü" -> "ü", "ß" -> "ss") and without
    accents ("ü" -> "u"). SQLite's LIKE folds ASCII letters only: "ün" never found "Ünïcödé".
    The SQL function search_text() on every connection."""
    if not isinstance(value, str):
        return value
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


async def connect(
    path: Path,
    migrations: Sequence[Sequence[str]] = MIGRATIONS,
) -> aiosqlite.Connection:
    """Open the database, set the PRAGMAs and migrate it; refuse a database newer than the code."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        conn.row_factory = aiosqlite.Row
        # WAL lets readers run beside the writer; busy_timeout rides out another process's
        # lock. FULL syncs the WAL at every commit: with NORMAL a queue change the API had
        # answered (an item added, removed, the queue stopped) was lost to a power cut until
        # the next checkpoint. The writes are few and small; a rescan is one transaction.
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await set_busy_timeout(conn, BUSY_TIMEOUT_S)
        await conn.create_function("search_text", 1, search_text, deterministic=True)
        await migrate(conn, migrations)
    except BaseException as err:
        await close(conn)
        unreadable = unreadable_database(path, err) if isinstance(err, sqlite3.Error) else None
        if unreadable is not None:
            raise unreadable from err
        raise
    return conn


def unreadable_database(path: Path, err: sqlite3.Error) -> DatabaseUnreadableError | None:
    """The error that says in one line what to do when `path` is no SQLite database or a
    damaged one (None for any other error); a traceback said nothing a user could act on."""
    if not _sqlite_says(err, ("SQLITE_NOTADB", "SQLITE_CORRUPT"), ("not a database",)):
        return None
    return DatabaseUnreadableError(
        f"the database {path} cannot be read ({err}): restore a backup (see the README)"
        " or move the file aside to start with an empty one",
        details={"path": str(path), "reason": str(err)},
    )


class Database:
    """The shared connection plus a lock that keeps transactions whole.

    One aiosqlite connection serves every coroutine, so a BEGIN from one coroutine would
    otherwise swallow another's writes into its transaction. Writes therefore go through
    `write`, `write_many` or `transaction`, which take turns; reads use `execute` freely.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()
        self._busy_timeout_s = BUSY_TIMEOUT_S
        # Reads with a statement open (between their execute and their cursor's close): a
        # write starts once there are none (see _start_writing).
        self._reads = 0
        self._no_reads = asyncio.Event()
        self._no_reads.set()

    async def set_busy_timeout(self, seconds: float) -> None:
        """How long a statement waits for another process's lock (default BUSY_TIMEOUT_S)."""
        await set_busy_timeout(self.conn, seconds)
        self._busy_timeout_s = seconds

    async def _start_writing(self, start: Callable[[], Awaitable[T]]) -> T:
        """Run the first statement of a write, waiting out another process's lock.

        SQLite's busy handler waits for that lock, but not while this connection has a read
        statement open, which reads from other coroutines between their execute and their
        fetch often had (one connection serves them all): then SQLite answers "locked" at
        once, as waiting could deadlock. A write then failed at once (database_busy) under a
        backup's few-second lock, rather than waiting as documented. So a write starts when no
        read is open (no code writes while it holds a read open), and should SQLite still
        answer "locked" early, it is tried again until the busy timeout: the failed statement
        did nothing.
        """
        await self._no_reads.wait()
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                return await start()
            except sqlite3.OperationalError as err:
                message = str(err)
                busy = "locked" in message or "busy" in message
                if not busy or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(WRITE_RETRY_S)

    @contextlib.asynccontextmanager
    async def execute(
        self, sql: str, params: Iterable[Any] = ()
    ) -> AsyncIterator[aiosqlite.Cursor]:
        """A read: `async with db.execute(...) as cursor` (never write inside the block)."""
        self._reads += 1
        self._no_reads.clear()
        try:
            async with self.conn.execute(sql, tuple(params)) as cursor:
                yield cursor
        finally:
            self._reads -= 1
            if not self._reads:
                self._no_reads.set()

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        """The first row of a read, or None."""
        with _busy_as_app_error():
            async with self.execute(sql, params) as cursor:
                row: aiosqlite.Row | None = await cursor.fetchone()
        return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        """Every row of a read."""
        with _busy_as_app_error():
            async with self.execute(sql, params) as cursor:
                return list(await cursor.fetchall())

    async def write(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Cursor:
        """One statement in its own implicit transaction, never inside another's."""
        values = tuple(params)
        async with self._lock:
            with _busy_as_app_error():
                return await self._start_writing(lambda: self.conn.execute(sql, values))

    async def write_many(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """executemany under the lock (one implicit transaction: all rows or none)."""
        values = [tuple(r) for r in rows]
        async with self._lock:
            with _busy_as_app_error():
                await self._start_writing(lambda: self.conn.executemany(sql, values))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error) while holding the write lock."""
        async with self._lock:
            with _busy_as_app_error():
                await self._start_writing(lambda: self.conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield self.conn
                    await self.conn.execute("COMMIT")
                except BaseException:
                    if self.conn.in_transaction:
                        await self.conn.execute("ROLLBACK")
                    raise

    async def close(self) -> None:
        """Close the connection and join its worker thread."""
        await close(self.conn)


async def open_database(path: Path) -> Database:
    """connect() wrapped in a Database."""
    return Database(await connect(path))


async def set_busy_timeout(conn: aiosqlite.Connection, seconds: float) -> None:
    """PRAGMA busy_timeout: SQLite retries a locked statement for this long, then fails."""
    # PRAGMA takes no parameters; the value is a number we computed, never input.
    await conn.execute(f"PRAGMA busy_timeout = {max(0, round(seconds * 1000))}")


def _sqlite_says(err: sqlite3.Error, codes: tuple[str, ...], texts: tuple[str, ...]) -> bool:
    """Whether SQLite's error is one of `codes` (a prefix takes in the extended codes, such as
    SQLITE_IOERR_WRITE), or, where the error has no code (raised by hand), says one of `texts`."""
    name = str(getattr(err, "sqlite_errorname", ""))
    return name.startswith(codes) or any(text in str(err) for text in texts)


# SQLite's answers when it cannot write the file: the disk, not the statement, is at fault.
_CANNOT_WRITE: Final = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR")
_CANNOT_WRITE_TEXT: Final = ("disk is full", "readonly database", "disk I/O error")


@contextlib.contextmanager
def _busy_as_app_error() -> Iterator[None]:
    """A lock another process held past the busy timeout, or a data disk that is full,
    read-only or failing, as a 503 naming it instead of a crash.

    Raw, a full disk ended the queue's dispatcher without a word (it rides out only
    StorageError), and every API call answered 500.
    """
    try:
        yield
    except sqlite3.OperationalError as err:
        message = str(err)
        if "locked" in message or "busy" in message:
            raise DatabaseBusyError(
                "the database is locked by another program (a backup or a second instance?);"
                " try again in a moment",
                details={"reason": message},
            ) from err
        if _sqlite_says(err, _CANNOT_WRITE, _CANNOT_WRITE_TEXT):
            raise DatabaseWriteError(
                f"cannot write the database: {message} (is the data disk full or read-only?)",
                details={"reason": message},
            ) from err
        raise


async def close(conn: aiosqlite.Connection) -> None:
    """Close and wait for aiosqlite's worker thread to end, so shutdown leaves no thread behind."""
    await conn.close()
    thread = getattr(conn, "_thread", None)  # aiosqlite stops it but does not join it
    if thread is not None:
        await asyncio.to_thread(thread.join, 5)


async def user_version(conn: aiosqlite.Connection) -> int:
    """The schema version stored in the database file."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, migrations: Sequence[Sequence[str]]) -> int:
    """Apply every missing step, each in its own transaction; return the final version."""
    current = await user_version(conn)
    target = len(migrations)
    if current > target:
        raise DatabaseTooNewError(
            f"the database has schema version {current}, this version of the add-on knows "
            f"only up to {target}; install a newer version or restore a backup",
            details={"database_version": current, "supported_version": target},
        )
    for version in range(current + 1, target + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process (a command started with the
            # service) may have made this step since; made twice, it failed ("table ...
            # already exists") and that process did not start.
            if await user_version(conn) >= version:
                await conn.execute("COMMIT")
                continue
            for statement in migrations[version - 1]:
                await conn.execute(statement)
            # PRAGMA takes no parameters; version is an int we computed, never input.
            await conn.execute(f"PRAGMA user_version = {int(version)}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        _LOGGER.info("Database migrated to schema version %d", version)
    return target
