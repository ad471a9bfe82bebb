"""The download queue: ordering, workers, start/stop/pause, retries with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ..errors import AppError, ConflictError, ProviderError
from ..events import EventBus, EventType
from ..library.naming import final_episode_path
from ..library.store import LibraryStore
from ..providers.base import Language
from ..providers.live import LiveProviders
from ..settings import Settings
from .blocklist import Blocklist
from .progress import InsufficientSpaceError, Progress, cleanup_partials
from .queue_store import Priority, QueueItem, QueueStore
from .resolver import Candidate, DownloadFailedError, Resolver

_LOGGER = logging.getLogger("aniworld_addon.downloads.queue")

STATE_KEY: Final = "queue_state"
# The name the template renders gets this placeholder extension; the downloader picks the
# real one from the media, so it is stripped again before the download.
_PLACEHOLDER_EXT: Final = "mkv"


class NoCandidatesError(DownloadFailedError):
    """No hoster offers the episode in any wanted language (it may appear later)."""

    code = "no_hoster"


class AllHostersFailedError(DownloadFailedError):
    """Every hoster in every wanted language failed; the attempts say why."""

    code = "all_hosters_failed"


class DownloadQueue:
    """Owns the dispatcher task and one task per running download."""

    def __init__(
        self,
        store: QueueStore,
        library: LibraryStore,
        providers: LiveProviders,
        resolver: Resolver,
        blocklist: Blocklist,
        settings: Settings,
        bus: EventBus,
        root: Callable[[], Path],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._library = library
        self._providers = providers
        self._resolver = resolver
        self.blocklist = blocklist
        self._settings = settings
        self._bus = bus
        self._root = root
        self.clock = clock
        self.running = True
        self.paused = False
        self._active: dict[int, asyncio.Task[None]] = {}
        self._progress: dict[int, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start_up(self) -> None:
        """Recover from a crash, restore running/paused, start the dispatcher."""
        interrupted = await self.store.interrupted()
        for item in interrupted:
            if item.part_base:
                await asyncio.to_thread(cleanup_partials, Path(item.part_base))
        await self.store.back_to_pending(i.id for i in interrupted)
        if interrupted:
            _LOGGER.info("%d interrupted downloads are pending again", len(interrupted))
        state = await self._library.meta(STATE_KEY)
        if isinstance(state, dict):
            self.running = bool(state.get("running", True))
            self.paused = bool(state.get("paused", False))
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._dispatch(), name="queue-dispatcher"
        )

    async def close(self) -> None:
        """Stop dispatching; running downloads are cancelled and left pending."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        await self._cancel(list(self._active))

    def wake(self) -> None:
        """Re-check the queue now (new items, settings changed, time advanced in tests)."""
        self._wake.set()

    # --- dispatching -------------------------------------------------------------------------

    def _max_concurrent(self) -> int:
        return int(self._settings.section("downloads")["max_concurrent"])

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            timeout: float | None = None
            if self.running and not self.paused:
                while len(self._active) < self._max_concurrent():
                    item = await self.store.next_pending(self.clock())
                    if item is None:
                        break
                    await self._launch(item)
                upcoming = await self.store.next_wakeup(self.clock())
                if upcoming is not None:
                    timeout = max(0.0, upcoming - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _launch(self, item: QueueItem) -> None:
        if not await self.store.claim(item.id, self.clock()):
            return
        self._progress[item.id] = {}
        task = asyncio.get_running_loop().create_task(self._run(item), name=f"download:{item.id}")
        self._active[item.id] = task
        task.add_done_callback(functools.partial(self._finished, item.id))

    def _finished(self, item_id: int, _task: asyncio.Task[None]) -> None:
        self._active.pop(item_id, None)
        self._progress.pop(item_id, None)
        self._wake.set()

    async def _cancel(self, item_ids: Sequence[int]) -> list[int]:
        """Cancel running downloads and wait until their threads and temp files are gone."""
        cancelled = [i for i in item_ids if i in self._active]
        tasks = [self._active[i] for i in cancelled]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.store.back_to_pending(cancelled)
        return cancelled

    # --- one download ------------------------------------------------------------------------

    async def _run(self, item: QueueItem) -> None:
        attempts: list[dict[str, Any]] = list(item.attempts)
        try:
            path, language, size_mb = await self._download(item, attempts)
        except asyncio.CancelledError:
            raise
        except (AppError, OSError) as err:
            await self._failed(item, err, attempts)
            return
        except Exception as err:  # the outermost edge of a download task: log and fail it
            _LOGGER.exception("%s: unexpected error", _label(item))
            await self._failed(
                item, AppError(f"internal error: {type(err).__name__}: {err}"), attempts
            )
            return
        relative = path.relative_to(self._root()).as_posix()
        await self.store.complete(item.id, str(path), language, size_mb, self.clock(), attempts)
        await self._library.mark_local(
            item.provider, item.series_key, item.season, item.episode, relative
        )
        _LOGGER.info(
            "Downloaded %s S%02dE%02d to %s", item.series_key, item.season, item.episode, path
        )
        self._bus.publish(
            EventType.DOWNLOAD_COMPLETE,
            {
                "item_id": item.id,
                "series_key": item.series_key,
                "season": item.season,
                "episode": item.episode,
                "language": language,
                "file_path": str(path),
                "size_mb": size_mb,
            },
        )
        await self._publish_status("completed", [item.id])

    async def _download(
        self, item: QueueItem, attempts: list[dict[str, Any]]
    ) -> tuple[Path, str, float]:
        series = await self._library.by_key(item.series_key, item.provider)
        provider = self._providers.registry.get(item.provider)
        wanted = [Language(v) for v in (series.languages or self._settings.section("languages"))]
        offered = await self._resolver.candidates(
            provider, item.series_key, item.season, item.episode, wanted
        )
        # The blocklist is for the next time an episode is queued: an item's own retries
        # still try every link, so max_retries keeps its meaning.
        blocked = (
            await self.blocklist.blocked_links(
                item.provider, item.series_key, item.season, item.episode
            )
            if item.retry_count == 0
            else set()
        )
        candidates = [c for c in offered if c.link.redirect_url not in blocked]
        if not candidates:
            languages = ", ".join(v.value for v in wanted)
            reason = (
                f"every hoster offering it in {languages} is on the blocklist"
                if offered
                else f"no hoster offers this episode in {languages}"
            )
            raise NoCandidatesError(reason, details={"languages": [v.value for v in wanted]})
        title = await self._library.episode_title(series.id, item.season, item.episode)
        downloads = self._settings.section("downloads")
        from .downloader import Downloader

        downloader = Downloader(
            min_free_space_mb=downloads["min_free_space_mb"], verify=downloads["verify"]
        )
        for candidate in candidates:
            # Rendering resolves symlinks to prove confinement: file-system work, off the loop.
            base = await asyncio.to_thread(
                self._target_base,
                series.folder,
                series.name,
                series.year,
                item,
                title,
                candidate,
                downloads["episode_path"],
            )
            await self.store.set_part_base(item.id, str(base), candidate.language.value)
            try:
                source = await self._resolver.resolve(provider, candidate)
                self._bus.publish(
                    EventType.DOWNLOAD_STARTED,
                    {
                        "item_id": item.id,
                        "provider": item.provider,
                        "series_key": item.series_key,
                        "season": item.season,
                        "episode": item.episode,
                        "language": candidate.language.value,
                        "hoster": candidate.hoster,
                    },
                )
                path = await downloader.download(
                    source, base, on_progress=functools.partial(self._on_progress, item)
                )
            except DownloadFailedError as err:
                attempts.append(_attempt(candidate, err, self.clock()))
                _LOGGER.info("%s: %s failed: %s", _label(item), candidate, err.message)
                if not err.next_candidate:
                    raise
                await self._count_failure(item, candidate, err, downloads["max_retries"])
                continue
            await self.blocklist.forget_episode(
                item.provider, item.series_key, item.season, item.episode
            )
            size_mb = round((await asyncio.to_thread(path.stat)).st_size / 2**20, 2)
            return path, candidate.language.value, size_mb
        raise AllHostersFailedError(
            f"all {len(candidates)} hosters failed; last: {attempts[-1]['message']}",
            details={"attempts": attempts[-len(candidates) :]},
        )

    async def _count_failure(
        self, item: QueueItem, candidate: Candidate, err: AppError, threshold: int
    ) -> None:
        blocked = await self.blocklist.record_failure(
            provider=item.provider,
            key=item.series_key,
            season=item.season,
            episode=item.episode,
            hoster=candidate.hoster,
            language=candidate.language.value,
            link=candidate.link.redirect_url,
            reason=err.message,
            threshold=threshold,
            now=self.clock(),
        )
        if blocked:
            _LOGGER.info("%s: %s is blocklisted for this episode", _label(item), candidate)

    def _target_base(
        self,
        folder: str,
        name: str,
        year: int | None,
        item: QueueItem,
        title: str | None,
        candidate: Candidate,
        template: str,
    ) -> Path:
        path = final_episode_path(
            self._root(),
            folder,
            template,
            series_title=name,
            year=year,
            season=item.season,
            episode=item.episode,
            episode_title=title or "",
            language=candidate.language.value,
            ext=_PLACEHOLDER_EXT,
        )
        return path.with_name(path.name[: -len(_PLACEHOLDER_EXT) - 1])

    def _on_progress(self, item: QueueItem, progress: Progress) -> None:
        data = progress.to_dict()
        if item.id in self._progress:
            self._progress[item.id] = data
        self._bus.publish(
            EventType.DOWNLOAD_PROGRESS,
            {
                "item_id": item.id,
                "series_key": item.series_key,
                "season": item.season,
                "episode": item.episode,
                "progress": data,
            },
        )

    async def _failed(
        self, item: QueueItem, err: AppError | OSError, attempts: list[dict[str, Any]]
    ) -> None:
        message = err.message if isinstance(err, AppError) else f"file system error: {err}"
        code = err.code if isinstance(err, AppError) else "os_error"
        downloads = self._settings.section("downloads")
        backoff: list[int] = downloads["retry_backoff_s"]
        retryable = not isinstance(err, InsufficientSpaceError)
        will_retry = retryable and item.retry_count < int(downloads["max_retries"])
        next_at: float | None = None
        if will_retry:
            delay = float(backoff[min(item.retry_count, len(backoff) - 1)])
            if isinstance(err, ProviderError) and err.retry_after:
                delay = max(delay, err.retry_after)
            next_at = self.clock() + delay
            await self.store.retry_later(item.id, message, attempts, next_at)
        else:
            await self.store.fail(item.id, message, attempts, self.clock())
        _LOGGER.warning(
            "%s failed (%s): %s%s",
            _label(item),
            code,
            message,
            f"; retry in {next_at - self.clock():.0f} s" if next_at else "",
        )
        self._bus.publish(
            EventType.DOWNLOAD_FAILED,
            {
                "item_id": item.id,
                "series_key": item.series_key,
                "season": item.season,
                "episode": item.episode,
                "error": {"code": code, "message": message},
                "retry_count": item.retry_count + (1 if will_retry else 0),
                "will_retry": will_retry,
                "next_attempt_at": next_at,
            },
        )
        await self._publish_status("failed" if not will_retry else "retry_scheduled", [item.id])

    # --- commands ----------------------------------------------------------------------------

    async def add(
        self, provider: str, key: str, episodes: Sequence[tuple[int, int]], priority: Priority
    ) -> list[int]:
        """Queue episodes of a series in the library; already queued ones keep their item."""
        await self._library.by_key(key, provider)
        new, every = await self.store.add(provider, key, episodes, priority, self.clock())
        if new:
            await self._publish_status("added", new)
            self.wake()
        return every

    async def remove(self, item_ids: Sequence[int]) -> int:
        """Cancel (if running) and delete items."""
        await self._cancel([i for i in item_ids if i in self._active])
        removed = await self.store.delete(item_ids)
        await self._publish_status("removed", list(item_ids))
        return removed

    async def set_state(self, *, running: bool | None = None, paused: bool | None = None) -> None:
        """start/stop/pause/resume, persisted so they survive a restart."""
        if running is not None:
            self.running = running
        if paused is not None:
            self.paused = paused
        await self._library.set_meta(STATE_KEY, {"running": self.running, "paused": self.paused})
        if running is False:
            await self._cancel(list(self._active))  # stop: running items go back to pending
        event = {
            (True, None): EventType.QUEUE_STARTED,
            (False, None): EventType.QUEUE_STOPPED,
            (None, True): EventType.QUEUE_PAUSED,
            (None, False): EventType.QUEUE_RESUMED,
        }[(running, paused)]
        self._bus.publish(event, await self.summary())
        self.wake()

    async def reorder(self, item_ids: Sequence[int]) -> None:
        """New order of pending items."""
        await self.store.reorder(item_ids)
        await self._publish_status("reordered", list(item_ids))

    async def move(self, item_id: int, new_position: int) -> None:
        """Move one pending item to a 1-based position."""
        pending = [i.id for i in await self.store.all() if i.status == "pending"]
        if item_id not in pending:
            await self.store.get(item_id)  # 404 for an unknown id
            raise ConflictError("only pending items can be moved", details={"id": item_id})
        pending.remove(item_id)
        pending.insert(max(0, min(new_position - 1, len(pending))), item_id)
        await self.reorder(pending)

    async def clear(self, status: str) -> list[int]:
        """Remove every completed or failed item."""
        ids = await self.store.delete_status(status)
        await self._publish_status(f"cleared_{status}", ids)
        return ids

    async def retry(self, item_ids: Sequence[int]) -> list[int]:
        """Failed items back to pending with a fresh retry budget."""
        ids = await self.store.retry(item_ids)
        await self._publish_status("retry", ids)
        self.wake()
        return ids

    # --- status ------------------------------------------------------------------------------

    async def items(self) -> list[QueueItem]:
        """Every item, with live progress on the running ones."""
        items = await self.store.all()
        for item in items:
            live = self._progress.get(item.id)
            if live:
                item.progress = live
        return items

    async def summary(self) -> dict[str, Any]:
        """Counts and flags (MQTT state, queue_status events)."""
        counts = await self.store.counts()
        return {
            "is_running": self.running,
            "is_paused": self.paused,
            "pending": counts["pending"],
            "active": counts["downloading"],
            "completed": counts["completed"],
            "failed": counts["failed"],
        }

    async def status(self) -> dict[str, Any]:
        """GET /api/queue/status."""
        items = await self.items()
        groups: dict[str, list[dict[str, Any]]] = {
            "downloading": [],
            "pending": [],
            "completed": [],
            "failed": [],
            "cancelled": [],
        }
        for item in items:
            groups[item.status].append(item.to_dict())
        speeds = [i["progress"].get("speed_mbps") or 0.0 for i in groups["downloading"]]
        return {
            "is_running": self.running,
            "is_paused": self.paused,
            "active_downloads": groups["downloading"],
            "pending_queue": groups["pending"],
            "completed_downloads": groups["completed"],
            "failed_downloads": groups["failed"],
            "stats": {
                "pending": len(groups["pending"]),
                "active": len(groups["downloading"]),
                "completed": len(groups["completed"]),
                "failed": len(groups["failed"]),
                "downloaded_mb": round(await self.store.completed_mb(), 2),
                "current_speed_mbps": round(sum(speeds), 3),
                "max_concurrent": self._max_concurrent(),
            },
        }

    async def _publish_status(self, action: str, item_ids: list[int]) -> None:
        self._bus.publish(
            EventType.QUEUE_STATUS, {"action": action, "item_ids": item_ids, **await self.summary()}
        )

    def on_settings_change(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """max_concurrent applies live: more slots start items at once."""
        if old["downloads"] != new["downloads"] or old["languages"] != new["languages"]:
            self.wake()


def _attempt(candidate: Candidate, err: AppError, now: float) -> dict[str, Any]:
    return {
        "hoster": candidate.hoster,
        "language": candidate.language.value,
        "code": err.code,
        "message": err.message,
        "at": now,
    }


def _label(item: QueueItem) -> str:
    return f"{item.series_key} S{item.season:02d}E{item.episode:02d} (item {item.id})"
