"""Small file-system helpers that make writes crash-safe."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Final


def fsync_dir(path: Path) -> None:
    """Persist a directory entry change (a rename) on file systems that need it."""
    with contextlib.suppress(OSError):  # some platforms/file systems cannot open directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_out(path: str | Path) -> None:
    """Write a file's data to disk now and drop its pages from the cache; errors are ignored.

    For a file that is still growing (see downloads/writeback.py): the fsync that makes the
    finished file durable reports any error. The written pages are clean, so
    POSIX_FADV_DONTNEED drops them: a finished episode's data need not crowd out the page
    cache of a small server.
    """
    sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
    with contextlib.suppress(OSError):
        # Never through a symlink or waiting on a fifo left where the file should be.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            sync(fd)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# Read once, at import (one thread then): setting it to read it again later briefly gave
# files that other threads (downloads, sidecars) created meanwhile the modes 0666 and 0777.
_UMASK: Final = _read_umask()


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write text to path so that a crash leaves either the old or the new file, never half.

    The file is private (0600, as mkstemp makes it) unless `mode` is given, which the
    process's umask then narrows, as for any file it creates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
