"""End-to-end download of a ~200 MB MP4 over loopback: the service next to curl, same run.

Targets (issue): the service's throughput (POST /download to `completed`) >= 0.9x curl's for
the same URL; two concurrent downloads take <= 2.1x one. CPU seconds per GB are reported
without a target (the service process with its waited-for children, i.e. ffprobe).

The site (tests.site, default catalogue) runs in a subprocess of its own and serves
`sample.mp4` with sendfile; curl and the service fetch the same URL from it, interleaved. A
service run is timed from just before the POST (taken here) to the item's `completed_at`
(stamped by the service, same clock), so no poll interval rounds it up; completion is
noticed by watching the library folder, which costs the service nothing. The service does
more than curl: provider pages, yt-dlp extraction, ffprobe and an fsync of the file; a row
with curl + an fsync of its file shows how much of the gap the fsync alone is.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _service import ServiceProcess, SiteProcess, cpu_seconds, write_sidecar

TARGET_BYTES = 200 * 10**6
RUNS = 7
KEY = "sky-lantern"
SERIES_DIR = "Sky Lantern (2023)"
MEDIA_FILE = "sample.mp4"  # tests/site/data.py MEDIA_NAME + ".mp4": the html5 (VOE) hoster's file
WATCH_S = 0.005  # library folder poll (a stat in this process)
GB = 10**9
FFMPEG_TIMEOUT_S = 300


# --- media --------------------------------------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.strip()}")


def _encode(path: Path, seconds: float) -> None:
    # Noise keeps x264 from compressing the test pattern away: ~150 Mbit/s at qp 18.
    _ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25"),
        *("-f", "lavfi", "-i", "sine=frequency=440"),
        *("-t", f"{seconds:.2f}", "-vf", "noise=alls=30:allf=t"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "18", "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-b:a", "64k", "-shortest"),
        str(path),
    )


def make_media(media_dir: Path) -> Path:
    """A real ~200 MB MP4 (H.264 + AAC) that passes the service's ffprobe check."""
    media_dir.mkdir(parents=True, exist_ok=True)
    probe = media_dir / "probe.mp4"
    _encode(probe, 1.0)
    rate = probe.stat().st_size  # bytes per second of this content
    probe.unlink()
    path = media_dir / MEDIA_FILE
    _encode(path, TARGET_BYTES / rate)
    report = json.loads(
        subprocess.run(
            [
                *("ffprobe", "-v", "error", "-of", "json"),
                *("-show_entries", "stream=codec_type:format=duration", str(path)),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    streams = {s.get("codec_type") for s in report.get("streams", [])}
    if "video" not in streams or not float(report["format"]["duration"]) > 0:
        raise RuntimeError(f"{path} is not a usable video: {report}")
    return path


# --- curl ---------------------------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(slots=True)
class Curl:
    wall: float  # `curl -s -o FILE URL`
    cpu: float  # curl's user + system CPU
    fsync: float  # fsync of curl's file afterwards (the service makes its file durable)


def curl_once(url: str, out: Path, size: int) -> Curl:
    """One `curl -s -o out url`, then, separately timed, an fsync of what it wrote."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(out), url], check=True)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    start = time.perf_counter()
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    synced = time.perf_counter() - start
    got = out.stat().st_size
    out.unlink()
    if got != size:
        raise RuntimeError(f"curl got {got} bytes, expected {size}")
    return Curl(wall, cpu, synced)


# --- service ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    wall: float  # POST to the last item's completed_at
    cpu: float  # service CPU (+ ffprobe) over the run
    nbytes: int  # bytes downloaded in the run
    to_first_byte: float  # POST until a .part file exists (queue, provider pages, extraction)
    transfer: float  # .part appeared until it held every byte (single downloads only)
    finish: float  # every byte in the .part until completed_at (verify, fsync, rename, DB)


def _videos(series: Path) -> tuple[list[Path], list[Path]]:
    finals, parts = [], []
    for path in series.rglob("*"):
        if ".part" in path.name:
            parts.append(path)
        elif path.suffix == ".mp4":
            finals.append(path)
    return finals, parts


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _raise_failed(items: list[dict[str, Any]]) -> None:
    failed = [i for i in items if i["status"] == "failed" or i.get("error")]
    if failed:
        raise RuntimeError(f"download failed: {failed}")


def service_once(service: ServiceProcess, episodes: list[int], size: int) -> Run:
    """Queue `episodes` of season 1 together and wait until every one is completed."""
    series = service.library / SERIES_DIR
    cpu0 = cpu_seconds(service.pid)
    posted = time.time()
    service.call(
        "POST",
        f"/api/anime/{KEY}/download",
        json={"episodes": [{"season": 1, "episode": n} for n in episodes]},
    )
    first_part = full = math.nan
    deadline = time.monotonic() + 300
    checked = time.monotonic()
    while True:  # the library folder: costs the service nothing
        finals, parts = _videos(series)
        now = time.time()
        if parts and math.isnan(first_part):
            first_part = now
        if math.isnan(full) and parts and all(_size(p) >= size for p in parts):
            full = now
        if len(finals) >= len(episodes):
            if math.isnan(full):
                full = now
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"downloads of {episodes} did not finish")
        if time.monotonic() - checked > 1:  # a failure leaves no file: ask now and then
            _raise_failed(service.queue_items())
            checked = time.monotonic()
        time.sleep(WATCH_S)
    while True:  # the file is in place; the DB row follows a moment later
        items = service.queue_items()
        _raise_failed(items)
        done = [i for i in items if i["status"] == "completed"]
        if len(done) >= len(episodes):
            break
        time.sleep(0.01)
    cpu = cpu_seconds(service.pid) - cpu0
    completed = max(float(i["completed_at"]) for i in done)
    for video in finals:
        if video.stat().st_size != size:
            raise RuntimeError(f"{video} has {video.stat().st_size} bytes, expected {size}")
    run = Run(
        wall=completed - posted,
        cpu=cpu,
        nbytes=size * len(episodes),
        to_first_byte=first_part - posted,
        transfer=full - first_part,
        finish=completed - full,
    )
    # Fresh state for the next run: the queue only dedupes pending/downloading items.
    service.call("DELETE", "/api/queue/completed")
    for video in finals:
        video.unlink()
    return run


# --- report -------------------------------------------------------------------------------------


def _row(figure: str, value: str, baseline: str, ratio: float | None, target: str, ok: str) -> str:
    shown = "-" if ratio is None else f"{ratio:.2f}x"
    return f"| {figure} | {value} | {baseline} | {shown} | {target} | {ok} |"


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def main() -> int:
    if shutil.which("curl") is None or shutil.which("ffmpeg") is None:
        print("curl and ffmpeg are needed (apt-get install -y curl ffmpeg)", file=sys.stderr)
        return 2
    # A plain kill must still stop the service and the site and remove the temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp_name:
        tmp = Path(tmp_name)
        media = make_media(tmp / "media")
        size = media.stat().st_size
        made = time.perf_counter() - started
        library = tmp / "library"
        write_sidecar(library, SERIES_DIR, "aniworld", KEY)
        curl: list[Curl] = []
        single: list[Run] = []
        pair: list[Run] = []
        with (
            SiteProcess(tmp / "media") as site,
            ServiceProcess(tmp / "data", library, log=tmp / "service.log") as service,
        ):
            service.setup(
                site.base_url, {"downloads": {"min_free_space_mb": 0, "max_concurrent": 2}}
            )
            url = f"{site.base_url}/media/{MEDIA_FILE}"
            curl_once(url, tmp / "curl.out", size)  # warm-up: page cache, site, curl
            cold = service_once(service, [1], size)  # first use: yt-dlp's lazy extractor imports
            for _ in range(RUNS):
                # Interleaved, so machine noise hits all three alike.
                curl.append(curl_once(url, tmp / "curl.out", size))
                single.append(service_once(service, [1], size))
                pair.append(service_once(service, [2, 3], size))
    total = time.perf_counter() - started

    def med(values: Iterable[float]) -> float:
        return statistics.median(values)

    curl_s = med(c.wall for c in curl)
    curl_sync_s = med(c.wall + c.fsync for c in curl)
    curl_cpu_gb = med(c.cpu / (size / GB) for c in curl)
    one_s = med(r.wall for r in single)
    two_s = med(r.wall for r in pair)
    mb = size / 10**6
    speed, curl_speed = mb / one_s, mb / curl_s
    cpu_gb = med(r.cpu / (r.nbytes / GB) for r in single)
    pair_cpu_gb = med(r.cpu / (r.nbytes / GB) for r in pair)
    transfer = med(r.transfer for r in single)
    rows = [
        _row(
            f"single download, POST to completed (s, {mb:.0f} MB)",
            f"{one_s:.3f}",
            f"{curl_s:.3f}",
            one_s / curl_s,
            "-",
            "-",
        ),
        _row(
            "end-to-end throughput vs curl (MB/s)",
            f"{speed:.0f}",
            f"{curl_speed:.0f}",
            speed / curl_speed,
            ">= 0.9x",
            _yes(speed / curl_speed >= 0.9),
        ),
        _row(
            "  same vs curl + fsync of its file (MB/s)",
            f"{speed:.0f}",
            f"{mb / curl_sync_s:.0f}",
            speed / (mb / curl_sync_s),
            "-",
            "-",
        ),
        _row(
            "CPU s per GB, service + ffprobe (single)",
            f"{cpu_gb:.2f}",
            f"{curl_cpu_gb:.2f}",
            cpu_gb / curl_cpu_gb,
            "-",
            "-",
        ),
        _row(
            "CPU s per GB, service + ffprobe (two at once)",
            f"{pair_cpu_gb:.2f}",
            f"{curl_cpu_gb:.2f}",
            pair_cpu_gb / curl_cpu_gb,
            "-",
            "-",
        ),
        _row(
            "two concurrent downloads vs one (s)",
            f"{two_s:.3f}",
            f"{one_s:.3f}",
            two_s / one_s,
            "<= 2.1x",
            _yes(two_s / one_s <= 2.1),
        ),
        _row(
            "  single: POST to first byte on disk (s)",
            f"{med(r.to_first_byte for r in single):.3f}",
            "-",
            None,
            "-",
            "-",
        ),
        _row(
            "  single: transfer only, .part throughput (MB/s)",
            f"{mb / transfer:.0f}",
            f"{curl_speed:.0f}",
            (mb / transfer) / curl_speed,
            "-",
            "-",
        ),
        _row(
            "  single: last byte to completed (s; verify, fsync)",
            f"{med(r.finish for r in single):.3f}",
            "-",
            None,
            "-",
            "-",
        ),
        _row(
            "  first download after start (s, cold)",
            f"{cold.wall:.3f}",
            f"{one_s:.3f}",
            cold.wall / one_s,
            "-",
            "-",
        ),
    ]
    print(
        f"download: {size / 10**6:.0f} MB MP4 over loopback from the test site (own process), "
        f"median of {RUNS}; curl = `curl -s -o FILE URL`; media made in {made:.1f} s, "
        f"bench {total:.0f} s"
    )
    print("| figure | value | baseline | ratio | target | ok |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
