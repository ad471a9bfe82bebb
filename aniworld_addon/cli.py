"""One-shot CLI commands (scan, search, ...): the same services as the web app, no listener."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shutil
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

from aiohttp import web

from . import keys
from .app import AppRole, create_app
from .const import DB_FILENAME
from .db import unreadable_database
from .downloads.queue_store import Priority
from .errors import NotFoundError, StorageError
from .events import Event, EventType
from .library.service import LIBRARY_ROOT_META
from .options import Options, OptionsError
from .settings import Settings

_LOGGER = logging.getLogger(__name__)
#: how often a download command looks at its items in the table (for another process's work)
OTHERS_POLL_S: Final = 2.0

T = TypeVar("T")


async def with_services(
    options: Options,
    work: Callable[[web.Application], Awaitable[T]],
    role: AppRole = AppRole.CLI,
) -> T:
    """Start the app's cleanup contexts (database, providers, ...), run work, stop them."""
    app = create_app(await library_for_command(options), role=role)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        return await work(app)
    finally:
        await runner.cleanup()


async def library_for_command(options: Options) -> Options:
    """The options with the library the data path's library was walked in.

    Unless set in the panel, the library folder is a deployment option, and its default
    ./library depends on the working folder: a command run from another one scanned another
    folder and replaced the service's library with it until the service scanned again. So a
    command takes the folder the data were last scanned in, and refuses a --library-path
    flag that names another one rather than ignore it. A variable or options.json (the add-on's
    always names one) is the deployment's, not this run's wish: it gives way like the default.
    """
    settings = Settings(options.data_path)
    await settings.load()
    panel = settings.library_path(Path())
    explicit = "library_path" in options.given
    if panel != Path():
        if explicit and not _same_folder(options.library_path, panel):
            raise OptionsError(
                f"--library-path {options.library_path}: the library folder of these data is"
                f" set in the panel to {panel}; change it there to use another"
            )
        return options
    stored = await asyncio.to_thread(_stored_root, options.data_path / DB_FILENAME)
    if stored is None or _same_folder(stored, options.library_path):
        return options
    if explicit:
        raise OptionsError(
            f"--library-path {options.library_path}: these data hold the library last scanned"
            f" in {stored}; a scan of another folder would replace it (to move the library,"
            " start the service with the new folder, or set it in the panel)"
        )
    _LOGGER.info("library %s, where these data were last scanned", stored)
    return dataclasses.replace(options, library_path=stored)


def _same_folder(one: Path, other: Path) -> bool:
    return one == other or one.resolve() == other.resolve()  # a symlink to it is the same


def _stored_root(database: Path) -> Path | None:
    """The library folder a database's library was last walked in (None: never, or no file)."""
    if not database.is_file():
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(f"{database.absolute().as_uri()}?mode=ro", uri=True, timeout=10)
        ) as connection:
            row = connection.execute(
                "SELECT value FROM meta WHERE name = ?", (LIBRARY_ROOT_META,)
            ).fetchone()
    except sqlite3.DatabaseError as err:
        if "no such table" in str(err):  # an old schema: the app migrates it
            return None
        if (unreadable := unreadable_database(database, err)) is not None:
            raise unreadable from err
        # Busy past the timeout, unreadable: guessing ./library would scan the wrong folder.
        raise StorageError(f"cannot read {database}: {err}") from err
    value = json.loads(row[0]) if row else None
    return Path(value) if isinstance(value, str) else None


class ProgressLine:
    """A progress bar on a terminal; plain lines when the output is a file or a pipe."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = ""

    def update(self, done: int, total: int, label: str) -> None:
        """Show done/total with a label."""
        if self._tty:
            width = max(10, min(40, shutil.get_terminal_size().columns - 40))
            filled = int(width * done / max(total, 1))
            text = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:30]:<30}"
            self._stream.write(text)
            self._stream.flush()
            self._last = text
        else:
            self._stream.write(f"{done}/{total} {label}\n")

    def finish(self) -> None:
        """End the bar's line."""
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


