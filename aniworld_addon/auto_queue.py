"""What the service queues by itself: missing episodes (auto-download) and language upgrades."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from .downloads.episode_job import better_than, language_order
from .downloads.queue import DownloadQueue
from .downloads.queue_store import Priority
from .errors import AppError
from .events import EventBus, EventType
from .library.records import EpisodeRecord, SeriesRecord
from .library.service import LibraryService, new_episode
from .providers.base import Provider
from .providers.cache import TtlCache
from .settings import Settings

_LOGGER = logging.getLogger(__name__)

# Automatic downloads wait behind what a user asked for (user requests default to NORMAL).
AUTO_PRIORITY: Final = Priority.LOW

Only = Mapping[int, set[tuple[int, int]]]  # series id -> the episodes to consider
# How long a rescan trusts what an episode page said about its languages. SITE.md: a rescan
# reads no episode page; the upgrade check after it reads each candidate's page at most this
# often (as long as series and season pages are cached), however often the rescan runs.
OFFER_RECHECK_S: Final = 6 * 3600
OFFER_MEMORY: Final = 20_000  # episodes remembered; a library past that re-reads the oldest


class _Reads:
    """The failed episodes and each series' episodes, read once for queue_missing and
    queue_upgrades run one after the other.

    Sharing is sound: queue_missing only adds missing episodes, and upgrades only look at
    episodes held on disk.
    """

    def __init__(self, queue: DownloadQueue, library: LibraryService) -> None:
        self._queue = queue
        self._library = library
        self._failed: set[tuple[str, str, int, int]] | None = None
        self._episodes: dict[int, list[EpisodeRecord]] = {}

    async def failed(self) -> set[tuple[str, str, int, int]]:
        if self._failed is None:
            self._failed = await self._queue.store.failed_episodes()
        return self._failed

    async def episodes(self, series_id: int) -> list[EpisodeRecord]:
        found = self._episodes.get(series_id)
        if found is None:
            found = self._episodes[series_id] = await self._library.store.episodes(series_id)
        return found


@runtime_checkable
class _Invalidating(Protocol):
    def invalidate(self, key: str | None = None) -> None:
        """Forget cached pages of one series."""


class AutoQueue:
    """Decides which episodes to queue without anyone asking; the scheduler says when."""

    def __init__(
        self,
        *,
        settings: Settings,
        library: LibraryService,
        queue: DownloadQueue,
        bus: EventBus,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._library = library
        self._queue = queue
        self._bus = bus
        # (provider, key, season, episode) -> the languages its page offered when last read.
        self._offers: TtlCache[tuple[str, str, int, int], frozenset[str]] = TtlCache(
            OFFER_RECHECK_S, OFFER_MEMORY, clock
        )

    async def after_rescan(self, series: list[SeriesRecord], source: str) -> list[int]:
        """Missing episodes (when auto-download is on), then upgrades, from one read."""
        reads = self._reads()
        queued: list[int] = []
        if self._settings.section("scheduler")["auto_download"]:
            queued = await self.queue_missing(series, source, reads=reads)
        return queued + await self.queue_upgrades(series, source, reads=reads)

    def _reads(self) -> _Reads:
        return _Reads(self._queue, self._library)

    async def queue_missing(
        self,
        series: list[SeriesRecord],
        source: str,
        only: Only | None = None,
        *,
        reads: _Reads | None = None,
    ) -> list[int]:
        """Queue the missing episodes (of `only`, if given) that are not queued yet.

        An episode whose download failed for good is left for the user to retry, so a dead
        episode is not queued again on every rescan. Neither is a series whose provider is
        switched off or whose last refresh failed: each of its downloads would fail the same
        way, use up its retries and stay failed once the site is back. The next rescan that
        reads the series queues them.
        """
        reads = reads or self._reads()
        failed = await reads.failed()
        queued: list[int] = []
        details: list[dict[str, Any]] = []
        providers = self._library.providers
        for record in sorted(series, key=lambda s: s.name.casefold()):
            if record.provider is None or record.key is None:
                continue
            if record.provider not in providers or record.error:
                continue
            episodes = [
                (e.season, e.episode)
                for e in await reads.episodes(record.id)
                if e.on_provider
                and e.state == "missing"
                and _wanted(record, e, only)
                and (record.provider, record.key, e.season, e.episode) not in failed
            ]
            if episodes:
                # The queue picks hosters in the series' own language order, else the global one.
                queued += await self._queue.add(
                    record.provider, record.key, episodes, AUTO_PRIORITY
                )
                details.append(_detail(record, episodes))
        self._announce(source, queued, details)
        return queued

    async def check_new_episodes(self) -> dict[str, Any]:
        """Read each provider's new-episodes list once; refresh only listed library series.

        New episodes are queued when auto-download is on; a listed episode already held in a
        lesser language is queued again when upgrades are on and a better language is offered.
        """
        matched = await self._library.store.matched()
        fresh: dict[int, set[tuple[int, int]]] = {}
        upgrades: dict[int, set[tuple[int, int]]] = {}
        found: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for provider in self._library.providers:
            if not provider.supports_new_episodes:
                continue
            try:
                listed = await provider.new_episodes()
            except AppError as err:
                errors.append({"provider": provider.name, "message": err.message})
                continue
            ours = {s.key: s for s in matched if s.provider == provider.name}
            wanted: dict[str, set[tuple[int, int]]] = {}
            for new in listed:
                if new.key in ours:
                    wanted.setdefault(new.key, set()).add((new.season, new.episode))
            for key, episodes in wanted.items():
                series = ours[key]
                # A listed episode already held may have come out in a better language.
                upgrades[series.id] = episodes
                try:
                    added = await self._refresh_if_new(provider, series, episodes)
                except AppError as err:
                    errors.append({"provider": provider.name, "key": key, "message": err.message})
                    continue
                if added is None:
                    continue
                fresh[series.id] = set(added)
                found += [new_episode(series, s, e) for s, e in added]
        queued: list[int] = []
        reads = self._reads()  # after the refreshes: what they changed is read
        if found:
            self._bus.publish(
                EventType.NEW_EPISODES_FOUND, {"episodes": found, "count": len(found)}
            )
            if self._settings.section("scheduler")["auto_download"]:
                # Read again: the refreshes cleared the errors an earlier rescan left, and
                # queue_missing skips a series with one.
                now = await self._library.store.matched()
                changed = [s for s in now if s.id in fresh]
                queued = await self.queue_missing(changed, "new_episodes", fresh, reads=reads)
        held = [s for s in matched if s.id in upgrades]
        queued += await self.queue_upgrades(held, "new_episodes", upgrades, reads=reads)
        if self._settings.section("scheduler")["auto_download"]:
            queued += await self._retry_now_offered(held, upgrades)
        refreshed = sorted({s.key or "" for s in matched if s.id in fresh})
        return {"refreshed": refreshed, "new": found, "queued": len(queued), "errors": errors}

    async def _retry_now_offered(
        self, listed_series: list[SeriesRecord], listed: Only
    ) -> list[int]:
        """Retry listed episodes that failed for want of a hoster in a wanted language, once
        their page offers one. Listed again, the site has added a language: left failed, a
        dub that came after the sub was never fetched (the list names known episodes, so
        neither the refresh nor queue_missing, which skips failed ones, looked at it)."""
        by_episode = {
            (provider, key, season, episode): item_id
            for item_id, provider, key, season, episode in await self._queue.store.failed_untried()
        }
        retry: list[int] = []
        details: list[dict[str, Any]] = []
        for record in listed_series:
            assert record.provider is not None and record.key is not None
            order = language_order(record, self._settings)
            episodes: list[tuple[int, int]] = []
            for e in await self._library.store.episodes(record.id):
                item_id = by_episode.get((record.provider, record.key, e.season, e.episode))
                if (
                    item_id is not None
                    and e.state == "missing"
                    and (e.season, e.episode) in listed.get(record.id, ())
                    and await self._offered(record, e, order, reread=True)
                ):
                    retry.append(item_id)
                    episodes.append((e.season, e.episode))
            if episodes:
                details.append(_detail(record, episodes))
        retried = await self._queue.retry(retry) if retry else []
        self._announce("new_episodes", retried, details)
        return retried

    async def _refresh_if_new(
        self, provider: Provider, series: SeriesRecord, listed: set[tuple[int, int]]
    ) -> list[tuple[int, int]] | None:
        """Refresh a series whose listed episodes are not all known; None when all are known,
        else the new episodes (LibraryService.refresh)."""
        store = self._library.store
        known = {(e.season, e.episode) for e in await store.episodes(series.id) if e.on_provider}
        if listed <= known:
            return None  # nothing new: not a single request for this series
        if isinstance(provider, _Invalidating):
            provider.invalidate(series.key)  # its cached pages predate the new episode
        return await self._library.refresh(series)

    def upgrades_on(self, series: SeriesRecord) -> bool:
        """The series' own upgrade switch, else the global downloads.upgrade."""
        if series.upgrade is not None:
            return series.upgrade
        return bool(self._settings.section("downloads")["upgrade"])

    async def queue_upgrades(
        self,
        series: list[SeriesRecord],
        source: str,
        only: Only | None = None,
        *,
        reads: _Reads | None = None,
    ) -> list[int]:
        """Queue a better version of each episode held in a lesser language, once offered.

        Only files this service downloaded have a known language. Each candidate costs one
        episode page (where the site lists an episode's languages), so only series with
        upgrades on and episodes not already at their first choice are looked at. With `only`
        (the new-episodes list named these episodes) each page is read; otherwise (a rescan) a
        page read in the last OFFER_RECHECK_S is not read again.
        """
        reads = reads or self._reads()
        failed = await reads.failed()
        queued: list[int] = []
        details: list[dict[str, Any]] = []
        for record in sorted(series, key=lambda s: s.name.casefold()):
            if record.provider is None or record.key is None or not self.upgrades_on(record):
                continue
            order = language_order(record, self._settings)
            by_held: dict[str, list[tuple[int, int]]] = {}
            for e in await reads.episodes(record.id):
                held = e.local_language
                if (
                    held is None
                    or e.queue_status is not None
                    or not _wanted(record, e, only)
                    or (record.provider, record.key, e.season, e.episode) in failed
                ):
                    continue
                better = better_than(order, held)
                if better and await self._offered(record, e, better, reread=only is not None):
                    by_held.setdefault(held, []).append((e.season, e.episode))
            for held, episodes in by_held.items():
                queued += await self._queue.add(
                    record.provider, record.key, episodes, AUTO_PRIORITY, upgrade_from=held
                )
                details.append(_detail(record, episodes) | {"upgrade_from": held})
        self._announce(f"{source}:upgrade", queued, details)
        return queued

    async def _offered(
        self, series: SeriesRecord, e: EpisodeRecord, better: list[str], *, reread: bool
    ) -> bool:
        assert series.provider is not None and series.key is not None
        which = (series.provider, series.key, e.season, e.episode)
        offered = None if reread else self._offers.get(which)
        if offered is None:
            try:
                provider = self._library.providers.get(series.provider)
                links = await provider.episode_links(series.key, e.season, e.episode)
            except AppError as err:  # a page that cannot be read now is looked at next time
                _LOGGER.info(
                    "upgrade check of %s S%02dE%02d: %s",
                    series.key,
                    e.season,
                    e.episode,
                    err.message,
                )
                return False
            offered = frozenset(language.value for language in links.languages)
            self._offers.put(which, offered)
        return not offered.isdisjoint(better)

    def _announce(self, source: str, queued: list[int], details: list[dict[str, Any]]) -> None:
        if queued:
            data = {"source": source, "item_ids": queued, "count": len(queued), "series": details}
            self._bus.publish(EventType.AUTO_DOWNLOAD_QUEUED, data)


def _wanted(series: SeriesRecord, episode: EpisodeRecord, only: Only | None) -> bool:
    return only is None or (episode.season, episode.episode) in only.get(series.id, ())


def _detail(series: SeriesRecord, episodes: list[tuple[int, int]]) -> dict[str, Any]:
    pairs = [{"season": s, "episode": e} for s, e in episodes]
    return {"provider": series.provider, "series_key": series.key, "episodes": pairs}
