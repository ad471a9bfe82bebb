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

from ..errors import AppError, ConflictError, StorageError
from ..events import EventBus, EventType
from ..library.store import LibraryStore
from ..providers.live import LiveProviders
from ..settings import Settings
from .blocklist import Blocklist
from .downloader import DownloadThreads, outlive_cancellation
from .episode_job import (
    AllHostersFailedError,
    EpisodeJob,
    NoCandidatesError,
    QueueParts,
    label,
)
from .outcomes import BOOKKEEPING_BACKOFF_S, Outcomes
from .ownership import QueueLock
from .probe_gates import ProbeGates
from .progress import Progress, cleanup_partials
from .queue_snapshot import QueueSnapshot, status_body, status_head, status_lists
from .queue_store import Priority, QueueItem, QueueStore
from .resolver import Resolver
from .ytdlp_sessions import SessionPool, YtdlpSession

_LOGGER = logging.getLogger("aniworld_addon.downloads.queue")

STATE_KEY: Final = "queue_state"
#: yt-dlp instances kept for reuse between downloads (see ytdlp_sessions)
MAX_IDLE_SESSIONS: Final = 4
#: how often a process waiting for the queue's lock tries again
LOCK_RETRY_S: Final = 1.0
#: how often an idle dispatcher looks for items another process (a CLI run) queued
OTHERS_POLL_S: Final = 10.0
# How long a shutdown waits for cancelled downloads to end by themselves. One that does not
# (a stalled hoster holds its thread until the socket timeout, 30 s) is abandoned: Home
# Assistant kills an add-on 15 s after asking it to stop (S6_KILL_GRACETIME), and aiohttp
# may have taken 10 of them to end open requests.
SHUTDOWN_GRACE_S: Final = 3.0


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
        self.blocklist = blocklist
        self._settings = settings
        self._bus = bus
        self.clock = clock
        self._ytdlp = SessionPool[YtdlpSession](MAX_IDLE_SESSIONS)
        self._probes = ProbeGates()
        self._threads = DownloadThreads()
        parts = QueueParts(
            *(store, library, providers, resolver, blocklist, settings, bus, root),
            *(self._ytdlp, self._probes, self._threads, clock),
        )
        self._job = EpisodeJob(parts)
        self._outcomes = Outcomes(parts, self._publish_status)
        self.running = True
        self.paused = False
        self._active: dict[int, asyncio.Task[None]] = {}
        # The newest task of each episode: a cancelled one may still be ending (its thread
        # waits on a stalled hoster) when the episode is queued and started again.
        self._episodes: dict[tuple[str, str, int, int], asyncio.Task[None]] = {}
        self._progress: dict[int, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._waiter: asyncio.Task[None] | None = None  # for the queue's lock
        self._lock: QueueLock | None = None
        # Launching and the commands that cancel (stop, remove) take turns: a command that ran
        # between two launches would miss the second, which then downloads unseen.
        self._turn = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start_up(
        self, lock: QueueLock | None = None, *, wait: bool = True, run: bool = True
    ) -> None:
        """Restore running/paused; then, with `run`, run the queue if this process may: with
        the queue's lock (or no lock given) recover from a crash and start the dispatcher.
        While another process holds it: with `wait`, take over once that process lets go
        (the service); without, only read and add (a CLI run)."""
        state = await self._library.meta(STATE_KEY)
        if isinstance(state, dict):
            self.running = bool(state.get("running", True))
            self.paused = bool(state.get("paused", False))
        if not run:
            return
        self._lock = lock
        if lock is None or await asyncio.to_thread(lock.try_acquire):
            await self._take_over()
        elif wait:
            # A command line says in its own words what it does meanwhile (cli.download).
            _LOGGER.log(
                logging.WARNING if lock.holder == "service" else logging.DEBUG,
                "another process runs the download queue (it holds %s); downloads start here"
                " once it ends",
                lock.path,
            )
            self._waiter = asyncio.get_running_loop().create_task(
                self._wait_for(lock), name="queue-lock"
            )

    @property
    def dispatching(self) -> bool:
        """True when this process runs the queue (starts downloads)."""
        return self._dispatcher is not None

    async def owner(self) -> tuple[str, int] | None:
        """What runs the queue, as its lock file says: ("service" | "cli", process id)."""
        lock = self._lock
        return None if lock is None else await asyncio.to_thread(lock.held_by)

    async def _wait_for(self, lock: QueueLock) -> None:
        # Polled: another process's flock signals nothing here, and a blocking flock would
        # hold a thread that no shutdown can cancel.
        while not await asyncio.to_thread(lock.try_acquire):  # noqa: ASYNC110
            await asyncio.sleep(LOCK_RETRY_S)
        _LOGGER.info("the other process let go of the download queue; running it here")
        await self._take_over()

    async def _take_over(self) -> None:
        """Recover what a crash left (no other process runs the queue), then dispatch."""
        interrupted = await self.store.interrupted()
        for item in interrupted:
            if item.part_base:
                try:
                    await asyncio.to_thread(cleanup_partials, Path(item.part_base))
                except OSError as err:
                    # a library remounted read-only or gone since the crash: the service must
                    # start all the same; the next attempt clears the folder before it writes
                    _LOGGER.warning("cannot remove the partial files of item %d: %s", item.id, err)
        # ffprobes a killed process left waiting for downloads that died with it.
        await asyncio.to_thread(self._probes.sweep)
        await self.store.back_to_pending(i.id for i in interrupted)
        if interrupted:
            _LOGGER.info("%d interrupted downloads are pending again", len(interrupted))
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._dispatch(), name="queue-dispatcher"
        )

    async def close(self) -> None:
        """Stop dispatching; running downloads are cancelled and left pending."""
        for task in (self._waiter, self._dispatcher):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:  # its failure is logged here; the rest of close must run
                    _LOGGER.exception("queue: %s had failed", task.get_name())
        cancelled, tasks = self._stop_tasks(list(self._active))
        if tasks:
            stuck = (await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S))[1]
            if stuck and (abandoned := self._threads.abandon()):
                _LOGGER.warning(
                    "queue: %d download(s) did not stop within %g s (a hoster that stalls):"
                    " they end with the process, and start-up removes their partial files",
                    abandoned,
                    SHUTDOWN_GRACE_S,
                )
                # Left 'downloading', as after a kill: start-up recovery removes the .part of
                # those items only, then queues them again.
                cancelled = [
                    i for i, task in zip(cancelled, tasks, strict=True) if task not in stuck
                ]
        await self._ended(cancelled, tasks)
        await asyncio.to_thread(self._ytdlp.close)  # idle ones; the others' when handed back
        if self._lock is not None:
            await asyncio.to_thread(self._lock.release)

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
            try:
                if self.running and not self.paused:
                    timeout = await self._dispatch_once()
            except StorageError as err:  # locked by someone else, a full disk: try again
                _LOGGER.warning("queue: cannot read the queue (%s); retrying", err.message)
                timeout = BOOKKEEPING_BACKOFF_S[-1]
            except Exception:  # a bug must not end the dispatcher: the queue would stand still
                _LOGGER.exception("queue: dispatching failed; retrying")
                timeout = BOOKKEEPING_BACKOFF_S[-1]
            # items a CLI run queued reach no wake() here: look again now and then
            timeout = OTHERS_POLL_S if timeout is None else min(timeout, OTHERS_POLL_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _dispatch_once(self) -> float | None:
        """Start what fits; the seconds until the next backoff ends (None: nothing waits)."""
        started: list[int] = []
        async with self._turn:
            while self.running and not self.paused and len(self._active) < self._max_concurrent():
                item = await self.store.next_pending(self.clock())
                if item is None:
                    break
                if await self._launch(item):
                    started.append(item.id)
        if started:  # pending and active counts changed: MQTT's queue state shows them
            await self._publish_status("started", started)
        upcoming = await self.store.next_wakeup(self.clock())
        return None if upcoming is None else max(0.0, upcoming - self.clock())

    async def _launch(self, item: QueueItem) -> bool:
        if item.id in self._active or not await self.store.claim(item.id, self.clock()):
            return False
        self._progress[item.id] = {}
        episode = (item.provider, item.series_key, item.season, item.episode)
        before = self._episodes.get(episode)
        task = asyncio.get_running_loop().create_task(
            self._run(item, before), name=f"download:{item.id}"
        )
        self._active[item.id] = task
        self._episodes[episode] = task
        task.add_done_callback(functools.partial(self._finished, item.id, episode))
        return True

    def _finished(
        self, item_id: int, episode: tuple[str, str, int, int], task: asyncio.Task[None]
    ) -> None:
        if self._active.get(item_id) is task:  # never a later task of the same item
            del self._active[item_id]
            self._progress.pop(item_id, None)
        if self._episodes.get(episode) is task:
            del self._episodes[episode]
        self._wake.set()

    def _stop_tasks(self, item_ids: Sequence[int]) -> tuple[list[int], list[asyncio.Task[None]]]:
        """Cancel the running downloads among item_ids: the ids and the tasks, still ending."""
        cancelled = [i for i in item_ids if i in self._active]
        tasks = [self._active[i] for i in cancelled]
        for task in tasks:
            task.cancel()
        return cancelled, tasks

    async def _ended(self, cancelled: list[int], tasks: list[asyncio.Task[None]]) -> None:
        """Wait until cancelled downloads' threads and temp files are gone; pending again."""
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.store.back_to_pending(cancelled)

    # --- one download ------------------------------------------------------------------------

    async def _run(self, item: QueueItem, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            # The episode's cancelled download may still write its .part (and remove it when
            # its thread ends): the same file names, so this one starts after that. Cancelled
            # while it waits, it still ends only after that one: the next download of the
            # episode waits for this task alone.
            await outlive_cancellation(before)
        attempts: list[dict[str, Any]] = list(item.attempts)
        try:
            landed = await self._job.run(item, attempts, self._on_progress)
        except asyncio.CancelledError:
            raise
        except (AppError, OSError) as err:
            failure: AppError | OSError = err
            await self._outcomes.until_stored(
                item, lambda: self._outcomes.failed(item, failure, attempts)
            )
            return
        except Exception as err:  # the outermost edge of a download task: log and fail it
            _LOGGER.exception("%s: unexpected error", label(item))
            internal = AppError(f"internal error: {type(err).__name__}: {err}")
            await self._outcomes.until_stored(
                item, lambda: self._outcomes.failed(item, internal, attempts)
            )
            return
        try:
            await self._outcomes.until_stored(
                item, lambda: self._outcomes.completed(item, landed, attempts)
            )
        except Exception as err:  # never leave the item 'downloading' with nothing running it
            _LOGGER.exception("%s: recording the finished download failed", label(item))
            unrecorded = AppError(f"internal error recording {landed.path}: {err}")
            await self._outcomes.until_stored(
                item, lambda: self._outcomes.failed(item, unrecorded, attempts)
            )

    def _on_progress(self, item: QueueItem, progress: Progress) -> None:
        data = progress.to_dict()
        if item.id in self._progress:
            self._progress[item.id] = data
        self._bus.publish(
            EventType.DOWNLOAD_PROGRESS,
            {
                "item_id": item.id,
                "provider": item.provider,
                "series_key": item.series_key,
                "season": item.season,
                "episode": item.episode,
                "progress": data,
            },
        )

    # --- commands ----------------------------------------------------------------------------

    async def add(
        self,
        provider: str,
        key: str,
        episodes: Sequence[tuple[int, int]],
        priority: Priority,
        *,
        upgrade_from: str | None = None,
    ) -> list[int]:
        """Queue episodes of a series in the library; already queued ones keep their item."""
        await self._library.by_key(key, provider)
        new, every, raised = await self.store.add(
            provider, key, episodes, priority, self.clock(), upgrade_from=upgrade_from
        )
        if new:
            await self._publish_status("added", new)
        if raised:
            await self._publish_status("reprioritized", raised)
        if new or raised:
            self.wake()
        return every

    async def remove(self, item_ids: Sequence[int]) -> int:
        """Cancel (if running) and delete items."""
        async with self._turn:
            _, ending = self._stop_tasks(item_ids)
            removed = await self.store.delete(item_ids)
        # Waited for outside the queue's turn: a thread on a stalled hoster ends only with its
        # socket timeout, and pause, stop and the dispatcher waited behind it for minutes.
        await asyncio.gather(*ending, return_exceptions=True)
        await self._publish_status("removed", list(item_ids))
        return removed

    async def set_state(self, *, running: bool | None = None, paused: bool | None = None) -> None:
        """start/stop/pause/resume, persisted so they survive a restart."""
        cancelled: tuple[list[int], list[asyncio.Task[None]]] = ([], [])
        async with self._turn:
            # Stored first: a write that fails (the database locked or its disk full) is a
            # 503, and then the queue must be as it was, not paused here and running after
            # a restart, unannounced, with a stop's downloads still running.
            state = {
                "running": self.running if running is None else running,
                "paused": self.paused if paused is None else paused,
            }
            await self._library.set_meta(STATE_KEY, state)
            self.running, self.paused = state["running"], state["paused"]
            if running is False:  # stop: running items go back to pending
                cancelled = self._stop_tasks(list(self._active))
        await self._ended(*cancelled)  # outside the turn, as in remove()
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
        pending = await self.store.pending_ids()
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
        """GET /api/queue/status as objects (the panel, MQTT, the CLI)."""
        snapshot = await self.store.snapshot()
        return {**self._status_head(snapshot), **status_lists(snapshot)}

    async def overview(self) -> tuple[dict[str, Any], QueueSnapshot]:
        """The status without the stored lists (flags, running items, stats), and the snapshot
        whose groups hold every item: for views that show a slice of each list."""
        snapshot = await self.store.snapshot()
        return self._status_head(snapshot), snapshot

    async def status_head(self) -> dict[str, Any]:
        """The status without the stored lists: flags, the running items, stats."""
        return (await self.overview())[0]

    async def status_json(self) -> bytes:
        """GET /api/queue/status as JSON: unchanged lists come serialized from the snapshot."""
        snapshot = await self.store.snapshot()
        return status_body(snapshot, self._status_head(snapshot))

    def _status_head(self, snapshot: QueueSnapshot) -> dict[str, Any]:
        return status_head(
            snapshot,
            running=self.running,
            paused=self.paused,
            progress=self._progress,
            max_concurrent=self._max_concurrent(),
        )

    async def _publish_status(self, action: str, item_ids: list[int]) -> None:
        self._bus.publish(
            EventType.QUEUE_STATUS, {"action": action, "item_ids": item_ids, **await self.summary()}
        )

    def on_settings_change(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """max_concurrent applies live: more slots start items at once."""
        if old["downloads"] != new["downloads"] or old["languages"] != new["languages"]:
            self.wake()


__all__ = ["AllHostersFailedError", "DownloadQueue", "NoCandidatesError"]
