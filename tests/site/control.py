"""Test-side control of the site: request counters, latency, throttling and fault switches."""

from __future__ import annotations

import asyncio
import enum
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from aiohttp import web

Kind = Literal[
    "series", "season", "episode", "search", "redirect", "new_episodes", "embed", "media", "other"
]

_STREAM: Final = r"^/(?:anime|serie)/stream/[^/]+"
# Ordered: the first pattern that matches names the kind of a request path.
_KIND_PATTERNS: Final[tuple[tuple[Kind, re.Pattern[str]], ...]] = (
    ("episode", re.compile(_STREAM + r"/(?:staffel-\d+/episode-\d+|filme/film-\d+)/?$")),
    ("season", re.compile(_STREAM + r"/(?:staffel-\d+|filme)/?$")),
    ("series", re.compile(_STREAM + r"/?$")),
    ("search", re.compile(r"^/ajax/(?:seriesSearch|search)$")),
    ("redirect", re.compile(r"^/redirect/")),
    ("new_episodes", re.compile(r"^/neue-episoden/?$")),
    ("embed", re.compile(r"^/embed/")),
    ("media", re.compile(r"^/media/")),
)


def classify(path: str) -> Kind:
    """The kind of page a request path asks for ("other" when none fits)."""
    return next((kind for kind, pattern in _KIND_PATTERNS if pattern.search(path)), "other")


class Fault(enum.Enum):
    """A misbehaviour the site can be switched into for matching paths."""

    CHALLENGE_DDOS_GUARD = "challenge_ddos_guard"
    CHALLENGE_CLOUDFLARE = "challenge_cloudflare"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"
    #: the real page, status 200, cut off half-way (an origin or proxy dying mid-render)
    TRUNCATED = "truncated"
    NOT_FOUND = "not_found"


@dataclass(eq=False)
class SiteControl:
    """Counters and switches a test uses to observe and steer the running site."""

    requests: Counter[str] = field(default_factory=Counter)
    #: every User-Agent the site was sent
    user_agents: set[str] = field(default_factory=set)
    latency_s: float = 0.0
    timeout_hold_s: float = 30.0
    media_rate_bps: int | None = None
    #: the Retry-After header of a RATE_LIMITED answer (delta-seconds or an HTTP date)
    retry_after: str = "30"
    #: cut every media response off after this many bytes (a hoster dying mid-transfer)
    media_drop_after_bytes: int | None = None
    #: the Server header of every answer: the real site's DDoS-Guard front says "ddos-guard"
    #: on everything it passes on, its own 404s and the origin's 500s included
    server_header: str | None = None
    _faults: list[tuple[re.Pattern[str], Fault]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, path: str) -> None:
        """Count a request for `path` and wake whoever waits for requests."""
        self.requests[path] += 1
        self._arrived.set()

    async def wait_for(self, kind: Kind, n: int = 1) -> None:
        """Return once at least `n` requests of `kind` have arrived."""
        while self.count(kind) < n:
            # No await between the check and clear(), so no arrival can slip through.
            self._arrived.clear()
            await self._arrived.wait()

    def count(self, kind: Kind) -> int:
        """Requests so far whose path is of `kind`."""
        if kind not in get_args(Kind):
            raise ValueError(f"unknown request kind {kind!r}")
        return sum(n for path, n in self.requests.items() if classify(path) == kind)

    def reset(self) -> None:
        """Forget the requests counted so far (faults and settings stay)."""
        self.requests.clear()

    def set_fault(self, path_regex: str, fault: Fault) -> None:
        """Answer requests whose path matches `path_regex` (re.search) with `fault`."""
        # Newest first, so a narrower fault set later overrides a broad one.
        self._faults.insert(0, (re.compile(path_regex), fault))

    def clear_faults(self) -> None:
        """Serve every path normally again."""
        self._faults.clear()

    def fault_for(self, path: str) -> Fault | None:
        """The fault switched on for `path`, if any."""
        return next((fault for pattern, fault in self._faults if pattern.search(path)), None)

    @property
    def stopping(self) -> bool:
        """True once the site has begun to shut down."""
        return self._stopping.is_set()

    def begin_shutdown(self) -> None:
        """Wake every held or throttled response so shutdown does not wait for them."""
        self._stopping.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return True early if the site is shutting down."""
        if seconds <= 0 or self._stopping.is_set():
            return self._stopping.is_set()
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True


_DDOS_GUARD_BODY: Final = """<!DOCTYPE html>
<html><head><title>DDoS-Guard</title><meta charset="utf-8"></head>
<body><div id="ddg-container"><h1>Checking your browser before accessing the website.</h1>
<p>This process is automatic. DDoS protection by DDoS-Guard.</p>
<script src="/.well-known/ddos-guard/check?context=free_splash"></script></div></body></html>
"""

_CLOUDFLARE_BODY: Final = """<!DOCTYPE html>
<html lang="en-US"><head><title>Just a moment...</title><meta charset="UTF-8">
<meta name="robots" content="noindex,nofollow"></head>
<body><div class="main-wrapper" role="main"><div class="main-content">
<noscript>Enable JavaScript and cookies to continue</noscript>
<script>window._cf_chl_opt = {cvId: "3", cType: "managed"};</script>
</div></div></body></html>
"""

# Cut off mid-document: the head is there, the page's content elements never arrive.
_MALFORMED_BODY: Final = (
    '<!DOCTYPE html>\n<html lang="de"><head><meta charset="utf-8"><title>Stream</title>'
    '</head><body><header class="main-header"><div class="container"><nav><ul><li><a href="/"'
)


def fault_response(fault: Fault, retry_after: str = "30") -> web.Response:
    """The response a fault answers with (TIMEOUT is handled by holding, not here)."""
    html = "text/html"
    match fault:
        case Fault.CHALLENGE_DDOS_GUARD:
            return web.Response(
                status=403,
                text=_DDOS_GUARD_BODY,
                content_type=html,
                headers={"Server": "ddos-guard"},
            )
        case Fault.CHALLENGE_CLOUDFLARE:
            headers = {"Server": "cloudflare", "cf-mitigated": "challenge"}
            return web.Response(
                status=403, text=_CLOUDFLARE_BODY, content_type=html, headers=headers
            )
        case Fault.RATE_LIMITED:
            return web.Response(
                status=429, text="Too Many Requests", headers={"Retry-After": retry_after}
            )
        case Fault.SERVER_ERROR:
            return web.Response(
                status=500, text="<h1>500 Internal Server Error</h1>", content_type=html
            )
        case Fault.MALFORMED:
            return web.Response(status=200, text=_MALFORMED_BODY, content_type=html)
        case Fault.NOT_FOUND:
            return web.Response(status=404, text="<h1>404 Not Found</h1>", content_type=html)
        case Fault.TIMEOUT | Fault.TRUNCATED:
            raise ValueError(f"{fault.name} changes the real response; it has no body of its own")
