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


def start_writeback(path: str | Path, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range of a file to disk now, without waiting.

    A download that leaves all its data dirty until the final fsync waits there for the whole
    file; started while the transfer runs, the writes overlap it. POSIX_FADV_DONTNEED starts
    writeback of dirty pages (Linux) and drops the clean ones: a finished episode's data need
    not crowd out the page cache of a small server. A no-op where fadvise is missing.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None or length <= 0:
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)
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
