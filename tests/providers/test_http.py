"""ProviderHttp: politeness (headers, cap, pacing), cache, coalescing and fault mapping."""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from aniworld_addon.errors import (
    ProviderBlockedError,
    ProviderError,
    ProviderNotFoundError,
    ProviderParseError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from aniworld_addon.providers.cache import TtlCache
from aniworld_addon.providers.http import (
    BLOCKED_WAIT_S,
    DEFAULT_USER_AGENT,
    MAX_RETRY_AFTER_S,
    HttpOptions,
    LazyTransport,
    Page,
    ProviderHttp,
    parse_retry_after,
    site_origin,
)
from tests.conftest import open_client_sockets
from tests.providers.conftest import make_http
from tests.site.control import Fault
from tests.site.plugin import RunningSite

SERIES = "/anime/stream/kaiju-academy"


class Probe:
    """A tiny server that records what reaches it and how many requests overlap."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.starts: list[float] = []
        self.headers: list[dict[str, str]] = []
        self.bomb_segments = 0
        self.bomb_done = asyncio.Event()
        self.base_url = ""

    async def page(self, request: web.Request) -> web.Response:
        self.starts.append(time.monotonic())
        self.headers.append(dict(request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        return web.Response(text=f"<p>{request.path}</p>", content_type="text/html")

    async def challenge(self, request: web.Request) -> web.Response:
        body = "<html><head><title>Just a moment...</title></head><body></body></html>"
        return web.Response(text=body, content_type="text/html")

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(text="x" * 10_000, content_type="text/html")

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"z")
            await asyncio.sleep(0.05)
        return response

    async def bomb(self, request: web.Request) -> web.StreamResponse:
        """A deflate stream of 200 GB of zeros, about 1 KB on the wire per MB, sent until the
        client goes away. Each segment ends with a full flush, so it can be sent again."""
        packer = zlib.compressobj(9)
        zeros = b"\0" * 2**20
        head = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
        segment = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
        response = web.StreamResponse(headers={"Content-Encoding": "deflate"})
        response.content_type = "text/html"
        await response.prepare(request)
        try:
            await response.write(head)
            for _ in range(200_000):
                await response.write(segment)
                self.bomb_segments += 1
        except ConnectionError:
            pass
        finally:
            self.bomb_done.set()
        return response

    async def moved(self, request: web.Request) -> web.Response:
        """The site moved to another host name for the same server (localhost)."""
        port = request.url.port
        raise web.HTTPMovedPermanently(f"http://localhost:{port}/{request.match_info['tail']}")

    async def legacy(self, request: web.Request) -> web.Response:
        """A page in windows-1252 that says so only in its <meta> (no charset header)."""
        meta = request.query["meta"]
        body = f"<html><head>{meta}</head><body>Café – 5 €</body></html>"
        return web.Response(body=body.encode("cp1252"), headers={"Content-Type": "text/html"})

    async def throttled(self, request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "120"}, text="busy")


@pytest.fixture
async def probe(aiohttp_server: Any) -> Probe:
    state = Probe()
    app = web.Application()
    app.router.add_get("/challenge", state.challenge)
    app.router.add_get("/big", state.big)
    app.router.add_get("/chunked", state.chunked)
    app.router.add_get("/trickle", state.trickle)
    app.router.add_get("/bomb", state.bomb)
    app.router.add_get("/throttled", state.throttled)
    app.router.add_get("/legacy", state.legacy)
    app.router.add_get("/moved/{tail:.*}", state.moved)
    app.router.add_get("/{tail:.*}", state.page)
    server = await aiohttp_server(app, host="127.0.0.1")
    state.base_url = str(server.make_url("")).rstrip("/")
    return state


def probe_http(probe: Probe, client: httpx.AsyncClient, **options: Any) -> ProviderHttp:
    fields: dict[str, Any] = {"min_interval_s": 0.0, "backoff_s": 0.01, "timeout_s": 5.0}
    return ProviderHttp(client, probe.base_url, HttpOptions(**{**fields, **options}))


async def test_requests_carry_an_honest_user_agent_and_the_site_referer(
    probe: Probe, client: httpx.AsyncClient
) -> None:
    await probe_http(probe, client).get("/x")
    await probe_http(probe, client, user_agent="MyAgent/1").get("/y")

    assert probe.headers[0]["User-Agent"] == DEFAULT_USER_AGENT
    assert DEFAULT_USER_AGENT.startswith("AniWorldAddon/")
    assert probe.headers[0]["Referer"] == f"{probe.base_url}/"
    assert probe.headers[1]["User-Agent"] == "MyAgent/1"


async def test_concurrency_cap_is_honoured_at_the_server(
    probe: Probe, client: httpx.AsyncClient
) -> None:
    probe.delay_s = 0.05
    http = probe_http(probe, client, concurrency=3)

    await asyncio.gather(*(http.get(f"/page-{i}") for i in range(15)))

    assert probe.max_in_flight == 3
    assert http.stats.max_in_flight == 3


async def test_concurrency_cap_against_the_test_site(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    provider_site.control.latency_s = 0.1
    http = make_http(provider_site, client, concurrency=2)
    paths = [f"{SERIES}/staffel-1", f"{SERIES}/staffel-2", f"{SERIES}/filme", SERIES]
    paths += ["/anime/stream/sky-lantern", "/anime/stream/der-letzte-sommer"]

    started = time.monotonic()
    await asyncio.gather(*(http.get(p) for p in paths))

    # 6 pages, 2 at a time, 0.1 s each: three waves
    assert time.monotonic() - started >= 0.29
    assert provider_site.control.count("season") + provider_site.control.count("series") == 6


async def test_request_starts_are_paced(probe: Probe, client: httpx.AsyncClient) -> None:
    http = probe_http(probe, client, min_interval_s=0.05, concurrency=4, burst=1)

    await asyncio.gather(*(http.get(f"/p{i}") for i in range(5)))

    gaps = [b - a for a, b in zip(probe.starts, probe.starts[1:], strict=False)]
    assert min(gaps) >= 0.04


async def test_a_burst_starts_at_once_and_the_rate_stays(
    probe: Probe, client: httpx.AsyncClient
) -> None:
    # The interval is long enough that a loaded machine's scheduling delays (tens of ms)
    # cannot make the unpaced start look paced.
    interval = 0.2
    http = probe_http(probe, client, min_interval_s=interval, concurrency=4, burst=2)

    await asyncio.gather(*(http.get(f"/p{i}") for i in range(6)))

    # An episode page and its redirect go together; after that one start per interval: the
    # n-th request starts no sooner than n - 1 intervals after the first. (Single gaps may be
    # shorter: the times are taken at the server, and one late arrival shortens the next gap.)
    since_first = [start - probe.starts[0] for start in probe.starts]
    assert since_first[1] < interval  # before the first paced slot
    for n in range(2, 6):
        assert since_first[n] >= (n - 1) * interval - 0.05, since_first


async def test_concurrent_gets_of_one_url_fetch_once(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    provider_site.control.latency_s = 0.1
    http = make_http(provider_site, client)

    texts = await asyncio.gather(*(http.get(SERIES) for _ in range(8)))

    assert provider_site.control.count("series") == 1
    assert len({page.text for page in texts}) == 1
    assert http.stats.coalesced == 7


async def test_a_cancelled_leader_hands_the_fetch_to_a_waiter(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    provider_site.control.latency_s = 0.2
    http = make_http(provider_site, client)

    leader = asyncio.create_task(http.get(SERIES))
    await provider_site.control.wait_for("series")  # the leader's request is at the site
    waiter = asyncio.create_task(http.get(SERIES))
    await asyncio.sleep(0)  # one loop turn: the waiter is now parked on the leader's fetch
    leader.cancel()

    page = await waiter
    assert "Kaiju Academy" in page.text
    assert provider_site.control.count("series") == 2  # the waiter fetched it anew
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_waiters_share_the_leaders_error(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    provider_site.control.latency_s = 0.1
    provider_site.control.set_fault("kaiju", Fault.CHALLENGE_DDOS_GUARD)
    http = make_http(provider_site, client)

    outcomes = await asyncio.gather(*(http.get(SERIES) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(o, ProviderBlockedError) for o in outcomes)
    assert provider_site.control.count("series") == 1


async def _title(page: Page) -> str:
    """What a test's read() keeps of a page: its <title>, or a parse error without one."""
    found = re.search(r"<title>([^<]*)</title>", page.text)
    if found is None:
        raise ProviderParseError(f"no title in {page.url}")
    return found[1]


async def test_what_read_keeps_is_the_parse_and_a_refused_page_is_not_kept(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    # The cache kept whole pages (50-150 KB each on the real site) and parsed them again on
    # every hit; a page the parser refused had to be taken out again by the provider.
    http = make_http(provider_site, client)
    title = await http.read(SERIES, _title)
    assert "Kaiju Academy" in title and title == await http.read(SERIES, _title)
    assert provider_site.control.count("series") == 1

    async def refuse(page: Page) -> str:
        raise ProviderParseError(f"not the page we know: {page.url}")

    for _ in range(2):
        with pytest.raises(ProviderParseError):
            await http.read("/anime/stream/sky-lantern", refuse)
    assert provider_site.control.count("series") == 3
    assert http.cached_pages == 1


async def test_cached_pages_expire_after_the_ttl(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    now = [1000.0]
    http = make_http(provider_site, client, cache_ttl_s=60.0, clock=lambda: now[0])

    await http.read(SERIES, _title)
    now[0] += 59.0
    await http.read(SERIES, _title)
    assert provider_site.control.count("series") == 1
    assert http.stats.cache_hits == 1

    now[0] += 1.0
    await http.read(SERIES, _title)
    assert provider_site.control.count("series") == 2

    await http.get(SERIES)  # uncached reads always go to the site
    assert provider_site.control.count("series") == 3


async def test_cache_evicts_the_least_recently_used_page(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    http = make_http(provider_site, client, cache_max_entries=2)
    first, second, third = SERIES, f"{SERIES}/staffel-1", f"{SERIES}/staffel-2"

    for path in (first, second, first, third):  # `second` is now the oldest
        await http.read(path, _title)
    provider_site.control.reset()
    await http.read(first, _title)
    await http.read(second, _title)

    assert http.cached_pages == 2
    assert provider_site.control.requests == {second: 1}


async def test_invalidate_drops_a_series_and_its_seasons_only(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    http = make_http(provider_site, client)
    for path in (SERIES, f"{SERIES}/staffel-1", "/anime/stream/sky-lantern"):
        await http.read(path, _title)

    http.invalidate(SERIES)

    assert http.cached_pages == 1


def test_ttl_cache_unit() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10.0, 2, lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # evicts b, the least recently used
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, 1, 3)
    now[0] = 10.0
    assert cache.get("a") is None
    assert len(cache) == 1


@pytest.mark.parametrize(
    ("fault", "error", "retry_after"),
    [
        (Fault.CHALLENGE_DDOS_GUARD, ProviderBlockedError, None),
        (Fault.CHALLENGE_CLOUDFLARE, ProviderBlockedError, None),
        (Fault.RATE_LIMITED, ProviderRateLimitedError, 30.0),
        (Fault.SERVER_ERROR, ProviderUnavailableError, None),
        (Fault.NOT_FOUND, ProviderNotFoundError, None),
    ],
)
@pytest.mark.parametrize("server", [None, "ddos-guard"])
async def test_site_faults_become_provider_errors(
    provider_site: RunningSite,
    client: httpx.AsyncClient,
    fault: Fault,
    error: type[Exception],
    retry_after: float | None,
    server: str | None,
) -> None:
    # Behind DDoS-Guard (server="ddos-guard" on every answer) a 404 stays not found and a
    # 500 unavailable: taken for its wall, a dead hoster link stopped the download.
    provider_site.control.server_header = server
    provider_site.control.set_fault("^/anime/stream/", fault)
    http = make_http(provider_site, client, retries=0)

    with pytest.raises(error) as caught:
        await http.read(SERIES, _title)

    assert getattr(caught.value, "retry_after", None) == retry_after
    assert http.cached_pages == 0
    assert http.stats.errors == 1


async def test_a_hanging_site_is_a_timeout(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    provider_site.control.set_fault("^/anime/stream/", Fault.TIMEOUT)
    http = make_http(provider_site, client, timeout_s=0.3, retries=1)

    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        await http.get(SERIES)

    assert time.monotonic() - started < 2.0
    assert provider_site.control.count("series") == 2  # one retry


@pytest.mark.parametrize(
    ("fault", "requests"),
    [
        (Fault.SERVER_ERROR, 3),
        (Fault.CHALLENGE_DDOS_GUARD, 1),
        (Fault.CHALLENGE_CLOUDFLARE, 1),
        (Fault.RATE_LIMITED, 1),
    ],
)
async def test_only_server_errors_are_retried(
    provider_site: RunningSite, client: httpx.AsyncClient, fault: Fault, requests: int
) -> None:
    provider_site.control.set_fault("^/anime/stream/", fault)
    http = make_http(provider_site, client, retries=2, backoff_s=0.01)

    with pytest.raises(ProviderError):
        await http.get(SERIES)

    assert provider_site.control.count("series") == requests


async def test_a_long_retry_after_is_reported_not_slept(
    probe: Probe, client: httpx.AsyncClient
) -> None:
    http = probe_http(probe, client, retries=3)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError) as caught:
        await http.get("/throttled")
    assert caught.value.retry_after == 120.0
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("fault", "wait_s"),
    [(Fault.RATE_LIMITED, 30.0), (Fault.CHALLENGE_DDOS_GUARD, BLOCKED_WAIT_S)],
)
async def test_a_site_that_refuses_two_pages_is_left_alone_until_its_wait_ends(
    provider_site: RunningSite, client: httpx.AsyncClient, fault: Fault, wait_s: float
) -> None:
    # A 429 or a wall used to be forgotten at once: the rest of a rescan, each queued download
    # and the upgrade check asked again, a request a series, while the site said to wait.
    now = [1000.0]
    http = make_http(provider_site, client, retries=0, clock=lambda: now[0])
    provider_site.control.set_fault("^/anime/stream/(sky-lantern|kaiju-academy)", fault)
    with pytest.raises(ProviderError):
        await http.get("/anime/stream/sky-lantern")
    # One refused page may be about the page: the others are still asked for.
    assert (await http.get("/anime/stream/rock-roll-heroes-reloaded")).status == 200
    with pytest.raises(ProviderError):
        await http.get("/anime/stream/sky-lantern")  # held back: not sent again
    assert provider_site.control.count("series") == 2
    with pytest.raises(ProviderError):
        await http.get("/anime/stream/kaiju-academy")  # a second page: the site refuses us
    provider_site.control.clear_faults()
    provider_site.control.reset()
    for path in ("/anime/stream/rock-roll-heroes-reloaded", "/anime/stream/sky-lantern"):
        with pytest.raises(ProviderError) as held:
            await http.get(path)
        assert held.value.details["held_back"] is True
        assert 0 < (held.value.retry_after or 0) <= wait_s
    assert sum(provider_site.control.requests.values()) == 0
    assert http.stats.held_back == 3
    now[0] += wait_s + 1
    assert (await http.get("/anime/stream/sky-lantern")).status == 200


async def test_requests_waiting_for_a_slot_are_held_back_once_the_site_refuses(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    # The wait was checked before a request queued for one of the 4 slots: a rescan's
    # 16 season pages queued behind a 429 were all sent all the same.
    provider_site.control.set_fault("^/anime/stream/", Fault.RATE_LIMITED)
    http = make_http(provider_site, client, retries=0, concurrency=4)
    outcomes = await asyncio.gather(
        *(http.get(f"/anime/stream/series-{n}") for n in range(16)), return_exceptions=True
    )
    assert all(isinstance(o, ProviderRateLimitedError) for o in outcomes)
    assert provider_site.control.count("series") <= 4
    assert http.stats.held_back >= 12


async def test_a_challenge_served_with_200_is_blocked(
    probe: Probe, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ProviderBlockedError, match="Cloudflare"):
        await probe_http(probe, client).get("/challenge")


@pytest.mark.parametrize("path", ["/big", "/chunked"])
async def test_an_oversized_page_is_refused(
    probe: Probe, client: httpx.AsyncClient, path: str
) -> None:
    with pytest.raises(ProviderParseError, match="larger than"):
        await probe_http(probe, client, max_body_bytes=1000).get(path)


async def test_a_compression_bomb_stops_at_the_cap_and_is_not_retried(
    probe: Probe, client: httpx.AsyncClient
) -> None:
    # The cap counts decoded bytes; draining the rest decompressed it all on the loop, and
    # a larger one ran into the deadline: "timed out", fetched three times.
    http = probe_http(probe, client, max_body_bytes=1_000_000, retries=2, read_deadline_s=5)
    with pytest.raises(ProviderParseError, match="larger than 1000000 bytes"):
        await http.get("/bomb")
    assert http.stats.requests == 1
    async with asyncio.timeout(10):
        await probe.bomb_done.wait()  # the connection was closed: the server stopped sending
    assert probe.bomb_segments < 200_000


async def test_a_body_that_never_ends_hits_the_read_deadline(
    probe: Probe, client: httpx.AsyncClient
) -> None:
    http = probe_http(probe, client, read_deadline_s=0.3, retries=0)
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        await http.get("/trickle")


async def test_headers_sent_a_byte_at_a_time_hit_the_same_deadline(
    client: httpx.AsyncClient,
) -> None:
    # httpx's timeout is per read: a server dribbling its headers held the request (and the
    # rescan waiting on it) for as long as it kept sending.
    sent = 0
    done = asyncio.Event()

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        try:
            for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 400:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.02)
        except ConnectionError:
            pass
        finally:
            done.set()
            writer.close()

    server = await asyncio.start_server(dribble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        options = HttpOptions(min_interval_s=0, retries=0, timeout_s=5, read_deadline_s=0.5)
        http = ProviderHttp(client, f"http://127.0.0.1:{port}", options)
        with pytest.raises(ProviderUnavailableError, match="timed out"):
            await http.get("/")
        assert not done.is_set() and sent < 400  # the deadline ended it, not the server
    finally:
        async with asyncio.timeout(10):  # the handler notices the closed connection
            await done.wait()
        server.close()
        await server.wait_closed()


async def test_a_closed_port_is_unavailable(
    unused_tcp_port: int, client: httpx.AsyncClient
) -> None:
    http = ProviderHttp(
        client, f"http://127.0.0.1:{unused_tcp_port}", HttpOptions(retries=1, backoff_s=0.01)
    )
    with pytest.raises(ProviderUnavailableError, match="cannot reach"):
        await http.get("/")


async def test_only_the_configured_site_is_fetched(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    http = make_http(provider_site, client)
    with pytest.raises(ProviderError, match="refusing"):
        await http.get("https://elsewhere.example/anime/stream/x")
    with pytest.raises(ProviderError, match="refusing"):
        await http.get("//elsewhere.example/x")


async def test_redirects_are_resolved_without_following_them(
    provider_site: RunningSite, client: httpx.AsyncClient
) -> None:
    http = make_http(provider_site, client)
    link_id = next(iter(provider_site.catalogue.hosters())).link_id

    target = await http.resolve_redirect(f"/redirect/{link_id}")

    assert target.startswith(f"{provider_site.base_url}/embed/")
    assert provider_site.control.count("embed") == 0
    with pytest.raises(ProviderParseError, match="did not redirect"):
        await http.resolve_redirect(SERIES)


@pytest.mark.parametrize(
    "meta",
    [
        '<meta charset="windows-1252">',
        "<META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=cp1252'>",
    ],
)
async def test_a_page_declaring_its_charset_in_meta_is_read_in_it(
    probe: Probe, client: httpx.AsyncClient, meta: str
) -> None:
    page = await probe_http(probe, client).get(f"/legacy?meta={quote(meta)}")
    assert "Café – 5 €" in page.text


def test_site_urls_compare_by_host_and_port_not_by_spelling(client: httpx.AsyncClient) -> None:
    http = ProviderHttp(client, "https://AniWorld.to")
    for same in ("https://aniworld.to:443/redirect/1", "HTTPS://ANIWORLD.TO/a", "/b", "c"):
        assert site_origin(http.url(same)) == ("aniworld.to", 443)
    for other in (
        "https://aniworld.to.example/x",
        "https://aniworld.to:8443/x",
        "http://aniworld.to/x",  # port 80, another origin
        "https://user@evil.example/x",
        "ftp://aniworld.to/x",
        "https://aniworld.to:99999/x",
    ):
        with pytest.raises(ProviderError, match="not on"):
            http.url(other)


async def test_links_on_the_host_a_site_moved_to_are_followed(
    probe: Probe, client: httpx.AsyncClient
) -> None:
    # aniworld.to -> www.aniworld.to: the episode page's links name the new host, and the
    # downloads failed "not on https://aniworld.to" until the base URL was edited by hand.
    http = probe_http(probe, client)
    moved_to = probe.base_url.replace("127.0.0.1", "localhost")
    with pytest.raises(ProviderError, match="not on"):
        http.url(f"{moved_to}/redirect/1")

    page = await http.get("/moved/episode-1")

    assert page.url == f"{moved_to}/episode-1"
    assert (await http.get(f"{moved_to}/redirect/1")).url == f"{moved_to}/redirect/1"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("soon", None),
        ("\u00b2", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00", None),
        ("99999999999", MAX_RETRY_AFTER_S),
        ("9" * 400, MAX_RETRY_AFTER_S),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_S),
    ],
)
def test_retry_after_values(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@given(st.one_of(st.none(), st.text(max_size=40)))
def test_any_retry_after_header_gives_seconds_or_none(header: str | None) -> None:
    seconds = parse_retry_after(header)
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER_S


async def test_the_lazy_transport_is_built_once_on_the_first_request(
    provider_site: RunningSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    built_count = 0

    class CountedTransport(httpx.AsyncHTTPTransport):  # the real transport, counted
        def __init__(self) -> None:
            nonlocal built_count
            built_count += 1
            super().__init__()

    monkeypatch.setattr(httpx, "AsyncHTTPTransport", CountedTransport)
    lazy = LazyTransport()
    async with httpx.AsyncClient(transport=lazy):
        pass  # closing a client that never sent anything builds nothing
    assert lazy._transport is None and built_count == 0
    lazy = LazyTransport()
    async with httpx.AsyncClient(transport=lazy) as http:
        assert lazy._transport is None  # nothing paid before the first request
        url = provider_site.url("/anime/stream/kaiju-academy")
        responses = await asyncio.gather(*(http.get(url) for _ in range(5)))
        assert [r.status_code for r in responses] == [200] * 5
        assert built_count == 1  # five concurrent first requests, one transport
        built = lazy._transport
        assert built is not None
        await http.get(url)
        assert lazy._transport is built  # one transport, one connection pool
    assert provider_site.control.count("series") == 6


async def test_closing_the_client_lets_requests_in_flight_finish_and_leaves_no_socket(
    provider_site: RunningSite,
) -> None:
    port = int(provider_site.base_url.rsplit(":", 1)[1])
    provider_site.control.latency_s = 0.3  # the page is still on its way when the close starts
    http = httpx.AsyncClient(transport=LazyTransport())
    url = provider_site.url("/anime/stream/kaiju-academy")
    requests = [asyncio.create_task(http.get(url)) for _ in range(3)]
    await provider_site.control.wait_for("series", 3)
    assert open_client_sockets(port) == 3

    await http.aclose()
    # Each request was let finish, and its connection closed with the pool, no GC needed.
    assert all(task.done() for task in requests)
    assert [task.result().status_code for task in requests] == [200] * 3
    assert open_client_sockets(port) == 0
    with pytest.raises(RuntimeError, match="closed"):
        await http.get(url)
