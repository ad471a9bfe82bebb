"""The one way provider code talks to a site: capped, paced, cached, coalesced, fault-mapped."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Final, TypeVar, cast
from urllib.parse import urljoin, urlsplit

import httpx

from ..const import VERSION
from ..errors import (
    ProviderBlockedError,
    ProviderError,
    ProviderNotFoundError,
    ProviderParseError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from .cache import Clock, Coalescer, TtlCache

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

PROJECT_URL: Final = "https://github.com/aniworld-addon/aniworld-addon"
DEFAULT_USER_AGENT: Final = f"AniWorldAddon/{VERSION} (+{PROJECT_URL}; Home Assistant add-on)"
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
CLOSE_WAIT_S: Final = 5.0  # how long closing the client waits for requests in flight
# A site asking for more than a day is asking to be left alone, not for a precise hour; the
# cap keeps a queue item's next try (and every figure derived from it) a finite, sane time.
MAX_RETRY_AFTER_S: Final = 86_400.0
# How long a refused page is not asked for again when the site did not say (Retry-After): a
# 429 asks for a pause, a 403 or an anti-bot wall for a longer one. A second page refused while
# the first one's wait runs means the site refuses us, not a page: then nothing is sent to it
# until the longer wait ends (SITE.md: the site blocks clients that keep coming).
REFUSED_WAIT_S: Final = 60.0
BLOCKED_WAIT_S: Final = 300.0


@dataclass(slots=True, frozen=True)
class HttpOptions:
    """How politely a ProviderHttp talks to its site."""

    user_agent: str = DEFAULT_USER_AGENT
    concurrency: int = 4
    #: average gap between two request starts; real pages take longer than this anyway
    min_interval_s: float = 0.05
    #: requests that may start back to back after a quiet spell (as many as may be in flight:
    #: two downloads' episode pages and hoster redirects); the long-run rate stays the same
    burst: int = 4
    cache_ttl_s: float = 6 * 3600
    #: what read() made of a page, not the page: a series or season page of the real site is
    #: 50-150 KB of HTML, what the rescan keeps of it a few KB. A rescan reads its pages in the
    #: same order each time, and an LRU bound smaller than that set missed on every page: this
    #: one holds the series and season pages of about 6,000 series.
    cache_max_entries: int = 20_000
    #: extra attempts for 5xx, timeouts and connection errors (never for 403/429/challenges)
    retries: int = 2
    backoff_s: float = 1.0
    backoff_max_s: float = 10.0
    timeout_s: float | None = 20.0
    max_body_bytes: int = 8 * 1024 * 1024
    #: a whole response body must arrive within this, however slowly it trickles
    read_deadline_s: float = 60.0


@dataclass(slots=True)
class HttpStats:
    """Counters for health pages and benchmarks."""

    requests: int = 0
    cache_hits: int = 0
    coalesced: int = 0
    retries: int = 0
    errors: int = 0
    #: requests not sent because the site had refused one and asked for (or got) a pause
    held_back: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


@dataclass(slots=True, frozen=True)
class _Refusal:
    """The site refused a request: no other is sent to it until `until` (the clock's time)."""

    until: float
    error: ProviderError


@dataclass(slots=True, frozen=True)
class Page:
    """A fetched response body with the URL it finally came from."""

    url: str
    status: int
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)


