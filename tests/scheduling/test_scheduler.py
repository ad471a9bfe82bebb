"""The scheduler: schedules on an injected clock, real firing, rescans, new episodes, backups."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from aniworld_addon import keys
from aniworld_addon import scheduler as scheduler_module
from aniworld_addon.app import create_app
from aniworld_addon.backups import BACKUPS_KEPT
from aniworld_addon.errors import ValidationError
from aniworld_addon.events import Event, EventType
from aniworld_addon.options import Options
from aniworld_addon.scheduler import LAST_RUNS_META, JobSpec, Scheduler, schedule_triggers
from tests.conftest import series_folder
from tests.site.control import Fault
from tests.site.plugin import RunningSite

from ..conftest import PASSWORD, AiohttpClient

KAIJU, LANTERN, ROCK = "kaiju-academy", "sky-lantern", "rock-roll-heroes-reloaded"
T0 = datetime(2025, 7, 17, 1, 30, tzinfo=UTC)


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta.total_seconds()

    @property
    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def add_series(library: Path, folder: str, key: str, local: tuple[str, ...] = ()) -> None:
    """A series folder with its sidecar and empty files for the episodes that are 'local'."""
    path = series_folder(library, folder, key)
    for name in local:
        (path / f"{folder} - {name}.mkv").write_bytes(b"x")


class Harness:
    """The real app on the test site, an event recorder, and the schedulers a test builds."""

    def __init__(
        self, client: TestClient[Any, Any], clock: FakeClock, options: Options, site: RunningSite
    ) -> None:
        self.client = client
        self.app: web.Application = client.app
        self.clock = clock
        self.options = options
        self.site = site
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._schedulers: list[Scheduler] = []
        self._unlisten: list[Callable[[], None]] = []

    async def record(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_event(self, predicate: Callable[[Event], bool], within: float = 30) -> Event:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: any(predicate(e) for e in self.events))
        return next(e for e in self.events if predicate(e))

    async def settle(self) -> None:
        """Every event published so far is recorded (one subscriber handles events in order)."""
        marker = self.app[keys.BUS].publish(EventType.SYSTEM_STATUS, {"marker": id(self)})
        await self.wait_event(lambda e: e is marker)

    def of(self, type_: EventType) -> list[Event]:
        return [e for e in self.events if e.type is type_]

    def scheduler(self, **kwargs: Any) -> Scheduler:
        app = self.app
        scheduler = Scheduler(
            settings=app[keys.SETTINGS],
            library=app[keys.LIBRARY],
            queue=app[keys.QUEUE],
            operations=app[keys.OPERATIONS],
            bus=app[keys.BUS],
            history=None,
            data_path=self.options.data_path,
            clock=self.clock,
            timezone=UTC,
            **kwargs,
        )
        self._schedulers.append(scheduler)
        self._unlisten.append(app[keys.SETTINGS].add_listener(scheduler.on_settings_change))
        return scheduler

    async def rescan(self) -> None:
        operation = self.app[keys.LIBRARY].rescan()
        await self.app[keys.OPERATIONS].wait(operation.id)

    def forget_cached_pages(self) -> None:
        """So that any refresh shows up as site requests (the provider cache would hide it)."""
        for provider in self.app[keys.PROVIDERS].registry:
            invalidate = getattr(provider, "invalidate", None)
            if invalidate is not None:
                invalidate()

    async def queued(self) -> set[tuple[str, int, int]]:
        items = await self.app[keys.QUEUE].store.all()
        return {(i.series_key, i.season, i.episode) for i in items if i.status == "pending"}

    async def missing(self) -> set[tuple[str, int, int]]:
        store = self.app[keys.LIBRARY].store
        return {
            (s.key or "", season, episode)
            for s in await store.matched()
            for season, episode in await store.missing(s.id)
        }

    async def close(self) -> None:
        for undo in self._unlisten:
            undo()
        for scheduler in self._schedulers:
            await scheduler.close()


@pytest.fixture
async def harness(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite
) -> AsyncIterator[Harness]:
    """Kaiju Academy (some episodes local), Sky Lantern and Rock & Roll Heroes, on the site."""
    add_series(options.library_path, "Kaiju Academy", KAIJU, ("S01E01", "S01E02", "S00E01"))
    add_series(options.library_path, "Sky Lantern", LANTERN)
    add_series(options.library_path, "Rock Heroes", ROCK, ("S01E01",))
    clock = FakeClock()
    client = await aiohttp_client(create_app(options, clock=clock))
    await client.app[keys.SETTINGS].update(
        {
            "providers": provider_site.providers_config(),
            "downloads": {"min_free_space_mb": 0},
        }
    )
    # Auto-download must only queue here: nothing may start downloading during these tests.
    await client.app[keys.QUEUE].set_state(running=False)
    h = Harness(client, clock, options, provider_site)
    client.app[keys.BUS].subscribe(h.record, name="test-recorder")
    yield h
    await h.close()


async def update_scheduler(h: Harness, **values: Any) -> None:
    await h.app[keys.SETTINGS].update({"scheduler": values})


# --- schedules on the injected clock ---------------------------------------------------------


async def test_interval_schedules_follow_the_injected_clock(harness: Harness) -> None:
    scheduler = harness.scheduler()
    runs = scheduler.next_runs()
    assert runs["rescan"] == T0 + timedelta(hours=6)
    assert runs["new_episodes"] == T0 + timedelta(minutes=60)
    assert runs["backup"] == T0.replace(hour=3, minute=15)
    assert runs["prune_history"] == T0.replace(hour=3, minute=45)

    harness.clock.advance(timedelta(hours=6, seconds=1))  # the first rescan time has passed
    runs = scheduler.next_runs()
    assert runs["rescan"] == T0 + timedelta(hours=12)
    assert runs["new_episodes"] == T0 + timedelta(hours=7)
    assert runs["backup"] == T0.replace(hour=3, minute=15) + timedelta(days=1)


async def test_interval_jobs_count_from_their_last_run_across_restarts(harness: Harness) -> None:
    # Counted from each start, a 24 h rescan never ran on a machine restarted every 20 h.
    before = harness.scheduler()
    await before.restore()
    assert (await before.run_job("rescan")).ok  # at T0
    harness.clock.advance(timedelta(hours=5))
    restarted = harness.scheduler()
    await restarted.restore()
    assert restarted.next_runs()["rescan"] == T0 + timedelta(hours=6)  # not T0 + 11 h
    harness.clock.advance(timedelta(hours=3))  # the run is overdue at the next start
    late = harness.scheduler()
    await late.restore()
    assert late.next_runs()["rescan"] == harness.clock.datetime + timedelta(minutes=1)
    assert late.next_runs()["new_episodes"] == harness.clock.datetime + timedelta(hours=1)


async def test_jobs_at_set_times_missed_while_stopped_run_once_after_start(
    harness: Harness,
) -> None:
    # Off every night at 03:15 (a desktop, a NAS on a power plan): the backup never ran.
    await update_scheduler(harness, rescan_cron="0 4 * * *")
    harness.clock.now = datetime(2025, 7, 17, 4, 0, 30, tzinfo=UTC).timestamp()
    three_days_ago, yesterday = harness.clock.now - 3 * 86400, harness.clock.now - 86400 - 30
    stored = {"backup": three_days_ago, "prune_history": harness.clock.now - 600}
    stored["rescan"] = yesterday  # and a restart from 03:59:30 to 04:00:30 missed today's
    await harness.app[keys.LIBRARY].store.set_meta(LAST_RUNS_META, stored)
    scheduler = harness.scheduler()
    await scheduler.restore()
    soon = harness.clock.datetime + timedelta(minutes=1)
    runs = scheduler.next_runs()
    assert runs["backup"] == soon and runs["rescan"] == soon
    assert runs["prune_history"] == datetime(2025, 7, 18, 3, 45, tzinfo=UTC)  # ran at 03:50
    harness.clock.advance(timedelta(minutes=2))  # once: then the set times again
    runs = scheduler.next_runs()
    assert runs["backup"] == datetime(2025, 7, 18, 3, 15, tzinfo=UTC)
    assert runs["rescan"] == datetime(2025, 7, 18, 4, 0, tzinfo=UTC)

    # A crontab changed while running is no missed run: it waits for its own time.
    await update_scheduler(harness, rescan_cron="0 3 * * *")
    assert scheduler.next_runs()["rescan"] == datetime(2025, 7, 18, 3, 0, tzinfo=UTC)


def test_a_missed_run_just_before_the_jobs_own_time_runs_once() -> None:
    # Started at 03:59:30 with the 04:00 rescan two days overdue: it ran at 04:00 and at the
    # catch-up time, 04:00:30.
    now = datetime(2025, 7, 17, 3, 59, 30, tzinfo=UTC)
    section = {"rescan_cron": "0 4 * * *", "rescan_interval_h": 6, "new_episodes_interval_min": 0}
    spec = schedule_triggers(section, now, UTC)["rescan"]
    assert spec is not None
    last = datetime(2025, 7, 15, 4, 0, tzinfo=UTC).timestamp()
    trigger = scheduler_module.anchored(spec, last, now, UTC, starting=True).trigger
    fires = [trigger.get_next_fire_time(None, now)]
    while len(fires) < 3:  # what apscheduler asks after each run
        fires.append(trigger.get_next_fire_time(fires[-1], fires[-1]))
    assert fires == [now.replace(hour=4, minute=0, second=0) + timedelta(days=d) for d in range(3)]


async def test_a_missed_run_fires_in_the_running_scheduler(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "STARTUP_GRACE", timedelta(seconds=0.2))
    start = datetime.now(UTC)
    harness.clock.now = start.timestamp()
    await harness.app[keys.LIBRARY].store.set_meta(
        LAST_RUNS_META, {"backup": harness.clock.now - 2 * 86400}
    )
    scheduler = harness.scheduler()
    await scheduler.restore()
    scheduler.start()
    async with asyncio.timeout(10):
        await scheduler.wait_for_runs("backup", 1)
    assert scheduler.last_runs["backup"].ok, scheduler.last_runs["backup"]
    harness.clock.now = datetime.now(UTC).timestamp()
    assert scheduler.next_runs()["backup"] > start + timedelta(hours=1)


async def test_cron_rescan_wins_over_the_interval_and_changes_apply_live(
    harness: Harness,
) -> None:
    scheduler = harness.scheduler()
    harness.clock.advance(timedelta(hours=6, seconds=1))  # 07:30:01
    await update_scheduler(harness, rescan_cron="0 */4 * * *")
    assert scheduler.next_runs()["rescan"] == T0.replace(hour=8, minute=0)
    harness.clock.advance(timedelta(hours=1))  # 08:30:01
    assert scheduler.next_runs()["rescan"] == T0.replace(hour=12, minute=0)

    await update_scheduler(harness, rescan_cron=None, rescan_interval_h=2)
    assert scheduler.next_runs()["rescan"] == harness.clock.datetime + timedelta(hours=2)


@pytest.mark.parametrize(
    ("cron", "first"),
    [
        ("0 3 * * 0", datetime(2025, 7, 20, 3, 0, tzinfo=UTC)),  # Sunday, not Monday
        ("0 3 * * 7", datetime(2025, 7, 20, 3, 0, tzinfo=UTC)),  # Sunday too (was refused)
        ("0 3 * * 6", datetime(2025, 7, 19, 3, 0, tzinfo=UTC)),  # Saturday, not Sunday
        ("0 3 * * 1-5", datetime(2025, 7, 17, 3, 0, tzinfo=UTC)),  # T0 is a Thursday
        ("30 2 * * sat,sun", datetime(2025, 7, 19, 2, 30, tzinfo=UTC)),
        ("0 3 13 * 1", datetime(2025, 7, 21, 3, 0, tzinfo=UTC)),  # the 13th OR a Monday
        # A day field starting with "*" is unrestricted for that rule: both must match.
        ("0 3 */2 * 1", datetime(2025, 7, 21, 3, 0, tzinfo=UTC)),  # odd days that are Mondays
        ("0 3 1 * */2", datetime(2025, 11, 1, 3, 0, tzinfo=UTC)),  # a 1st on Sun/Tue/Thu/Sat
    ],
)
async def test_a_cron_rescan_fires_when_crontab_would(
    harness: Harness, cron: str, first: datetime
) -> None:
    # apscheduler's from_crontab counts weekdays from Monday = 0 and needs both day fields
    # to match: "0 3 * * 0" (Sundays) ran on Mondays.
    scheduler = harness.scheduler()
    await update_scheduler(harness, rescan_cron=cron)
    assert scheduler.next_runs()["rescan"] == first


@pytest.mark.parametrize("cron", ["0 3 * * 7-1", "0 3 * * sat-mon", "0 3 * * 5-2"])
async def test_a_backwards_weekday_range_is_refused(harness: Harness, cron: str) -> None:
    # crontab refuses them; "7-1" was taken as Sunday to Monday.
    with pytest.raises(ValidationError) as refused:
        await update_scheduler(harness, rescan_cron=cron)
    assert "runs backwards" in str(refused.value.details), refused.value.details


async def test_an_unchanged_job_keeps_its_time_and_zero_disables(harness: Harness) -> None:
    scheduler = harness.scheduler()
    harness.clock.advance(timedelta(hours=1, minutes=10))  # 02:40
    await update_scheduler(harness, new_episodes_interval_min=15)
    runs = scheduler.next_runs()
    assert runs["new_episodes"] == harness.clock.datetime + timedelta(minutes=15)
    assert runs["rescan"] == T0 + timedelta(hours=6)  # not restarted by an unrelated change

    await update_scheduler(harness, auto_download=True)  # no schedule change at all
    assert scheduler.next_runs() == runs

    await update_scheduler(harness, rescan_interval_h=0, new_episodes_interval_min=0)
    runs = scheduler.next_runs()
    assert runs["rescan"] is None and runs["new_episodes"] is None
    assert runs["backup"] is not None


def fast_triggers(
    section: Mapping[str, Any], now: datetime, tz: tzinfo
) -> dict[str, JobSpec | None]:
    """The real schedule, but new episodes every 50 ms and a backup every second (cron)."""
    specs = schedule_triggers(section, now, tz)
    specs["new_episodes"] = JobSpec(IntervalTrigger(seconds=0.05, timezone=tz), ("fast",))
    specs["backup"] = JobSpec(CronTrigger(second="*", timezone=tz), ("every second",))
    return specs


async def test_interval_and_cron_jobs_fire_in_the_running_scheduler(harness: Harness) -> None:
    await harness.rescan()
    harness.site.control.reset()
    scheduler = harness.scheduler(triggers=fast_triggers)
    scheduler.start()
    assert scheduler.running
    async with asyncio.timeout(10):
        await scheduler.wait_for_runs("new_episodes", 2)  # interval: fired, then fired again
        await scheduler.wait_for_runs("backup", 1)  # cron: the next whole second
    assert harness.site.control.count("new_episodes") >= 2
    assert scheduler.last_runs["new_episodes"].ok, scheduler.last_runs["new_episodes"]
    assert scheduler.last_runs["backup"].ok, scheduler.last_runs["backup"]
    assert (await scheduler.check()).status == "ok"
    status = scheduler.status()
    assert status["running"] is True and set(status["next_runs"]) == {
        "rescan",
        "new_episodes",
        "backup",
        "prune_history",
    }
    await scheduler.close()
    assert not scheduler.running
    assert (await scheduler.check()).status == "error"


# --- rescan and auto-download ----------------------------------------------------------------


async def test_scheduled_rescan_publishes_around_the_rescan(harness: Harness) -> None:
    scheduler = harness.scheduler()
    run = await scheduler.run_job("rescan")
    assert run.ok, run
    await harness.settle()
    started = harness.of(EventType.SCHEDULED_RESCAN_STARTED)
    complete = harness.of(EventType.SCHEDULED_RESCAN_COMPLETE)
    assert len(started) == 1 and len(complete) == 1
    assert started[0].data["trigger"] == "schedule"
    assert complete[0].data["operation_id"] == started[0].data["operation_id"]
    assert complete[0].data["status"] == "completed" and complete[0].data["series"] == 3
    assert complete[0].data["queued"] == 0  # auto_download is off by default
    assert await harness.queued() == set()
    assert (
        harness.events.index(started[0])
        < harness.events.index(next(e for e in harness.events if e.type is EventType.SCAN_COMPLETE))
        < harness.events.index(complete[0])
    )


async def test_auto_download_queues_exactly_the_missing_episodes(harness: Harness) -> None:
    await update_scheduler(harness, auto_download=True)
    scheduler = harness.scheduler()
    run = await scheduler.run_job("rescan")
    assert run.ok, run
    missing = await harness.missing()
    assert (KAIJU, 1, 1) not in missing and (KAIJU, 1, 3) in missing and (LANTERN, 1, 4) in missing
    assert await harness.queued() == missing
    await harness.settle()
    (queued,) = harness.of(EventType.AUTO_DOWNLOAD_QUEUED)
    assert queued.data["source"] == "rescan" and queued.data["count"] == len(missing)
    items = await harness.app[keys.QUEUE].store.all()
    assert {i.priority.name for i in items} == {"LOW"}  # user requests go first

    # Nothing is queued twice, and an episode that failed for good is left to the user.
    dead = next(i for i in items if (i.series_key, i.season, i.episode) == (KAIJU, 2, 2))
    store = harness.app[keys.QUEUE].store
    await store.fail(dead.id, "no hoster works", "no_resolver", [], harness.clock())
    run = await scheduler.run_job("rescan")
    assert run.ok and run.result["queued"] == 0
    await harness.settle()
    assert len(harness.of(EventType.AUTO_DOWNLOAD_QUEUED)) == 1
    assert await harness.queued() == missing - {(KAIJU, 2, 2)}


async def test_auto_download_leaves_series_whose_provider_cannot_be_read(
    harness: Harness,
) -> None:
    await harness.rescan()
    missing = await harness.missing()
    settings = harness.app[keys.SETTINGS]
    await settings.update({"providers": {"aniworld": {"enabled": False}}})
    await update_scheduler(harness, auto_download=True)
    scheduler = harness.scheduler()
    run = await scheduler.run_job("rescan")
    assert run.ok and run.result["errors"] == 3, run
    # Queued, each would fail the same way, use up its retries and stay failed for good.
    assert await harness.queued() == set()

    await settings.update({"providers": {"aniworld": {"enabled": True}}})
    run = await scheduler.run_job("rescan")  # the series read again: now they are wanted
    assert run.ok and run.result["errors"] == 0, run
    assert await harness.queued() == missing


async def test_a_rescan_announces_the_new_episodes_it_finds(harness: Harness) -> None:
    lantern = harness.site.catalogue.series[LANTERN].seasons[1]
    unreleased = lantern[2:]
    del lantern[2:]
    await harness.rescan()  # the first listing of a series is no news
    await harness.settle()
    assert harness.of(EventType.NEW_EPISODES_FOUND) == []

    lantern.extend(unreleased)
    harness.forget_cached_pages()
    await harness.rescan()  # before the new-episodes check, or on a site without its list
    await harness.settle()
    (found,) = harness.of(EventType.NEW_EPISODES_FOUND)
    assert [(e["series_key"], e["season"], e["episode"]) for e in found.data["episodes"]] == [
        (LANTERN, 1, 3),
        (LANTERN, 1, 4),
    ]
    assert found.data["count"] == 2 and found.data["episodes"][0]["name"] == "Sky Lantern"

    scheduler = harness.scheduler()
    run = await scheduler.run_job("new_episodes")  # known by now: not announced twice
    assert run.ok and run.result["new"] == [], run
    harness.forget_cached_pages()
    await harness.rescan()
    await harness.settle()
    assert len(harness.of(EventType.NEW_EPISODES_FOUND)) == 1


async def test_the_new_episodes_check_queues_a_series_an_earlier_rescan_failed(
    harness: Harness,
) -> None:
    # A site hiccup in the nightly rescan left an error on the series; the check refreshed it
    # fine, announced its new episodes and queued none (it judged by the old record).
    lantern = harness.site.catalogue.series[LANTERN].seasons[1]
    unreleased = lantern[2:]
    del lantern[2:]
    await harness.rescan()
    harness.forget_cached_pages()
    harness.site.control.set_fault(rf"/anime/stream/{LANTERN}", Fault.SERVER_ERROR)
    await harness.rescan()
    assert (await harness.app[keys.LIBRARY].store.by_key(LANTERN)).error
    harness.site.control.clear_faults()
    lantern.extend(unreleased)
    await update_scheduler(harness, auto_download=True)
    harness.forget_cached_pages()
    run = await harness.scheduler().run_job("new_episodes")
    assert run.ok and run.result["queued"] == 2, run
    assert await harness.queued() == {(LANTERN, 1, 3), (LANTERN, 1, 4)}


async def test_trigger_rescan_is_followed_once(harness: Harness) -> None:
    scheduler = harness.scheduler()
    operation = scheduler.trigger_rescan()
    assert scheduler.trigger_rescan().id == operation.id  # joining, not a second rescan
    done = await harness.wait_event(lambda e: e.type is EventType.SCHEDULED_RESCAN_COMPLETE)
    assert done.data["operation_id"] == operation.id and done.data["trigger"] == "manual"
    await harness.settle()
    assert len(harness.of(EventType.SCHEDULED_RESCAN_STARTED)) == 1


# --- the new-episodes check ------------------------------------------------------------------


async def test_new_episodes_check_makes_one_request_when_nothing_changed(
    harness: Harness,
) -> None:
    await harness.rescan()
    harness.forget_cached_pages()
    harness.site.control.reset()
    scheduler = harness.scheduler()
    run = await scheduler.run_job("new_episodes")
    assert run.ok, run
    assert dict(harness.site.control.requests) == {"/neue-episoden": 1}
    assert run.result["refreshed"] == [] and run.result["new"] == []
    await harness.settle()
    assert harness.of(EventType.NEW_EPISODES_FOUND) == []


async def test_new_episodes_check_refreshes_only_the_listed_series(harness: Harness) -> None:
    lantern = harness.site.catalogue.series[LANTERN].seasons[1]
    unreleased = lantern[2:]
    del lantern[2:]  # the library is scanned before episodes 3 and 4 come out
    await harness.rescan()
    assert (LANTERN, 1, 3) not in await harness.missing()
    lantern.extend(unreleased)
    await update_scheduler(harness, auto_download=True)
    harness.forget_cached_pages()
    harness.site.control.reset()

    scheduler = harness.scheduler()
    run = await scheduler.run_job("new_episodes")
    assert run.ok, run
    requests = harness.site.control.requests
    assert requests["/neue-episoden"] == 1
    others = set(requests) - {"/neue-episoden"}
    assert others and all(p.startswith(f"/anime/stream/{LANTERN}") for p in others), others
    assert run.result["refreshed"] == [LANTERN]
    await harness.settle()
    (found,) = harness.of(EventType.NEW_EPISODES_FOUND)
    assert [(e["series_key"], e["season"], e["episode"]) for e in found.data["episodes"]] == [
        (LANTERN, 1, 3),
        (LANTERN, 1, 4),
    ]
    # Only the new episodes are queued, not Sky Lantern's older missing ones.
    assert await harness.queued() == {(LANTERN, 1, 3), (LANTERN, 1, 4)}
    (queued,) = harness.of(EventType.AUTO_DOWNLOAD_QUEUED)
    assert queued.data["source"] == "new_episodes"

    harness.site.control.reset()
    run = await scheduler.run_job("new_episodes")  # now everything listed is known
    assert dict(harness.site.control.requests) == {"/neue-episoden": 1}
    await harness.settle()
    assert len(harness.of(EventType.NEW_EPISODES_FOUND)) == 1


# --- backups ---------------------------------------------------------------------------------


async def test_backups_hold_the_database_and_config_and_rotate(harness: Harness) -> None:
    db = harness.app[keys.DB]
    await db.write(
        "INSERT INTO history (at, event, message) VALUES (?, 'scan', 'written just before')",
        [harness.clock()],
    )
    scheduler = harness.scheduler()
    made: list[str] = []
    for _ in range(BACKUPS_KEPT + 2):
        run = await scheduler.run_job("backup")
        assert run.ok, run
        made.append(Path(run.result["path"]).name)
        harness.clock.advance(timedelta(days=1))
    kept = sorted(p.name for p in scheduler.backup_dir.iterdir())
    assert kept == made[-BACKUPS_KEPT:]
    assert made[0] == "20250717T013000Z"

    newest = scheduler.backup_dir / kept[-1]
    assert sorted(p.name for p in newest.iterdir()) == ["aniworld.db", "config.json"]
    settings_path = harness.app[keys.SETTINGS].path
    assert (newest / "config.json").read_text() == settings_path.read_text()
    conn = sqlite3.connect(newest / "aniworld.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        row = conn.execute("SELECT message FROM history").fetchone()
        assert row == ("written just before",)
    finally:
        conn.close()


async def test_two_backups_in_one_second_do_not_collide(harness: Harness) -> None:
    scheduler = harness.scheduler()
    first = await scheduler.run_job("backup")
    second = await scheduler.run_job("backup")
    assert Path(first.result["path"]).name == "20250717T013000Z"
    assert Path(second.result["path"]).name == "20250717T013000Z-2"


# --- the API --------------------------------------


async def test_scheduler_api(harness: Harness) -> None:
    client = harness.client
    response = await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    headers = {"Authorization": f"Bearer {(await response.json())['access_token']}"}

    response = await client.get("/api/scheduler/config", headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["rescan_interval_h"] == 6 and body["auto_download"] is False
    assert body["running"] is True
    assert set(body["next_runs"]) == {"rescan", "new_episodes", "backup", "prune_history"}

    response = await client.post(
        "/api/scheduler/config", json={"new_episodes_interval_min": 15}, headers=headers
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    expected = harness.clock.datetime + timedelta(minutes=15)
    assert datetime.fromisoformat(body["next_runs"]["new_episodes"]) == expected
    assert harness.app[keys.SETTINGS].section("scheduler")["new_episodes_interval_min"] == 15

    for bad in ({"rescan_cron": "every day"}, {"rescan_interval_h": -1}, {"nope": 1}):
        response = await client.post("/api/scheduler/config", json=bad, headers=headers)
        assert response.status == 400, bad
        assert (await response.json())["error"]["details"]

    response = await client.post("/api/scheduler/trigger-rescan", headers=headers)
    assert response.status == 202
    operation_id = (await response.json())["operation_id"]
    done = await harness.wait_event(
        lambda e: (
            e.type is EventType.SCHEDULED_RESCAN_COMPLETE and e.data["operation_id"] == operation_id
        )
    )
    assert done.data["trigger"] == "manual"

    health = await (await client.get("/health")).json()
    assert health["checks"]["scheduler"]["status"] == "ok"


async def test_a_daily_job_firing_twice_in_one_night_runs_once(harness: Harness) -> None:
    # 03:15 local time happens twice on the night the clocks go back: two backups, and one
    # of the kept slots gone. The scheduled run is skipped when the job ran hours ago.
    scheduler = harness.scheduler()
    await scheduler._job("backup")
    harness.clock.advance(timedelta(hours=1))
    await scheduler._job("backup")
    assert scheduler.run_counts["backup"] == 1
    harness.clock.advance(timedelta(hours=23))
    await scheduler._job("backup")
    assert scheduler.run_counts["backup"] == 2
    assert len(list(scheduler.backup_dir.iterdir())) == 2
