"""Scheduled work: rescans, the new-episodes check, auto-download, backups and history pruning."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from aiohttp import web
from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from . import keys
from .const import DB_FILENAME
from .db import Database
from .downloads.queue import DownloadQueue
from .downloads.queue_store import Priority
from .errors import AppError
from .events import EventBus, EventType
from .health import CheckResult
from .history import History
from .library.service import LibraryService
from .library.store import SeriesRecord
from .operations import Operation, Operations
from .providers.base import Provider
from .settings import Settings

_LOGGER = logging.getLogger(__name__)

JOB_NAMES: Final = ("rescan", "new_episodes", "backup", "prune_history")
# A run missed by up to this much (loop busy, machine asleep) still happens, once (coalesce).
MISFIRE_GRACE_S: Final = 3600
BACKUP_DIR: Final = "backups"
BACKUPS_KEPT: Final = 7
BACKUP_NAME_RE: Final = re.compile(r"^\d{8}T\d{6}Z(?:-\d+)?$")
# Automatic downloads wait behind what a user asked for (user requests default to NORMAL).
AUTO_PRIORITY: Final = Priority.LOW


@dataclass(slots=True, frozen=True)
class JobSpec:
    """A job's trigger plus what it was built from: an unchanged signature keeps the job as is."""

    trigger: Any  # an apscheduler trigger (the library is untyped)
    signature: tuple[Any, ...]


TriggerFactory = Callable[[Mapping[str, Any], datetime, tzinfo], dict[str, JobSpec | None]]


def schedule_triggers(
    section: Mapping[str, Any], now: datetime, tz: tzinfo
) -> dict[str, JobSpec | None]:
    """The triggers the `scheduler` settings ask for; None disables a job."""
    specs: dict[str, JobSpec | None] = dict.fromkeys(JOB_NAMES)
    cron, hours = section.get("rescan_cron"), int(section["rescan_interval_h"])
    if cron:  # a crontab expression wins over the interval
        specs["rescan"] = JobSpec(CronTrigger.from_crontab(cron, timezone=tz), ("cron", cron))
    elif hours > 0:
        specs["rescan"] = _interval(timedelta(hours=hours), now, tz)
    minutes = int(section["new_episodes_interval_min"])
    if minutes > 0:
        specs["new_episodes"] = _interval(timedelta(minutes=minutes), now, tz)
    # Daily housekeeping at night, local time, when the library is least likely in use.
    specs["backup"] = JobSpec(CronTrigger(hour=3, minute=15, timezone=tz), ("daily", 3, 15))
    specs["prune_history"] = JobSpec(CronTrigger(hour=3, minute=45, timezone=tz), ("daily", 3, 45))
    return specs


def _interval(every: timedelta, now: datetime, tz: tzinfo) -> JobSpec:
    # Anchored on the injected clock, so next fire times are computable without real time.
    trigger = IntervalTrigger(seconds=every.total_seconds(), start_date=now + every, timezone=tz)
    return JobSpec(trigger, ("interval", every.total_seconds()))


