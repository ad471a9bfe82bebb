"""The library service: rescan, missing episodes, add a series, match a folder."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Final

from ..errors import AppError, ConflictError, NotFoundError, ValidationError
from ..events import EventBus, EventType
from ..jsonutil import valid_text
from ..operations import Operation, Operations
from ..providers.base import Provider, SeriesInfo
from ..providers.live import LiveProviders
from ..providers.registry import ProviderRegistry
from ..settings import Settings
from .naming import confine, render_series_folder, sanitize_component
from .records import EpisodeRecord, SeriesRecord
from .scanner import LibraryError, ScanCache, ScanResult, scan_library
from .sidecar import KEY_FILE_NAME, SIDECAR_NAME, SeriesIdentity, write_sidecar
from .store import LibraryStore, LocalFolder

_LOGGER = logging.getLogger(__name__)


class LibraryNotWritableError(AppError):
    """A series folder or its sidecar cannot be written (permission, read-only, full)."""

    code: ClassVar[str] = "library_not_writable"
    status: ClassVar[int] = 503


REFRESH_CONCURRENCY: Final = 4
UNREADABLE_FOLDER: Final = "the folder name is not valid UTF-8: rename it to have it scanned"
RESCAN_KIND: Final = "rescan"
LIBRARY_ROOT_META: Final = "library_root"  # the folder the stored library was last walked in
# The rescan result (kept as last_scan, sent in scan_complete) lists this many errors of each
# kind and counts the rest: a broken library of thousands of series stays a small document.
# Every series keeps its own error on its record.
RESULT_ERRORS_LISTED: Final = 100


class LibraryService:
    """Keeps the library tables in step with the disk and the providers."""

    def __init__(
        self,
        store: LibraryStore,
        providers: LiveProviders,
        settings: Settings,
        bus: EventBus,
        operations: Operations,
        root: Callable[[], Path],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._providers = providers
        self._settings = settings
        self._bus = bus
        self._operations = operations
        self._root = root
        self._clock = clock
        self._cache: ScanCache | None = None
        self._scan_lock = asyncio.Lock()
        # Adding and matching check that no folder holds the series, then write a sidecar:
        # one at a time, or two requests could both pass the check.
        self._identity_lock = asyncio.Lock()
        #: why the last walk was refused (an empty library folder that should not be), or None
        self.unavailable: str | None = None

    @property
    def providers(self) -> ProviderRegistry:
        """The providers as configured right now."""
        return self._providers.registry

    def rescan(self) -> Operation:
        """Start a full rescan as an operation; a rescan already running is returned instead."""
        running = self._operations.running(RESCAN_KIND)
        if running is not None:
            return running
        return self._operations.start(RESCAN_KIND, self._rescan)

    async def _rescan(self, op: Operation) -> dict[str, Any]:
        async with self._scan_lock:
            started = time.monotonic()
            self._bus.publish(EventType.SCAN_STARTED, {"operation_id": op.id})
            try:
                summary = await self._rescan_locked(op)
            except AppError as err:
                self._bus.publish(
                    EventType.SCAN_FAILED, {"operation_id": op.id, "error": err.to_dict()["error"]}
                )
                raise
            summary["duration_s"] = round(time.monotonic() - started, 3)
            summary["finished_at"] = self._clock()
            await self.store.set_meta("last_scan", summary)
            self._bus.publish(EventType.SCAN_COMPLETE, {"operation_id": op.id, **summary})
            return summary

    async def _rescan_locked(self, op: Operation) -> dict[str, Any]:
        scan_errors = await self.sync_disk()
        op.progress = 0.1
        matched = await self.store.matched()
        total = len(matched)
        done = 0
        errors: list[dict[str, Any]] = []
        found: list[dict[str, Any]] = []
        gate = asyncio.Semaphore(REFRESH_CONCURRENCY)

        async def refresh(series: SeriesRecord) -> None:
            nonlocal done
            async with gate:
                new, error = await self._refresh_guarded(series)
            done += 1
            found.extend(new_episode(series, season, episode) for season, episode in new)
            if error is not None:
                errors.append({"folder": series.folder, "key": series.key, **error})
            op.progress = 0.1 + 0.9 * done / max(total, 1)
            self._bus.publish(
                EventType.SCAN_PROGRESS,
                {
                    "operation_id": op.id,
                    "done": done,
                    "total": total,
                    "series": series.key,
                    "folder": series.folder,
                    "error": error,
                },
            )

        async with asyncio.TaskGroup() as group:
            for series in matched:
                group.create_task(refresh(series))
        if found:  # however they are found, new episodes are news (webhooks, MQTT)
            found.sort(key=lambda e: (e["name"].casefold(), e["season"], e["episode"]))
            self._bus.publish(
                EventType.NEW_EPISODES_FOUND, {"episodes": found, "count": len(found)}
            )
        totals = await self.store.totals()
        return {
            **totals,
            "new_episodes": len(found),
            "refreshed": total - len(errors),
            "errors": errors[:RESULT_ERRORS_LISTED],
            "error_count": len(errors),
            "scan_errors": scan_errors[:RESULT_ERRORS_LISTED],
            "scan_error_count": len(scan_errors),
        }

    async def sync_disk(self) -> list[dict[str, str]]:
        """Walk the library (in a thread) and store which folders and files exist.

        Returns what the walk could not read, one {folder, message} per folder: each series
        also keeps its own as scan_error, and a folder whose name is not UTF-8 is no series.
        """
        root = self._root()
        # Walk and store under one lock: a rescan's older walk stored after an add, a match
        # or a download landing in between undid them (see LibraryStore.files_lock).
        async with self.store.files_lock:
            walked_at = self._clock()
            result, found = await asyncio.to_thread(_scan_disk, root, self._cache)
            if not result.series and not result.unreadable:
                await self._refuse_if_known(root)
            self.unavailable = None
            self._cache = result.cache
            removed = await self.store.sync_local(found, self._clock(), walked_at)
            # Whose series these are: a command line run elsewhere (another working folder,
            # so another ./library) finds its library here (cli.library_for_command).
            await self.store.set_meta(LIBRARY_ROOT_META, str(root))
        if removed:
            self._bus.publish(EventType.EPISODE_FILES_REMOVED, {"files": removed})
        problems = [
            {"folder": valid_text(name), "message": UNREADABLE_FOLDER} for name in result.unreadable
        ]
        problems += [
            {"folder": folder, "message": message}
            for folder, message in (await self.store.scan_errors()).items()
        ]
        if problems:
            _LOGGER.warning(
                "the library walk could not read %d folder(s), first %s: %s",
                len(problems),
                problems[0]["folder"],
                problems[0]["message"],
            )
        return sorted(problems, key=lambda problem: problem["folder"])

    async def _refuse_if_known(self, root: Path) -> None:
        """An empty library folder while the library knows series: most likely a drive or
        share that is not mounted (the mount point is an empty folder). Taking it at its word
        would forget every series and its settings; refuse until a series folder is back."""
        known = (await self.store.totals())["series"]
        if known:
            self.unavailable = (
                f"the library folder {root} is empty, but the library knows {known} series:"
                " is its drive or share mounted? They are kept until a series folder is back"
            )
            raise LibraryError(self.unavailable, details={"path": str(root), "series": known})

    async def _refresh_guarded(
        self, series: SeriesRecord
    ) -> tuple[list[tuple[int, int]], dict[str, Any] | None]:
        """Refresh one series: its new episodes (see refresh) and its error, stored on the
        series and returned, never raised."""
        try:
            new = await self.refresh(series)
        except AppError as err:
            _LOGGER.warning("refresh of %s failed: %s", series.folder, err.message)
            error = {"code": err.code, "message": err.message}
        except Exception as err:
            # A bug or a library's surprise for one series must not end the rescan of all
            # (the TaskGroup would cancel every other refresh): it is this series' error.
            _LOGGER.exception("refresh of %s failed unexpectedly", series.folder)
            error = {"code": "internal_error", "message": f"{type(err).__name__}: {err}"}
        else:
            return new, None
        await self.store.set_error(series.id, error)
        return [], error

    async def refresh(self, series: SeriesRecord) -> list[tuple[int, int]]:
        """Read the series' seasons and episodes from its provider and store them; returns
        the new episodes: listed for the first time, held by no file (LibraryStore.sync_provider).
        """
        assert series.provider is not None and series.key is not None
        provider = self.providers.get(series.provider)
        seasons = await provider.all_episodes(series.key)
        info = await provider.series(series.key)  # cached by the provider: no extra request
        episodes = [
            (ep.season, ep.episode, ep.title, ep.title_en)
            for season in seasons.values()
            for ep in season
        ]
        identity = (series.provider, series.key)
        new = await self.store.sync_provider(
            series.id, _info_fields(info), episodes, self._clock(), identity=identity
        )
        if new is None:
            _LOGGER.info("%s was matched anew during its refresh: kept", series.folder)
        return new or []

    async def detail(self, key: str, provider: str | None = None) -> dict[str, Any]:
        """A series with its episodes and their states."""
        series = await self.store.by_key(key, provider)
        return await self._detail(series)

    async def _detail(self, series: SeriesRecord) -> dict[str, Any]:
        episodes = await self.store.episodes(series.id)
        return {**series.to_dict(), "episodes": [_episode_dict(e) for e in episodes]}

    async def search(self, query: str, provider: str | None) -> list[dict[str, Any]]:
        """Search one provider or all of them."""
        outcome = await self.providers.search_all(query, names=[provider] if provider else None)
        return outcome.to_list()

    async def add(self, provider_name: str, key: str) -> dict[str, Any]:
        """Create the folder and sidecar of a provider series and read its episodes."""
        async with self._identity_lock:
            return await self._add(provider_name, key)

    async def _add(self, provider_name: str, key: str) -> dict[str, Any]:
        provider = self.providers.get(provider_name)
        root = self._root()
        try:
            empty = await asyncio.to_thread(_holds_no_folder, root)
        except OSError as err:
            raise LibraryError(f"cannot list the library folder {root}: {err.strerror}") from err
        if empty:
            await self._refuse_if_known(root)  # a new folder there would land below a mount
        # What is on disk now: before the first rescan (a new install, a new library path)
        # the store knew nothing, and the series got a second, empty folder.
        await self.sync_disk()
        await self._refuse_if_added(key, provider_name)
        info = await provider.series(key)
        if info.key != key:  # the site redirected an old slug: the check is for the new one
            await self._refuse_if_added(info.key, provider_name)
        template = self._settings.section("downloads")["series_folder"]
        folder = sanitize_component(render_series_folder(template, info.name, info.year))
        await self._claim_folder(folder, provider, info, creating=True)
        return await self._after_identity_change(folder, "added")

    async def _refuse_if_added(self, key: str, provider_name: str) -> None:
        try:
            await self.store.by_key(key, provider_name)
        except NotFoundError:
            return
        raise ConflictError(f"{key!r} is already in the library", details={"key": key})

    async def match(self, folder: str, provider_name: str, key: str) -> dict[str, Any]:
        """Give an existing folder its provider identity (writes the sidecar)."""
        async with self._identity_lock:
            return await self._match(folder, provider_name, key)

    async def _match(self, folder: str, provider_name: str, key: str) -> dict[str, Any]:
        provider = self.providers.get(provider_name)
        if await self.store.by_folder(folder) is None:
            raise NotFoundError(f"no series folder {folder!r} in the library")
        await self._refuse_if_elsewhere(key, provider_name, folder)
        info = await provider.series(key)
        if info.key != key:
            # The site redirected an old slug: checked before the sidecar is written, since
            # a refusal after it left the folder naming a series another folder holds.
            await self._refuse_if_elsewhere(info.key, provider_name, folder)
        await self._claim_folder(folder, provider, info, creating=False)
        return await self._after_identity_change(folder, "matched")

    async def _refuse_if_elsewhere(self, key: str, provider_name: str, folder: str) -> None:
        try:
            other = await self.store.by_key(key, provider_name)
        except NotFoundError:
            return
        if other.folder != folder:
            raise ConflictError(
                f"{key!r} already belongs to the folder {other.folder!r}",
                details={"folder": other.folder},
            )

    async def _claim_folder(
        self, folder: str, provider: Provider, info: SeriesInfo, *, creating: bool
    ) -> None:
        root = self._root()
        identity = SeriesIdentity(provider.name, info.key, info.name, info.year)

        def write() -> None:
            path = confine(root, folder)  # resolves symlinks: in the thread with the writes
            if creating:
                # a legacy key file names a series too (the sidecar would outrank it)
                if (path / SIDECAR_NAME).exists() or (path / KEY_FILE_NAME).exists():
                    raise ConflictError(
                        f"the folder {folder!r} already belongs to another series",
                        details={"folder": folder},
                    )
                path.mkdir(parents=True, exist_ok=True)
            elif not path.is_dir():
                raise NotFoundError(f"no series folder {folder!r} in the library")
            write_sidecar(path, identity)

        try:
            await asyncio.to_thread(write)
        except (FileExistsError, IsADirectoryError, NotADirectoryError) as err:
            # A file where the folder goes, or a folder where the sidecar goes.
            raise ConflictError(
                f"cannot write the series folder {folder!r}: {err.strerror} ({err.filename})",
                details={"folder": folder},
            ) from err
        except OSError as err:  # no permission, a read-only share, a full disk
            raise LibraryNotWritableError(
                f"cannot write the series folder {folder!r}: {err.strerror}",
                details={"folder": folder},
            ) from err

    async def _after_identity_change(self, folder: str, action: str) -> dict[str, Any]:
        await self.sync_disk()
        series = await self.store.by_folder(folder)
        if series is None:  # the folder vanished between writing and scanning
            raise NotFoundError(f"the folder {folder!r} disappeared")
        if series.key is None:  # another folder on disk names the same series, and keeps it
            raise ConflictError(
                series.scan_error or f"the folder {folder!r} did not take the identity",
                details={"folder": folder},
            )
        await self._refresh_guarded(series)
        refreshed = await self.store.by_folder(folder)
        assert refreshed is not None
        # MQTT's library counts and the panel follow events: without one they stayed as they
        # were until the next rescan or download
        self._bus.publish(
            EventType.SERIES_CHANGED,
            {
                "action": action,
                "folder": folder,
                "provider": refreshed.provider,
                "key": refreshed.key,
            },
        )
        return await self._detail(refreshed)

    async def set_languages(
        self,
        key: str,
        languages: list[str] | None,
        upgrade: bool | None = None,
        provider: str | None = None,
    ) -> dict[str, Any]:
        """Store a series' own language order and upgrade switch (None: the global setting)."""
        series = await self.store.by_key(key, provider)
        if languages is not None and not languages:
            raise ValidationError("give at least one language, or null for the global order")
        await self.store.set_languages(series.id, languages, upgrade)
        return await self.detail(key, series.provider)