async def scan(options: Options, out: TextIO = sys.stdout) -> int:
    """Rescan and print each series with its local and missing counts."""

    async def work(app: web.Application) -> int:
        bar = ProgressLine(out)

        async def on_event(event: Event) -> None:
            if event.type is EventType.SCAN_PROGRESS:
                data = event.data
                bar.update(data["done"], data["total"], str(data["folder"]))

        subscription = app[keys.BUS].subscribe(on_event, name="cli-progress")
        library = app[keys.LIBRARY]
        operation = library.rescan()
        await app[keys.OPERATIONS].wait(operation.id)
        await subscription.cancel()
        bar.finish()
        if operation.status != "completed":
            error = operation.error or {}
            print(f"scan failed: {error.get('message')}", file=sys.stderr)
            return 1
        _, records = await library.store.page(
            filter_="all",
            query=None,
            page=1,
            page_size=100_000,
            sort_key="folder",
            descending=False,
        )
        rows = [
            (
                r.folder,
                r.key or "(unmatched)",
                str(r.local_count),
                str(r.missing_count),
                (r.error or {}).get("code", "") or ("scan_error" if r.scan_error else ""),
            )
            for r in records
        ]
        _table(out, ("folder", "key", "local", "missing", "error"), rows)
        result: dict[str, Any] = operation.result or {}
        problems: list[dict[str, str]] = result.get("scan_errors", [])
        for problem in problems:
            out.write(f"not read completely: {problem['folder']}: {problem['message']}\n")
        unread = int(result.get("scan_error_count", 0))
        if unread > len(problems):
            out.write(f"not read completely: {unread - len(problems)} more folders\n")
        failures: list[dict[str, Any]] = result.get("errors", [])
        for failure in failures:
            out.write(f"error: {failure['folder']}: {failure['message']}\n")
        out.write(
            f"{result.get('series', 0)} series, {result.get('missing', 0)} missing "
            f"episodes, {result.get('error_count', 0)} errors"
            f", {unread} folders not read completely\n"
        )
        # Every series the provider was asked about failed (the site is down or blocks us):
        # the missing counts are the last scan's, which a script must not take for today's.
        return 1 if failures and not result.get("refreshed") else 0

    return await with_services(options, work)


async def search(options: Options, query: str, out: TextIO = sys.stdout) -> int:
    """Search every enabled provider and print the hits."""

    async def work(app: web.Application) -> int:
        hits = await app[keys.LIBRARY].search(query, None)
        if not hits:
            print(f"nothing found for {query!r}", file=sys.stderr)
            return 0
        rows = [(h["provider"], h["key"], h["name"], str(h["year"] or "")) for h in hits]
        _table(out, ("provider", "key", "name", "year"), rows)
        return 0

    return await with_services(options, work)


def _done(item: dict[str, Any]) -> str:
    """How far an item got; '-' for one running in another process (its progress is
    known there only: the service's panel shows it)."""
    percent = item["progress"]["percent"]
    if item["status"] == "downloading" and not item["progress"].get("speed_mbps") and not percent:
        return "-"
    return f"{percent or 0:.0f}%"


