"""History: rows from the event bus, paging and filters, bounded size, and GET /api/history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aniworld_addon import keys
from aniworld_addon.db import Database, open_database
from aniworld_addon.events import EventBus, EventType
from aniworld_addon.history import History

from ..conftest import Authed

DAY = 86400.0


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(tmp_path / "a.db")
    yield database
    await database.close()


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    events = EventBus()
    yield events
    await events.close()


async def test_download_and_library_events_become_history_rows(db: Database, bus: EventBus) -> None:
    history = History(db, clock=FakeClock())
    history.start(bus)
    episode = {"provider": "aniworld", "series_key": "kaiju-academy", "season": 1, "episode": 2}
    bus.publish(
        EventType.DOWNLOAD_STARTED,
        {**episode, "item_id": 7, "language": "German Dub", "hoster": "VOE"},
    )
    failure = {"code": "all_hosters_failed", "message": "all 2 hosters failed"}
    bus.publish(
        EventType.DOWNLOAD_FAILED,
        {**episode, "item_id": 7, "error": failure, "retry_count": 1, "will_retry": True},
    )
    bus.publish(
        EventType.DOWNLOAD_COMPLETE,
        {
            **episode,
            "item_id": 7,
            "language": "German Dub",
            "file_path": "/l/x.mp4",
            "size_mb": 3.5,
        },
    )
    bus.publish(EventType.QUEUE_STATUS, {"action": "completed"})  # not history
    removed = [{**episode, "episode": n, "path": f"Kaiju/S01E0{n}.mkv"} for n in (3, 4)]
    bus.publish(EventType.EPISODE_FILES_REMOVED, {"files": removed})
    bus.publish(
        EventType.SCAN_COMPLETE,
        {"series": 3, "missing": 9, "errors": [{"key": f"k{i}"} for i in range(30)]},
    )
    await history.wait_handled(6)
    await history.close()

    total, records = await history.page(1, 50, "at", descending=False)
    assert total == 6
    rows = sorted(records, key=lambda r: r.id)
    assert [r.event for r in rows] == [
        "grabbed",
        "failed",
        "downloaded",
        "deleted",
        "deleted",
        "scan",
    ]
    grabbed, failed, downloaded, *deleted, scan = rows
    assert (grabbed.series_key, grabbed.season, grabbed.episode) == ("kaiju-academy", 1, 2)
    assert grabbed.language == "German Dub" and grabbed.data["hoster"] == "VOE"
    assert failed.message == "all 2 hosters failed"
    assert failed.data == {
        "item_id": 7,
        "retry_count": 1,
        "will_retry": True,
        "code": "all_hosters_failed",
    }
    assert downloaded.message == "/l/x.mp4" and downloaded.data["size_mb"] == 3.5
    assert [(d.episode, d.message) for d in deleted] == [
        (3, "Kaiju/S01E03.mkv"),
        (4, "Kaiju/S01E04.mkv"),
    ]
    assert scan.message == "3 series, 9 missing episodes, 30 errors"
    assert scan.data["error_count"] == 30 and len(scan.data["errors"]) == 20


async def test_history_pages_sorts_and_filters(db: Database) -> None:
    clock = FakeClock()
    history = History(db, clock=clock)
    for i in range(25):
        clock.now += 60
        key = "kaiju-academy" if i % 2 else "sky-lantern"
        await history.record("downloaded" if i % 5 else "failed", series_key=key, episode=i)

    total, first = await history.page(1, 10)
    assert total == 25
    assert [r.episode for r in first] == list(range(24, 14, -1))  # newest first
    _, last = await history.page(3, 10)
    assert [r.episode for r in last] == [4, 3, 2, 1, 0]
    _, beyond = await history.page(4, 10)
    assert beyond == []
    _, oldest = await history.page(1, 3, "at", descending=False)
    assert [r.episode for r in oldest] == [0, 1, 2]

    total, kaiju = await history.page(1, 50, series_key="kaiju-academy")
    assert total == 12 and {r.series_key for r in kaiju} == {"kaiju-academy"}
    total, failed = await history.page(1, 50, event="failed")
    assert total == 5 and [r.episode for r in failed] == [20, 15, 10, 5, 0]
    total, both = await history.page(1, 50, series_key="kaiju-academy", event="failed")
    assert total == 2 and [r.episode for r in both] == [15, 5]
    _, by_key = await history.page(1, 25, "series_key", descending=False)
    assert [r.series_key for r in by_key] == ["kaiju-academy"] * 12 + ["sky-lantern"] * 13


async def test_history_stays_bounded_by_rows_and_age(db: Database) -> None:
    clock = FakeClock()
    history = History(db, clock=clock, max_rows=50, max_age_s=90 * DAY)
    await history.record("scan", message="ancient", at=clock.now - 91 * DAY)
    for i in range(260):
        clock.now += 1
        await history.record("downloaded", episode=i)
    # Inserting prunes as it goes (every 200 rows), so the table never grows without bound.
    assert await history.count() <= 50 + 200
    removed = await history.prune()
    assert removed > 0
    assert await history.count() == 50
    _, kept = await history.page(1, 100)
    assert [r.episode for r in kept] == list(range(259, 209, -1))
    assert all(r.message != "ancient" for r in kept)

    clock.now += 91 * DAY  # everything is now older than the age bound
    await history.prune()
    assert await history.count() == 0


async def test_history_api_pages_with_filters(authed: Authed) -> None:
    app = authed.client.app
    history = app[keys.HISTORY]
    # The name comes from the library, however large (the panel looked in 500 series).
    await app[keys.DB].write(
        "INSERT INTO series (folder, provider, key, name, added_at)"
        " VALUES ('Kaiju Academy (2012)', 'aniworld', 'kaiju-academy', 'Kaiju Academy', 0)"
    )
    for i in range(7):
        await history.record(
            "downloaded" if i < 5 else "failed",
            provider="aniworld",
            series_key="kaiju-academy",
            season=1,
            episode=i + 1,
            message=f"m{i}",
        )
    await history.record("scan", message="1 series")

    response = await authed.client.get(
        "/api/history?page=2&page_size=3&sort_key=at&sort_direction=asc", headers=authed.headers
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["page"], body["page_size"], body["total_records"]) == (2, 3, 8)
    assert [r["episode"] for r in body["records"]] == [4, 5, 6]
    assert {r["series_name"] for r in body["records"]} == {"Kaiju Academy"}
    assert set(body["records"][0]) == {
        "id",
        "at",
        "event",
        "provider",
        "series_key",
        "series_name",
        "season",
        "episode",
        "language",
        "message",
        "data",
    }

    response = await authed.client.get(
        "/api/history?series_key=kaiju-academy&event=failed", headers=authed.headers
    )
    body = await response.json()
    assert body["total_records"] == 2 and {r["event"] for r in body["records"]} == {"failed"}

    for bad in ("event=nope", "sort_key=message", "sort_direction=up", "page=0"):
        response = await authed.client.get(f"/api/history?{bad}", headers=authed.headers)
        assert response.status == 400, bad
        assert (await response.json())["error"]["code"]

    authed.client.session.cookie_jar.clear()  # setup also left a session cookie
    assert (await authed.client.get("/api/history")).status == 401
