"""What a finished attempt leaves behind: the item's new state, events, and retry timing."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..errors import AppError, ProviderError, ProviderNotFoundError, StorageError
from ..events import EventType
from .episode_job import Landed, QueueParts, label
from .progress import InsufficientSpaceError
from .queue_store import QueueItem

_LOGGER = logging.getLogger("aniworld_addon.downloads.queue")

# After a download, its bookkeeping must land even if another process holds the database for
# a while: retried with this backoff (seconds) until it does or the item is cancelled.
BOOKKEEPING_BACKOFF_S: Final = (0.25, 0.5, 1.0, 2.0, 5.0)

PublishStatus = Callable[[str, list[int]], Awaitable[None]]


class Outcomes:
    """Records how an item's attempt ended: completed, retry later, or failed for good."""

    def __init__(self, parts: QueueParts, publish_status: PublishStatus) -> None:
        self._parts = parts
        self._publish_status = publish_status

    async def until_stored(
        self, item: QueueItem, bookkeeping: Callable[[], Awaitable[None]]
    ) -> None:
        """Run an item's closing writes until they land: a file in place is never forgotten.

        A database held by another process past the busy timeout raises StorageError; the
        item would otherwise stay 'downloading' with nothing running it until a restart.
        """
        for attempt in itertools.count():
            try:
                await bookkeeping()
                return
            except StorageError as err:
                delay = BOOKKEEPING_BACKOFF_S[min(attempt, len(BOOKKEEPING_BACKOFF_S) - 1)]
                _LOGGER.warning(
                    "%s: cannot record the outcome (%s); retrying in %.2f s",
                    label(item),
                    err.message,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _series_name(self, item: QueueItem) -> str | None:
        """For the event's message only: a failed read must not repeat the bookkeeping (this
        runs after its writes, inside the block that is retried on a database error)."""
        try:
            return await self._parts.library.name_of(item.provider, item.series_key)
        except AppError:
            return None

    async def completed(
        self, item: QueueItem, landed: Landed, attempts: list[dict[str, Any]]
    ) -> None:
        path = landed.path
        await self._parts.blocklist.forget_episode(
            item.provider, item.series_key, item.season, item.episode
        )
        relative = landed.relative
        await self._parts.store.complete(
            item.id, str(path), landed.language, landed.size_mb, self._parts.clock(), attempts
        )
        await self._parts.library.mark_local(
            *(item.provider, item.series_key, item.season, item.episode, relative),
            landed.language,
            at=self._parts.clock(),
        )
        _LOGGER.info(
            "%s %s S%02dE%02d to %s",
            "Upgraded" if item.upgrade_from else "Downloaded",
            item.series_key,
            item.season,
            item.episode,
            path,
        )
        name = await self._series_name(item)
        self._parts.bus.publish(
            EventType.DOWNLOAD_COMPLETE,
            {
                "item_id": item.id,
                "provider": item.provider,
                "series_key": item.series_key,
                # for messages (the panel's toasts): people know a series by its name
                "series_name": name,
                "season": item.season,
                "episode": item.episode,
                "language": landed.language,
                "file_path": str(path),
                "size_mb": landed.size_mb,
                "upgrade_from": item.upgrade_from,
                "replaced": landed.replaced,
            },
        )
        await self._publish_status("completed", [item.id])

    async def failed(
        self, item: QueueItem, err: AppError | OSError, attempts: list[dict[str, Any]]
    ) -> None:
        message = err.message if isinstance(err, AppError) else f"file system error: {err}"
        code = err.code if isinstance(err, AppError) else "os_error"
        downloads = self._parts.settings.section("downloads")
        backoff: list[int] = downloads["retry_backoff_s"]
        # Neither a full disk nor an episode the site says it does not have (a 404: a typo in
        # the number, an episode taken down) mends itself by waiting: Retry, once it is fixed.
        retryable = not isinstance(err, InsufficientSpaceError | ProviderNotFoundError)
        will_retry = retryable and item.retry_count < int(downloads["max_retries"])
        next_at: float | None = None
        if will_retry:
            delay = float(backoff[min(item.retry_count, len(backoff) - 1)])
            if isinstance(err, ProviderError) and err.retry_after:
                delay = max(delay, err.retry_after)
            next_at = self._parts.clock() + delay
            await self._parts.store.retry_later(item.id, message, code, attempts, next_at)
        else:
            await self._parts.store.fail(item.id, message, code, attempts, self._parts.clock())
        _LOGGER.warning(
            "%s failed (%s): %s%s",
            label(item),
            code,
            message,
            f"; retry in {next_at - self._parts.clock():.0f} s" if next_at else "",
        )
        name = await self._series_name(item)
        self._parts.bus.publish(
            EventType.DOWNLOAD_FAILED,
            {
                "item_id": item.id,
                "provider": item.provider,
                "series_key": item.series_key,
                # for messages (the panel's toasts): people know a series by its name
                "series_name": name,
                "season": item.season,
                "episode": item.episode,
                # of the last hoster tried; None when none was (no hoster, a provider error)
                "language": attempts[-1].get("language") if attempts else item.language,
                "error": {"code": code, "message": message},
                "retry_count": item.retry_count + (1 if will_retry else 0),
                "will_retry": will_retry,
                "next_attempt_at": next_at,
            },
        )
        await self._publish_status("failed" if not will_retry else "retry_scheduled", [item.id])
