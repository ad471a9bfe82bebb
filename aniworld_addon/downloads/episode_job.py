"""One queued episode's download: hosters in language order, one after another, then upgrades.

The queue (queue.py) decides *when* an item runs; this module decides *what* it fetches and
where the file lands, including an upgrade's swap of an older file for a better language.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..errors import AppError, PathOutsideLibraryError
from ..events import EventBus, EventType
from ..fsutil import fsync_dir
from ..library.naming import confine, final_episode_path
from ..library.records import SeriesRecord
from ..library.store import LibraryStore
from ..providers.base import Language
from ..providers.live import LiveProviders
from ..settings import Settings
from .blocklist import Blocklist
from .probe_gates import ProbeGates
from .progress import Progress, SeriesFolderMissingError
from .queue_store import QueueItem, QueueStore
from .resolver import Candidate, DownloadFailedError, Resolver
from .ytdlp_sessions import SessionPool, YtdlpSession

if TYPE_CHECKING:  # downloader imports yt-dlp: loaded with the first download
    from .downloader import DownloadThreads

_LOGGER = logging.getLogger("aniworld_addon.downloads.queue")

# The name the template renders gets this placeholder extension; the downloader picks the
# real one from the media, so it is stripped again before the download.
_PLACEHOLDER_EXT: Final = "mkv"


class NoCandidatesError(DownloadFailedError):
    """No hoster offers the episode in any wanted language (it may appear later)."""

    code = "no_hoster"


class AllHostersFailedError(DownloadFailedError):
    """Every hoster in every wanted language failed; the attempts say why."""

    code = "all_hosters_failed"


@dataclass(slots=True, frozen=True)
class Landed:
    """A verified file at its final path, and what it replaced (an upgrade)."""

    path: Path
    language: str
    size_mb: float
    replaced: str | None = None  # library-relative path of the file the upgrade removed
    #: path relative to the library folder the download started in (the setting may change)
    relative: str = ""


def language_order(series: SeriesRecord, settings: Settings) -> list[str]:
    """The series' own language order, else the global one."""
    return list(series.languages or settings.section("languages"))


def better_than(order: list[str], held: str) -> list[str]:
    """The languages of `order` preferred to `held` (all of them when the order lacks it)."""
    return order[: order.index(held)] if held in order else order


def wanted_languages(series: SeriesRecord, settings: Settings, item: QueueItem) -> list[Language]:
    """The series' language order; for an upgrade only the languages better than the held one."""
    order = language_order(series, settings)
    if item.upgrade_from is not None:
        order = better_than(order, item.upgrade_from)
    return [Language(v) for v in order]


@dataclass(slots=True, frozen=True)
class QueueParts:
    """What the queue's pieces share: its tables, the library, the sites, settings, events."""

    store: QueueStore
    library: LibraryStore
    providers: LiveProviders
    resolver: Resolver
    blocklist: Blocklist
    settings: Settings
    bus: EventBus
    root: Callable[[], Path]  # the library folder (it can change with the settings)
    ytdlp: SessionPool[YtdlpSession]  # idle yt-dlp instances, closed with the queue
    probes: ProbeGates  # where ffprobe waits for downloads to finish, swept at start-up
    threads: DownloadThreads  # the download threads, which a shutdown stops waiting for
    clock: Callable[[], float] = time.time