@dataclass(slots=True, frozen=True)
class JobRun:
    """How the last run of a job went."""

    name: str
    started_at: float
    finished_at: float
    ok: bool
    error: str | None = None
    result: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape in /api/scheduler/config."""
        return {k: v for k, v in asdict(self).items() if k != "name"}


@runtime_checkable
class _Invalidating(Protocol):
    def invalidate(self, key: str | None = None) -> None:
        """Forget cached pages of one series."""


class Scheduler:
    """Owns an AsyncIOScheduler; each job is an async method run in the loop, one at a time."""

    def __init__(
        self,
        *,
        settings: Settings,
        library: LibraryService,
        queue: DownloadQueue,
        operations: Operations,
        bus: EventBus,
        db: Database,
        history: History | None,
        data_path: Path,
        db_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        timezone: tzinfo | None = None,
        triggers: TriggerFactory = schedule_triggers,
    ) -> None:
        self._settings = settings
        self._library = library
        self._queue = queue
        self._operations = operations
        self._bus = bus
        self._db = db
        self._history = history
        self.backup_dir = data_path / BACKUP_DIR
        self._db_path = db_path or data_path / DB_FILENAME
        self._clock = clock
        self._aps = AsyncIOScheduler(timezone=timezone) if timezone else AsyncIOScheduler()
        self.timezone: tzinfo = self._aps.timezone
        self._triggers = triggers
        self._specs: dict[str, JobSpec] = {}
        self._bodies: dict[str, Callable[[], Awaitable[Any]]] = {
            "rescan": self.rescan,
            "new_episodes": self.check_new_episodes,
            "backup": self.backup,
            "prune_history": self.prune_history,
        }
        self._locks = {name: asyncio.Lock() for name in JOB_NAMES}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._following: set[str] = set()
        self._stopped = asyncio.Event()
        self._ran = asyncio.Condition()
        self.last_runs: dict[str, JobRun] = {}
        self.run_counts: Counter[str] = Counter()
        self.reschedule(settings.section("scheduler"))

    # --- lifecycle and schedule ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the apscheduler loop is started."""
        return bool(self._aps.running)

    def start(self) -> None:
        """Start firing jobs (must run inside the event loop)."""
        self._aps.add_listener(lambda _event: self._stopped.set(), EVENT_SCHEDULER_SHUTDOWN)
        self._aps.start()

    def on_settings_change(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """Settings listener: a changed scheduler block reschedules at once."""
        if old["scheduler"] != new["scheduler"]:
            self.reschedule(new["scheduler"])

    def reschedule(self, section: Mapping[str, Any]) -> None:
        """Make the jobs match the settings; an unchanged job keeps its next run time."""
        wanted = self._triggers(section, self._now(), self.timezone)
        for name in JOB_NAMES:
            spec, current = wanted.get(name), self._specs.get(name)
            if spec is None:
                if current is not None:
                    self._aps.remove_job(name)
                    del self._specs[name]
                continue
            if current is not None and current.signature == spec.signature:
                continue
            self._aps.add_job(
                self._job,
                spec.trigger,
                args=[name],
                id=name,
                name=name,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=MISFIRE_GRACE_S,
            )
            self._specs[name] = spec
            _LOGGER.info("Scheduled %s: %s", name, spec.trigger)

    def next_runs(self, now: datetime | None = None) -> dict[str, datetime | None]:
        """Each job's next fire time after `now` (default: the injected clock); None = disabled."""
        at = now or self._now()
        return {
            name: (
                spec.trigger.get_next_fire_time(None, at)
                if (spec := self._specs.get(name))
                else None
            )
            for name in JOB_NAMES
        }

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), self.timezone)

    async def close(self) -> None:
        """Shut down without waiting for jobs, then cancel and await every task it started."""
        if self._aps.running:
            self._aps.shutdown(wait=False)
            # AsyncIOScheduler shuts down in a loop callback; its listener tells us when.
            async with asyncio.timeout(5):
                await self._stopped.wait()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)  # done callbacks may not have run yet

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"scheduler:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        # Nobody awaits a spawned task's result: an error is logged here or lost.
        if not task.cancelled() and (error := task.exception()) is not None:
            _LOGGER.error("%s failed", task.get_name(), exc_info=error)

    # --- running jobs ------------------------------------------------------------------------

    async def _job(self, name: str) -> None:
        # apscheduler runs this in a task of its own executor; owning it lets close() await it.
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self.run_job(name)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def run_job(self, name: str) -> JobRun:
        """Run one job now (the schedule calls this; tests and the API may too)."""
        async with self._locks[name]:
            started = self._clock()
            try:
                result = await self._bodies[name]()
            except AppError as err:
                _LOGGER.warning("Scheduled %s failed: %s", name, err.message)
                run = JobRun(name, started, self._clock(), False, err.message)
            except Exception as err:  # the edge of a job: one failure must not end the schedule
                _LOGGER.exception("Scheduled %s failed", name)
                run = JobRun(name, started, self._clock(), False, f"{type(err).__name__}: {err}")
            else:
                run = JobRun(name, started, self._clock(), True, None, result)
        self.last_runs[name] = run
        async with self._ran:
            self.run_counts[name] += 1
            self._ran.notify_all()
        return run

    async def wait_for_runs(self, name: str, count: int) -> None:
        """Return once `name` has finished at least `count` runs in total."""
        async with self._ran:
            await self._ran.wait_for(lambda: self.run_counts[name] >= count)

    # --- rescan and auto-download ------------------------------------------------------------

    async def rescan(self) -> dict[str, Any]:
        """The scheduled full rescan; with auto_download, every missing episode is queued."""
        op = self._library.rescan()
        if op.id in self._following:  # a manual trigger already follows this rescan
            await self._operations.wait(op.id)
            summary = {"operation_id": op.id, "status": op.status, "joined": True}
        else:
            self._following.add(op.id)
            summary = await self._follow_rescan(op, "schedule")
        if op.status == "failed":
            raise AppError(f"the rescan failed: {(op.error or {}).get('message')}")
        return summary

    def trigger_rescan(self) -> Operation:
        """Start (or join) a rescan now, followed like a scheduled one; returns the operation."""
        op = self._library.rescan()
        if op.id not in self._following:
            self._following.add(op.id)
            self._spawn(self._follow_rescan(op, "manual"), f"rescan:{op.id}")
        return op

    async def _follow_rescan(self, op: Operation, trigger: str) -> dict[str, Any]:
        try:
            started = {"operation_id": op.id, "trigger": trigger}
            self._bus.publish(EventType.SCHEDULED_RESCAN_STARTED, started)
            await self._operations.wait(op.id)
            queued: list[int] = []
            if op.status == "completed" and self._settings.section("scheduler")["auto_download"]:
                queued = await self.queue_missing(await self._library.store.matched(), "rescan")
            result = op.result if isinstance(op.result, dict) else {}
            summary = {
                **started,
                "status": op.status,
                "error": op.error,
                "series": result.get("series"),
                "missing": result.get("missing"),
                "errors": len(result.get("errors") or []),
                "queued": len(queued),
            }
            self._bus.publish(EventType.SCHEDULED_RESCAN_COMPLETE, summary)
            return summary
        finally:
            self._following.discard(op.id)

    async def queue_missing(
        self,
        series: list[SeriesRecord],
        source: str,
        only: Mapping[int, set[tuple[int, int]]] | None = None,
    ) -> list[int]:
        """Queue the missing episodes (of `only`, if given) that are not queued yet.

        An episode whose download failed for good is left for the user to retry, so a dead
        episode is not queued again on every rescan.
        """
        failed = await self._failed_episodes()
        queued: list[int] = []
        details: list[dict[str, Any]] = []
        for record in sorted(series, key=lambda s: s.name.casefold()):
            if record.provider is None or record.key is None:
                continue
            episodes = [
                (e.season, e.episode)
                for e in await self._library.store.episodes(record.id)
                if e.on_provider
                and e.state == "missing"
                and (only is None or (e.season, e.episode) in only.get(record.id, ()))
                and (record.provider, record.key, e.season, e.episode) not in failed
            ]
            if episodes:
                # The queue picks hosters in the series' own language order, else the global one.
                queued += await self._queue.add(
                    record.provider, record.key, episodes, AUTO_PRIORITY
                )
                pairs = [{"season": s, "episode": e} for s, e in episodes]
                details.append(
                    {"provider": record.provider, "series_key": record.key, "episodes": pairs}
                )
        if queued:
            data = {"source": source, "item_ids": queued, "count": len(queued), "series": details}
            self._bus.publish(EventType.AUTO_DOWNLOAD_QUEUED, data)
        return queued

    async def _failed_episodes(self) -> set[tuple[str, str, int, int]]:
        rows = await self._db.fetchall(
            "SELECT provider, series_key, season, episode FROM queue WHERE status = 'failed'"
        )
        return {(r[0], r[1], int(r[2]), int(r[3])) for r in rows}

    # --- the new-episodes check --------------------------------------------------------------

    async def check_new_episodes(self) -> dict[str, Any]:
        """Read each provider's new-episodes list once; refresh only listed library series."""
        matched = await self._library.store.matched()
        fresh: dict[int, set[tuple[int, int]]] = {}
        found: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for provider in self._library.providers:
            if not provider.supports_new_episodes:
                continue
            try:
                listed = await provider.new_episodes()
            except AppError as err:
                errors.append({"provider": provider.name, "message": err.message})
                continue
            ours = {s.key: s for s in matched if s.provider == provider.name}
            wanted: dict[str, set[tuple[int, int]]] = {}
            for new in listed:
                if new.key in ours:
                    wanted.setdefault(new.key, set()).add((new.season, new.episode))
            for key, episodes in wanted.items():
                series = ours[key]
                try:
                    added = await self._refresh_if_new(provider, series, episodes)
                except AppError as err:
                    errors.append({"provider": provider.name, "key": key, "message": err.message})
                    continue
                if added is None:
                    continue
                fresh[series.id] = set(added)
                found += [
                    {"provider": provider.name, "series_key": key, "name": series.name}
                    | {"season": s, "episode": e}
                    for s, e in added
                ]
        queued: list[int] = []
        if found:
            self._bus.publish(
                EventType.NEW_EPISODES_FOUND, {"episodes": found, "count": len(found)}
            )
            if self._settings.section("scheduler")["auto_download"]:
                changed = [s for s in matched if s.id in fresh]
                queued = await self.queue_missing(changed, "new_episodes", fresh)
        refreshed = sorted({s.key or "" for s in matched if s.id in fresh})
        return {"refreshed": refreshed, "new": found, "queued": len(queued), "errors": errors}

    async def _refresh_if_new(
        self, provider: Provider, series: SeriesRecord, listed: set[tuple[int, int]]
    ) -> list[tuple[int, int]] | None:
        """Refresh a series whose listed episodes are not all known; None when all are known,
        else the episodes that became missing."""
        store = self._library.store
        known = {(e.season, e.episode) for e in await store.episodes(series.id) if e.on_provider}
        if listed <= known:
            return None  # nothing new: not a single request for this series
        before = set(await store.missing(series.id))
        if isinstance(provider, _Invalidating):
            provider.invalidate(series.key)  # its cached pages predate the new episode
        await self._library.refresh(series)
        return [pair for pair in await store.missing(series.id) if pair not in before]

    # --- housekeeping ------------------------------------------------------------------------

    async def backup(self) -> dict[str, Any]:
        """Back up the database and config.json into <data>/backups/<timestamp>/ (7 kept)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        path = await asyncio.to_thread(
            write_backup, self._db_path, self._settings.path, self.backup_dir, stamp, BACKUPS_KEPT
        )
        _LOGGER.info("Backup written to %s", path)
        return {"path": str(path)}

    async def prune_history(self) -> dict[str, Any]:
        """Cut the history back to its age and size bounds."""
        if self._history is None:
            return {"removed": 0}
        return {"removed": await self._history.prune()}

    # --- reporting ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """GET /api/scheduler/config: the settings block plus next runs and the running flag."""
        return {
            **self._settings.section("scheduler"),
            "running": self.running,
            "next_runs": {k: v.isoformat() if v else None for k, v in self.next_runs().items()},
            "last_runs": {k: v.to_dict() for k, v in self.last_runs.items()},
        }

    async def check(self) -> CheckResult:
        """Health: error when the scheduler is stopped or a job's last run failed."""
        if not self.running:
            return CheckResult("error", "the scheduler is not running")
        failed = {k: v.error for k, v in self.last_runs.items() if not v.ok}
        if failed:
            text = "; ".join(f"{k}: {v}" for k, v in failed.items())
            return CheckResult("error", f"last run failed: {text}", failed)
        upcoming = {k: v.isoformat() for k, v in self.next_runs().items() if v}
        return CheckResult("ok", f"{len(upcoming)} jobs scheduled", upcoming)


