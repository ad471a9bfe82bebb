"""Webhooks: real receivers get the right JSON; hanging or failing ones never hold anything up."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from aniworld_addon import keys
from aniworld_addon.app import create_app
from aniworld_addon.downloads.queue_store import Priority
from aniworld_addon.events import Event, EventBus, EventType
from aniworld_addon.integrations.webhooks import WebhookNotifier
from aniworld_addon.options import Options
from tests.site import MediaSet
from tests.site.plugin import RunningSite

from ..conftest import AiohttpClient
from .test_scheduler import KAIJU, FakeClock, Harness, add_series

EPISODE = {"item_id": 3, "provider": "aniworld", "series_key": KAIJU, "season": 1, "episode": 2}


class Receiver:
    """A webhook receiver: /ok answers 200, /fail answers 500, /hang never answers, /trickle
    answers 200 and then a byte every 50 ms, never finishing (each read is quick)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.hits: Counter[str] = Counter()
        self.release = asyncio.Event()
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.json()
        async with self._changed:
            self.bodies[name].append(body)
            self.headers[name].append(dict(request.headers))
            self.hits[name] += 1
            self._changed.notify_all()
        if name == "fail":
            return web.Response(status=500, text="boom")
        if name == "refuse":
            return web.Response(status=401, text="unknown webhook token")
        if name == "hang":
            await self.release.wait()  # set when the server shuts down
        if name == "trickle":
            response = web.StreamResponse()
            await response.prepare(request)
            while not self.release.is_set():
                await response.write(b" ")
                await asyncio.sleep(0.05)  # the receiver's pace, not a wait for a condition
            return response
        return web.json_response({"ok": True})

    async def wait(self, name: str, count: int, within: float = 10) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: self.hits[name] >= count)


@pytest.fixture
async def receiver(
    aiohttp_server: AiohttpServer,
) -> AsyncIterator[tuple[Receiver, Callable[[str], str]]]:
    """A running receiver and a function that gives the URL of one of its endpoints."""
    hooks = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{name}", hooks.handle)

    async def wake(_app: web.Application) -> None:
        hooks.release.set()

    app.on_shutdown.append(wake)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield hooks, lambda name: str(server.make_url(f"/hook/{name}"))
    hooks.release.set()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    events = EventBus()
    yield events
    await events.close()


