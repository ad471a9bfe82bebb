"""Library scan speed on a generated library, next to a bare os.walk of the same tree.

Targets: a full scan <= 1.5x os.walk; a rescan with no change <= 0.2x the full scan; both on
wall time, the time a scan takes. With the C listing and a second CPU, the scan reads the
disk in a second thread (library/folders.py): its CPU time, printed too, adds both threads'.
The rows without a target show the scan as it runs on one CPU and without the C module.
Run: .venv/bin/python bench/scan.py [--series 2000] [--episodes 50] [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aniworld_addon.library import folders, scanner, sidecar
from aniworld_addon.library.scanner import ScanResult, scan_library

SEASONS = 2


def build(root: Path, series: int, episodes: int) -> int:
    """Series folders with a sidecar and Season NN folders of empty episode files."""
    files = 0
    for n in range(series):
        title = f"Series {n:04d}"
        folder = root / title
        folder.mkdir()
        identity = {"provider": "aniworld", "key": f"series-{n}", "name": title}
        (folder / sidecar.SIDECAR_NAME).write_text(json.dumps(identity))
        for index in range(episodes):
            season, episode = index % SEASONS + 1, index // SEASONS + 1
            season_folder = folder / f"Season {season:02d}"
            season_folder.mkdir(exist_ok=True)
            name = f"{title} - S{season:02d}E{episode:02d} - Episode {episode}.mkv"
            (season_folder / name).touch()
            files += 1
    return files


def bare_walk(root: Path) -> None:
    for _dirpath, _dirnames, _filenames in os.walk(root):
        pass


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall time and this process's CPU time (user + system), which other load barely moves."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def table(title: str, rows: list[tuple[str, float, str, float, float | None]]) -> None:
    print(title)
    header = ("figure", "value", "baseline", "ratio", "target", "ok")
    lines = [header]
    for figure, value, name, base, target in rows:
        ratio = value / base
        lines.append(
            (
                figure,
                f"{value * 1000:.1f} ms",
                f"{name} {base * 1000:.1f} ms",
                f"{ratio:.2f}x",
                "-" if target is None else f"<= {target}x",
                "-" if target is None else ("yes" if ratio <= target else "NO"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def one_cpu(root: Path) -> None:
    """A full scan as on a single CPU: the C listing, no second thread."""
    cpus = scanner.cpus
    scanner.cpus = lambda: 1
    try:
        scan_library(root)
    finally:
        scanner.cpus = cpus


def python_only(root: Path) -> None:
    """A full scan as without the C module."""
    saved = scanner.list_folder, scanner.list_folders, scanner.stat_paths
    scanner.list_folder, scanner.list_folders, scanner.stat_paths = (
        folders.list_folder_py,
        None,
        None,
    )
    try:
        scan_library(root)
    finally:
        scanner.list_folder, scanner.list_folders, scanner.stat_paths = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aniworld-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        files = build(root, args.series, args.episodes)
        print(f"built {args.series} series, {files} files in {time.perf_counter() - started:.1f} s")
        # Folders changed in the last RACY_WINDOW_NS are never trusted from the cache (coarse
        # file system clocks); a real library is older than that, so let this one age too.
        time.sleep(scanner.RACY_WINDOW_NS / 1e9 + 0.5)

        bare_walk(root)  # warm the dentry and inode caches for every contender alike
        baseline = scan_library(root)
        found = sum(len(series.episodes) for series in baseline.series)
        assert found == files, f"the scan found {found} of {files} episodes"
        assert scan_library(root, baseline.cache).stats.listed == 0

        walks: list[tuple[float, float]] = []
        fulls: list[tuple[float, float]] = []
        sized: list[tuple[float, float]] = []
        rescans: list[tuple[float, float]] = []
        singles: list[tuple[float, float]] = []
        pythons: list[tuple[float, float]] = []
        last: list[ScanResult] = []
        for _ in range(args.runs):  # interleaved, so drift in machine load hits all alike
            walks.append(timed(lambda: bare_walk(root)))
            fulls.append(timed(lambda: last.append(scan_library(root))))
            sized.append(timed(lambda: scan_library(root, with_sizes=True)))
            rescans.append(timed(lambda: scan_library(root, last[-1].cache)))
            singles.append(timed(lambda: one_cpu(root)))
            pythons.append(timed(lambda: python_only(root)))

    native = "C" if folders.NATIVE is not None else "Python (the C module was not built)"
    print(f"\nlisting: {native}; CPUs for this process: {folders.cpus()}")
    for clock, index in (("wall time", 0), ("CPU time (user + system)", 1)):
        walk, full, full_sized, rescan, single, python = (
            statistics.median(sample[index] for sample in samples)
            for samples in (walks, fulls, sized, rescans, singles, pythons)
        )
        what = "wall" if index == 0 else "CPU"
        wall = index == 0  # the targets are on wall time (see the docstring)
        rows: list[tuple[str, float, str, float, float | None]] = [
            (f"full scan (no cache), {what}", full, "os.walk", walk, 1.5 if wall else None),
            (f"no-change rescan, {what}", rescan, "full scan", full, 0.2 if wall else None),
            (f"full scan, with_sizes=True, {what}", full_sized, "os.walk", walk, None),
            (f"full scan, one CPU, {what}", single, "os.walk", walk, None),
            (f"full scan, no C module, {what}", python, "os.walk", walk, None),
        ]
        table(f"\n{clock}, median of {args.runs} runs each", rows)


if __name__ == "__main__":
    main()