def site_origin(url: str) -> tuple[str, int] | None:
    """Host (lower case) and port of an http(s) URL, the default port filled in; None if it
    is not one. `https://AniWorld.to:443/x` and `https://aniworld.to/y` share an origin."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    if default is None or not parts.hostname:
        return None
    return parts.hostname.lower().rstrip("."), port or default


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), at most
    MAX_RETRY_AFTER_S; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # compared as text first: float() of 400 digits is inf, which parked a queue item
        # for ever and came out of the API as the non-JSON token Infinity
        seconds = MAX_RETRY_AFTER_S if len(value) > 12 else float(value)
        return min(seconds, MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER_S)


def detect_challenge(status: int, headers: Mapping[str, str], text: str) -> str | None:
    """The name of the anti-bot wall a response shows, if any."""
    if "cf-mitigated" in headers:
        return "Cloudflare"
    head = text[:8192].lower()
    if "<title>just a moment...</title>" in head or ("cf-chl" in head and status >= 400):
        return "Cloudflare"
    if "<title>ddos-guard</title>" in head:
        return "DDoS-Guard"
    # DDoS-Guard names itself in the Server header of every answer it passes on, a 404 of a
    # dead link and an origin's 500 included: only its own refusals (403, 503) are its wall.
    # A real page may mention ddos-guard in a script URL, so a 200 is never one.
    if status in (403, 503) and ("ddos-guard" in head or "ddos-guard" in headers.get("server", "")):
        return "DDoS-Guard"
    if status >= 400 and "just a moment" in head:
        return "Cloudflare"
    return None


def _held_back(err: ProviderError) -> bool:
    """Whether an error is a refusal repeated here without asking the site (_hold_back)."""
    return isinstance(err.details, dict) and err.details.get("held_back") is True


def raise_for_page(page: Page) -> None:
    """Turn a non-success response or a challenge page into the matching ProviderError."""
    details = {"url": page.url, "status": page.status}
    retry_after = parse_retry_after(page.headers.get("retry-after"))
    wall = detect_challenge(page.status, page.headers, page.text)
    if wall is not None:
        raise ProviderBlockedError(
            f"{wall} challenge at {page.url} (HTTP {page.status}); retry later",
            retry_after=retry_after,
            details=details,
        )
    status = page.status
    if status < 400:
        return
    if status in (404, 410):
        raise ProviderNotFoundError(f"not found: {page.url}", details=details)
    if status == 429:
        raise ProviderRateLimitedError(
            f"rate limited by {page.url}", retry_after=retry_after, details=details
        )
    if status == 403:
        raise ProviderBlockedError(
            f"access denied by {page.url} (HTTP 403)", retry_after=retry_after, details=details
        )
    if status >= 500:
        raise ProviderUnavailableError(
            f"{page.url} answered HTTP {status}", retry_after=retry_after, details=details
        )
    raise ProviderError(f"{page.url} answered HTTP {status}", details=details)


class _UntilClosed(httpx.AsyncByteStream):
    """A response body that reports, once, when it is closed."""

    def __init__(self, inner: httpx.AsyncByteStream, closed: Callable[[], None]) -> None:
        self._inner = inner
        self._closed: Callable[[], None] | None = closed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            closed, self._closed = self._closed, None
            if closed is not None:
                closed()


class LazyTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, built on the first request instead of at start-up.

    Building it loads the CA bundle into a TLS context, about 30 ms: a sixth of the service's
    start-up, for a client nothing uses until the first provider page or webhook. It is built
    in a worker thread, so that first request does not stall the loop either.

    Closing it waits (up to CLOSE_WAIT_S) for requests still being sent. httpcore's pool
    closes the connections it lists, but one still connecting is not listed yet: it would
    finish connecting after the close and stay open until the garbage collector finds it.
    """

    def __init__(self) -> None:
        self._transport: httpx.AsyncHTTPTransport | None = None
        self._building = asyncio.Lock()
        self._sending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the real transport, building it first if need be."""
        if self._closing:
            raise httpx.TransportError("the provider HTTP client is closed")
        self._sending += 1
        self._idle.clear()
        try:
            transport = self._transport
            if transport is None:
                async with self._building:
                    if self._transport is None:
                        self._transport = await asyncio.to_thread(httpx.AsyncHTTPTransport)
                    transport = self._transport
            response = await transport.handle_async_request(request)
        except BaseException:
            self._sent()
            raise
        # In flight until its body is read and closed: the connection is busy until then.
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _UntilClosed(response.stream, self._sent)
        return response

    def _sent(self) -> None:
        self._sending -= 1
        if self._sending == 0:
            self._idle.set()

    async def aclose(self) -> None:
        """Refuse new requests, let those being sent return, then close the real transport."""
        self._closing = True
        if self._sending:
            # Whoever sends them should have stopped first; this only keeps a socket from
            # outliving the client when one did not.
            _LOGGER.warning("provider HTTP client: %d request(s) still in flight", self._sending)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await self._idle.wait()
        if self._transport is not None:
            await self._transport.aclose()


class ProviderHttp:
    """Requests to one site through a shared httpx client the caller owns and closes."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        options: HttpOptions | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.options = options or HttpOptions()
        self.base_url = base_url.rstrip("/")
        self._origins = {site_origin(self.base_url)}
        self.stats = HttpStats()
        self._client = client
        # The options are frozen: the per-request timeout is made once (None: the client's).
        self._timeout = (
            client.timeout
            if self.options.timeout_s is None
            else httpx.Timeout(self.options.timeout_s)
        )
        self.clock = clock  # of the refusals' waits (the cache keeps the one it was made with)
        self._refused_pages: dict[str, _Refusal] = {}
        self._refusal: _Refusal | None = None  # of the whole site
        self._semaphore = asyncio.Semaphore(max(1, self.options.concurrency))
        self._pace_lock = asyncio.Lock()
        self._next_start = 0.0
        self._cache: TtlCache[str, object] = TtlCache(
            self.options.cache_ttl_s, self.options.cache_max_entries, clock
        )
        self._inflight: Coalescer[str, Page] = Coalescer()
        self._headers = {
            "User-Agent": self.options.user_agent,
            "Referer": f"{self.base_url}/",
            "Accept": "text/html,application/json;q=0.9,*/*;q=0.8",
        }

    def url(self, path: str) -> str:
        """The absolute URL of a site path (absolute URLs on this site pass through)."""
        absolute = urljoin(f"{self.base_url}/", path)
        if site_origin(absolute) not in self._origins:
            raise ProviderError(f"refusing to fetch {absolute!r}: not on {self.base_url}")
        return absolute

    async def get(self, path: str) -> Page:
        """GET a page (following redirects), never from the cache."""
        url = self.url(path)
        page, shared = await self._inflight.run(url, lambda: self._request("GET", url))
        if shared:
            self.stats.coalesced += 1
        # A site that moved (to www., to https) redirects its pages there, and the links on
        # those pages point there too: the site itself vouched for the new origin.
        if (origin := site_origin(page.url)) is not None:
            self._origins.add(origin)
        return page

    async def read(self, path: str, parse: Callable[[Page], Awaitable[T]]) -> T:
        """What `parse` makes of a page, from the cache while it is fresh.

        The cache keeps the result, not the page; a page `parse` refuses (it raises) is not
        kept, so the next call fetches it again. A path is always read with the same `parse`.
        """
        url = self.url(path)
        hit = self._cache.get(url)
        if hit is not None:
            self.stats.cache_hits += 1
            return cast(T, hit)
        value = await parse(await self.get(path))
        self._cache.put(url, value)
        return value

    async def post_form(
        self, path: str, data: Mapping[str, str], *, headers: Mapping[str, str] | None = None
    ) -> Page:
        """POST a form (never cached, never coalesced)."""
        return await self._request("POST", self.url(path), data=data, headers=headers)

    async def resolve_redirect(self, path: str) -> str:
        """The Location a site redirect points at, without following it off the site."""
        url = self.url(path)
        page = await self._request("GET", url, follow_redirects=False)
        location = page.headers.get("location")
        if page.status not in _REDIRECT_STATUSES or not location:
            raise ProviderParseError(f"redirect page {url} did not redirect (HTTP {page.status})")
        return urljoin(url, location)

    def invalidate(self, path: str | None = None) -> None:
        """Drop every cached page at or below `path`, or the whole cache."""
        if path is None:
            self._cache.invalidate()
        else:
            url = self.url(path).rstrip("/")
            self._cache.invalidate(url)
            self._cache.invalidate_prefix(url + "/")

    @property
    def cached_pages(self) -> int:
        """How many pages the cache holds (what read() made of them)."""
        return len(self._cache)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
    ) -> Page:
        options = self.options
        attempt = 0
        while True:
            try:
                page = await self._send(method, url, data, headers, follow_redirects)
                raise_for_page(page)
            except ProviderError as err:
                if _held_back(err):
                    raise  # not sent: nothing to count, to retry or to refuse again
                if not isinstance(err, ProviderUnavailableError):
                    self.stats.errors += 1
                    if isinstance(err, ProviderRateLimitedError | ProviderBlockedError):
                        wait_s = err.retry_after
                        if wait_s is None:
                            limited = isinstance(err, ProviderRateLimitedError)
                            wait_s = REFUSED_WAIT_S if limited else BLOCKED_WAIT_S
                        self._refused(url, err, wait_s)
                    raise
                delay = err.retry_after
                if delay is None:
                    delay = options.backoff_s * 2**attempt
                if attempt >= options.retries or delay > options.backoff_max_s:
                    self.stats.errors += 1
                    if err.retry_after is not None:  # "down for maintenance, back in an hour"
                        self._refused(url, err, err.retry_after)
                    raise
                attempt += 1
                self.stats.retries += 1
                _LOGGER.debug("retrying %s in %.1f s: %s", url, delay, err.message)
                await asyncio.sleep(delay)
            except ProviderNotFoundError:
                self.stats.errors += 1
                raise
            else:
                return page

    def _refused(self, url: str, error: ProviderError, wait_s: float) -> None:
        """Ask for `url` again only after `wait_s`; for nothing at all if another page's wait
        still runs. Else every caller (the rest of a rescan, each queued download, the upgrade
        check) would ask again at once, and a site that limits us counts every request."""
        now = self.clock()
        refusal = _Refusal(now + wait_s, error)
        self._refused_pages = {
            page: held
            for page, held in self._refused_pages.items()
            if held.until > now and page != url
        }
        if self._refused_pages:
            until = max(refusal.until, *(held.until for held in self._refused_pages.values()))
            if self._refusal is None or self._refusal.until < until:
                if self._refusal is None or self._refusal.until <= now:  # said once a pause
                    _LOGGER.warning(
                        "%s refused %d pages: no request to the site for %.0f s",
                        self.base_url,
                        len(self._refused_pages) + 1,
                        until - now,
                    )
                self._refusal = _Refusal(until, error)
        self._refused_pages[url] = refusal

    def _hold_back(self, url: str) -> None:
        """Raise the refusal of the site, or of this page, again while its wait lasts."""
        now = self.clock()
        for refusal in (self._refusal, self._refused_pages.get(url)):
            if refusal is None or refusal.until <= now:
                continue
            self.stats.held_back += 1
            error, left = refusal.error, refusal.until - now
            raise type(error)(
                f"{error.message} (not asked again for {math.ceil(left)} s)",
                retry_after=left,
                details={"url": url, "held_back": True},  # not sent: the site's earlier answer
            )

    async def _send(
        self,
        method: str,
        url: str,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        follow_redirects: bool,
    ) -> Page:
        request_headers = {**self._headers, **(headers or {})}
        self._hold_back(url)
        async with self._semaphore:
            await self._pace()
            # Again once its turn came: those waiting for a slot when the site refused one
            # were all sent, the refusal's wait notwithstanding.
            self._hold_back(url)
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            try:
                # One deadline for the whole exchange: httpx's timeout is per socket read, so
                # headers sent a byte at a time held a request (and the rescan that waited on
                # it) for as long as the server kept sending.
                async with (
                    asyncio.timeout(self.options.read_deadline_s),
                    self._client.stream(
                        method,
                        url,
                        data=data,
                        headers=request_headers,
                        follow_redirects=follow_redirects,
                        timeout=self._timeout,
                    ) as response,
                ):
                    body = await self._read_capped(response, url)
                    return Page(
                        url=str(response.url),
                        status=response.status_code,
                        text=_decode(body, response.charset_encoding),
                        headers={k.lower(): v for k, v in response.headers.items()},
                    )
            except (httpx.TimeoutException, TimeoutError) as err:
                raise ProviderUnavailableError(
                    f"timed out reading {url}", details={"url": url}
                ) from err
            except (httpx.HTTPError, httpx.InvalidURL) as err:
                raise ProviderUnavailableError(
                    f"cannot reach {url}: {type(err).__name__}: {err}", details={"url": url}
                ) from err
            finally:
                self.stats.in_flight -= 1

    async def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        cap = self.options.max_body_bytes
        declared = response.headers.get("content-length", "")
        too_big = ProviderParseError(f"{url} is larger than {cap} bytes", details={"url": url})
        if declared.isascii() and declared.isdigit() and int(declared) > cap:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        # Stop at the cap: the size counts decoded bytes, and draining the rest of a gzip bomb
        # decompressed gigabytes on the loop. Closing the response ends the transfer; the
        # stream's generators then end with its error, here, rather than being abandoned
        # half-way (a break) to the loop's finaliser.
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    await response.aclose()
                else:
                    chunks.append(chunk)
        except (httpx.StreamError, httpx.TransportError):
            if size <= cap:
                raise
        if size > cap:
            raise too_big
        return b"".join(chunks)

    async def _pace(self) -> None:
        # A token bucket kept as one timestamp (GCRA): `_next_start` is when the bucket would
        # be empty; a request may start while it is less than `burst` intervals ahead of now.
        interval = self.options.min_interval_s
        if interval <= 0:
            return
        slack = (max(1, self.options.burst) - 1) * interval
        async with self._pace_lock:
            loop = asyncio.get_running_loop()
            wait = self._next_start - slack - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_start = max(loop.time(), self._next_start) + interval


