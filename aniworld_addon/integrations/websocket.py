"""The WebSocket hub: rooms, one reader and one bounded writer per client, slow clients dropped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import AppError
from ..events import Event, EventBus, Room, Subscription
from ..keys import IDENTITY

_LOGGER = logging.getLogger(__name__)

CLIENT_BUFFER: Final = 256
STATE_TIMEOUT_S: Final = 5.0  # a connect never waits longer for the state it is sent
HEARTBEAT_S: Final = 30.0
CLOSE_TIMEOUT_S: Final = 2.0
MAX_CLIENT_MESSAGE: Final = 4096


def message(type_: str, data: Any) -> str:
    """The wire shape {type, timestamp, data} for messages the hub makes itself."""
    return json.dumps(
        {"type": type_, "timestamp": datetime.now(UTC).isoformat(), "data": data},
        ensure_ascii=False,
    )


def _unsent(transport: asyncio.Transport) -> bool:
    return transport.get_write_buffer_size() > 0


class WsClient:
    """One connection: the rooms it joined and the queue its writer task drains."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        buffer: int,
        client_id: int,
        transport: asyncio.Transport | None = None,
        token_id: str | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.id = client_id
        self.token_id = token_id  # the session or API token it connected with (None: ingress)
        self.rooms: set[Room] = set()
        self.queue: asyncio.Queue[str] = asyncio.Queue(buffer)
        self.slow = False
        self.writer: asyncio.Task[None] | None = None
        # When its credential ends (loop time, None: never) and the timer that closes it then.
        self.deadline: float | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.session_issued: float | None = None  # loop time of its session's login

    def offer(self, text: str) -> bool:
        """Queue a message; False when the buffer is full (the client is too slow)."""
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True

    async def write_loop(self) -> None:
        """Send queued messages in order; the only place that writes to this socket."""
        while True:
            text = await self.queue.get()
            await self.ws.send_str(text)


