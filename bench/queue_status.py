"""GET /api/queue/status with 5,000 queue items: p99 and median next to a bare aiohttp handler.

Target (issue 8): p99 <= 50 ms, with one client and with a few at once.

The service runs as `python -m aniworld_addon` in a subprocess, the queue is filled through
POST /api/queue/add (stopped, so nothing downloads) and the status is fetched over loopback
by httpx clients in this process. The baseline is a bare aiohttp handler in a subprocess of
its own that returns a prepared body of the same size: what moving those bytes costs at all.
/health of the same service is shown as a second, small-body baseline.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _service import ServiceProcess, SiteProcess, clean_env, free_port, write_sidecar

ITEMS = 5000
KEY = "kaiju-academy"
SERIES_DIR = "Kaiju Academy (2012)"
WARMUP = 30
SEQUENTIAL = 400
CLIENTS = 4  # at once, each sending PER_CLIENT requests back to back
PER_CLIENT = 100
TARGET_MS = 50.0

BARE_APP = """
import sys
from aiohttp import web
body = b'{"x":"' + b"x" * int(sys.argv[2]) + b'"}'
async def handler(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/bare", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(fraction * len(ranked)) - 1))]


def timed(get: Callable[[], httpx.Response]) -> float:
    """Milliseconds from sending to the last byte of the body."""
    started = time.perf_counter()
    response = get()
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def measure(url: str, headers: dict[str, str]) -> tuple[list[float], list[float]]:
    """Latencies of sequential requests, then of CLIENTS clients at once."""
    with httpx.Client(timeout=30, headers=headers) as client:
        for _ in range(WARMUP):
            client.get(url).raise_for_status()
        sequential = [timed(lambda: client.get(url)) for _ in range(SEQUENTIAL)]
    concurrent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=30, headers=headers) as client:
            client.get(url).raise_for_status()
            mine = [timed(lambda: client.get(url)) for _ in range(PER_CLIENT)]
        with lock:
            concurrent.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sequential, concurrent


def _row(figure: str, value: float, baseline: float, target: str, ok: str) -> str:
    ratio = f"{value / baseline:.2f}x"
    return f"| {figure} | {value:.1f} | {baseline:.1f} | {ratio} | {target} | {ok} |"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-queue-status-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "media").mkdir()
        library = tmp / "library"
        write_sidecar(library, SERIES_DIR, "aniworld", KEY)
        with (
            SiteProcess(tmp / "media") as site,
            ServiceProcess(tmp / "data", library, log=tmp / "service.log") as service,
        ):
            service.setup(site.base_url)
            service.call("POST", "/api/queue/stop")
            episodes = [{"season": 1 + n // 100, "episode": 1 + n % 100} for n in range(ITEMS)]
            added = service.call(
                "POST", "/api/queue/add", json={"series_key": KEY, "episodes": episodes}
            )
            assert len(added["item_ids"]) == ITEMS, added
            url = f"{service.base}/api/queue/status"
            body_size = len(service.client.get(url, headers=service.headers).content)
            status_seq, status_conc = measure(url, service.headers)
            health_seq, _ = measure(f"{service.base}/health", {})
        port = free_port()
        bare = subprocess.Popen(
            [sys.executable, "-c", BARE_APP, str(port), str(body_size)],
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            bare_url = f"http://127.0.0.1:{port}/bare"
            _wait_until_answers(bare_url, bare)
            bare_seq, bare_conc = measure(bare_url, {})
        finally:
            bare.terminate()
            bare.wait(10)
    p99_seq, p99_conc = percentile(status_seq, 0.99), percentile(status_conc, 0.99)
    ok_seq, ok_conc = p99_seq <= TARGET_MS, p99_conc <= TARGET_MS
    print(f"status body: {body_size / 1e6:.2f} MB for {ITEMS} items")
    print("| figure | value | baseline | ratio | target | ok |")
    print("|---|---|---|---|---|---|")
    print(
        _row(
            f"queue status, {ITEMS} items: p99 (ms, one client)",
            p99_seq,
            percentile(bare_seq, 0.99),
            f"<= {TARGET_MS:.0f} ms",
            "yes" if ok_seq else "NO",
        )
    )
    print(
        _row(
            f"queue status, {ITEMS} items: median (ms, one client)",
            statistics.median(status_seq),
            statistics.median(bare_seq),
            "-",
            "-",
        )
    )
    print(
        _row(
            f"queue status, {ITEMS} items: p99 (ms, {CLIENTS} clients at once)",
            p99_conc,
            percentile(bare_conc, 0.99),
            f"<= {TARGET_MS:.0f} ms",
            "yes" if ok_conc else "NO",
        )
    )
    print(
        _row(
            "GET /health of the same service: p99 (ms, one client)",
            percentile(health_seq, 0.99),
            percentile(bare_seq, 0.99),
            "-",
            "-",
        )
    )
    return 0 if ok_seq and ok_conc else 1


def _wait_until_answers(url: str, proc: subprocess.Popen[bytes], limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the bare app exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in {limit_s} s")
        time.sleep(0.02)


if __name__ == "__main__":
    raise SystemExit(main())
