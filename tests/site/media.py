"""Real, tiny media made with ffmpeg at test time: an MP4 and an HLS rendition of it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.site.data import MEDIA_NAME

DURATION_S: Final = 3
_FFMPEG_TIMEOUT_S: Final = 60


@dataclass(slots=True, frozen=True)
class MediaSet:
    """The files served under /media/ and what a test may check them against."""

    root: Path
    name: str
    mp4: Path
    playlist: Path
    segments: tuple[Path, ...]
    duration_s: float

    @property
    def mp4_size(self) -> int:
        """Size of the MP4 in bytes."""
        return self.mp4.stat().st_size

    @property
    def mp4_url_path(self) -> str:
        """Site path of the MP4 (the direct hoster)."""
        return f"/media/{self.name}.mp4"

    @property
    def playlist_url_path(self) -> str:
        """Site path of the HLS playlist."""
        return f"/media/{self.name}/index.m3u8"


def ffmpeg_available() -> bool:
    """True when ffmpeg is on PATH."""
    return shutil.which("ffmpeg") is not None


def _ffmpeg(*args: str) -> None:
    # -nostdin: ffmpeg would otherwise read pytest's stdin and can stall a captured run.
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=_FFMPEG_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({result.returncode}): {result.stderr.strip()}")


def make_media(directory: Path, name: str = MEDIA_NAME) -> MediaSet:
    """Write `<name>.mp4` (3 s, ~450 KB) and `<name>/index.m3u8` with 1 s segments."""
    directory.mkdir(parents=True, exist_ok=True)
    mp4 = directory / f"{name}.mp4"
    _ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=duration={DURATION_S}:size=640x360:rate=25"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:duration={DURATION_S}"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-pix_fmt", "yuv420p"),
        # A keyframe every second, so the HLS copy can cut 1 s segments without re-encoding.
        *("-g", "25", "-keyint_min", "25", "-sc_threshold", "0"),
        *("-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart"),
        str(mp4),
    )
    hls = directory / name
    hls.mkdir(exist_ok=True)
    playlist = hls / "index.m3u8"
    _ffmpeg(
        *("-i", str(mp4), "-c", "copy", "-f", "hls", "-hls_time", "1"),
        *("-hls_playlist_type", "vod", "-hls_segment_filename", str(hls / "seg%03d.ts")),
        str(playlist),
    )
    segments = tuple(sorted(hls.glob("seg*.ts")))
    return MediaSet(directory, name, mp4, playlist, segments, float(DURATION_S))