def write_backup(db_path: Path, config_path: Path, root: Path, stamp: str, keep: int) -> Path:
    """Copy the database (sqlite3 backup API) and config.json into root/stamp; prune to keep."""
    root.mkdir(parents=True, exist_ok=True)
    final, n = root / stamp, 1
    while final.exists():
        n += 1
        final = root / f"{stamp}-{n}"
    partial = root / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
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
    partial.rename(final)  # whole or absent: a crash never leaves a half backup under its name
    backups = sorted(p for p in root.iterdir() if p.is_dir() and BACKUP_NAME_RE.match(p.name))
    for old in backups[: max(0, len(backups) - keep)]:
        shutil.rmtree(old)
    return final


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: start the scheduler in the running loop; stop it leaving nothing behind."""
    settings = app[keys.SETTINGS]
    scheduler = Scheduler(
        settings=settings,
        library=app[keys.LIBRARY],
        queue=app[keys.QUEUE],
        operations=app[keys.OPERATIONS],
        bus=app[keys.BUS],
        db=app[keys.DB],
        history=app.get(keys.HISTORY),
        data_path=app[keys.OPTIONS].data_path,
        clock=app[keys.CLOCK],
    )
    scheduler.start()
    app[keys.SCHEDULER] = scheduler
    remove = settings.add_listener(scheduler.on_settings_change)
    unregister = app[keys.HEALTH].register("scheduler", scheduler.check)
    yield
    unregister()
    remove()
    await scheduler.close()
