"""yt-dlp embedded in a worker thread: progress, cancellation, `.part` files, verification."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from yt_dlp.utils import DownloadCancelled, PostProcessingError, YoutubeDLError

from ..fsutil import fsync_dir, fsync_file, write_out
from .probe_gates import ProbeGates, WarmProbe
from .progress import (
    MB,
    PART_SUFFIX,
    InsufficientSpaceError,
    Progress,
    ProgressCallback,
    ProgressThrottle,
    TargetNotWritableError,
    cleanup_partials,
    progress_from_hook,
)
from .resolver import DownloadFailedError, MediaSource, NoResolverError
from .verification import find_ffprobe, verify_download
from .writeback import WriteBack
from .ytdlp_errors import close_abandoned, convert_error, error_chain
from .ytdlp_sessions import SessionPool, YtdlpSession

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

_thread_ids = itertools.count(1)
#: how often (in bytes) a transfer's .part is written to disk while it runs (writeback.py)
WRITEBACK_STEP: Final = 16 * 2**20


class _Cancelled(DownloadCancelled):  # type: ignore[misc]  # yt-dlp is untyped
    """Raised inside yt-dlp's hooks; yt-dlp lets DownloadCancelled through unwrapped."""

    msg = "download cancelled"


@dataclass(slots=True, eq=False)  # one per download: compared and hashed by identity
class _Job:
    """One download's state shared between the loop and its worker thread."""

    source: MediaSource
    final_base: Path
    loop: asyncio.AbstractEventLoop
    on_progress: ProgressCallback | None
    throttle: ProgressThrottle
    token: threading.Event = field(default_factory=threading.Event)
    space_checked: bool = False
    last: Progress | None = None
    writeback: WriteBack | None = None  # writes the .part to disk during the transfer
    written_back: int = 0  # bytes of the .part asked to be written to disk so far
    ffprobe: str | None = None  # the ffprobe that verifies the file; None: no probe
    warm: WarmProbe | None = None  # that ffprobe, started at the first bytes (probe_gates)
    device: int | None = None  # the file system of its folder
    total: int = 0  # bytes the hoster announced (0: not yet, or never, as for HLS)
    done: int = 0  # bytes fetched so far

    def check_cancelled(self) -> None:
        """Abort yt-dlp from inside a hook once the awaiting task was cancelled."""
        if self.token.is_set():
            raise _Cancelled


# The _Job a download thread works for (each download has a thread of its own).
_current = threading.local()


class DownloadThreads:
    """The download threads a queue waits for, so that its shutdown can stop waiting.

    A cancelled download ends at yt-dlp's next progress hook or retry notice; a hoster that
    stalls calls neither until the socket times out (30 s), longer than Home Assistant waits
    for an add-on to stop before it kills it (S6_KILL_GRACETIME, config.yaml's timeout).
    """

    def __init__(self) -> None:
        self._waits: set[asyncio.Future[Any]] = set()

    def add(self, wait: asyncio.Future[Any]) -> None:
        """A download thread's outcome, awaited by its task."""
        self._waits.add(wait)
        wait.add_done_callback(self._waits.discard)

    def abandon(self) -> int:
        """Stop waiting for every thread still running (at shutdown only): each awaiting task
        ends as cancelled now, and the thread, a daemon, ends with the process. Its .part
        file stays until start-up removes it, as after a kill. Returns how many."""
        waits = [wait for wait in self._waits if not wait.done()]
        for wait in waits:
            wait.cancel()
        return len(waits)


def _cancel_point(message: str) -> None:
    """Abort yt-dlp at a retry notice if this thread's download was cancelled (see
    _YtdlpLogger): there the failed attempt's response is closed, nothing else is open."""
    job: _Job | None = getattr(_current, "job", None)
    if job is not None and ". Retrying" in message:
        job.check_cancelled()


class _YtdlpLogger:
    """Routes yt-dlp's messages to logging instead of the process's stdout/stderr.

    Its retry notices are also points where a cancelled download stops: a hoster that stalls
    calls no progress hook, and yt-dlp reports each retry after a socket timeout here. A
    cancel then waited for every retry's timeout (90 s), the queue's commands behind it.
    """

    _logger = logging.getLogger("aniworld_addon.downloads")

    def debug(self, message: str) -> None:
        _cancel_point(message)
        self._logger.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        _cancel_point(message)
        self._logger.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        _cancel_point(message)
        # Said for every hoster page without a dedicated extractor: expected, not a warning here.
        level = logging.DEBUG if "generic information extractor" in message else logging.WARNING
        self._logger.log(level, "yt-dlp: %s", message)

    def error(self, message: str) -> None:
        # The failure is raised as an AppError and logged by whoever handles it.
        self._logger.debug("yt-dlp: %s", message)


