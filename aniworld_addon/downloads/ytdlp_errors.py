"""yt-dlp's failures as the queue's errors, and the files and responses an aborted run leaves."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from yt_dlp.networking.exceptions import HTTPError
from yt_dlp.utils import ExtractorError, UnsupportedError, YoutubeDLError

from .progress import PART_SUFFIX, InsufficientSpaceError, TargetNotWritableError
from .resolver import (
    YTDLP,
    DownloadFailedError,
    HosterUnavailableError,
    MediaSource,
    NoResolverError,
)

# Failures of the library's own file system (read-only, no permission, over quota, failing
# disk): every hoster would meet them. Counted against each hoster they ended up blocklisting
# all of an episode's links over a folder's permissions.
_LOCAL_ERRNOS: Final = frozenset(
    {errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.EIO}
    | {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR}
)
# Those a socket never reports; for the others only a file's error (one with a file name) counts.
_FILE_ONLY_ERRNOS: Final = frozenset({errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _local_failure(err: BaseException) -> bool:
    return (
        isinstance(err, OSError)
        and err.errno in _LOCAL_ERRNOS
        and (err.filename is not None or err.errno in _FILE_ONLY_ERRNOS)
    )


def error_chain(err: BaseException) -> Iterator[BaseException]:
    """`err` and every exception yt-dlp or Python attached to it."""
    stack: list[object] = [err]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        exc_info = getattr(item, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            stack.append(exc_info[1])
        stack.extend((getattr(item, "cause", None), item.__cause__, item.__context__))


def convert_error(
    err: YoutubeDLError, source: MediaSource, *, extracting: bool
) -> DownloadFailedError:
    """A yt-dlp failure as the AppError that tells the queue what to do next."""
    chain = list(error_chain(err))
    for item in chain:
        # yt-dlp keeps HTTP responses on its errors; close them now, not at garbage collection.
        response = getattr(item, "response", None)
        if isinstance(item, HTTPError) and response is not None:
            response.close()
    extractor = next((e for e in chain if isinstance(e, ExtractorError)), None)
    reason = extractor.orig_msg if extractor else str(err).removeprefix("ERROR: ")
    hoster, url = source.hoster, source.url
    details: dict[str, Any] = {"hoster": hoster, "url": url, "resolver": source.resolver}
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain) or (
        "No space left on device" in reason
    ):
        # The disk filled up mid-transfer (the size was unknown up front, as with HLS):
        # another hoster would fill the same disk, so this ends the attempt.
        return InsufficientSpaceError(
            f"the disk filled up while downloading from hoster {hoster}", details=details
        )
    local = next((e for e in chain if _local_failure(e)), None)
    if isinstance(local, OSError):
        # Not the hoster's fault: end the attempt (a retry comes with the backoff).
        where = f" {local.filename}" if local.filename is not None else " the download"
        details["errno"] = local.errno
        return TargetNotWritableError(
            f"cannot write{where}: {local.strerror or type(local).__name__}", details=details
        )
    if any(isinstance(e, UnsupportedError) for e in chain):
        if source.resolver == YTDLP:
            message = f"no resolver for hoster {hoster}: yt-dlp finds no media on {url}"
            return NoResolverError(message, details=details)
        message = f"resolver {source.resolver} gave {url}, which yt-dlp cannot download"
        return HosterUnavailableError(message, details=details)
    http = next((e for e in chain if isinstance(e, HTTPError)), None)
    if http is not None and (extracting or 400 <= http.status < 500):
        details["status"] = http.status
        message = f"hoster {hoster} answered HTTP {http.status} for {url}"
        return HosterUnavailableError(message, details=details)
    if extracting:
        return HosterUnavailableError(f"hoster {hoster} cannot be read: {reason}", details=details)
    return DownloadFailedError(f"download from hoster {hoster} failed: {reason}", details=details)


def close_abandoned(err: BaseException, final_base: Path) -> None:
    """Close the files and responses an aborted yt-dlp left open (it has no finally for them)."""
    # yt-dlp's HTTP and fragment downloaders keep their output stream and HTTP response in a
    # `ctx` dict beside `tmpfilename`; raising from a hook unwinds past it, so both stay open
    # until garbage collection (a ResourceWarning, and a socket held meanwhile).
    prefix = str(final_base) + PART_SUFFIX
    for error in error_chain(err):
        trace = error.__traceback__
        while trace is not None:
            for ctx in trace.tb_frame.f_locals.values():
                if isinstance(ctx, HTTPError) and ctx.response is not None:
                    # The failed attempt a retry notice reports (a cancel is raised there):
                    # its error response is held by the retry loop, not by a ctx.
                    with contextlib.suppress(OSError, ValueError):
                        ctx.response.close()
                    continue
                if not isinstance(ctx, dict) or not str(ctx.get("tmpfilename")).startswith(prefix):
                    continue
                for key in ("dest_stream", "stream", "data"):
                    handle = ctx.get(key)
                    if handle is not None and not getattr(handle, "closed", False):
                        with contextlib.suppress(OSError, ValueError):
                            handle.close()
            trace = trace.tb_next
