"""Whether a finished download is a video: its extension, its size, and what ffprobe reads."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from ..library.episode_tags import VIDEO_EXTENSIONS
from .probe_gates import WarmProbe, probe_command, spawn_probe
from .progress import VerificationFailedError
from .resolver import MediaSource

FFPROBE_TIMEOUT_S: Final = 120.0


def _nothing() -> None:
    pass


def verify_download(
    path: Path,
    ext: str,
    source: MediaSource,
    *,
    ffprobe: str | None,
    meanwhile: Callable[[], None] = _nothing,
    warm: WarmProbe | None = None,
) -> int:
    """The file's size, once it is a non-empty video that ffprobe (when given) can read.

    `meanwhile` runs while ffprobe does (most of its time is its own start-up): the downloader
    makes the file durable then. If it raises, ffprobe is stopped and the error propagates.
    `warm`, an ffprobe started during the download (probe_gates), is used when it still waits.
    """
    details = {"hoster": source.hoster, "url": source.url}
    if ext not in VIDEO_EXTENSIONS:
        raise VerificationFailedError(
            f"hoster {source.hoster} gave a .{ext or '?'} file, not a video", details=details
        )
    size = path.stat().st_size
    if size <= 0:
        raise VerificationFailedError(
            f"the file from hoster {source.hoster} is empty", details=details
        )
    if ffprobe:
        try:
            with probing(ffprobe, path, source, warm):
                meanwhile()
        except VerificationFailedError:
            if warm is None or not warm.used:
                raise
            # A warm ffprobe that did not wait at its gate (a wrapper that drops FFREPORT)
            # fails on the missing input: a rejection counts only once a cold one agrees.
            with probing(ffprobe, path, source):
                pass
    else:
        meanwhile()
    return size


def find_ffprobe(ffmpeg_location: str | None) -> str | None:
    """ffprobe beside the configured ffmpeg, else the one on PATH, else None."""
    if ffmpeg_location:
        folder = Path(ffmpeg_location)
        folder = folder if folder.is_dir() else folder.parent
        candidate = folder / "ffprobe"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("ffprobe")


@contextmanager
def probing(
    ffprobe: str, path: Path, source: MediaSource, warm: WarmProbe | None = None
) -> Iterator[None]:
    """Start ffprobe (or release the warm one); after the block, raise VerificationFailedError
    unless it found a video stream and a duration. An error in the block stops ffprobe and
    propagates."""
    details: dict[str, Any] = {"hoster": source.hoster, "url": source.url}
    process = warm.release(path) if warm is not None else None
    if process is None:
        # "file:" keeps a ":" in a library path from being read as a protocol name.
        process = spawn_probe(probe_command(ffprobe, f"file:{path}"))
    with process:
        try:
            yield
            stdout, stderr = process.communicate(timeout=FFPROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            process.kill()
            raise VerificationFailedError("ffprobe timed out", details=details) from err
        except BaseException:
            process.kill()
            raise
    try:
        report = json.loads(stdout) if process.returncode == 0 else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        reason = (stderr.strip().splitlines() or ["no output"])[-1]
        details["ffprobe"] = reason
        raise VerificationFailedError(
            f"the file from hoster {source.hoster} is not readable media: {reason}",
            details=details,
        )
    streams = report.get("streams") or []
    if not any(isinstance(s, dict) and s.get("codec_type") == "video" for s in streams):
        raise VerificationFailedError(
            f"the file from hoster {source.hoster} has no video stream", details=details
        )
    try:
        duration = float((report.get("format") or {}).get("duration") or 0)
    except (TypeError, ValueError):
        duration = 0.0
    if not math.isfinite(duration) or duration <= 0:
        raise VerificationFailedError(
            f"the file from hoster {source.hoster} has no duration", details=details
        )
