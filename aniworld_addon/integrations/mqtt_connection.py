"""One MQTT session at a time: broker look-up, will, discovery sync, birth replies, reconnects."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import voluptuous as vol

from ..health import CheckResult
from ..settings import Settings
from ..settings_schema import topic
from .mqtt_discovery import (
    DEVICE_ID,
    PAYLOAD_OFFLINE,
    PAYLOAD_ONLINE,
    DeviceInfo,
    Topics,
    discovery_payload,
    dumps,
)
from .supervisor import BrokerConfig, SupervisorError

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

    from .mqtt_client import PahoSession

_LOGGER = logging.getLogger(__name__)

RESOLVE_RETRY_S: Final = (5.0, 15.0, 60.0)
DROPPED_RETRY_S: Final = 1.0  # how soon states paho dropped (its queue was full) go again


def birth_delay() -> float:
    """Jitter before answering Home Assistant's birth message."""
    # Spread the answers when many clients react to the same birth message.
    return random.uniform(0.5, 3.0)  # noqa: S311 - jitter, not cryptography


class OwnedTasks:
    """Tasks the owner cancels and awaits on stop; failures are logged, never lost."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run coro in a task owned here."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            _LOGGER.error("MQTT: %s failed", task.get_name(), exc_info=err)

    async def cancel(self) -> None:
        """Cancel every task and wait until they are gone."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


TOPICS_META: Final = "mqtt_topics"  # the prefixes the broker last got retained topics under


def _is_topic(value: Any) -> bool:
    try:
        topic(value)
    except vol.Invalid:
        return False
    return True


class TopicMemory(Protocol):
    """Where the prefixes last published under are kept (the library's meta table)."""

    async def meta(self, name: str) -> Any:
        """A stored value, or None."""

    async def set_meta(self, name: str, value: Any) -> None:
        """Store a value."""