class WebSocketHub:
    """Delivers bus events to the clients in the event's room."""

    def __init__(
        self,
        bus: EventBus,
        *,
        client_buffer: int = CLIENT_BUFFER,
        state: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self._bus = bus
        # What a client missed before it connected (or while it was away): the queue's counts
        # and a running scan, sent with `connected` so a panel never shows a stale badge.
        self._state = state
        self._buffer = client_buffer
        self._clients: dict[int, WsClient] = {}
        self._next_id = 0
        self._subscription: Subscription | None = None
        self._closers: set[asyncio.Task[None]] = set()
        self.dropped_slow = 0
        self.sent = 0

    def start(self) -> None:
        """Subscribe to the bus; the hub's own queue is large because fan-out never waits."""
        self._subscription = self._bus.subscribe(self._on_event, name="websocket", maxsize=10_000)

    async def _on_event(self, event: Event) -> None:
        text: str | None = None  # encoded once, and only when someone listens
        for client in list(self._clients.values()):
            if event.room in client.rooms and not client.slow:
                if text is None:
                    text = json.dumps(event.to_dict(), ensure_ascii=False)
                self._deliver(client, text)

    def _deliver(self, client: WsClient, text: str) -> None:
        if client.offer(text):
            self.sent += 1
            return
        # A full buffer means this client cannot keep up: drop it so nobody else waits.
        client.slow = True
        self.dropped_slow += 1
        _LOGGER.info("WebSocket client %d dropped: too slow to keep up", client.id)
        self._close_later(client, slow=True)

    def _close_later(self, client: WsClient, **how: Any) -> None:
        """Stop its writer now and close it in a task the hub owns (_close's keywords)."""
        if client.writer is not None:
            client.writer.cancel()
        closer = asyncio.get_running_loop().create_task(self._close(client, **how))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    def drop_credential(self, token_id: str) -> int:
        """Close the connections a revoked session or API token opened; how many there were.

        Credentials are checked at the upgrade only: without this, a socket opened before a
        logout or a token's deletion went on receiving every event.
        """
        dropped = [c for c in self._clients.values() if c.token_id == token_id]
        for client in dropped:
            self._drop(client, b"credentials revoked")
        return len(dropped)

    def limit_sessions(self, hours: float) -> int:
        """End the sockets of login sessions older than `hours` at that age; how many changed.

        auth.session_hours lowered: the sessions themselves end by the new rule at their next
        request, and a socket makes none after its upgrade.
        """
        changed = 0
        for client in list(self._clients.values()):
            if client.session_issued is None:
                continue
            deadline = client.session_issued + hours * 3600.0
            if client.deadline is None or deadline < client.deadline:
                self._expire_at(client, deadline)
                changed += 1
        return changed

    def _expire_at(self, client: WsClient, deadline: float) -> None:
        """(Re)arm the timer that closes a client when its credential ends."""
        if client.expiry is not None:
            client.expiry.cancel()
        loop = asyncio.get_running_loop()
        client.deadline = deadline
        client.expiry = loop.call_at(
            max(deadline, loop.time()), self._drop, client, b"credentials expired"
        )

    def _drop(self, client: WsClient, reason: bytes) -> None:
        """Close a client whose credential no longer holds (1008, with the reason)."""
        if self._clients.pop(client.id, None) is not None:
            self._close_later(client, code=WSCloseCode.POLICY_VIOLATION, reason=reason)

    async def _close(
        self,
        client: WsClient,
        *,
        slow: bool = False,
        code: WSCloseCode = WSCloseCode.GOING_AWAY,
        reason: bytes = b"server shutdown",
    ) -> None:
        transport = client.transport
        if slow and transport is not None:
            # Its buffers are full by definition: a close frame would wait behind them for a
            # reader that never comes, and a transport closes only once its buffer is sent.
            # Without the abort the connection, its handler and the unsent data would stay.
            transport.abort()
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await client.ws.close(code=code, message=reason)
        except (TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # aiohttp's writers share one drain future: cancelling the writer task that waited
            # on it cancels this wait too. Only a cancellation of this task goes on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        if transport is not None and _unsent(transport):
            transport.abort()  # a client that stopped reading would hold shutdown up

    def status(self) -> dict[str, Any]:
        """GET /ws/status: connections, members per room, drops."""
        rooms = {room.value: 0 for room in Room}
        for client in self._clients.values():
            for room in client.rooms:
                rooms[room.value] += 1
        return {
            "connections": len(self._clients),
            "rooms": rooms,
            "dropped_slow_clients": self.dropped_slow,
            "messages_sent": self.sent,
        }

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Serve one WebSocket connection until it closes."""
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_CLIENT_MESSAGE)
        await ws.prepare(request)
        self._next_id += 1
        identity = request.get(IDENTITY)
        token_id = identity.token_id if identity is not None else None
        client = WsClient(ws, self._buffer, self._next_id, request.transport, token_id)
        self._clients[client.id] = client
        client.writer = asyncio.get_running_loop().create_task(
            client.write_loop(), name=f"ws-writer:{client.id}"
        )
        if identity is not None:
            now = asyncio.get_running_loop().time()
            if identity.session_age_s is not None:
                client.session_issued = now - identity.session_age_s
            if identity.expires_in_s is not None:
                self._expire_at(client, now + identity.expires_in_s)
        try:  # from here on, however it ends, the client is removed and its writer stopped
            state = await self._now()
            client.offer(message("connected", {"rooms": [r.value for r in Room], "state": state}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_client_message(client, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if client.expiry is not None:
                client.expiry.cancel()
            self._clients.pop(client.id, None)
            if client.writer is not None:
                client.writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await client.writer
        return ws

    async def _now(self) -> dict[str, Any] | None:
        """The state sent with `connected`; None when there is none to send (or it failed)."""
        if self._state is None:
            return None
        try:
            async with asyncio.timeout(STATE_TIMEOUT_S):
                return await self._state()
        except (AppError, TimeoutError) as err:  # a busy database: it connects all the same
            _LOGGER.warning("WebSocket: cannot read the state for a new client: %s", err)
            return None

    def _on_client_message(self, client: WsClient, raw: str) -> None:
        try:
            data = json.loads(raw)
            action = data["action"]
        # RecursionError: "[[[[..." deeper than the parser's stack, under the size cap; it
        # reached the error middleware, which wrote an HTTP 500 onto the upgraded socket
        except (ValueError, TypeError, KeyError, RecursionError):
            client.offer(
                message(
                    "error",
                    {
                        "code": "invalid_message",
                        "message": 'send {"action": "join"|"leave", "room"}',
                    },
                )
            )
            return
        if action == "ping":
            client.offer(message("pong", {}))
            return
        try:
            room = Room(data.get("room"))
        except ValueError:
            client.offer(
                message(
                    "error",
                    {
                        "code": "unknown_room",
                        "message": f"rooms: {', '.join(r.value for r in Room)}",
                    },
                )
            )
            return
        if action == "join":
            client.rooms.add(room)
        elif action == "leave":
            client.rooms.discard(room)
        else:
            client.offer(
                message(
                    "error", {"code": "unknown_action", "message": "actions: join, leave, ping"}
                )
            )
            return
        client.offer(
            message(
                f"{action}ed" if action == "join" else "left",
                {"room": room.value, "rooms": sorted(r.value for r in client.rooms)},
            )
        )

    async def close(self) -> None:
        """Unsubscribe, then close every socket with GOING_AWAY (app shutdown)."""
        if self._subscription is not None:
            await self._subscription.cancel()
        clients = list(self._clients.values())
        for client in clients:
            if client.writer is not None:
                client.writer.cancel()
        await asyncio.gather(*(self._close(c) for c in clients), return_exceptions=True)
        for closer in list(self._closers):
            with contextlib.suppress(asyncio.CancelledError):
                await closer
