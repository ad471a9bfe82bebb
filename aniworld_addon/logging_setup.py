"""Logging: stdout for the process, rotating files under <data>/logs written from a thread."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from .const import LOG_DIR

FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
PACKAGE_LOGGER: Final = "aniworld_addon"
DOWNLOAD_LOGGER: Final = "aniworld_addon.downloads"
MAX_BYTES: Final = 5 * 1024 * 1024
BACKUP_COUNT: Final = 3


def configure_console(level: str) -> None:
    """The process-wide console handler (CLI only; tests keep pytest's capture).

    On stderr: a command's stdout is its result (a table a script reads or pipes on).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log at info would drown the app's own lines on a busy panel.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # httpx logs every request's full URL at info: a webhook's URL holds its secret token
    # (Discord, ntfy), which then stood in the add-on's log for anyone shown it.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    throttle_asyncio_logger()


class RepeatThrottle(logging.Filter):
    """Lets a message through at most once per interval, then says how many it held back.

    asyncio reports some errors once per loop turn ("socket.accept() out of system resource"
    while file descriptors run out): thousands a second, enough to rotate every log file away.
    """

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[tuple[str, int], float] = {}
        self._held: dict[tuple[str, int], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (str(record.msg), record.levelno)  # the message before its arguments
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) >= 1000:  # bounded: forget the old ones
            self._last.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.interval_s:.0f} s)"
        return True


def throttle_asyncio_logger() -> None:
    """Throttle the asyncio logger's repeats (once per process, however often called)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, RepeatThrottle) for f in logger.filters):
        logger.addFilter(RepeatThrottle())


class _OnlyDownloads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith(DOWNLOAD_LOGGER)


class FileLogging:
    """app.log, download.log and error.log; records cross a queue so the loop never writes files."""

    def __init__(self, data_path: Path, level: str) -> None:
        self.log_dir = data_path / LOG_DIR
        self._level = level.upper()
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._queue_handler = logging.handlers.QueueHandler(self._queue)
        self._listener: logging.handlers.QueueListener | None = None

    def start(self) -> None:
        """Open the files (in the caller's thread; call it through asyncio.to_thread)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        formatter = logging.Formatter(FORMAT)

        def rotating(name: str, level: int) -> logging.Handler:
            handler = logging.handlers.RotatingFileHandler(
                self.log_dir / name, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
            )
            handler.setLevel(level)
            handler.setFormatter(formatter)
            return handler

        app_log = rotating("app.log", logging.NOTSET)
        download_log = rotating("download.log", logging.NOTSET)
        download_log.addFilter(_OnlyDownloads())
        error_log = rotating("error.log", logging.ERROR)
        self._listener = logging.handlers.QueueListener(
            self._queue, app_log, download_log, error_log, respect_handler_level=True
        )
        self._listener.start()
        package = logging.getLogger(PACKAGE_LOGGER)
        package.addHandler(self._queue_handler)
        # asyncio reports what escaped a task ("Task exception was never retrieved"): a bug of
        # ours, which belongs in error.log, not only on the console.
        throttle_asyncio_logger()
        logging.getLogger("asyncio").addHandler(self._queue_handler)
        if package.level == logging.NOTSET or package.level > logging.getLevelName(self._level):
            package.setLevel(self._level)

    def stop(self) -> None:
        """Detach and flush; joins the listener thread."""
        logging.getLogger(PACKAGE_LOGGER).removeHandler(self._queue_handler)
        logging.getLogger("asyncio").removeHandler(self._queue_handler)
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None


def read_tail(path: Path, lines: int, chunk: int = 64 * 1024) -> list[str]:
    """The last `lines` lines of a log file, reading backwards from the end (call in a thread)."""
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, 2)
        end = handle.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= lines:
            start = max(0, end - chunk)
            handle.seek(start)
            data = handle.read(end - start) + data
            end = start
    text = data.decode("utf-8", errors="replace").splitlines()
    return text[-lines:] if lines else []
