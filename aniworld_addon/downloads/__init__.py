"""Downloads: hoster candidates and media resolution, then yt-dlp into the library.

`Downloader` lives in `downloads.downloader` and is imported on first use: it pulls in yt-dlp.
"""

from __future__ import annotations

from .progress import (
    PART_SUFFIX,
    InsufficientSpaceError,
    Progress,
    ProgressCallback,
    ProgressThrottle,
    TargetNotWritableError,
    VerificationFailedError,
    cleanup_partials,
    partial_files,
    progress_from_hook,
)
from .resolver import (
    ENTRY_POINT_GROUP,
    YTDLP,
    Candidate,
    DownloadFailedError,
    HosterUnavailableError,
    MediaSource,
    NoResolverError,
    ResolvedMedia,
    Resolver,
    ResolverPlugin,
    load_plugins,
    order_candidates,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PART_SUFFIX",
    "YTDLP",
    "Candidate",
    "DownloadFailedError",
    "HosterUnavailableError",
    "InsufficientSpaceError",
    "MediaSource",
    "NoResolverError",
    "Progress",
    "ProgressCallback",
    "ProgressThrottle",
    "ResolvedMedia",
    "Resolver",
    "ResolverPlugin",
    "TargetNotWritableError",
    "VerificationFailedError",
    "cleanup_partials",
    "load_plugins",
    "order_candidates",
    "partial_files",
    "progress_from_hook",
]
