"""Which process runs the download queue: the one holding `<data>/queue.lock`.

A CLI run next to the service shares the database. Only the holder of this lock may treat
`downloading` rows as left behind by a crash (remove their partial files, set them pending)
and start downloads: before it, `python -m aniworld_addon queue` reset the service's running
download and a second task wrote the same file, which then landed half-done.
The kernel drops a flock with its process, so a `kill -9` never leaves it held.

The holder writes what it is into the file ("service 123", "cli 456"): a command-line
`download` that finds the queue taken hands its episodes to a service, but waits for another
command line, which ends with its own episodes and would leave these pending for nobody.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Final

_LOGGER = logging.getLogger(__name__)

LOCK_NAME: Final = "queue.lock"


class QueueLock:
    """An exclusive, non-blocking flock on one file; blocking calls: run them in a thread."""

    def __init__(self, path: Path, holder: str = "service") -> None:
        self.path = path
        self.holder = holder  # what this process is, as the file says while it holds the lock
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it (and say who holds it); True when held."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as err:
            # a file system without flock: nothing can be proved, so act as the only process
            # (as every version before this lock did)
            _LOGGER.warning("cannot lock %s (%s); assuming no other process", self.path, err)
        self._fd = fd
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self.holder} {os.getpid()}\n".encode(), 0)
        return True

    def held_by(self) -> tuple[str, int] | None:
        """What holds the lock, as the holder wrote it (None: unknown, or nobody)."""
        try:
            words = self.path.read_text(encoding="utf-8", errors="replace").split()
        except OSError:
            return None
        if len(words) != 2 or not words[1].isdigit():
            return None
        return words[0], int(words[1])

    def release(self) -> None:
        """Let another process take the queue."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor drops the flock