class Downloader:
    """Downloads one MediaSource to `<final_base>.<ext>` atomically, in a thread of its own."""

    def __init__(
        self,
        *,
        min_free_space_mb: float = 1024,
        verify: bool = True,
        ffmpeg_location: str | None = None,
        ffprobe_path: str | None = None,
        socket_timeout_s: float = 30.0,
        retries: int = 2,
        sessions: SessionPool[YtdlpSession] | None = None,
        threads: DownloadThreads | None = None,
        probes: ProbeGates | None = None,
        clock: Callable[[], float] = time.monotonic,
        writeback_step: int = WRITEBACK_STEP,
        write_out: Callable[[str], None] = write_out,
    ) -> None:
        self.min_free_space_mb = min_free_space_mb
        self.verify = verify
        self.ffmpeg_location = ffmpeg_location
        #: None: looked up (beside ffmpeg_location, else on PATH) when a download is verified
        self.ffprobe_path = ffprobe_path
        #: also bounds how long a cancel waits when a hoster stops sending mid-transfer
        self.socket_timeout_s = socket_timeout_s
        self.retries = retries
        #: idle yt-dlp instances to reuse (the queue's); None: one per download, then closed
        self.sessions = sessions if sessions is not None else SessionPool[YtdlpSession](0)
        #: whose shutdown may stop waiting for this downloader's threads (the queue's)
        self.threads = threads
        #: where ffprobe is started ahead of need (the queue's); None: ffprobe starts cold
        self.probes = probes
        self._clock = clock
        #: the .part is written to disk during the transfer, every this many bytes, by this
        self.writeback_step = writeback_step
        self._write_out = write_out
        # Downloads in progress, for the free space each still needs (their threads' hooks)
        self._jobs: set[_Job] = set()
        self._jobs_lock = threading.Lock()

    async def download(
        self,
        source: MediaSource,
        final_base: Path,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Download `source` to `<final_base>.<ext>` and return that path; cancellable."""
        loop = asyncio.get_running_loop()
        throttle = ProgressThrottle(clock=self._clock)
        job = _Job(source, final_base, loop, on_progress, throttle)
        final, size = await _in_own_thread(lambda: self._run(job), job.token, self.threads)
        if on_progress is not None:
            speed = job.last.speed_mbps if job.last else None
            _deliver(
                on_progress, Progress(100.0, round(size / MB, 2), round(size / MB, 2), speed, 0)
            )
        return final

    def _run(self, job: _Job) -> tuple[Path, int]:
        _current.job = job
        base = job.final_base
        try:
            cleanup_partials(base)  # leftovers of an attempt that died with the process
        except OSError as err:  # a read-only folder: the one writing after it would fail too
            raise _not_writable(base.parent, err) from err
        self._check_space(base.parent, 0)
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            job.device = os.stat(base.parent).st_dev
        except OSError as err:
            raise _not_writable(base.parent, err) from err
        with self._jobs_lock:
            self._jobs.add(job)
        if self.verify:
            job.ffprobe = self.ffprobe_path or find_ffprobe(self.ffmpeg_location)
        try:
            if job.ffprobe and self.probes is not None:
                # ffprobe loads its libraries while the page is read and the file fetched.
                job.warm = self.probes.start(job.ffprobe)
            name = f"{threading.current_thread().name}-writeback"
            job.writeback = WriteBack(name, self._write_out)
            temp, ext = self._fetch(job)
            job.writeback.close()  # its last write-out ends before the fsync below begins
            job.check_cancelled()
            final = base.with_name(f"{base.name}.{ext}")

            def durable() -> None:
                try:
                    fsync_file(temp)
                except OSError as err:
                    raise _not_writable(final, err) from err

            # The fsync overlaps ffprobe, which spends most of its time loading its libraries
            # (unless a warm one did that during the transfer).
            size = verify_download(
                temp, ext, job.source, ffprobe=job.ffprobe, meanwhile=durable, warm=job.warm
            )
            job.check_cancelled()
            try:
                os.replace(temp, final)
            except OSError as err:
                raise _not_writable(final, err) from err
            fsync_dir(final.parent)
        except BaseException as err:
            close_abandoned(err, base)
            raise
        finally:
            with self._jobs_lock:
                self._jobs.discard(job)
            if job.writeback is not None:
                job.writeback.close()
            if job.warm is not None:
                job.warm.close()
            cleanup_partials(base)
        return final, size

    def _fetch(self, job: _Job) -> tuple[Path, str]:
        source = job.source
        # A literal "%" in the library path would otherwise read as a template field.
        template = str(job.final_base).replace("%", "%%") + PART_SUFFIX + ".%(ext)s"
        key = self._session_key(source.headers)
        with (
            self.sessions.borrow(
                key, lambda: YtdlpSession(self._options(source.headers))
            ) as session,
            session.lend(
                template, lambda status: self._hook(job, status), lambda _: job.check_cancelled()
            ) as ydl,
        ):
            try:
                info = ydl.extract_info(source.url, download=False, process=False)
            except _Cancelled:
                raise
            except YoutubeDLError as err:
                raise convert_error(err, source, extracting=True) from err
            job.check_cancelled()
            if not info:
                raise NoResolverError(f"no resolver for hoster {source.hoster}: nothing found")
            try:
                result = ydl.process_ie_result(info, download=True)
            except _Cancelled:
                raise
            except YoutubeDLError as err:
                if any(isinstance(e, PostProcessingError) for e in error_chain(err)):
                    self._check_room_to_remux(job.final_base, err)
                raise convert_error(err, source, extracting=False) from err
            downloaded = _requested_download(ydl.sanitize_info(result))
        if downloaded is None:
            raise DownloadFailedError(f"yt-dlp downloaded nothing from hoster {source.hoster}")
        return Path(downloaded["filepath"]), str(downloaded.get("ext") or "").lower()

    def _session_key(self, headers: Mapping[str, str]) -> Hashable:
        """Everything _options() reads: sessions made for equal keys are interchangeable."""
        return (
            tuple(sorted(headers.items())),
            *(self.retries, self.socket_timeout_s, self.ffmpeg_location),
        )

    def _options(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """A session's options, from its headers and this downloader's settings: keep
        _session_key in step with what is read here."""
        options: dict[str, Any] = {
            "quiet": True,
            "no_warnings": False,
            "noprogress": True,
            # yt-dlp formats its console progress line on every block it writes, even when it
            # prints nothing; once a second is plenty (our own hook still sees every block).
            "progress_delta": 1.0,
            "color": "no_color",
            "logger": _YtdlpLogger(),
            "http_headers": dict(headers),
            "retries": self.retries,
            "fragment_retries": self.retries,
            "extractor_retries": self.retries,
            "file_access_retries": 1,
            "socket_timeout": self.socket_timeout_s,
            # One episode per page; a page listing several videos gives its first.
            "noplaylist": True,
            "playlist_items": "1",
            "merge_output_format": "mp4",
            "concurrent_fragment_downloads": 1,
            # A retry starts from scratch: a stale .part of another hoster must never be resumed.
            "continuedl": False,
            "overwrites": True,
            "updatetime": False,
            "cachedir": False,
            # No faked X-Forwarded-For: geo restrictions are respected, not evaded.
            "geo_bypass": False,
            "writethumbnail": False,
            "writesubtitles": False,
            "writeinfojson": False,
        }
        if self.ffmpeg_location:
            options["ffmpeg_location"] = self.ffmpeg_location
        return options

    def _hook(self, job: _Job, status: Mapping[str, Any]) -> None:
        job.check_cancelled()
        if status.get("status") != "downloading":
            return
        progress = progress_from_hook(status)
        if progress is None:
            return
        total = status.get("total_bytes")
        job.done = int(status.get("downloaded_bytes") or 0)
        if not job.space_checked and isinstance(total, int) and total > 0:
            job.space_checked = True
            # The other downloads to this disk will fill it by what they still lack: each one
            # checked alone, three passed and the disk ended below the minimum.
            others = self._still_needed(job)
            self._check_space(job.final_base.parent, max(0, total - job.done) + others, others)
            job.total = total
        self._write_back(job, status)
        sendable = job.throttle.offer(progress)
        if sendable is not None:
            job.last = sendable
            if job.on_progress is not None:
                job.loop.call_soon_threadsafe(_deliver, job.on_progress, sendable)

    def _write_back(self, job: _Job, status: Mapping[str, Any]) -> None:
        """Have the .part written to disk every writeback_step bytes, so the fsync at the
        end finds little left to do (see writeback.py)."""
        done, temp = status.get("downloaded_bytes"), status.get("tmpfilename")
        if job.writeback is None or not isinstance(done, int) or not isinstance(temp, str):
            return
        if done < job.written_back:
            job.written_back = 0  # a retry starts the file over
        if done - job.written_back >= self.writeback_step:
            job.writeback.request(temp)
            job.written_back = done

    def _check_room_to_remux(self, base: Path, err: YoutubeDLError) -> None:
        """Raise InsufficientSpaceError when a failed remux (ffmpeg's copy of the fetched
        file, as for HLS) had no room for its copy: yt-dlp says only "Conversion failed!",
        and the hoster was blamed and blocklisted, the retry filling the same disk."""
        prefix = base.name + PART_SUFFIX
        try:
            sizes = [
                entry.stat(follow_symlinks=False).st_size
                for entry in os.scandir(base.parent)
                if entry.name.startswith(prefix)
            ]
            free = shutil.disk_usage(base.parent).free
        except OSError:
            return  # the error as yt-dlp gave it
        if not sizes:
            return
        needed = max(sizes)  # a second copy of the fetched file
        available = free + sum(sizes) - needed  # the copy's remains are removed
        if (available - needed) / MB >= self.min_free_space_mb:
            return
        raise InsufficientSpaceError(
            f"not enough space on {base.parent} to remux the download: {available / MB:.0f} MB"
            f" free, about {needed / MB:.0f} MB needed for the copy, minimum free is"
            f" {self.min_free_space_mb:.0f} MB",
            details={
                "path": str(base.parent),
                "free_mb": round(available / MB, 1),
                "needed_mb": round(needed / MB, 1),
                "min_free_space_mb": self.min_free_space_mb,
            },
        ) from err

    def _still_needed(self, job: _Job) -> int:
        """Bytes the other downloads to `job`'s file system still lack."""
        with self._jobs_lock:
            others = [j for j in self._jobs if j is not job and j.device == job.device]
        return sum(max(0, j.total - j.done) for j in others)

    def _check_space(self, directory: Path, needed_bytes: int, others: int = 0) -> None:
        probe = directory
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if (free - needed_bytes) / MB < self.min_free_space_mb:
            free_mb, needed_mb = free / MB, needed_bytes / MB
            what = f"{free_mb:.0f} MB free" + (
                f", {needed_mb:.0f} MB needed" if needed_bytes else ""
            )
            if others:
                what += f" ({others / MB:.0f} MB of it by other downloads running)"
            raise InsufficientSpaceError(
                f"not enough space on {probe}: {what}, minimum free is "
                f"{self.min_free_space_mb:.0f} MB",
                details={
                    "path": str(probe),
                    "free_mb": round(free_mb, 1),
                    "needed_mb": round(needed_mb, 1),
                    "needed_by_others_mb": round(others / MB, 1),
                    "min_free_space_mb": self.min_free_space_mb,
                },
            )


async def _in_own_thread(
    work: Callable[[], T], token: threading.Event, threads: DownloadThreads | None = None
) -> T:
    """Run `work` in a new thread; a cancel sets `token` and waits for the thread to end,
    unless `threads` abandons it (shutdown)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    # Marks a failure as seen even when the caller was cancelled and never looks at it.
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    if threads is not None:
        threads.add(future)

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def hand_over(outcome: Callable[[], None]) -> None:
        # A closed loop: the thread was abandoned at shutdown, and nobody waits for it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    def main() -> None:
        try:
            result = work()
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting task, which raises it
            error = err
            hand_over(lambda: future.set_exception(error))
        else:
            hand_over(lambda: future.set_result(result))

    # Daemon: a process being killed must not wait for a hoster; start-up cleans the .part files.
    name = f"aniworld-download-{next(_thread_ids)}"
    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        token.set()
        await outlive_cancellation(future)
        if not future.cancelled() and future.exception() is None:
            # The cancel came after the file landed at its final path (a slow directory
            # fsync on a NAS): it is a download, not an interrupted one. Raised, a stop set
            # the item pending and the episode was fetched again; a remove left a file the
            # library did not know.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return future.result()
        raise
    finally:
        # The result arrives a moment before the thread exits; join it off the loop. An
        # abandoned thread is not joined: it may hang on its hoster for a socket timeout.
        if not future.cancelled():
            await outlive_cancellation(loop.run_in_executor(None, thread.join))


async def outlive_cancellation(future: asyncio.Future[Any]) -> None:
    """Wait until `future` is done, even through cancellation, which is then passed on."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _not_writable(path: Path, err: OSError) -> TargetNotWritableError:
    reason = err.strerror or type(err).__name__
    return TargetNotWritableError(f"cannot write {path}: {reason}", details={"path": str(path)})


def _deliver(callback: ProgressCallback, progress: Progress) -> None:
    try:
        callback(progress)
    except Exception:  # a broken listener must not stop the download
        _LOGGER.exception("progress callback failed")


def _requested_download(info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The file yt-dlp wrote: a video's last requested download, or a playlist's first."""
    downloads = info.get("requested_downloads")
    if isinstance(downloads, list) and downloads and downloads[-1].get("filepath"):
        return dict(downloads[-1])
    for entry in info.get("entries") or ():
        if isinstance(entry, Mapping) and (found := _requested_download(entry)) is not None:
            return found
    return None