# Text codecs by Python's flag that no web page is written in: punycode keeps only what
# precedes the last "-" of the page, the escapes turn backslashes into other characters.
_NOT_DOCUMENT_CODECS: Final = frozenset(
    {"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined", "charmap"}
)


# <meta charset="x"> or <meta http-equiv="Content-Type" content="text/html; charset=x">, looked
# for where browsers look: the first 1024 bytes
_META_CHARSET: Final = re.compile(
    rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?([A-Za-z0-9_.:-]{1,40})", re.I
)


def _decode(body: bytes, charset: str | None) -> str:
    """The body as text in its declared charset (the header's, else the page's <meta>);
    UTF-8 when that is unknown or not a text codec."""
    if not charset and (meta := _META_CHARSET.search(body[:1024])) is not None:
        # a <meta> that could be read as ASCII is not in UTF-16 or -32, whatever it says
        charset = meta.group(1).decode("ascii")
        if charset.lower().replace("_", "-").startswith(("utf-16", "utf-32", "utf16", "utf32")):
            charset = "utf-8"
    if charset:
        try:
            name = codecs.lookup(charset).name
            if name in _NOT_DOCUMENT_CODECS:
                raise LookupError(name)
            return body.decode(name, errors="replace")
        # a header can name anything: "base64" or "rot13" (no text codecs), "idna" (which
        # refuses errors="replace"), "\0" (a ValueError)
        except (LookupError, ValueError):
            pass
    return body.decode("utf-8", errors="replace")
