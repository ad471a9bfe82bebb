"""Daily backups of the database and config.json into <data>/backups/<timestamp>/."""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Final

from .fsutil import fsync_dir, fsync_file

BACKUP_DIR: Final = "backups"
BACKUPS_KEPT: Final = 7
BACKUP_NAME_RE: Final = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")


def write_backup(db_path: Path, config_path: Path, root: Path, stamp: str, keep: int) -> Path:
    """Copy the database (sqlite3 backup API) and config.json into root/stamp; prune to keep."""
    root.mkdir(parents=True, exist_ok=True)
    final, n = root / stamp, 1
    while final.exists():
        n += 1
        final = root / f"{stamp}-{n}"
    # Folders of backups a crash or power cut interrupted: each as big as the database, and
    # no later backup has their name. One backup runs at a time (the scheduler's job lock).
    for stale in root.glob(".*.partial"):
        if BACKUP_NAME_RE.match(stale.name[1 : -len(".partial")]):
            shutil.rmtree(stale, ignore_errors=True)
    partial = root / f".{final.name}.partial"
    partial.mkdir()
    # A file copy of a WAL database can miss committed pages still in the -wal file; the
    # backup API reads a consistent snapshot through SQLite while the app keeps writing.
    with (
        contextlib.closing(sqlite3.connect(db_path, timeout=10)) as source,
        contextlib.closing(sqlite3.connect(partial / db_path.name)) as target,
    ):
        source.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    if config_path.exists():
        shutil.copy2(config_path, partial / config_path.name)
        fsync_file(partial / config_path.name)  # a power cut must not leave it empty
    fsync_dir(partial)
    partial.rename(final)  # whole or absent: a crash never leaves a half backup under its name
    fsync_dir(root)
    # The names order the others; the one just made is kept whatever its name: with the
    # clock behind (a Pi without a clock before NTP) it sorted first and was pruned at once.
    backups = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and BACKUP_NAME_RE.match(p.name) and p.name != final.name
    )
    for old in backups[: max(0, len(backups) - (keep - 1))]:
        shutil.rmtree(old)
    return final