_Found = dict[str, LocalFolder]


def new_episode(series: SeriesRecord, season: int, episode: int) -> dict[str, Any]:
    """One entry of a new_episodes_found event."""
    return {
        "provider": series.provider,
        "series_key": series.key,
        "name": series.name,
        "season": season,
        "episode": episode,
    }


def _holds_no_folder(root: Path) -> bool:
    """Whether the library folder holds no visible folder (a series folder or any other)."""
    with os.scandir(root) as entries:
        return not any(e.name[0] != "." and e.is_dir(follow_symlinks=False) for e in entries)


def _scan_disk(root: Path, cache: ScanCache | None) -> tuple[ScanResult, _Found]:
    """The scan and what the store keeps of it, both in the worker thread.

    The paths are a dict entry per episode file: work the event loop need not do.
    """
    result = scan_library(root, cache)
    found: _Found = {}
    for series in result.series:
        identity = series.identity
        name = (identity.name if identity and identity.name else None) or series.folder_name
        found[series.folder_name] = LocalFolder(
            identity.provider if identity else None,
            identity.key if identity else None,
            name,
            series.local_paths(),
            series.error,
            series.complete,
        )
    return result, found


def _info_fields(info: SeriesInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "year": info.year,
        "description": info.description,
        "cover_url": info.cover_url,
    }


def _episode_dict(episode: EpisodeRecord) -> dict[str, Any]:
    return {
        "season": episode.season,
        "episode": episode.episode,
        "title": episode.title or episode.title_en,
        "state": episode.state,
        "on_provider": episode.on_provider,
        "file": episode.local_path,
        "language": episode.local_language,  # null: not downloaded here, language unknown
    }