class MqttConnection:
    """Owns the paho client; reconnects when the broker or the prefixes change."""

    def __init__(
        self,
        resolve: Callable[[], Awaitable[BrokerConfig | None]],
        settings: Settings,
        device: DeviceInfo,
        *,
        on_ready: Callable[[], Awaitable[None]],
        on_command: Callable[[str, str], None],
        republish_delay: Callable[[], float] = birth_delay,
        reconnect_delay: tuple[int, int] = (1, 60),
        resolve_retry_s: Sequence[float] = RESOLVE_RETRY_S,
        memory: TopicMemory | None = None,
    ) -> None:
        self._resolve = resolve
        self._memory = memory
        self._settings = settings
        self._device = device
        self._on_ready = on_ready
        self._on_command = on_command
        self._republish_delay = republish_delay
        self._reconnect_delay = reconnect_delay
        self._resolve_retry_s = resolve_retry_s
        section = settings.section("mqtt")
        self.topics = Topics(section["topic_prefix"], section["discovery_prefix"])
        self.broker: BrokerConfig | None = None
        self._resolved = False
        self._session: PahoSession | None = None
        self._connected = False
        self._failures = 0
        self._reason = "looking up the MQTT broker"
        self._refusal_said = False
        self._sent: dict[str, str] = {}  # retained topic -> payload sent in this session
        # Retained states paho dropped (its queue was full): sent again once it has room,
        # unless a newer state of the topic got through first.
        self._dropped: dict[str, str] = {}
        self._resender: asyncio.Task[Any] | None = None
        self._broker_discovery: str | None = None  # what the broker holds on the discovery topic
        self._discovery_known = False
        self._sync_token = ""
        self._tasks = OwnedTasks()
        self._birth_pending = False  # a reply to Home Assistant's birth is waiting its turn
        self._joins: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()
        self._remove_listener: Callable[[], None] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def connected(self) -> bool:
        """True while a session with the broker is up."""
        return self._connected

    async def wait_change(self) -> None:
        """Wait for the next session event: connected, refused, unreachable or lost."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def wait_connected(self, connected: bool = True) -> None:
        """Wait until the session is up (or down); callers bring their own timeout."""
        while self.connected is not connected:
            await self.wait_change()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        self._notify()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Look up the broker and connect in the background; never waits for the broker."""
        self._remove_listener = self._settings.add_listener(self._on_settings_change)
        self._tasks.spawn(self._resolve_and_connect(), "mqtt:connect")

    async def stop(self) -> None:
        """Publish offline, disconnect cleanly and join paho's thread."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        await self._tasks.cancel()
        async with self._lock:
            await self._close(next_topics=None)
        await asyncio.gather(*self._joins)

    async def health(self) -> CheckResult:
        """ok when connected; error with the reason when it should be but is not."""
        if not self._settings.section("mqtt")["enabled"]:
            return CheckResult("disabled", "MQTT is turned off in the settings")
        if self._resolved and self.broker is None:
            return CheckResult(
                "disabled", "no MQTT broker configured (--mqtt-host, or Home Assistant's service)"
            )
        details = {"broker": self.broker.address if self.broker else None}
        if self.connected:
            return CheckResult("ok", f"connected to {details['broker']}", details)
        return CheckResult("error", self._reason or "not connected", details)

    async def _resolve_and_connect(self) -> None:
        attempt = 0
        while True:
            try:
                broker = await self._resolve()
            except SupervisorError as err:
                delay = self._resolve_retry_s[min(attempt, len(self._resolve_retry_s) - 1)]
                attempt += 1
                self._reason = f"{err}; asking again in {delay:g} s"
                _LOGGER.warning("MQTT: %s", self._reason)
                await asyncio.sleep(delay)
                continue
            break
        self.broker, self._resolved = broker, True
        if broker is None:
            _LOGGER.info("MQTT: no broker configured; MQTT stays off")
        await self._apply()

    def _on_settings_change(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if old["mqtt"] != new["mqtt"]:
            self._tasks.spawn(self._apply(), "mqtt:reconfigure")

    async def _apply(self) -> None:
        """Match the session to the settings: new prefixes mean a new session and will."""
        async with self._lock:
            section = self._settings.section("mqtt")
            topics = Topics(section["topic_prefix"], section["discovery_prefix"])
            enabled = bool(section["enabled"])
            await self._close(next_topics=topics if enabled else None)
            self.topics = topics
            if enabled and self.broker is not None:
                await self._open(self.broker)

    async def _open(self, broker: BrokerConfig) -> None:
        # paho loads with the first broker, not at start-up: without MQTT it is never needed.
        from .mqtt_client import PahoSession

        self._reason = f"connecting to {broker.address}"
        self._failures = 0
        self._session = await PahoSession.open(
            broker,
            f"{DEVICE_ID}-{secrets.token_hex(4)}",
            will_topic=self.topics.status,
            will_payload=PAYLOAD_OFFLINE,
            reconnect_delay=self._reconnect_delay,
            events=self,
        )
        _LOGGER.info("MQTT: connecting to %s (from %s)", broker.address, broker.source)

    async def _close(self, next_topics: Topics | None) -> None:
        """End the session; clear what the next one will not overwrite."""
        session, old = self._session, self.topics
        if session is None:
            return
        goodbye: list[tuple[str, str]] = []
        if next_topics is not None and next_topics.discovery != old.discovery:
            goodbye.append((old.discovery, ""))  # the device leaves the old prefix
        if next_topics is not None and next_topics.prefix != old.prefix:
            goodbye += [(topic, "") for topic in old.retained]
        else:
            # A clean disconnect suppresses the will, so availability is set by hand.
            goodbye.append((old.status, PAYLOAD_OFFLINE))
        if not self._connected:
            goodbye = []
        self._session = None
        self._set_connected(False)
        join = asyncio.get_running_loop().create_task(session.close(goodbye), name="mqtt:goodbye")
        self._joins.add(join)
        join.add_done_callback(self._joins.discard)
        # Shielded: a cancelled reconfigure must not leave paho's thread unjoined; stop() waits.
        await asyncio.shield(join)

    # --- session events, on the loop ---------------------------------------------------------

    def _address(self) -> str:
        return self.broker.address if self.broker else "?"

    def session_connected(self, session: PahoSession, reason: ReasonCode) -> None:
        """Start the session's sync on success; count and report a refusal."""
        if session is not self._session:
            return
        if reason.is_failure:
            self._refusal_said = True  # the disconnect that follows has nothing to add
            self._attempt_failed(
                f"the broker at {self._address()} refused the connection: {reason}"
            )
            return
        _LOGGER.info("MQTT: connected to %s", self._address())
        self._failures, self._reason = 0, ""
        self._set_connected(True)
        self._sent.clear()
        self._dropped.clear()  # every state is published anew on this connection
        self._broker_discovery, self._discovery_known = None, False
        self._sync_token = secrets.token_hex(8)
        topics = self.topics
        sync = topics.sync(session.client_id)
        session.subscribe([*topics.commands, *topics.ha_statuses, topics.discovery, sync])
        # The broker handles one client's packets in order: the retained discovery copy (if any)
        # reaches us before this echo, so once it is back we know what the broker holds.
        session.publish(sync, self._sync_token, retain=False)

    def session_unreachable(self, session: PahoSession) -> None:
        """Count and report a failed attempt; paho retries on its own."""
        if session is not self._session:
            return
        self._attempt_failed(f"cannot reach the MQTT broker at {self._address()}; retrying")

    def _attempt_failed(self, reason: str) -> None:
        """Count a failed connection attempt and say why: a warning the first time."""
        self._failures += 1
        self._reason = reason
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        _LOGGER.log(level, "MQTT: %s (attempt %d)", reason, self._failures)
        self._notify()

    def session_lost(self, session: PahoSession, reason: ReasonCode) -> None:
        """Report a dropped session; paho reconnects on its own."""
        if session is not self._session:
            return
        if not self._connected:
            if self._refusal_said:  # a refused attempt: session_connected said why
                self._refusal_said = False
                return
            # Hung up before any answer: a TLS or WebSocket listener, or not MQTT at all.
            # /health said "connecting" for good, and the log said nothing.
            self._attempt_failed(
                f"{self._address()} closed the connection before answering as an MQTT broker"
                " (a TLS or WebSocket port?); retrying"
            )
            return
        self._set_connected(False)
        self._reason = f"lost the connection to {self._address()} ({reason}); reconnecting"
        _LOGGER.warning("MQTT: %s", self._reason)

    def session_message(
        self, session: PahoSession, topic: str, payload: bytes, retain: bool
    ) -> None:
        """Discovery copy, sync echo, Home Assistant's birth, or a command for the owner."""
        if session is not self._session:
            return
        text = payload.decode("utf-8", errors="replace")
        topics = self.topics
        if topic == topics.discovery:
            self._broker_discovery = text
        elif topic == topics.sync(session.client_id):
            if text == self._sync_token and not self._discovery_known:
                self._discovery_known = True
                self._tasks.spawn(self._publish_all(), "mqtt:publish")
        elif topic in topics.ha_statuses:
            # Only a live birth: a retained "online" arrives on every connect, already covered.
            # Births that come while a reply waits are answered by it: it publishes the state
            # as it is then. A restart loop of Home Assistant must not make one each.
            if text.strip().lower() == PAYLOAD_ONLINE and not retain and not self._birth_pending:
                self._birth_pending = True
                self._tasks.spawn(self._after_birth(), "mqtt:birth")
        elif retain:
            _LOGGER.warning("MQTT: ignored a retained command on %s; clear it", topic)
        else:
            self._on_command(topic, text.strip())

    async def _after_birth(self) -> None:
        try:
            await asyncio.sleep(self._republish_delay())
        finally:
            self._birth_pending = False
        if self.connected and self._discovery_known:
            _LOGGER.info("MQTT: Home Assistant came online; publishing state again")
            await self._publish_all()

    async def _retire_earlier_topics(self) -> None:
        """Clear what an earlier session left retained under prefixes no longer in use.
        A change made while MQTT was off, the broker away or the service stopped found no
        session to clear them with, and Home Assistant kept a second, dead device."""
        if self._memory is None:
            return
        topics = self.topics
        current = [topics.prefix, topics.discovery_prefix]
        earlier = await self._memory.meta(TOPICS_META)
        if earlier == current:
            return
        if isinstance(earlier, list) and len(earlier) == 2 and all(map(_is_topic, earlier)):
            old = Topics(earlier[0], earlier[1])
            if old.discovery != topics.discovery:
                self.send(old.discovery, "", force=True)
            if old.prefix != topics.prefix:
                for topic in old.retained:
                    self.send(topic, "", force=True)
            _LOGGER.info("MQTT: cleared the topics left under %s, %s", old.prefix, old.discovery)
        await self._memory.set_meta(TOPICS_META, current)

    async def _publish_all(self) -> None:
        """Discovery if the broker lacks it, the owner's state, then availability."""
        await self._retire_earlier_topics()
        payload = dumps(discovery_payload(self.topics, self._device))
        if self._broker_discovery != payload and self.send(
            self.topics.discovery, payload, force=True
        ):
            self._broker_discovery = payload
        await self._on_ready()
        # Last: whoever sees "online" (Home Assistant, tests) already has every state.
        self.send(self.topics.status, PAYLOAD_ONLINE, force=True)

    # --- publishing --------------------------------------------------------------------------

    def send(self, topic: str, payload: str, *, retain: bool = True, force: bool = False) -> bool:
        """Publish if connected; a retained topic that already holds payload is skipped."""
        session = self._session
        if session is None or not self.connected:
            return False
        if retain and not force and self._sent.get(topic) == payload:
            return False
        if not session.publish(topic, payload, retain=retain):
            # Recorded as sent, a dropped state was never sent again: the retained topic (a
            # "paused" switch in Home Assistant) stayed wrong until the state changed.
            if retain:
                self._dropped[topic] = payload
                self._sent.pop(topic, None)
                if self._resender is None or self._resender.done():
                    _LOGGER.warning(
                        "MQTT: too many messages wait for the broker; states are sent later"
                    )
                    self._resender = self._tasks.spawn(self._send_dropped(), "mqtt:dropped")
            return False
        if retain:
            self._sent[topic] = payload
            self._dropped.pop(topic, None)
        return True

    async def _send_dropped(self) -> None:
        """Send the dropped states again, once a second until paho takes them all."""
        while self._dropped and self.connected:  # else the next connection sends them all
            await asyncio.sleep(DROPPED_RETRY_S)
            dropped, self._dropped = self._dropped, {}
            for name, payload in dropped.items():
                self.send(name, payload, force=True)  # dropped again: back in _dropped
