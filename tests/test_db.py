"""Database migrations: each step from a database at the version before, and downgrade refusal."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aniworld_addon import db
from aniworld_addon.db import MIGRATIONS, SCHEMA_VERSION, close, connect, open_database
from aniworld_addon.errors import DatabaseTooNewError
from tests.conftest import database_lock


def _make_db_at(path: Path, version: int) -> None:
    """A database as an older release left it: the first `version` steps applied."""
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[:version]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("start", range(SCHEMA_VERSION))
async def test_each_migration_step_reaches_the_current_schema(tmp_path: Path, start: int) -> None:
    path = tmp_path / "aniworld.db"
    _make_db_at(path, start)
    conn = await connect(path)
    try:
        async with conn.execute("PRAGMA user_version") as cursor:
            assert (await cursor.fetchone())[0] == SCHEMA_VERSION
        async with conn.execute("PRAGMA journal_mode") as cursor:
            assert (await cursor.fetchone())[0] == "wal"
        async with conn.execute("PRAGMA foreign_keys") as cursor:
            assert (await cursor.fetchone())[0] == 1
    finally:
        await close(conn)
    # The result equals a fresh database's schema.
    fresh = tmp_path / "fresh.db"
    conn = await connect(fresh)
    await close(conn)
    assert _schema(path) == _schema(fresh)


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    return rows


async def test_data_survives_migration(tmp_path: Path) -> None:
    path = tmp_path / "aniworld.db"
    _make_db_at(path, 1)
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO auth_master (id, password_hash, created_at) VALUES (1, 'h', 0)")
    raw.commit()
    raw.close()
    conn = await connect(path)
    async with conn.execute("SELECT password_hash FROM auth_master") as cursor:
        assert (await cursor.fetchone())[0] == "h"
    await close(conn)


async def test_a_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "aniworld.db"
    _make_db_at(path, SCHEMA_VERSION)
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(DatabaseTooNewError):
        await connect(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    raw.close()


async def test_a_failing_step_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "aniworld.db"
    broken = [*MIGRATIONS, ("CREATE TABLE ok_one (x)", "THIS IS NOT SQL")]
    with pytest.raises(sqlite3.OperationalError):
        await connect(path, broken)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
    raw.close()
    assert "ok_one" not in tables


async def test_a_write_waits_for_another_process_s_lock_while_a_read_is_open(
    tmp_path: Path,
) -> None:
    # With a read statement open on the shared connection, SQLite answers "locked" at once
    # instead of waiting: a write beside a panel's read failed under a backup's short lock.
    path = tmp_path / "aniworld.db"
    db = await open_database(path)
    try:
        async with database_lock(path), db.execute("SELECT name FROM sqlite_master") as cursor:
            assert await cursor.fetchone() is not None  # a statement open on the connection
            write = asyncio.create_task(
                db.write("INSERT INTO meta (name, value) VALUES ('probe', '1')")
            )
            await asyncio.wait([write], timeout=1)  # it fails at once, or waits
            assert not write.done() or write.exception() is None
        await write  # written once the other process let go
        assert await db.fetchone("SELECT value FROM meta WHERE name = 'probe'") is not None
    finally:
        await db.close()


async def test_two_processes_opening_an_old_database_at_once_both_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service and a command started together: each read the schema version, then both
    # made the missing steps, and the second died on "table auth_master already exists".
    path = tmp_path / "aniworld.db"
    looked = 0
    read = db.user_version

    async def other_migrates_right_after(conn: Any) -> int:
        nonlocal looked
        looked += 1
        version = await read(conn)
        if looked == 1:  # this process has looked; the other one migrates now
            other = await db.connect(path)
            await db.close(other)
        return version

    monkeypatch.setattr(db, "user_version", other_migrates_right_after)
    conn = await db.connect(path)
    try:
        assert await read(conn) == db.SCHEMA_VERSION
    finally:
        await db.close(conn)