def _table(out: TextIO, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for row in (header, *rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


async def download(
    options: Options,
    key: str,
    *,
    season: int | None,
    episode: int | None,
    missing: bool,
    provider: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Queue episodes of a library series and follow them until each is done or failed."""

    async def work(app: web.Application) -> int:
        library = app[keys.LIBRARY]
        queue = app[keys.QUEUE]
        series = await library.store.by_key(key, provider)
        assert series.provider is not None and series.key is not None
        if missing:
            episodes = await library.store.missing(series.id)
        else:
            assert season is not None and episode is not None
            episodes = [(season, episode)]
        if not episodes:
            out.write(f"{series.name}: nothing is missing\n")
            return 0
        waiting: set[int] = set()
        failed: list[str] = []
        finished = asyncio.Event()
        bar = ProgressLine(out)

        def ended(item_id: int, label: str, path: str | None, error: str | None) -> None:
            if item_id not in waiting:
                return  # said already (by an event, or by the look at the table)
            bar.finish()
            if error is None:
                out.write(f"{label}: {path}\n")
            else:
                failed.append(f"{label}: {error}")
                out.write(f"{label}: failed: {error}\n")
            waiting.discard(item_id)
            if not waiting:
                finished.set()

        async def on_event(event: Event) -> None:
            item_id = event.data.get("item_id")
            if item_id not in waiting:
                return
            label = f"S{event.data['season']:02d}E{event.data['episode']:02d}"
            if event.type is EventType.DOWNLOAD_PROGRESS:
                percent = float(event.data["progress"]["percent"] or 0)
                bar.update(int(percent), 100, label)
            elif event.type is EventType.DOWNLOAD_COMPLETE:
                ended(item_id, label, event.data["file_path"], None)
            elif event.type is EventType.DOWNLOAD_FAILED and not event.data["will_retry"]:
                ended(item_id, label, None, event.data["error"]["message"])

        async def look_at_the_table() -> None:
            # Events come from this process's downloads only. Until it takes the queue over,
            # the process holding it may run these episodes too (it starts whatever is
            # pending): their end is seen in the table, or this command waited for good.
            while waiting:
                await asyncio.sleep(OTHERS_POLL_S)
                for item_id in sorted(waiting):
                    try:
                        item = await queue.store.get(item_id)
                    except NotFoundError:  # removed in the panel
                        ended(item_id, f"item {item_id}", None, "removed from the queue")
                        continue
                    except StorageError:  # busy for now: look again next time
                        continue
                    label = f"S{item.season:02d}E{item.episode:02d}"
                    if item.status == "completed":
                        ended(item_id, label, item.file_path, None)
                    elif item.status in ("failed", "cancelled"):
                        ended(item_id, label, None, item.error or item.status)

        subscription = app[keys.BUS].subscribe(on_event, name="cli-download")
        try:
            ids = await queue.add(series.provider, series.key, episodes, Priority.HIGH)
            waiting.update(ids)
            out.write(f"queued {len(ids)} episode(s) of {series.name}\n")
            halted = not queue.running or queue.paused
            if not queue.dispatching:
                owner = await queue.owner()
                if owner is not None and owner[0] != "service":
                    # Another command line: it ends with its own episodes and would leave these
                    # to nobody, so wait and take the queue over (DownloadQueue.start_up).
                    out.write(
                        f"another download command (process {owner[1]}) runs the queue:"
                        " these start when it ends\n"
                    )
                elif not halted:
                    out.write("the running service downloads them: follow them in its panel\n")
                    return 0
            if halted:  # the service's too: saying it downloads them was a lie (exit 0)
                state = "paused" if queue.running else "stopped"
                print(
                    f"the queue is {state}, so nothing was downloaded; the episodes stay queued."
                    " Start the service and resume the queue in its panel or with the API.",
                    file=sys.stderr,
                )
                return 1
            looker = asyncio.get_running_loop().create_task(look_at_the_table())
            try:
                await finished.wait()
            finally:
                looker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await looker
        finally:
            await subscription.cancel()
        return 1 if failed else 0

    return await with_services(options, work, AppRole.CLI_DOWNLOAD)


async def show_queue(options: Options, out: TextIO = sys.stdout) -> int:
    """Print the queue: state, then every item with its status and progress."""

    async def work(app: web.Application) -> int:
        status = await app[keys.QUEUE].status()
        state = (
            "paused" if status["is_paused"] else "running" if status["is_running"] else "stopped"
        )
        stats = status["stats"]
        out.write(
            f"queue {state}: {stats['pending']} pending, {stats['active']} downloading,"
            f" {stats['completed']} completed, {stats['failed']} failed\n"
        )
        rows = []
        for group in (
            "active_downloads",
            "pending_queue",
            "failed_downloads",
            "completed_downloads",
        ):
            for item in status[group]:
                rows.append(
                    (
                        str(item["id"]),
                        item["series_key"],
                        f"S{item['season']:02d}E{item['episode']:02d}",
                        item["status"],
                        item["priority"],
                        _done(item),
                        item["error"] or item["file_path"] or "",
                    )
                )
        _table(out, ("id", "series", "episode", "status", "priority", "done", "detail"), rows)
        return 0

    return await with_services(options, work)