class EpisodeJob:
    """Downloads one queue item; everything it needs comes from the queue that owns it."""

    def __init__(self, parts: QueueParts) -> None:
        self._parts = parts

    async def run(
        self,
        item: QueueItem,
        attempts: list[dict[str, Any]],
        on_progress: Callable[[QueueItem, Progress], None],
    ) -> Landed:
        """Try every candidate until one lands; raises the error that ends the attempt."""
        series = await self._parts.library.by_key(item.series_key, item.provider)
        provider = self._parts.providers.registry.get(item.provider)
        wanted = wanted_languages(series, self._parts.settings, item)
        offered = (
            await self._parts.resolver.candidates(
                provider, item.series_key, item.season, item.episode, wanted
            )
            if wanted
            else []
        )
        # The blocklist is for the next time an episode is queued: an item's own retries
        # still try every link, so max_retries keeps its meaning. A link is skipped for one
        # backoff after it was blocked (DOCS), then tried again.
        backoff = self._parts.settings.section("downloads")["retry_backoff_s"]
        blocked = (
            await self._parts.blocklist.blocked_links(
                item.provider,
                item.series_key,
                item.season,
                item.episode,
                since=self._parts.clock() - float(backoff[0]),
            )
            if item.retry_count == 0
            else set()
        )
        candidates = [c for c in offered if c.link.redirect_url not in blocked]
        if not candidates:
            raise _no_candidates(wanted, bool(offered), item)
        title = await self._parts.library.episode_title(series.id, item.season, item.episode)
        downloads = self._parts.settings.section("downloads")
        # yt-dlp loads with the first download, not at start, and in a thread: importing it
        # takes 0.1 s or more, which the event loop must not wait for.
        await asyncio.to_thread(importlib.import_module, f"{__package__}.downloader")
        from .downloader import Downloader  # loaded now: this import only looks it up

        # One library folder for the whole attempt, even if the setting changes meanwhile.
        root = self._parts.root()
        downloader = Downloader(
            min_free_space_mb=downloads["min_free_space_mb"],
            verify=downloads["verify"],
            sessions=self._parts.ytdlp,
            probes=self._parts.probes,
            threads=self._parts.threads,
        )
        for candidate in candidates:
            # Rendering resolves symlinks to prove confinement: file-system work, off the loop.
            base = await asyncio.to_thread(
                self._target_base, root, series, item, title, candidate, downloads["episode_path"]
            )
            await self._parts.store.set_part_base(item.id, str(base), candidate.language.value)
            try:
                source = await self._parts.resolver.resolve(provider, candidate)
                self._parts.bus.publish(EventType.DOWNLOAD_STARTED, _started(item, candidate))
                path = await downloader.download(
                    source, base, on_progress=functools.partial(on_progress, item)
                )
            except DownloadFailedError as err:
                attempts.append(_attempt(candidate, err, self._parts.clock()))
                _LOGGER.info("%s: %s failed: %s", label(item), candidate, err.message)
                if not err.next_candidate:
                    raise
                await self._count_failure(item, candidate, err, downloads["max_retries"])
                continue
            replaced = await self._replace_older(series, item, path)
            size_mb = round((await asyncio.to_thread(path.stat)).st_size / 2**20, 2)
            # The final path has its symlinks resolved (confine proves it lies inside): so must
            # the root it is relative to, or a library folder reached through a symlink fails.
            real_root = await asyncio.to_thread(os.path.realpath, root)
            relative = path.relative_to(real_root).as_posix()
            return Landed(path, candidate.language.value, size_mb, replaced, relative)
        raise AllHostersFailedError(
            f"all {len(candidates)} hosters failed; last: {attempts[-1]['message']}",
            details={"attempts": attempts[-len(candidates) :]},
        )

    async def _replace_older(self, series: SeriesRecord, item: QueueItem, new: Path) -> str | None:
        """An upgrade's new file is verified and in place: now remove the file it replaces.

        When both have the same name the rename already replaced it atomically; otherwise the
        old file goes only now, so the episode is never without a verified file. Only the file
        the upgrade was queued for goes: one the user put there since (its language unknown)
        stays, and so does one that cannot be removed (the new file is in place all the same).
        """
        if item.upgrade_from is None:
            return None
        held = next(
            (
                e
                for e in await self._parts.library.episodes(series.id)
                if (e.season, e.episode) == (item.season, item.episode)
            ),
            None,
        )
        if held is None or held.local_path is None:
            return None
        relative = f"{series.folder}/{held.local_path}"
        if held.local_language != item.upgrade_from:
            _LOGGER.warning(
                "%s: upgraded; kept %s, which is not the %s file the upgrade was for",
                label(item),
                relative,
                item.upgrade_from,
            )
            return None

        def remove() -> bool:
            try:
                old = confine(self._parts.root(), relative)
            except PathOutsideLibraryError:
                return False
            if old == new or not old.is_file() or os.path.samefile(old, new):
                return False  # samefile: a name differing in case only, on SMB or exFAT
            old.unlink()
            fsync_dir(old.parent)
            return True

        try:
            if await asyncio.to_thread(remove):
                _LOGGER.info("%s: upgraded; removed %s", label(item), relative)
        except FileNotFoundError:
            pass
        except OSError as err:
            _LOGGER.warning("%s: upgraded; cannot remove %s: %s", label(item), relative, err)
            return None
        return relative

    async def _count_failure(
        self, item: QueueItem, candidate: Candidate, err: AppError, threshold: int
    ) -> None:
        blocked = await self._parts.blocklist.record_failure(
            provider=item.provider,
            key=item.series_key,
            season=item.season,
            episode=item.episode,
            hoster=candidate.hoster,
            language=candidate.language.value,
            link=candidate.link.redirect_url,
            reason=err.message,
            threshold=threshold,
            now=self._parts.clock(),
        )
        if blocked:
            _LOGGER.info("%s: %s is blocklisted for this episode", label(item), candidate)

    def _target_base(
        self,
        root: Path,
        series: SeriesRecord,
        item: QueueItem,
        title: str | None,
        candidate: Candidate,
        template: str,
    ) -> Path:
        # The folder exists for every series the library knows (a scan found it, or adding
        # the series made it). Gone, it is most likely an unmounted drive or share: writing
        # would create it on the disk below the mount point, hidden once the share is back.
        if not (root / series.folder).is_dir():
            raise SeriesFolderMissingError(
                f"the series folder {series.folder!r} is missing from the library: is its drive"
                " or share mounted? A download never creates it; rescan once it is back.",
                details={"folder": series.folder},
            )
        path = final_episode_path(
            root,
            series.folder,
            template,
            series_title=series.name,
            year=series.year,
            season=item.season,
            episode=item.episode,
            episode_title=title or "",
            language=candidate.language.value,
            ext=_PLACEHOLDER_EXT,
        )
        return path.with_name(path.name[: -len(_PLACEHOLDER_EXT) - 1])


