"""Download progress, temp-file names and the download errors: the light half of downloads.

Kept apart from downloader.py so that importing the queue does not import yt-dlp, which
costs a noticeable part of the service's start-up; yt-dlp loads with the first download.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from .resolver import DownloadFailedError

MB: Final = 1024 * 1024
PART_SUFFIX: Final = ".part"


class VerificationFailedError(DownloadFailedError):
    """The downloaded file is empty, not a video, or has no duration; it was removed."""

    code = "verification_failed"


class InsufficientSpaceError(DownloadFailedError):
    """Free space on the target file system is below `min_free_space_mb`."""

    code = "insufficient_space"
    status = 507
    next_candidate = False  # another hoster would fill the same disk


class SeriesFolderMissingError(DownloadFailedError):
    """The series folder is gone: a download never creates one (its drive may be unmounted)."""

    code = "series_folder_missing"
    status = 409
    next_candidate = False  # every hoster would write into the same missing folder


class TargetNotWritableError(DownloadFailedError):
    """The target folder cannot be created or the finished file cannot be moved into place."""

    code = "target_not_writable"
    status = 500
    next_candidate = False


@dataclass(slots=True, frozen=True)
class Progress:
    """A download's progress in MiB and MiB/s (the SPEC §5 queue item `progress`)."""

    percent: float
    downloaded_mb: float
    total_mb: float | None
    speed_mbps: float | None
    eta_seconds: int | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape {percent, downloaded_mb, total_mb, speed_mbps, eta_seconds}."""
        return asdict(self)


#: called on the event loop thread; it must not block
ProgressCallback = Callable[[Progress], None]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def progress_from_hook(status: Mapping[str, Any]) -> Progress | None:
    """A Progress from one of yt-dlp's progress-hook dicts (None without a byte count)."""
    done = _number(status.get("downloaded_bytes"))
    if done is None:
        return None
    total = _number(status.get("total_bytes")) or _number(status.get("total_bytes_estimate"))
    count, index = _number(status.get("fragment_count")), _number(status.get("fragment_index"))
    if total:
        percent = done * 100 / total
    elif count and index is not None:
        percent = index * 100 / count
    else:
        percent = 0.0
    speed, eta = _number(status.get("speed")), _number(status.get("eta"))
    return Progress(
        percent=round(min(100.0, max(0.0, percent)), 1),
        downloaded_mb=round(done / MB, 2),
        total_mb=round(total / MB, 2) if total else None,
        speed_mbps=round(speed / MB, 2) if speed is not None else None,
        eta_seconds=int(eta) if eta is not None else None,
    )


class ProgressThrottle:
    """Passes a report on >= `min_step` points of change or after `min_interval_s`; never 100 %."""

    def __init__(
        self,
        min_step: float = 1.0,
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_step = min_step
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last: Progress | None = None
        self._last_at = 0.0

    def offer(self, progress: Progress) -> Progress | None:
        """The report to send now, or None; percent never goes down between reports."""
        last, now = self._last, self._clock()
        if last is not None and progress.percent < last.percent:
            # HLS totals are estimates that grow as fragments arrive: hold the shown percent.
            progress = replace(progress, percent=last.percent)
        if progress.percent >= 100.0:
            return None  # the downloader reports the final 100 % once the file is in place
        if last is not None and (
            progress.percent - last.percent < self._min_step
            and now - self._last_at < self._min_interval_s
        ):
            return None
        self._last, self._last_at = progress, now
        return progress


def partial_files(final_base: Path) -> list[Path]:
    """Every temp file a download to `final_base` (no extension) may leave: `<name>.part*`."""
    prefix = final_base.name + PART_SUFFIX
    try:
        names = os.listdir(final_base.parent)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        final_base.parent / name
        for name in names
        if name == prefix or name.startswith((prefix + ".", prefix + "-"))
    )


def cleanup_partials(final_base: Path) -> list[Path]:
    """Remove the temp files of a download to `final_base` (blocking: call it in a thread)."""
    removed: list[Path] = []
    for path in partial_files(final_base):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed
