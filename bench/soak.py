"""Soak: 1,000 small downloads from the test site with the scheduler running.

Targets (issue): RSS growth from after warm-up to the end < 10 MiB; no asyncio task or thread
left over once the queue is idle; the history table stays within its bound.

The app runs in this process (create_app on an AppRunner, no listening socket) so its tasks
can be counted; the site (tests.site, a generated catalogue of 20 series x 50 episodes, the
~450 KB sample MP4) runs in a subprocess. When the scheduler and history are not wired into
the app yet, the bench builds them beside it from the app's own collaborators.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _service import clean_env, write_sidecar  # noqa: E402
from aiohttp import web  # noqa: E402

from aniworld_addon import keys  # noqa: E402
from aniworld_addon.app import create_app  # noqa: E402
from aniworld_addon.downloads.queue_store import Priority  # noqa: E402
from aniworld_addon.events import Event, EventType  # noqa: E402
from aniworld_addon.history import PRUNE_EVERY, History  # noqa: E402
from aniworld_addon.options import Options  # noqa: E402
from aniworld_addon.scheduler import Scheduler  # noqa: E402
from tests.site.media import make_media  # noqa: E402

SERIES = int(os.environ.get("SOAK_SERIES", 20))
EPISODES = int(os.environ.get("SOAK_EPISODES", 50))
WARM_UP = 100  # yt-dlp loads extractors and the thread pool fills during the first ones
BATCH = 100  # RSS is sampled after each batch, to tell a leak (linear) from warm-up
RSS_LIMIT_MIB = 10.0
HISTORY_ROWS = 1000  # the bench's own History (when not wired) is bounded tighter, to show it

_SITE = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from aiohttp import web
from tests.site.app import create_site
from tests.site.data import generated_catalogue

async def main() -> None:
    app = create_site(generated_catalogue(int(sys.argv[3]), 1, int(sys.argv[4])),
                      media_dir=Path(sys.argv[2]))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def own_threads() -> int:
    """Threads other than the default executor's workers (that pool grows on demand)."""
    return sum(not t.name.startswith("asyncio_") for t in threading.enumerate())


def slope(samples: list[float]) -> float:
    """Least-squares growth per batch: a leak grows linearly, warm-up does not."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(samples) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(samples))
    return num / sum((x - mean_x) ** 2 for x in range(n))


def rss_mib() -> float:
    """Resident set size of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Done:
    """Counts finished downloads (complete or finally failed) from the bus."""

    def __init__(self) -> None:
        self.complete = 0
        self.failed = 0
        self._changed = asyncio.Condition()

    async def __call__(self, event: Event) -> None:
        final_failure = event.type is EventType.DOWNLOAD_FAILED and not event.data["will_retry"]
        if event.type is EventType.DOWNLOAD_COMPLETE or final_failure:
            async with self._changed:
                self.complete += event.type is EventType.DOWNLOAD_COMPLETE
                self.failed += final_failure
                self._changed.notify_all()

    async def until(self, total: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.complete + self.failed >= total)