def _no_candidates(wanted: Sequence[Language], offered: bool, item: QueueItem) -> AppError:
    languages = ", ".join(v.value for v in wanted)
    if item.upgrade_from is not None and not offered:
        reason = f"no hoster offers this episode in a language better than {item.upgrade_from}"
    elif offered:
        reason = f"every hoster offering it in {languages} is on the blocklist"
    else:
        reason = f"no hoster offers this episode in {languages}"
    return NoCandidatesError(reason, details={"languages": [v.value for v in wanted]})


def _started(item: QueueItem, candidate: Candidate) -> dict[str, Any]:
    return {
        "item_id": item.id,
        "provider": item.provider,
        "series_key": item.series_key,
        "season": item.season,
        "episode": item.episode,
        "language": candidate.language.value,
        "hoster": candidate.hoster,
        "upgrade_from": item.upgrade_from,
    }


def _attempt(candidate: Candidate, err: AppError, now: float) -> dict[str, Any]:
    return {
        "hoster": candidate.hoster,
        "language": candidate.language.value,
        "code": err.code,
        "message": err.message,
        "at": now,
    }


def label(item: QueueItem) -> str:
    """How log lines name an item."""
    return f"{item.series_key} S{item.season:02d}E{item.episode:02d} (item {item.id})"


__all__ = [
    "AllHostersFailedError",
    "EpisodeJob",
    "Landed",
    "NoCandidatesError",
    "QueueParts",
    "label",
]
