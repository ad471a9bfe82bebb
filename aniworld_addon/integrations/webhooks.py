"""Webhooks: a JSON POST to every configured URL for downloads and new episodes (SPEC §6)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Self
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from .. import keys
from ..const import VERSION
from ..events import Event, EventBus, EventType, Subscription
from ..health import CheckResult
from ..settings import Settings

_LOGGER = logging.getLogger(__name__)

TIMEOUT_S: Final = 5.0  # per connect and per read
# A whole attempt: a receiver that trickles a byte every few seconds never trips a read timeout.
DEADLINE_S: Final = 15.0
ATTEMPTS: Final = 3
RETRY_DELAYS_S: Final = (2.0, 10.0)
MAX_IN_FLIGHT: Final = 8  # per URL: a hanging receiver must not cost the others their events
WEBHOOK_EVENTS: Final = frozenset(
    {EventType.DOWNLOAD_COMPLETE, EventType.DOWNLOAD_FAILED, EventType.NEW_EPISODES_FOUND}
)


def redact(url: str) -> str:
    """scheme://host[:port]/… : webhook paths and queries often carry secrets (Discord, ntfy)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


@dataclass(slots=True, frozen=True)
class Delivery:
    """The outcome of the last delivery to one URL."""

    ok: bool
    at: float
    event: str
    attempts: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape in the health check's details."""
        return {
            "ok": self.ok,
            "at": self.at,
            "event": self.event,
            "attempts": self.attempts,
            "error": self.error,
        }


# 4xx answers worth another attempt: a timeout, "too early" and "too many requests"
_RETRIED: Final = frozenset({408, 425, 429})