async def soak(tmp: Path, site_url: str, trace: bool = False) -> dict[str, Any]:
    library = tmp / "library"
    slugs = [f"generated-series-{i:05d}" for i in range(1, SERIES + 1)]
    for slug in slugs:
        write_sidecar(library, slug, "aniworld", slug)
    options = Options(
        data_path=tmp / "data", library_path=library, host="127.0.0.1", port=0, bcrypt_rounds=4
    )
    app = create_app(options)
    runner = web.AppRunner(app)
    await runner.setup()
    own: list[Any] = []
    try:
        settings = app[keys.SETTINGS]
        await settings.update(
            {
                "providers": {
                    "aniworld": {"url": site_url},
                    "sto": {"enabled": False},
                    "ytdlp": {"enabled": False},
                },
                "downloads": {"min_free_space_mb": 0, "max_concurrent": 4},
                "scheduler": {"new_episodes_interval_min": 1, "rescan_interval_h": 1},
            }
        )
        wired = hasattr(keys, "SCHEDULER") and keys.SCHEDULER in app
        if os.environ.get("SOAK_BARE"):  # baseline: the downloads alone, without our parts
            history = History(app[keys.DB], max_rows=HISTORY_ROWS)
        elif wired:
            history: History = app[keys.HISTORY]
        else:
            history = History(app[keys.DB], max_rows=HISTORY_ROWS)
            history.start(app[keys.BUS])
            scheduler = Scheduler(
                settings=settings,
                library=app[keys.LIBRARY],
                queue=app[keys.QUEUE],
                operations=app[keys.OPERATIONS],
                bus=app[keys.BUS],
                history=history,
                data_path=options.data_path,
            )
            scheduler.start()
            own += [history, scheduler]
        done = Done()
        app[keys.BUS].subscribe(done, name="soak")
        op = app[keys.LIBRARY].rescan()
        await app[keys.OPERATIONS].wait(op.id)
        queue = app[keys.QUEUE]
        plan = [(slug, e) for slug in slugs for e in range(1, EPISODES + 1)]

        for slug, episode in plan[:WARM_UP]:
            await queue.add("aniworld", slug, [(1, episode)], Priority.NORMAL)
        await done.until(WARM_UP)
        gc.collect()
        if trace:
            tracemalloc.start(12)
            before = tracemalloc.take_snapshot()
        tasks_start = len(asyncio.all_tasks())
        threads_start = own_threads()
        rss_start = rss_mib()

        started = time.monotonic()
        samples: list[float] = []
        rest = plan[WARM_UP:]
        for first in range(0, len(rest), BATCH):
            for slug, episode in rest[first : first + BATCH]:
                await queue.add("aniworld", slug, [(1, episode)], Priority.NORMAL)
            await done.until(WARM_UP + min(first + BATCH, len(rest)))
            samples.append(round(rss_mib(), 1))
        elapsed = time.monotonic() - started
        await history.prune()  # what the daily job does
        gc.collect()
        rss_end = rss_mib()
        if trace:
            after = tracemalloc.take_snapshot()
            for stat in after.compare_to(before, "traceback")[:12]:
                print(stat, file=sys.stderr)
                for line in stat.traceback.format()[-8:]:
                    print("   ", line, file=sys.stderr)
        tasks_end = len(asyncio.all_tasks())
        threads_end = own_threads()
        rows = await history.count()
        return {
            "downloads": len(plan),
            "complete": done.complete,
            "failed": done.failed,
            "seconds": round(elapsed, 1),
            "rss_start_mib": round(rss_start, 1),
            "rss_end_mib": round(rss_end, 1),
            "rss_growth_mib": round(rss_end - rss_start, 2),
            "rss_per_batch_mib": samples,
            "rss_slope_mib_per_batch": round(slope(samples), 2),
            "tasks_start": tasks_start,
            "tasks_end": tasks_end,
            "threads_start": threads_start,
            "threads_end": threads_end,
            "history_rows": rows,
            "history_bound": history.max_rows,
            "scheduler_wired": wired,
            "ok": rss_end - rss_start < RSS_LIMIT_MIB
            and tasks_end <= tasks_start
            and threads_end <= threads_start
            and rows <= history.max_rows
            and done.failed == 0,
        }
    finally:
        for part in reversed(own):
            await part.close()
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument("--trace", action="store_true", help="tracemalloc: print the growth")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aniworld-soak-") as name:
        tmp = Path(name)
        media = make_media(tmp / "media")
        site = subprocess.Popen(
            [sys.executable, "-c", _SITE, str(ROOT), str(media.root), str(SERIES), str(EPISODES)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert site.stdout is not None
            port = int(site.stdout.readline())
            result = asyncio.run(soak(tmp, f"http://127.0.0.1:{port}", args.trace))
        finally:
            site.terminate()
            site.wait(15)
            if site.stdout is not None:
                site.stdout.close()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
        print(
            f"target: RSS growth < {RSS_LIMIT_MIB} MiB, no leftover tasks or threads, "
            f"history <= its bound (pruned every {PRUNE_EVERY} rows and daily)"
        )
        growth = result["rss_growth_mib"]
        ok = "yes" if growth < RSS_LIMIT_MIB else "NO"
        print("| figure | value | baseline | ratio | target | ok |")
        print("|---|---|---|---|---|---|")
        print(
            f"| soak: RSS growth, {result['complete']}/{result['downloads']} downloads (MiB) | "
            f"{growth} | start {result['rss_start_mib']} | - | < {RSS_LIMIT_MIB} MiB | {ok} |"
        )
        tasks_ok = "yes" if result["tasks_end"] <= result["tasks_start"] else "NO"
        print(
            f"| soak: tasks at the end | {result['tasks_end']} | start "
            f"{result['tasks_start']} | - | no growth | {tasks_ok} |"
        )
        rows_ok = "yes" if result["history_rows"] <= result["history_bound"] else "NO"
        print(
            f"| soak: history rows | {result['history_rows']} | bound "
            f"{result['history_bound']} | - | <= bound | {rows_ok} |"
        )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
