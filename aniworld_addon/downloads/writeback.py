"""A download's `.part` written to disk while the transfer runs, in a thread of its own.

Linux keeps what a transfer writes dirty in the page cache (up to a share of the RAM) until
something asks for it on disk; the fsync that makes a finished file durable then waits for all
of it. Written out every few MB from a thread of its own, so that the transfer never waits on
the disk, the writes overlap the transfer and that fsync finds little left. On the bench VM a
200 MB file arriving at 900 MB/s: the fsync after the last byte took 0.24 s, 0.18 s with the
POSIX_FADV_DONTNEED hint this replaces, 0.06 s with this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..fsutil import write_out

_LOGGER = logging.getLogger(__name__)


class WriteBack:
    """Writes one growing file to disk in the background whenever asked; owned by its download.

    request() never blocks on the disk: asked while a write-out runs, the next one starts when
    it ends (requests in between are one). The thread starts with the first request and ends in
    close(), which the download calls however it ends.
    """

    def __init__(self, name: str, write: Callable[[str], None] = write_out) -> None:
        self._name = name
        self._write = write
        self._changed = threading.Condition()
        self._wanted: str | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self, path: str) -> None:
        """Ask for `path` (the file being written) to be written to disk soon."""
        with self._changed:
            if self._closed:
                return
            self._wanted = path
            if self._thread is None:
                # Daemon, like the download thread: a process being killed waits for neither.
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._changed.notify()

    def close(self) -> None:
        """Stop, after the write-out under way if any (a pending one is dropped: the caller's
        own fsync follows). Idempotent."""
        with self._changed:
            self._closed = True
            self._changed.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._wanted is None and not self._closed:
                    self._changed.wait()
                path, self._wanted = self._wanted, None
                if self._closed or path is None:
                    return
            try:
                self._write(path)
            except Exception:  # a failed hint must not end the write-outs, nor the download
                _LOGGER.exception("writing %s to disk ahead of its fsync failed", path)
