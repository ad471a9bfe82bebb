"""Rescan cost of the provider: 200 series on the local test site with 50 ms per page.

Targets: wall time <= 1.3x the ideal `pages x latency / concurrency`; pages = 1 + seasons per
series; a second rescan inside the cache lifetime costs 0 pages; never more than 4 in flight.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
from aiohttp import web
from aiohttp.typedefs import Handler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aniworld_addon.providers.aniworld import AniworldProvider
from aniworld_addon.providers.http import HttpOptions, ProviderHttp
from tests.site.app import SITE_CONTROL, create_site
from tests.site.data import generated_catalogue

SERIES = 200
SEASONS = 2
EPISODES = 12
FILMS = 1
LATENCY_S = 0.05
CONCURRENCY = 4
PACED_SERIES = 25  # the paced run is slower by design; a smaller sample shows the same ratio


class InFlight:
    """Site-side count of overlapping requests."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/__bench/"):
            return await handler(request)
        self.now += 1
        self.max = max(self.max, self.now)
        try:
            return await handler(request)
        finally:
            self.now -= 1


def _serve_site(conn: Connection, n_series: int) -> None:
    """Child process: the test site with latency, plus /__bench/stats and /__bench/reset."""

    async def serve() -> None:
        app = create_site(generated_catalogue(n_series, SEASONS, EPISODES, films=FILMS))
        in_flight = InFlight()
        app.middlewares.insert(0, in_flight.middleware)  # outermost: latency counts as in flight
        control = app[SITE_CONTROL]
        control.latency_s = LATENCY_S

        async def stats(request: web.Request) -> web.Response:
            pages = sum(control.count(k) for k in ("series", "season", "episode"))
            return web.json_response({"pages": pages, "max_in_flight": in_flight.max})

        async def reset(request: web.Request) -> web.Response:
            control.reset()
            in_flight.max = 0
            return web.json_response({})

        app.router.add_get("/__bench/stats", stats)
        app.router.add_post("/__bench/reset", reset)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        conn.send(runner.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await runner.cleanup()

    asyncio.run(serve())


async def _rescan(base: str, slugs: list[str], options: HttpOptions) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        provider = AniworldProvider("aniworld", base, ProviderHttp(client, base, options))
        await client.post(f"{base}/__bench/reset")
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for slug in slugs:
                group.create_task(provider.all_episodes(slug))
        wall = time.perf_counter() - started
        first = (await client.get(f"{base}/__bench/stats")).json()
        await client.post(f"{base}/__bench/reset")
        async with asyncio.TaskGroup() as group:
            for slug in slugs:
                group.create_task(provider.all_episodes(slug))
        second = (await client.get(f"{base}/__bench/stats")).json()
    return {
        "wall": wall,
        "pages": first["pages"],
        "second": second["pages"],
        "max_in_flight": first["max_in_flight"],
    }


def _run(n_series: int, options: HttpOptions) -> dict[str, float]:
    """One rescan of `n_series` against a site in its own process (the site is remote)."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_site, args=(child, n_series), daemon=True
    )
    process.start()
    try:
        port = parent.recv()
        catalogue = generated_catalogue(n_series, SEASONS, EPISODES, films=FILMS)
        result = asyncio.run(_rescan(f"http://127.0.0.1:{port}", list(catalogue.series), options))
        result["expected"] = sum(1 + len(s.seasons) for s in catalogue.series.values())
        return result
    finally:
        parent.send("stop")
        process.join(10)


def _row(figure: str, value: str, baseline: str, ratio: float | None, target: str, ok: bool) -> str:
    shown = "-" if ratio is None else f"{ratio:.2f}"
    return (
        f"| {figure:<34} | {value:>9} | {baseline:>9} | {shown:>5} | {target:<8} | "
        f"{'yes' if ok else 'NO':<3} |"
    )


def main() -> int:
    fast = HttpOptions(concurrency=CONCURRENCY, min_interval_s=0.0)
    run = _run(SERIES, fast)
    ideal = run["pages"] * LATENCY_S / CONCURRENCY

    paced_options = HttpOptions(concurrency=CONCURRENCY)  # the shipped defaults, pacing on
    paced = _run(PACED_SERIES, paced_options)
    paced_ideal = max(
        paced["pages"] * LATENCY_S / CONCURRENCY, paced["pages"] * paced_options.min_interval_s
    )

    ratio = run["wall"] / ideal
    paced_ratio = paced["wall"] / paced_ideal
    rows = [
        _row(
            f"rescan wall time {SERIES} series (s)",
            f"{run['wall']:.2f}",
            f"{ideal:.2f}",
            ratio,
            "<= 1.3x",
            ratio <= 1.3,
        ),
        _row(
            "pages fetched (1 + seasons each)",
            f"{run['pages']:.0f}",
            f"{run['expected']:.0f}",
            run["pages"] / run["expected"],
            "= 1.0x",
            run["pages"] == run["expected"],
        ),
        _row(
            "second rescan pages (cached)",
            f"{run['second']:.0f}",
            "0",
            None,
            "= 0",
            not run["second"],
        ),
        _row(
            "max requests in flight at the site",
            f"{run['max_in_flight']:.0f}",
            f"{CONCURRENCY}",
            run["max_in_flight"] / CONCURRENCY,
            "<= 1.0x",
            run["max_in_flight"] <= CONCURRENCY,
        ),
        _row(
            f"paced rescan {PACED_SERIES} series (s)",
            f"{paced['wall']:.2f}",
            f"{paced_ideal:.2f}",
            paced_ratio,
            "<= 1.3x",
            paced_ratio <= 1.3,
        ),
    ]
    print(
        f"provider rescan: {SERIES} series x ({SEASONS} seasons + films), "
        f"{LATENCY_S * 1000:.0f} ms per page, concurrency {CONCURRENCY}"
    )
    print("| figure                             |     value |  baseline | ratio | target   | ok  |")
    print("|------------------------------------|-----------|-----------|-------|----------|-----|")
    print("\n".join(rows))
    ok = all(row.rstrip(" |").endswith("yes") for row in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