class WebhookNotifier:
    """Subscribes to the bus; each delivery runs in a task it owns, never awaited by publishers."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        urls: Callable[[], Sequence[str]],
        *,
        timeout_s: float = TIMEOUT_S,
        deadline_s: float = DEADLINE_S,
        attempts: int = ATTEMPTS,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        max_in_flight: int = MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._urls = urls
        self._timeout = httpx.Timeout(timeout_s)
        self._deadline_s = deadline_s
        self._attempts = max(1, attempts)
        self._delays = tuple(retry_delays_s) or (0.0,)
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: Counter[str] = Counter()
        self._subscription: Subscription | None = None
        self.results: dict[str, Delivery] = {}
        self.dropped = 0
        #: deliveries dropped per URL since its last completed one (health says so)
        self.dropped_by_url: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, client: httpx.AsyncClient, settings: Settings, **kwargs: Any) -> Self:
        """A notifier reading notifications.webhooks afresh for each event (changes apply live)."""
        return cls(client, lambda: list(settings.section("notifications")["webhooks"]), **kwargs)

    def start(self, bus: EventBus) -> None:
        """Begin delivering the webhook events published from now on."""
        self._subscription = bus.subscribe(self.on_event, name="webhooks")

    @property
    def in_flight(self) -> int:
        """Deliveries running right now."""
        return len(self._tasks)

    async def on_event(self, event: Event) -> None:
        """Bus subscriber: start one delivery task per configured URL and return at once."""
        if event.type not in WEBHOOK_EVENTS:
            return
        # A download that will be retried is not news yet; only its final failure is.
        if event.type is EventType.DOWNLOAD_FAILED and event.data.get("will_retry"):
            return
        payload = {
            "event": str(event.type),
            "timestamp": event.timestamp.isoformat(),
            "data": dict(event.data),
        }
        for url in self._urls():
            self.send(url, payload)

    def send(self, url: str, payload: Mapping[str, Any]) -> bool:
        """Deliver in the background; False when too many are in flight and this one is dropped."""
        if self._in_flight[url] >= self._max_in_flight:
            self.dropped += 1
            self.dropped_by_url[url] += 1
            _LOGGER.warning(
                "Webhook %s: %d deliveries in flight, %s dropped",
                redact(url),
                self._in_flight[url],
                payload.get("event"),
            )
            return False
        task = asyncio.get_running_loop().create_task(
            self._deliver(url, payload), name=f"webhook:{redact(url)}"
        )
        self._tasks.add(task)
        self._in_flight[url] += 1
        task.add_done_callback(functools.partial(self._finished, url))
        return True

    def _finished(self, url: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight[url] -= 1
        if self._in_flight[url] <= 0:
            del self._in_flight[url]
        # Retrieve the outcome here: nobody awaits a delivery, so an error would be lost.
        if not task.cancelled() and (error := task.exception()) is not None:
            _LOGGER.error("Webhook delivery crashed", exc_info=error)

    async def _deliver(self, url: str, payload: Mapping[str, Any]) -> None:
        event = str(payload.get("event"))
        error = "not attempted"
        for attempt in range(1, self._attempts + 1):
            try:
                async with asyncio.timeout(self._deadline_s):
                    response = await self._client.post(
                        url,
                        json=payload,
                        timeout=self._timeout,
                        headers={"User-Agent": f"aniworld-addon/{VERSION}"},
                    )
            except (httpx.HTTPError, httpx.InvalidURL) as err:  # InvalidURL is no HTTPError
                error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            except TimeoutError:
                error = f"no complete answer within {self._deadline_s:g} s"
            else:
                if response.is_success:
                    self.results[url] = Delivery(True, self._clock(), event, attempt)
                    self.dropped_by_url.pop(url, None)
                    return
                error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in _RETRIED:
                    # the receiver refuses this request (a bad token, a payload it will not
                    # take): the same request again gets the same answer
                    _LOGGER.warning("Webhook %s refused %s: %s", redact(url), event, error)
                    self.results[url] = Delivery(False, self._clock(), event, attempt, error)
                    return
            _LOGGER.info("Webhook %s attempt %d failed: %s", redact(url), attempt, error)
            if attempt < self._attempts:
                # Backoff between attempts; this is a deliberate delay, not a wait for a state.
                await asyncio.sleep(self._delays[min(attempt - 1, len(self._delays) - 1)])
        _LOGGER.warning("Webhook %s gave up on %s: %s", redact(url), event, error)
        self.results[url] = Delivery(False, self._clock(), event, self._attempts, error)

    async def wait_idle(self) -> None:
        """Wait until every delivery started so far has finished (tests, shutdown of a bench)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def check(self) -> CheckResult:
        """Health: error while the last delivery to any configured URL failed."""
        urls = list(self._urls())
        if not urls:
            return CheckResult("disabled", "no webhooks configured")
        details = {
            redact(u) + f" #{i + 1}": r.to_dict()
            for i, u in enumerate(urls)
            if (r := self.results.get(u)) is not None
        }
        failing = [i + 1 for i, u in enumerate(urls) if (r := self.results.get(u)) and not r.ok]
        if failing:
            numbers = ", ".join(f"#{n}" for n in failing)
            return CheckResult("error", f"the last delivery to webhook {numbers} failed", details)
        dropping = [i + 1 for i, u in enumerate(urls) if self.dropped_by_url.get(u)]
        if dropping:  # stuck receivers: nothing failed yet, but events are being lost
            numbers = ", ".join(f"#{n}" for n in dropping)
            return CheckResult(
                "error", f"webhook {numbers} dropped events: too many deliveries in flight", details
            )
        return CheckResult("ok", f"{len(urls)} webhooks, none failing", details or None)

    async def close(self) -> None:
        """Stop listening and cancel the deliveries in flight."""
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A task that had just finished may not have run its done callback yet.
        self._tasks.difference_update(tasks)


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the notifier on the shared HTTP client, plus its health check."""
    notifier = WebhookNotifier.from_settings(app[keys.HTTP_CLIENT], app[keys.SETTINGS])
    notifier.start(app[keys.BUS])
    app[keys.WEBHOOKS] = notifier
    unregister = app[keys.HEALTH].register("webhooks", notifier.check)
    yield
    unregister()
    await notifier.close()
