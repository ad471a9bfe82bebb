"""The download queue end to end: real downloads from the test site into the library."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from aniworld_addon import keys
from aniworld_addon.app import create_app
from aniworld_addon.events import Event, EventType
from aniworld_addon.options import Options
from tests.conftest import series_folder
from tests.site import Fault, MediaSet
from tests.site.plugin import RunningSite

from .conftest import PASSWORD, AiohttpClient

KAIJU = "kaiju-academy"


class FakeClock:
    """Time that moves only when the test says so (backoff without waiting)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Service:
    """The real app, logged in, with its library pointed at the test site."""

    def __init__(
        self,
        client: TestClient[Any, Any],
        token: str,
        clock: FakeClock,
        options: Options,
        site: RunningSite,
    ) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}
        self.clock = clock
        self.options = options
        self.site = site
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def record(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_event(self, predicate: Callable[[Event], bool], timeout: float = 30) -> Event:
        """The first recorded event (past or future) that satisfies predicate."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: any(predicate(e) for e in self.events))
        return next(e for e in self.events if predicate(e))

    async def wait_item(self, item_id: int, *types: EventType) -> Event:
        return await self.wait_event(lambda e: e.type in types and e.data.get("item_id") == item_id)

    async def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, headers=self.headers, **kwargs)
        assert response.status == status, await response.text()
        return await response.json()

    async def queue(
        self, episodes: list[tuple[int, int]], key: str = KAIJU, **extra: Any
    ) -> list[int]:
        body = {"episodes": [{"season": s, "episode": e} for s, e in episodes], **extra}
        result = await self.call("POST", f"/api/anime/{key}/download", json=body)
        return list(result["item_ids"])

    async def item(self, item_id: int) -> dict[str, Any]:
        status = await self.call("GET", "/api/queue/status")
        for group in (
            "active_downloads",
            "pending_queue",
            "completed_downloads",
            "failed_downloads",
        ):
            for item in status[group]:
                if item["id"] == item_id:
                    return dict(item)
        raise AssertionError(f"item {item_id} not in the queue")


async def start_service(
    aiohttp_client: AiohttpClient,
    options: Options,
    site: RunningSite,
    clock: FakeClock,
    *,
    setup: bool = True,
) -> Service:
    client = await aiohttp_client(create_app(options, clock=clock))
    path = "/api/auth/setup" if setup else "/api/auth/login"
    body = {"master_password": PASSWORD} if setup else {"password": PASSWORD}
    response = await client.post(path, json=body)
    assert response.status == 200, await response.text()
    token = (await response.json())["access_token"]
    service = Service(client, token, clock, options, site)
    client.app[keys.BUS].subscribe(service.record, name="test-recorder")
    return service


@pytest.fixture
async def service(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite, media_set: MediaSet
) -> Service:
    """A logged-in service whose library holds Kaiju Academy, scanned against the site."""
    series_folder(options.library_path, "Kaiju Academy (2012)", KAIJU)
    svc = await start_service(aiohttp_client, options, provider_site, FakeClock())
    await svc.call(
        "PUT",
        "/api/config",
        json={
            "providers": provider_site.providers_config(),
            "downloads": {"min_free_space_mb": 0, "max_retries": 1, "retry_backoff_s": [60]},
        },
    )
    op = await svc.call("POST", "/api/anime/rescan", status=202)
    await svc.client.app[keys.OPERATIONS].wait(op["operation_id"])
    return svc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def final_files(options: Options) -> list[Path]:
    return sorted(
        p for p in options.library_path.rglob("*") if p.is_file() and not p.name.startswith(".")
    )


async def test_html5_hoster_download_lands_byte_identical(
    service: Service, media_set: MediaSet
) -> None:
    (item_id,) = await service.queue([(1, 1)])
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    path = Path(done.data["file_path"])
    expected = (
        service.options.library_path
        / "Kaiju Academy (2012)"
        / "Season 01"
        / "Kaiju Academy - S01E01 - "
    )
    assert path.parent == expected.parent
    assert path.name.startswith("Kaiju Academy - S01E01 - ") and path.suffix == ".mp4"
    assert sha256(path) == sha256(media_set.mp4)
    assert final_files(service.options) == [path]
    item = await service.item(item_id)
    assert item["status"] == "completed" and item["language"] == "German Dub"
    assert item["progress"]["percent"] == 100.0
    detail = await service.call("GET", f"/api/anime/{KAIJU}")
    states = {(e["season"], e["episode"]): e["state"] for e in detail["episodes"]}
    assert states[(1, 1)] == "local"
    progress = [e for e in service.events if e.type is EventType.DOWNLOAD_PROGRESS]
    assert progress and progress[-1].data["progress"]["percent"] == 100.0


async def test_a_library_folder_reached_through_a_symlink(
    service: Service, media_set: MediaSet
) -> None:
    # The final path has its symlinks resolved; its library-relative path must be taken from
    # the resolved library folder too, or recording every finished download failed.
    link = service.options.library_path.with_name("library-link")
    link.symlink_to(service.options.library_path)
    await service.call("PUT", "/api/config", json={"library_path": str(link)})
    (item_id,) = await service.queue([(1, 1)])
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    assert sha256(Path(done.data["file_path"])) == sha256(media_set.mp4)
    detail = await service.call("GET", f"/api/anime/{KAIJU}")
    local = {(e["season"], e["episode"]) for e in detail["episodes"] if e["state"] == "local"}
    assert local == {(1, 1)}


async def test_the_library_folder_changed_during_a_download(
    service: Service, media_set: MediaSet
) -> None:
    # The download finishes where it started; its item completes (it stayed 'downloading'
    # for good, with the error only on the console).
    control = service.site.control
    control.media_rate_bps = 2_000_000
    (item_id,) = await service.queue([(1, 1)])
    await control.wait_for("media")
    other = service.options.library_path.with_name("library2")
    other.mkdir()
    await service.call("PUT", "/api/config", json={"library_path": str(other)})
    control.media_rate_bps = None
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    assert Path(done.data["file_path"]).is_relative_to(service.options.library_path)
    assert (await service.item(item_id))["status"] == "completed"


async def test_an_unexpected_error_recording_a_download_never_strands_the_item(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the bookkeeping")

    monkeypatch.setattr(service.client.app[keys.LIBRARY].store, "mark_local", broken)
    (item_id,) = await service.queue([(1, 1)])
    failed = await service.wait_item(item_id, EventType.DOWNLOAD_FAILED)
    assert "a bug in the bookkeeping" in failed.data["error"]["message"]
    item = await service.item(item_id)
    assert item["status"] == "pending" and item["retry_count"] == 1  # not 'downloading'


async def test_jwplayer_hls_film_download(service: Service) -> None:
    (item_id,) = await service.queue([(0, 2)])  # film 2: German Sub, Filemoon JW Player + HLS
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    assert done.data["language"] == "German Sub"
    assert Path(done.data["file_path"]).stat().st_size > 10_000


async def test_failover_to_the_direct_mp4_hoster(service: Service, media_set: MediaSet) -> None:
    service.site.control.set_fault(r"^/embed/", Fault.SERVER_ERROR)  # VOE and Filemoon die
    (item_id,) = await service.queue([(1, 1)])
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    assert sha256(Path(done.data["file_path"])) == sha256(media_set.mp4)
    item = await service.item(item_id)
    assert [a["hoster"] for a in item["attempts"]] == ["VOE", "Filemoon"]


async def test_failover_from_dead_and_unreadable_hosters(service: Service) -> None:
    (item_id,) = await service.queue([(1, 2)])  # Doodstream 404, Streamtape unreadable, VOE ok
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    item = await service.item(item_id)
    assert [a["hoster"] for a in item["attempts"]] == ["Doodstream", "Streamtape"]
    assert all(a["message"] for a in item["attempts"])


async def test_next_language_when_the_first_is_not_offered(service: Service) -> None:
    (item_id,) = await service.queue([(1, 3)])  # no German Dub at all
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    assert done.data["language"] == "German Sub"


async def test_retries_with_backoff_then_fails_with_the_reason(service: Service) -> None:
    (item_id,) = await service.queue([(2, 2)])  # only dead and unreadable hosters
    first = await service.wait_item(item_id, EventType.DOWNLOAD_FAILED)
    assert first.data["will_retry"] is True
    assert first.data["next_attempt_at"] == pytest.approx(service.clock.now + 60)
    item = await service.item(item_id)
    assert (item["status"], item["retry_count"]) == ("pending", 1)
    assert item["error"].startswith("all 2 hosters failed")
    service.events.clear()
    service.site.control.reset()
    service.clock.now += 59  # not yet: the backoff gate must hold the item back
    queue = service.client.app[keys.QUEUE]
    assert await queue.store.next_pending(service.clock()) is None
    assert (await service.item(item_id))["status"] == "pending"
    service.clock.now += 2
    service.client.app[keys.QUEUE].wake()
    final = await service.wait_item(item_id, EventType.DOWNLOAD_FAILED)
    assert final.data["will_retry"] is False
    item = await service.item(item_id)
    assert item["status"] == "failed" and "hosters failed" in item["error"]
    assert len(item["attempts"]) == 4
    assert final_files(service.options) == []


async def test_remove_cancels_a_running_download(service: Service) -> None:
    control = service.site.control
    control.media_rate_bps = 20_000
    (item_id,) = await service.queue([(1, 1)])
    await control.wait_for("media")
    await service.call("DELETE", f"/api/queue/{item_id}")
    assert final_files(service.options) == []
    leftovers = list(service.options.library_path.rglob("*.part*"))
    assert leftovers == []
    await service.call("DELETE", f"/api/queue/{item_id}", status=404)


async def test_commands_answer_while_a_remove_waits_for_a_stalled_hoster(
    service: Service,
) -> None:
    # Remove waited for the download's thread inside the queue's turn: with a hoster that
    # stopped answering, a pause sent meanwhile took 85 s, and the dispatcher waited too.
    control = service.site.control
    control.set_fault("^/media/", Fault.TIMEOUT)
    control.timeout_hold_s = 300
    (item_id,) = await service.queue([(1, 1)])
    await control.wait_for("media")
    remove = asyncio.create_task(service.call("DELETE", f"/api/queue/{item_id}"))
    queue = service.client.app[keys.QUEUE]
    async with asyncio.timeout(10):  # a bound for failing: the item is deleted at once
        while any(item_id in {i.id for i in group} for group in await _groups(queue)):
            await asyncio.sleep(0.02)
        await service.call("POST", "/api/queue/pause")
        await service.call("POST", "/api/queue/resume")
    assert not remove.done()  # its thread still waits for the hoster
    control.begin_shutdown()  # the hoster answers (503): the thread sees the cancel
    await remove
    assert list(service.options.library_path.rglob("*.part*")) == []
    gc.collect()  # the 503's response, closed: left to the collector it warned in a later test


async def test_an_episode_queued_again_waits_for_every_earlier_download_of_it(
    service: Service,
) -> None:
    # Removed while it waited for the first (still ending) download of the episode, a second
    # one ended at once, and a third then started beside the first: the same .part names,
    # each one's clean-up deleting the other's file.
    control = service.site.control
    control.media_rate_bps = 1  # a byte a second: the first read never completes
    queue = service.client.app[keys.QUEUE]

    async def gone(item_id: int) -> None:
        while any(item_id in {i.id for i in group} for group in await _groups(queue)):
            await asyncio.sleep(0.02)

    (first,) = await service.queue([(1, 1)])
    await control.wait_for("media")
    removals = [asyncio.create_task(service.call("DELETE", f"/api/queue/{first}"))]
    async with asyncio.timeout(10):  # bounds for failing
        await gone(first)
        (second,) = await service.queue([(1, 1)])
        while second not in {i.id for i in (await queue.store.snapshot()).groups["downloading"]}:
            await asyncio.sleep(0.02)  # started: it waits for the first download's thread
        removals.append(asyncio.create_task(service.call("DELETE", f"/api/queue/{second}")))
        await gone(second)
        (third,) = await service.queue([(1, 1)])
    # Started beside the first, the third reads its episode page at once (in well under 3 s).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            await control.wait_for("episode", 2)
    assert control.count("episode") == 1 and control.count("media") == 1
    control.media_rate_bps = None  # the first download's thread sees its cancel
    done = await service.wait_item(third, EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED)
    assert done.type is EventType.DOWNLOAD_COMPLETE, done.data
    await asyncio.gather(*removals)


async def _groups(queue: Any) -> list[Any]:
    return list((await queue.store.snapshot()).groups.values())


class _AskingLock(asyncio.Lock):
    """An asyncio.Lock that says when someone asks for it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()

    async def acquire(self) -> bool:
        self.asked.set()
        return await super().acquire()


@pytest.mark.parametrize("command", ["stop", "remove"])
async def test_stop_or_remove_while_the_queue_launches_leaves_nothing_running(
    service: Service, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    # The command arrives while the dispatcher is between two launches. It used to cancel
    # only what had started, and the dispatcher went on to start the rest: downloads running
    # on a stopped queue, or invisible after their items were deleted.
    queue = service.client.app[keys.QUEUE]
    await service.call("POST", "/api/queue/stop")
    await service.call("PUT", "/api/config", json={"downloads": {"max_concurrent": 3}})
    items = await service.queue([(1, 1), (1, 2), (1, 3)])
    monkeypatch.setattr(queue, "_turn", turn := _AskingLock())
    real_claim = queue.store.claim
    commands: list[asyncio.Task[Any]] = []
    sent = asyncio.Event()

    async def claim(item_id: int, now: float) -> bool:
        if item_id == items[1]:  # the second launch, with the first one running
            body = {} if command == "stop" else {"json": {"item_ids": items}}
            method, path = (
                ("POST", "/api/queue/stop") if command == "stop" else ("DELETE", "/api/queue")
            )
            commands.append(asyncio.create_task(service.call(method, path, **body)))
            sent.set()
            # Until the command has asked for its turn or, with no turns, has cancelled what
            # it saw running (the first download) or is done.
            waits = [commands[0], queue._active[items[0]], asyncio.create_task(turn.asked.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            waits[2].cancel()
        return await real_claim(item_id, now)

    monkeypatch.setattr(queue.store, "claim", claim)
    await service.call("POST", "/api/queue/start")
    await sent.wait()
    await commands[0]
    status = await service.call("GET", "/api/queue/status")
    assert status["active_downloads"] == [] and not queue._active
    if command == "stop":
        assert sorted(i["id"] for i in status["pending_queue"]) == sorted(items)
    else:
        assert status["pending_queue"] == []


async def test_items_that_start_are_announced_with_the_new_counts(service: Service) -> None:
    # MQTT's queue state follows queue_status: without one at the start, it showed the items
    # as pending for as long as they downloaded.
    service.site.control.media_rate_bps = 20_000
    (item_id,) = await service.queue([(1, 1)])
    started = await service.wait_event(
        lambda e: e.type is EventType.QUEUE_STATUS and e.data["action"] == "started"
    )
    assert started.data["item_ids"] == [item_id]
    assert (started.data["active"], started.data["pending"]) == (1, 0)


async def test_pause_resume_stop_start(service: Service) -> None:
    control = service.site.control
    await service.call("POST", "/api/queue/pause")
    (item_id,) = await service.queue([(1, 1)])
    status = await service.call("GET", "/api/queue/status")
    assert status["is_paused"] is True and [i["id"] for i in status["pending_queue"]] == [item_id]
    control.media_rate_bps = 20_000
    await service.call("POST", "/api/queue/resume")
    await control.wait_for("media")
    assert (await service.item(item_id))["status"] == "downloading"
    await service.call("POST", "/api/queue/stop")
    item = await service.item(item_id)
    assert item["status"] == "pending"
    assert final_files(service.options) == []
    control.media_rate_bps = None
    await service.call("POST", "/api/queue/start")
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE)
    assert Path(done.data["file_path"]).exists()
    types = [e.type for e in service.events]
    for expected in (
        EventType.QUEUE_PAUSED,
        EventType.QUEUE_RESUMED,
        EventType.QUEUE_STOPPED,
        EventType.QUEUE_STARTED,
    ):
        assert expected in types


async def test_dedupe_priority_and_reorder_survive_a_restart(
    service: Service, aiohttp_client: AiohttpClient
) -> None:
    await service.call("POST", "/api/queue/stop")
    a, b = await service.queue([(1, 2), (1, 3)])
    assert await service.queue([(1, 2)]) == [a]  # queued once only
    (c,) = await service.queue([(2, 1)], priority="HIGH")
    status = await service.call("GET", "/api/queue/status")
    assert [i["id"] for i in status["pending_queue"]] == [c, a, b]
    assert [i["position"] for i in status["pending_queue"]] == [1, 2, 3]
    await service.call("POST", "/api/queue/reorder", json={"item_ids": [c, b, a]})
    await service.call("POST", "/api/queue/reorder", json={"item_id": a, "new_position": 2})
    await service.client.close()  # the service stops; the queue stays in SQLite
    again = await start_service(
        aiohttp_client, service.options, service.site, service.clock, setup=False
    )
    status = await again.call("GET", "/api/queue/status")
    assert status["is_running"] is False
    assert [i["id"] for i in status["pending_queue"]] == [c, a, b]


async def test_queueing_an_episode_again_more_urgently_raises_its_priority(
    service: Service,
) -> None:
    # The waiting item kept its old priority, and no route changes an item's priority.
    await service.call("POST", "/api/queue/stop")
    a, b = await service.queue([(1, 2), (1, 3)], priority="LOW")
    assert await service.queue([(1, 3)], priority="HIGH") == [b]
    assert await service.queue([(1, 3)]) == [b]  # a NORMAL request never lowers it
    status = await service.call("GET", "/api/queue/status")
    assert [(i["id"], i["priority"]) for i in status["pending_queue"]] == [
        (b, "HIGH"),
        (a, "LOW"),
    ]
    event = await service.wait_event(
        lambda e: e.type is EventType.QUEUE_STATUS and e.data["action"] == "reprioritized"
    )
    assert event.data["item_ids"] == [b]


async def test_full_disk_fails_the_item_with_a_clear_reason(service: Service) -> None:
    await service.call("PUT", "/api/config", json={"downloads": {"min_free_space_mb": 10**9}})
    a, b = await service.queue([(1, 1), (1, 2)])
    for item_id in (a, b):
        event = await service.wait_item(item_id, EventType.DOWNLOAD_FAILED)
        assert event.data["error"]["code"] == "insufficient_space"
        assert event.data["will_retry"] is False
    status = await service.call("GET", "/api/queue/status")
    assert sorted(i["id"] for i in status["failed_downloads"]) == [a, b]
    assert {i["error_code"] for i in status["failed_downloads"]} == {"insufficient_space"}
    await service.call("PUT", "/api/config", json={"downloads": {"min_free_space_mb": 0}})
    assert sorted((await service.call("POST", "/api/queue/retry", json={}))["item_ids"]) == [a, b]
    done = await service.wait_item(a, EventType.DOWNLOAD_COMPLETE)
    assert done.data["series_name"] == "Kaiju Academy"


async def test_an_episode_the_provider_does_not_have_fails_at_once(service: Service) -> None:
    # A typo (S07E03 of a two-season series) was retried on the backoff, 21 minutes with the
    # defaults, while a command-line download waited without a word.
    (item,) = await service.queue([(7, 3)])
    event = await service.wait_item(item, EventType.DOWNLOAD_FAILED)
    assert event.data["error"]["code"] == "provider_not_found"
    assert event.data["will_retry"] is False
    assert event.data["series_name"] == "Kaiju Academy"  # what the panel's message names
    status = await service.call("GET", "/api/queue/status")
    assert [i["id"] for i in status["failed_downloads"]] == [item]
    assert status["failed_downloads"][0]["error_code"] == "provider_not_found"


async def test_a_missing_series_folder_is_never_created_by_a_download(
    service: Service, options: Options
) -> None:
    # An unmounted share leaves its mount point empty: a download must not recreate the series
    # folder there (on the disk below, hidden once the share is back).
    folder = options.library_path / "Kaiju Academy (2012)"
    away = options.library_path.with_name("share")
    folder.rename(away)
    (item,) = await service.queue([(1, 1)])
    event = await service.wait_item(item, EventType.DOWNLOAD_FAILED)
    assert event.data["error"]["code"] == "series_folder_missing"
    assert event.data["will_retry"] is True  # a share comes back: retried after the backoff
    assert not folder.exists() and not any(options.library_path.iterdir())
    away.rename(folder)
    service.clock.now += 61
    service.client.app[keys.QUEUE].wake()
    await service.wait_item(item, EventType.DOWNLOAD_COMPLETE)


async def test_bad_queue_requests(service: Service) -> None:
    cases: list[tuple[str, str, Any, int, str]] = [
        ("DELETE", "/api/queue/999", None, 404, "not_found"),
        ("DELETE", "/api/queue/abc", None, 404, "not_found"),
        ("DELETE", f"/api/queue/{2**63}", None, 400, "validation_error"),
        ("DELETE", "/api/queue", {"item_ids": [999]}, 404, "not_found"),
        ("POST", "/api/queue/add", {"series_key": KAIJU}, 400, "validation_error"),
        (
            "POST",
            "/api/queue/add",
            {"series_key": "nope", "episodes": [{"season": 1, "episode": 1}]},
            404,
            "not_found",
        ),
        ("POST", f"/api/anime/{KAIJU}/download", {}, 400, "validation_error"),
        (
            "POST",
            f"/api/anime/{KAIJU}/download",
            {"episodes": [{"season": 1, "episode": 1}], "priority": "URGENT"},
            400,
            "validation_error",
        ),
        ("POST", "/api/queue/reorder", {"item_ids": [12345]}, 404, "not_found"),
        ("POST", "/api/queue/reorder", {"item_ids": "x"}, 400, "validation_error"),
        ("POST", "/api/queue/retry", {"item_ids": [-1]}, 400, "validation_error"),
        ("POST", "/api/queue/retry", {"item_ids": [12345]}, 404, "not_found"),
    ]
    for method, path, body, status, code in cases:
        response = await service.client.request(method, path, json=body, headers=service.headers)
        assert response.status == status, (method, path, await response.text())
        assert (await response.json())["error"]["code"] == code


async def test_retry_answers_the_ids_it_retried_and_refusals_say_which(service: Service) -> None:
    await service.call("PUT", "/api/config", json={"downloads": {"min_free_space_mb": 10**9}})
    a, b = await service.queue([(1, 1), (1, 2)])
    for item_id in (a, b):
        await service.wait_item(item_id, EventType.DOWNLOAD_FAILED)
    await service.call("POST", "/api/queue/stop")
    (newer,) = await service.queue([(1, 1)])  # the same episode as the failed a
    assert newer != a
    # a is dropped for the newer item: it was answered as retried, and then a 404.
    assert (await service.call("POST", "/api/queue/retry", json={"item_ids": [a]})) == {
        "item_ids": []
    }
    gone = await service.client.delete(f"/api/queue/{a}", headers=service.headers)
    assert gone.status == 404
    unknown = await service.client.post(
        "/api/queue/retry", json={"item_ids": [b, 999]}, headers=service.headers
    )
    assert unknown.status == 404
    assert (await unknown.json())["error"]["details"] == {"ids": [999]}
    # A failed item cannot be reordered: 409, as for a move, not 404 as for no item at all.
    for body in ({"item_ids": [b]}, {"item_id": b, "new_position": 1}):
        refused = await service.client.post(
            "/api/queue/reorder", json=body, headers=service.headers
        )
        assert refused.status == 409, body
        assert (await refused.json())["error"]["code"] == "conflict"


async def test_download_missing_queues_every_missing_episode(service: Service) -> None:
    await service.call("POST", "/api/queue/stop")
    result = await service.call("POST", f"/api/anime/{KAIJU}/download", json={"missing": True})
    assert len(result["item_ids"]) == 7
    detail = await service.call("GET", f"/api/anime/{KAIJU}")
    assert {e["state"] for e in detail["episodes"]} == {"queued"}


async def test_blocklisted_links_are_skipped_the_next_time(service: Service) -> None:
    (first,) = await service.queue([(2, 2)])  # only a dead and an unreadable hoster
    await service.wait_item(first, EventType.DOWNLOAD_FAILED)
    service.clock.now += 61
    service.client.app[keys.QUEUE].wake()
    await service.wait_event(
        lambda e: (
            e.type is EventType.DOWNLOAD_FAILED
            and e.data["item_id"] == first
            and not e.data["will_retry"]
        )
    )
    blocked = await service.call("GET", "/api/blocklist")
    assert blocked["total_records"] == 2
    assert {r["hoster"] for r in blocked["records"]} == {"Doodstream", "Streamtape"}
    for direction, hosters in (("asc", ["Doodstream", "Streamtape"]), ("desc", None)):
        query = f"/api/blocklist?sort_key=hoster&sort_direction={direction}"
        records = (await service.call("GET", query))["records"]
        assert [r["hoster"] for r in records] == (hosters or ["Streamtape", "Doodstream"])
    await service.call("GET", "/api/blocklist?sort_key=bogus", status=400)
    await service.call("DELETE", "/api/queue/failed")
    service.site.control.reset()
    (second,) = await service.queue([(2, 2)])
    event = await service.wait_event(
        lambda e: e.type is EventType.DOWNLOAD_FAILED and e.data["item_id"] == second
    )
    assert "blocklist" in event.data["error"]["message"]
    assert service.site.control.count("redirect") == 0  # no blocked link was followed
    entry = blocked["records"][0]["id"]
    await service.call("DELETE", f"/api/blocklist/{entry}")
    await service.call("DELETE", f"/api/blocklist/{entry}", status=404)
    assert (await service.call("GET", "/api/blocklist"))["total_records"] == 1


async def test_a_deleted_episode_file_is_reported(service: Service) -> None:
    (item_id,) = await service.queue([(1, 1)])
    done = await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE)
    Path(done.data["file_path"]).unlink()
    op = await service.call("POST", "/api/anime/rescan", status=202)
    await service.client.app[keys.OPERATIONS].wait(op["operation_id"])
    removed = await service.wait_event(lambda e: e.type is EventType.EPISODE_FILES_REMOVED)
    (file,) = removed.data["files"]
    assert (file["series_key"], file["season"], file["episode"]) == (KAIJU, 1, 1)
    detail = await service.call("GET", f"/api/anime/{KAIJU}")
    assert (
        next(e for e in detail["episodes"] if (e["season"], e["episode"]) == (1, 1))["state"]
        == "missing"
    )


async def test_a_second_service_on_the_same_data_waits_for_the_queue_then_runs_it(
    aiohttp_client: AiohttpClient, options: Options
) -> None:
    # One process runs the queue: the holder of <data>/queue.lock. Another (a second
    # service, a CLI download) takes over once the first lets go, and only then.
    first = await aiohttp_client(create_app(options))
    second = await aiohttp_client(create_app(options))
    assert first.app[keys.QUEUE].dispatching
    assert not second.app[keys.QUEUE].dispatching
    await first.close()
    async with asyncio.timeout(10):
        while not second.app[keys.QUEUE].dispatching:
            await asyncio.sleep(0.02)


async def test_a_blocked_link_is_tried_again_one_backoff_later(service: Service) -> None:
    # With max_retries 0 one short outage blocked every link of the episode for good: each
    # Retry then failed at once with no_hoster, although the hoster was back.
    await service.call("PUT", "/api/config", json={"downloads": {"max_retries": 0}})
    service.site.control.set_fault(r"^/embed/", Fault.SERVER_ERROR)
    (item_id,) = await service.queue([(2, 1)])  # VOE German Dub and VOE English Sub
    failed = await service.wait_item(item_id, EventType.DOWNLOAD_FAILED)
    assert failed.data["error"]["code"] == "all_hosters_failed"
    blocked = (await service.call("GET", "/api/blocklist"))["records"]
    assert {r["language"] for r in blocked} == {"German Dub", "English Sub"}
    service.site.control.clear_faults()

    service.events.clear()
    await service.call("POST", "/api/queue/retry", json={"item_ids": [item_id]})
    soon = await service.wait_item(item_id, EventType.DOWNLOAD_FAILED)
    assert soon.data["error"]["code"] == "no_hoster"  # within the backoff: still skipped

    service.events.clear()
    service.clock.now += 60 + 1  # retry_backoff_s[0] of this service, and a second
    await service.call("POST", "/api/queue/retry", json={"item_ids": [item_id]})
    await service.wait_item(item_id, EventType.DOWNLOAD_COMPLETE)


async def test_a_stop_after_the_file_landed_keeps_the_download(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stop came while the directory fsync after the rename ran (slow on a NAS): the
    # item went back to pending with the verified file on disk, and was fetched again.
    from aniworld_addon.downloads import downloader

    renamed, release = threading.Event(), threading.Event()
    real = downloader.fsync_dir

    def slow_fsync_dir(path: Path) -> None:
        if any(path.glob("*.mp4")):
            renamed.set()
            release.wait(10)
        real(path)

    monkeypatch.setattr(downloader, "fsync_dir", slow_fsync_dir)
    (item_id,) = await service.queue([(1, 1)])
    await asyncio.to_thread(renamed.wait, 10)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"download:{item_id}"]
    stop = asyncio.ensure_future(service.call("POST", "/api/queue/stop"))
    async with asyncio.timeout(10):  # the stop has reached the download
        while not task.cancelling():
            await asyncio.sleep(0.01)
    release.set()
    await stop
    item = await service.item(item_id)
    assert item["status"] == "completed" and item["file_path"]
    assert Path(item["file_path"]).is_file()
    assert service.site.control.count("media") == 1
