"""WebSocket rooms with real clients; a slow client is dropped while the others keep receiving."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

from aniworld_addon import keys
from aniworld_addon.downloads.queue_store import Priority
from aniworld_addon.events import EventType
from aniworld_addon.library.service import RESCAN_KIND
from aniworld_addon.operations import Operation

from .conftest import Authed


async def _join(ws: ClientWebSocketResponse, room: str) -> None:
    await ws.send_json({"action": "join", "room": room})
    while True:
        msg = await ws.receive_json()
        if msg["type"] == "joined":
            assert msg["data"]["room"] == room
            return


async def _connect(authed: Authed, path: str = "/ws/connect") -> ClientWebSocketResponse:
    ws = await authed.client.ws_connect(path, headers=authed.headers)
    hello = await ws.receive_json()
    assert hello["type"] == "connected"
    return ws


async def test_events_reach_only_the_rooms_that_joined(authed: Authed) -> None:
    downloads = await _connect(authed)
    scans = await _connect(authed, "/api/ws")
    await _join(downloads, "downloads")
    await _join(scans, "scan_progress")
    bus = authed.client.app[keys.BUS]
    bus.publish(EventType.SCAN_STARTED, {"operation_id": "x"})
    bus.publish(EventType.DOWNLOAD_COMPLETE, {"item_id": 1})
    got = await downloads.receive_json()
    assert got["type"] == "download_complete" and got["data"] == {"item_id": 1}
    assert set(got) == {"type", "timestamp", "data"}
    got = await scans.receive_json()
    assert got["type"] == "scan_started"
    # After leaving, nothing more arrives for that room.
    await downloads.send_json({"action": "leave", "room": "downloads"})
    assert (await downloads.receive_json())["type"] == "left"
    bus.publish(EventType.DOWNLOAD_COMPLETE, {"item_id": 2})
    bus.publish(EventType.SCAN_COMPLETE, {"series": 0})
    assert (await scans.receive_json())["type"] == "scan_complete"
    await downloads.send_json({"action": "ping"})
    assert (await downloads.receive_json())["type"] == "pong"  # not the download event
    status = await (await authed.client.get("/ws/status", headers=authed.headers)).json()
    assert status["connections"] == 2 and status["rooms"]["scan_progress"] == 1
    await downloads.close()
    await scans.close()


async def test_bad_client_messages_get_clear_errors(authed: Authed) -> None:
    ws = await _connect(authed)
    for raw, code in (
        ("not json", "invalid_message"),
        ("[" * 4000, "invalid_message"),  # deeper than json's stack, within the size cap
        ('{"action": "join", "room": "nope"}', "unknown_room"),
        ('{"action": "dance", "room": "system"}', "unknown_action"),
    ):
        await ws.send_str(raw)
        reply = await ws.receive_json()
        assert reply["type"] == "error" and reply["data"]["code"] == code
    await ws.send_str('{"action": "ping"}')  # the socket lives on
    assert (await ws.receive_json())["type"] == "pong"
    await ws.close()


async def test_slow_client_is_dropped_and_others_receive_everything(authed: Authed) -> None:
    fast = [await _connect(authed), await _connect(authed)]
    slow = await _connect(authed)
    for ws in (*fast, slow):
        await _join(ws, "download_progress")
    hub = authed.client.app[keys.WS_HUB]
    bus = authed.client.app[keys.BUS]
    total = 3000
    payload = "x" * 16_384  # big messages fill the slow client's socket buffers quickly
    received = [0, 0]
    changed = asyncio.Condition()

    async def drain(index: int, ws: ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and '"download_progress"' in msg.data[:80]:
                async with changed:
                    received[index] += 1
                    changed.notify_all()

    readers = [asyncio.create_task(drain(i, ws)) for i, ws in enumerate(fast)]
    try:
        for sent in range(0, total, 50):
            for n in range(sent, sent + 50):
                bus.publish(EventType.DOWNLOAD_PROGRESS, {"n": n, "pad": payload})
            # Pace the publisher by the fast readers, never by the slow one.
            async with asyncio.timeout(20), changed:
                await changed.wait_for(lambda sent=sent: min(received) >= sent)
        async with asyncio.timeout(30), changed:
            await changed.wait_for(lambda: min(received) >= total)
        assert received == [total, total]
        assert hub.dropped_slow == 1
        # The slow client's socket was closed by the server.
        async with asyncio.timeout(10):
            while not slow.closed:
                msg = await slow.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        status: dict[str, Any] = hub.status()
        assert status["connections"] == 2
    finally:
        for ws in (*fast, slow):
            await ws.close()
        for reader in readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def test_connected_tells_a_client_what_it_missed(authed: Authed) -> None:
    # The panel's queue badge and scan banner showed what the page was rendered with: items
    # changed before the socket connected (or while it was away) were never seen.
    app = authed.client.app
    assert (await authed.client.post("/api/queue/stop", headers=authed.headers)).status == 200
    await app[keys.QUEUE].store.add(
        "aniworld", "kaiju-academy", [(1, 1), (1, 2)], Priority.NORMAL, 0
    )
    release = asyncio.Event()

    async def scanning(_op: Operation) -> dict[str, object]:
        await release.wait()
        return {}

    operation = app[keys.OPERATIONS].start(RESCAN_KIND, scanning)
    ws = await authed.client.ws_connect("/ws/connect", headers=authed.headers)
    hello = await ws.receive_json()
    assert hello["type"] == "connected"
    state = hello["data"]["state"]
    assert state["queue"]["pending"] == 2 and state["queue"]["is_running"] is False
    assert state["scan"]["operation_id"] == operation.id
    release.set()
    await app[keys.OPERATIONS].wait(operation.id)
    await ws.close()
    again = await authed.client.ws_connect("/ws/connect", headers=authed.headers)
    assert (await again.receive_json())["data"]["state"]["scan"] is None
    await again.close()
