"""One paho client and its network thread: callbacks handed to the event loop, a polite close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .supervisor import BrokerConfig

_LOGGER = logging.getLogger(__name__)

QOS: Final = 1
KEEPALIVE_S: Final = 60
CONNECT_TIMEOUT_S: Final = 5.0
CLOSE_TIMEOUT_S: Final = 5.0
MAX_QUEUED: Final = 1000


class SessionEvents(Protocol):
    """What the owner of a PahoSession hears, always on the event loop."""

    def session_connected(self, session: PahoSession, reason: ReasonCode) -> None:
        """The broker answered CONNECT (reason says whether it accepted)."""

    def session_unreachable(self, session: PahoSession) -> None:
        """The broker could not be reached; paho keeps retrying."""

    def session_lost(self, session: PahoSession, reason: ReasonCode) -> None:
        """The connection ended."""

    def session_message(
        self, session: PahoSession, topic: str, payload: bytes, retain: bool
    ) -> None:
        """A message arrived on a subscribed topic."""


class PahoSession:
    """Owns one paho client; every paho callback is re-run on the loop, tagged with this session."""

    def __init__(self, client_id: str, events: SessionEvents) -> None:
        self.client_id = client_id
        self._events = events
        self._loop = asyncio.get_running_loop()
        self._client: mqtt.Client | None = None
        self._subscribed: list[str] = []
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._gone: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls,
        broker: BrokerConfig,
        client_id: str,
        *,
        will_topic: str,
        will_payload: str,
        reconnect_delay: tuple[int, int],
        events: SessionEvents,
    ) -> PahoSession:
        """Build the client and start its network thread; connecting goes on in the background."""
        session = cls(client_id, events)
        # Built in a thread: TLS set-up reads the system's CA files.
        client = await asyncio.to_thread(
            session._build, broker, will_topic, will_payload, reconnect_delay
        )
        session._client = client
        client.loop_start()
        return session

    def _build(
        self,
        broker: BrokerConfig,
        will_topic: str,
        will_payload: str,
        reconnect_delay: tuple[int, int],
    ) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.ssl:
            client.tls_set()
        client.will_set(will_topic, will_payload, qos=QOS, retain=True)
        client.reconnect_delay_set(*reconnect_delay)
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.max_queued_messages_set(MAX_QUEUED)
        client.on_connect = self._paho_connect
        client.on_connect_fail = self._paho_connect_fail
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        client.on_publish = self._paho_publish
        client.connect_async(broker.host, broker.port, KEEPALIVE_S)
        return client

    def subscribe(self, topics: list[str]) -> None:
        """Subscribe at QOS; the close unsubscribes them again before its last messages."""
        assert self._client is not None
        self._subscribed = topics
        self._client.subscribe([(topic, QOS) for topic in topics])

    def publish(self, topic: str, payload: str, *, retain: bool) -> bool:
        """Queue a message at QOS for paho's thread to send; False when paho dropped it
        (MAX_QUEUED messages already wait for a slow or stalled broker)."""
        assert self._client is not None
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    async def close(self, messages: list[tuple[str, str]]) -> None:
        """Publish the last messages, wait for the broker's acks, disconnect, join the thread."""
        client = self._client
        assert client is not None
        # Closing a socket that still holds unread bytes (an ack, an echo) makes the kernel
        # reset the connection, and the broker then drops what it had not read yet: so stop
        # the echoes, wait for every ack, and only then send DISCONNECT.
        acks: list[asyncio.Future[None]] = []
        if messages:
            client.unsubscribe(self._subscribed)
            for topic, payload in messages:
                info = client.publish(topic, payload, qos=QOS, retain=True)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    acks.append(self._acks.setdefault(info.mid, self._loop.create_future()))
        gone = self._gone = self._loop.create_future()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*acks)
                client.disconnect()
                if messages:
                    await gone
        except TimeoutError:
            _LOGGER.warning("MQTT: the broker did not confirm the goodbye in time")
            client.disconnect()
        finally:
            self._gone = None
            self._acks.clear()
        await asyncio.to_thread(client.loop_stop)
        # paho closes its wake-up socket pair only when the client is freed. Its callbacks
        # point back at this session, so holding it here would leave both to the cyclic
        # collector (the sockets then close late, with a ResourceWarning): let it go now.
        self._client = None

    # --- paho's network thread -> event loop -------------------------------------------------

    def _paho_connect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._to_loop(self._events.session_connected, self, reason)

    def _paho_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._to_loop(self._events.session_unreachable, self)

    def _paho_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._to_loop(self._disconnected, reason)

    def _paho_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        _reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        self._to_loop(self._published, mid)

    def _paho_message(
        self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        self._to_loop(
            self._events.session_message, self, message.topic, message.payload, message.retain
        )

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        # RuntimeError: the loop closed while paho was still finishing a callback.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    # --- on the loop -------------------------------------------------------------------------

    def _disconnected(self, reason: ReasonCode) -> None:
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        self._events.session_lost(self, reason)

    def _published(self, mid: int) -> None:
        ack = self._acks.pop(mid, None)
        if ack is not None and not ack.done():
            ack.set_result(None)
