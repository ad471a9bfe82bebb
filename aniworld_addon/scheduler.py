"""Scheduled work: rescans, the new-episodes check, auto-download, backups and history pruning."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final

import tzlocal
from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .auto_queue import AutoQueue
from .backups import BACKUP_DIR, BACKUPS_KEPT, write_backup
from .const import DB_FILENAME
from .crontab import crontab_trigger
from .downloads.queue import DownloadQueue
from .errors import AppError
from .events import EventBus, EventType
from .health import CheckResult
from .history import History
from .library.service import LibraryService
from .operations import Operation, Operations
from .settings import Settings

_LOGGER = logging.getLogger(__name__)

JOB_NAMES: Final = ("rescan", "new_episodes", "backup", "prune_history")
# A run missed by up to this much (loop busy, machine asleep) still happens, once (coalesce).
MISFIRE_GRACE_S: Final = 3600
#: an interval job overdue at start runs this long after it, once the service is up
STARTUP_GRACE: Final = timedelta(minutes=1)
LAST_RUNS_META: Final = "scheduler_last_runs"
DAILY_JOBS: Final = frozenset({"backup", "prune_history"})
DAILY_MIN_GAP_S: Final = 20 * 3600


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
        specs["rescan"] = JobSpec(crontab_trigger(cron, tz), ("cron", cron))
    elif hours > 0:
        specs["rescan"] = _interval(timedelta(hours=hours), now, tz)
    minutes = int(section["new_episodes_interval_min"])
    if minutes > 0:
        specs["new_episodes"] = _interval(timedelta(minutes=minutes), now, tz)
    # Daily housekeeping at night, local time, when the library is least likely in use.
    specs["backup"] = JobSpec(CronTrigger(hour=3, minute=15, timezone=tz), ("daily", 3, 15))
    specs["prune_history"] = JobSpec(CronTrigger(hour=3, minute=45, timezone=tz), ("daily", 3, 45))
    return specs


def anchored(
    spec: JobSpec, last_run: float | None, now: datetime, tz: tzinfo, *, starting: bool = False
) -> JobSpec:
    """An interval job's trigger counted from its last run (kept across restarts): due one
    interval after it, or a minute after start when that time has passed. Counted from each
    start, a 24 h rescan never ran on a machine restarted every 20 h.

    At start (`starting`), a job at set times (the nightly backup, a crontab rescan) that fell
    due since its last run while the service was down runs a minute after start, once, then
    keeps its times: a machine off at 03:15 every night never made a backup.
    """
    if last_run is None:
        return spec
    if spec.signature[0] != "interval":
        last = datetime.fromtimestamp(last_run, tz)
        missed = spec.trigger.get_next_fire_time(None, last + timedelta(seconds=1))
        if not starting or missed is None or missed > now or last > now:
            return spec
        return JobSpec(_CatchUp(now + STARTUP_GRACE, spec.trigger), spec.signature)
    every = timedelta(seconds=spec.signature[1])
    due = datetime.fromtimestamp(last_run, tz) + every
    start = max(due, now + STARTUP_GRACE)
    if start >= now + every:  # a clock set back: never later than a plain start would be
        return spec
    trigger = IntervalTrigger(seconds=every.total_seconds(), start_date=start, timezone=tz)
    return JobSpec(trigger, spec.signature)


class _CatchUp(BaseTrigger):  # type: ignore[misc]  # apscheduler is untyped
    """A trigger's times plus one missed run at `at`.

    Not an OrTrigger with a DateTrigger: asked for the next time after `at` with no previous
    run (next_runs does that), a DateTrigger still names `at`, a time long past.
    """

    def __init__(self, at: datetime, inner: Any) -> None:
        self.at = at
        self.inner = inner

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        later: datetime | None = self.inner.get_next_fire_time(previous, now)
        # Only before the first run: when the job's own time comes first (a start less than
        # a minute before it), that run is the missed one, and `at` would run it again.
        if previous is None and now <= self.at:
            return self.at if later is None else min(self.at, later)
        return later

    def __str__(self) -> str:
        return f"{self.inner}, and once at {self.at.isoformat()} (missed while stopped)"


def _interval(every: timedelta, now: datetime, tz: tzinfo) -> JobSpec:
    # Anchored on the injected clock, so next fire times are computable without real time.
    trigger = IntervalTrigger(seconds=every.total_seconds(), start_date=now + every, timezone=tz)
    return JobSpec(trigger, ("interval", every.total_seconds()))


def local_timezone() -> tuple[tzinfo, str | None]:
    """The local time zone (TZ, /etc/localtime), else UTC and why.

    apscheduler reads it with tzlocal, which takes only a zone name: TZ set to a POSIX rule
    ("CET-1CEST,M3.5.0,M10.5.0/3", "UTC0") or misspelt kept the scheduler from starting, so
    no job ever ran. Scheduled at the wrong hour beats never.
    """
    try:
        return tzlocal.get_localzone(), None
    except (LookupError, ValueError) as err:
        said = str(err.args[0] if err.args else err).splitlines()[0].strip()
        problem = (
            f"times are in UTC: the local time zone is unknown ({said});"
            " set TZ to a zone name such as Europe/Berlin"
        )
        _LOGGER.warning("Scheduler: %s", problem)
        return UTC, problem


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
        history: History | None,
        data_path: Path,
        db_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        timezone: tzinfo | None = None,
        triggers: TriggerFactory = schedule_triggers,
    ) -> None:
        self._settings = settings
        self._library = library
        self._operations = operations
        self._bus = bus
        self._history = history
        self.backup_dir = data_path / BACKUP_DIR
        self._db_path = db_path or data_path / DB_FILENAME
        self._clock = clock
        self.auto = AutoQueue(settings=settings, library=library, queue=queue, bus=bus, clock=clock)
        #: why the local time zone could not be used (the schedule then runs in UTC)
        self.timezone_problem: str | None = None
        if timezone is None:
            timezone, self.timezone_problem = local_timezone()
        self._aps = AsyncIOScheduler(timezone=timezone)
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
        self._last_runs_at: dict[str, float] = {}  # when each job last ran, this start or before
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

    async def restore(self) -> None:
        """Count interval jobs from their runs before this start (call before start())."""
        stored = await self._library.store.meta(LAST_RUNS_META)
        if not isinstance(stored, dict):
            return
        self._last_runs_at = {
            name: float(at)
            for name, at in stored.items()
            if name in JOB_NAMES and isinstance(at, (int, float)) and not isinstance(at, bool)
        }
        self._specs.clear()  # every job again, now anchored
        self._aps.remove_all_jobs()
        self.reschedule(self._settings.section("scheduler"), starting=True)

    def reschedule(self, section: Mapping[str, Any], *, starting: bool = False) -> None:
        """Make the jobs match the settings; an unchanged job keeps its next run time."""
        now = self._now()
        wanted = self._triggers(section, now, self.timezone)
        for name in JOB_NAMES:
            spec, current = wanted.get(name), self._specs.get(name)
            if spec is not None:
                last = self._last_runs_at.get(name)
                spec = anchored(spec, last, now, self.timezone, starting=starting)
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
        # The daily jobs fire at a local time, which the autumn clock change makes happen
        # twice: a second backup an hour after the first took one of the kept slots.
        last = self._last_runs_at.get(name)
        if name in DAILY_JOBS and last is not None and self._clock() - last < DAILY_MIN_GAP_S:
            _LOGGER.info(
                "Scheduled %s skipped: it ran %.1f h ago", name, (self._clock() - last) / 3600
            )
            return
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
        self._last_runs_at[name] = run.started_at
        try:
            await self._library.store.set_meta(LAST_RUNS_META, self._last_runs_at)
        except AppError as err:  # a busy database: the schedule goes on, counted from start
            _LOGGER.warning("cannot store when %s ran: %s", name, err.message)
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
            if op.status == "completed":
                matched = await self._library.store.matched()
                queued = await self.auto.after_rescan(matched, "rescan")
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

    # --- the new-episodes check --------------------------------------------------------------

    async def check_new_episodes(self) -> dict[str, Any]:
        """The new-episodes job (see AutoQueue.check_new_episodes)."""
        return await self.auto.check_new_episodes()

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
        message = f"{len(upcoming)} jobs scheduled"
        if self.timezone_problem:
            message += f"; {self.timezone_problem}"
        return CheckResult("ok", message, upcoming)