class Listener:
    """Another bus subscriber, to show the bus keeps delivering while webhooks are stuck."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait(self, event: Event, within: float = 2) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: event in self.events)


async def test_receiver_gets_the_right_payloads(
    receiver: tuple[Receiver, Callable[[str], str]], http: httpx.AsyncClient, bus: EventBus
) -> None:
    hooks, url = receiver
    notifier = WebhookNotifier(http, lambda: [url("ok")])
    notifier.start(bus)
    complete = bus.publish(
        EventType.DOWNLOAD_COMPLETE, {**EPISODE, "file_path": "/library/x.mp4", "size_mb": 1.5}
    )
    error = {"code": "all_hosters_failed", "message": "all 2 hosters failed"}
    bus.publish(EventType.DOWNLOAD_FAILED, {**EPISODE, "error": error, "will_retry": True})
    failed = bus.publish(
        EventType.DOWNLOAD_FAILED, {**EPISODE, "error": error, "will_retry": False}
    )
    bus.publish(EventType.QUEUE_STATUS, {"action": "failed"})
    bus.publish(EventType.DOWNLOAD_PROGRESS, {**EPISODE, "progress": {"percent": 50.0}})
    # Last, so once it has arrived every earlier event has been handled (in order).
    new = bus.publish(
        EventType.NEW_EPISODES_FOUND,
        {"episodes": [{"series_key": "sky-lantern", "season": 1, "episode": 4}], "count": 1},
    )
    try:
        await hooks.wait("ok", 3)
        await notifier.wait_idle()
    finally:
        await notifier.close()

    expected = [
        {"event": e.type.value, "timestamp": e.timestamp.isoformat(), "data": dict(e.data)}
        for e in (complete, failed, new)
    ]
    got = sorted(hooks.bodies["ok"], key=lambda b: b["timestamp"])
    assert got == json.loads(json.dumps(expected))
    assert all(h["Content-Type"] == "application/json" for h in hooks.headers["ok"])
    assert all(h["User-Agent"].startswith("aniworld-addon/") for h in hooks.headers["ok"])
    assert (await notifier.check()).status == "ok"


async def test_hanging_and_failing_webhooks_never_hold_up_the_bus(
    receiver: tuple[Receiver, Callable[[str], str]], http: httpx.AsyncClient, bus: EventBus
) -> None:
    hooks, url = receiver
    notifier = WebhookNotifier(
        http, lambda: [url("hang"), url("fail"), url("ok")], timeout_s=60, retry_delays_s=(0.0,)
    )
    notifier.start(bus)
    listener = Listener()
    bus.subscribe(listener, name="other")
    try:
        started = time.monotonic()
        first = bus.publish(EventType.DOWNLOAD_COMPLETE, {**EPISODE, "item_id": 1})
        assert time.monotonic() - started < 0.05  # publishing never waits for a delivery
        await listener.wait(first)
        await hooks.wait("hang", 1)
        await hooks.wait("fail", 3)  # three attempts, all answered 500
        second = bus.publish(EventType.DOWNLOAD_COMPLETE, {**EPISODE, "item_id": 2})
        await listener.wait(second)
        await hooks.wait("ok", 2)  # the second event got through while the first still hangs
        await hooks.wait("fail", 6)
        await hooks.wait("hang", 2)
        assert [b["data"]["item_id"] for b in hooks.bodies["ok"]] == [1, 2]
        assert notifier.results[url("fail")].attempts == 3
        assert url("hang") not in notifier.results  # still waiting for its answer
    finally:
        closing = time.monotonic()
        await notifier.close()  # cancels the stuck deliveries at once
    assert time.monotonic() - closing < 2 and notifier.in_flight == 0


async def test_health_reports_the_failing_webhooks(
    receiver: tuple[Receiver, Callable[[str], str]], http: httpx.AsyncClient
) -> None:
    hooks, url = receiver
    urls = [url("hang") + "?token=secret", url("fail"), url("ok"), url("refuse")]
    notifier = WebhookNotifier(http, lambda: urls, timeout_s=0.2, retry_delays_s=(0.0,))
    assert (await notifier.check()).status == "ok"  # configured, nothing delivered yet
    await notifier.on_event(Event(EventType.DOWNLOAD_COMPLETE, EPISODE))
    await notifier.wait_idle()
    result = await notifier.check()
    assert result.status == "error"
    assert result.message == "the last delivery to webhook #1, #2, #4 failed"
    # a 401 is the receiver's answer to this request: asked again, it gives the same one
    assert hooks.hits == {"hang": 3, "fail": 3, "ok": 1, "refuse": 1}
    await notifier.close()
    details = json.dumps(result.to_dict())
    assert "secret" not in details and "/hook/" not in details  # URLs carry secrets
    by_number = {k.rsplit("#", 1)[1]: v for k, v in result.details.items()}
    assert by_number["1"]["error"].startswith("ReadTimeout")
    assert by_number["2"]["error"] == "HTTP 500" and by_number["2"]["attempts"] == 3
    assert by_number["3"]["ok"] is True
    assert by_number["4"]["error"] == "HTTP 401" and by_number["4"]["attempts"] == 1
    assert (await WebhookNotifier(http, list).check()).status == "disabled"


async def test_a_stuck_receiver_costs_the_others_nothing_and_shows_in_health(
    receiver: tuple[Receiver, Callable[[str], str]], http: httpx.AsyncClient
) -> None:
    # The cap on deliveries in flight was global: eight stuck deliveries to one receiver made
    # every later event to every receiver drop, while health said "none failing".
    hooks, url = receiver
    urls = [url("hang"), url("ok")]
    notifier = WebhookNotifier(http, lambda: urls, timeout_s=60, max_in_flight=3)
    try:
        for item_id in range(5):
            event = Event(EventType.DOWNLOAD_COMPLETE, {**EPISODE, "item_id": item_id})
            await notifier.on_event(event)
            await hooks.wait("ok", item_id + 1)  # every event reaches the healthy receiver
        assert notifier.dropped_by_url == {url("hang"): 2}
        result = await notifier.check()
        assert result.status == "error"
        assert result.message == "webhook #1 dropped events: too many deliveries in flight"
    finally:
        await notifier.close()


async def test_a_receiver_that_never_finishes_its_answer_times_out(
    receiver: tuple[Receiver, Callable[[str], str]], http: httpx.AsyncClient
) -> None:
    # A byte every 50 ms never trips the per-read timeout: the attempt needs its own deadline.
    _hooks, url = receiver
    notifier = WebhookNotifier(
        http, lambda: [url("trickle")], timeout_s=5, deadline_s=0.5, attempts=1
    )
    await notifier.on_event(Event(EventType.DOWNLOAD_COMPLETE, EPISODE))
    await notifier.wait_idle()
    delivery = notifier.results[url("trickle")]
    assert (delivery.ok, delivery.error) == (False, "no complete answer within 0.5 s")
    await notifier.close()


async def test_deliveries_in_flight_are_bounded(
    receiver: tuple[Receiver, Callable[[str], str]], http: httpx.AsyncClient
) -> None:
    hooks, url = receiver
    notifier = WebhookNotifier(http, lambda: [url("hang")], timeout_s=60, max_in_flight=2)
    try:
        for item_id in range(5):
            event = Event(EventType.DOWNLOAD_COMPLETE, {**EPISODE, "item_id": item_id})
            await notifier.on_event(event)
        assert notifier.in_flight == 2 and notifier.dropped == 3
        await hooks.wait("hang", 2)
    finally:
        await notifier.close()


@pytest.fixture
async def downloads(
    aiohttp_client: AiohttpClient, options: Options, provider_site: RunningSite, media_set: MediaSet
) -> AsyncIterator[Harness]:
    """The real app with Kaiju Academy on the test site and the queue running."""
    add_series(options.library_path, "Kaiju Academy", KAIJU)
    clock = FakeClock()
    client = await aiohttp_client(create_app(options, clock=clock))
    await client.app[keys.SETTINGS].update(
        {
            "providers": provider_site.providers_config(),
            "downloads": {"min_free_space_mb": 0},
        }
    )
    h = Harness(client, clock, options, provider_site)
    client.app[keys.BUS].subscribe(h.record, name="test-recorder")
    await h.rescan()
    yield h
    await h.close()


async def test_hanging_and_failing_webhooks_do_not_delay_real_downloads(
    downloads: Harness, receiver: tuple[Receiver, Callable[[str], str]]
) -> None:
    hooks, url = receiver
    app = downloads.app
    # The shipped timeout (5 s) and retries: a hanging receiver holds its delivery that long.
    notifier = WebhookNotifier(app[keys.HTTP_CLIENT], lambda: [url("hang"), url("fail"), url("ok")])
    notifier.start(app[keys.BUS])
    try:
        queue = app[keys.QUEUE]
        (first,) = await queue.add("aniworld", KAIJU, [(1, 1)], Priority.NORMAL)
        done = await downloads.wait_event(
            lambda e: e.type is EventType.DOWNLOAD_COMPLETE and e.data["item_id"] == first
        )
        await hooks.wait("hang", 1)
        started = time.monotonic()
        (second,) = await queue.add("aniworld", KAIJU, [(1, 2)], Priority.NORMAL)
        await downloads.wait_event(
            lambda e: e.type is EventType.DOWNLOAD_COMPLETE and e.data["item_id"] == second
        )
        # The second download finished while the first webhook still hangs in its timeout.
        assert time.monotonic() - started < 5
        assert hooks.hits["hang"] <= 2  # no retry yet: the first attempt has not timed out
        assert url("hang") not in notifier.results and notifier.in_flight >= 1
        await hooks.wait("ok", 2)
        delivered = {b["data"]["item_id"]: b for b in hooks.bodies["ok"]}
        assert set(delivered) == {first, second}
        assert delivered[first]["event"] == "download_complete"
        assert delivered[first]["data"]["file_path"] == done.data["file_path"]
    finally:
        await notifier.close()
