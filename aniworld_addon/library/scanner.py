"""The library walk (SPEC §4): series folders, who they are, and the episode files they hold.

Everything here is synchronous and blocking: the library service calls ``scan_library`` through
``asyncio.to_thread`` (and ``progress`` then runs in that worker thread, not on the loop).
"""

from __future__ import annotations

import gc
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

from ..errors import AppError
from .episode_tags import EpisodeNumber, parse_episodes
from .sidecar import KEY_FILE_NAME, SIDECAR_NAME, SeriesIdentity, read_identity

MAX_DEPTH: Final = 12  # levels below a series folder; deeper trees are not episode folders
# A directory changed less than this long before a scan may change again within the same
# timestamp tick (coarse clocks, FAT's 2 s): its listing is used but not trusted next time.
RACY_WINDOW_NS = 2_000_000_000
# Folders that NAS systems and file systems put everywhere; never series, never episodes.
IGNORED_FOLDERS: Final = frozenset(
    {"@eaDir", "#recycle", "#snapshot", "lost+found", "$RECYCLE.BIN", "System Volume Information"}
)
Progress = Callable[[int, int], None]


class LibraryError(AppError):
    """The library folder itself cannot be read: missing, not a folder, no permission."""

    code: ClassVar[str] = "library_unavailable"
    status: ClassVar[int] = 503


@dataclass(slots=True, frozen=True)
class LocalFile:
    """An episode file: path relative to its series folder ('/'-separated) and what it holds."""

    relative: str
    episodes: tuple[EpisodeNumber, ...]
    size: int | None = None  # None unless the scan ran with_sizes (one stat per file)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of one local file."""
        return {
            "path": self.relative,
            "size": self.size,
            "episodes": [ep.to_dict() for ep in self.episodes],
        }


@dataclass(slots=True, frozen=True)
class LocalSeries:
    """One folder directly under the library root and what the scan found in it."""

    folder_name: str
    path: Path
    identity: SeriesIdentity | None
    episodes: dict[EpisodeNumber, LocalFile]
    error: str | None = None
    files: tuple[LocalFile, ...] = ()  # every episode file, duplicates included

    def file_path(self, file: LocalFile) -> Path:
        """The absolute path of one of this series' files."""
        return self.path.joinpath(*file.relative.split("/"))


@dataclass(slots=True, frozen=True)
class ScanStats:
    """How much work a scan did: a no-change rescan lists nothing."""

    directories: int
    listed: int
    files: int
    seconds: float


@dataclass(slots=True)
class _Listing:
    """One directory as last listed, valid while its stamp is unchanged."""

    stamp: tuple[int, int, int]  # (inode, mtime_ns, ctime_ns): ctime catches mtime resets
    trusted: bool
    subdirs: tuple[str, ...]
    files: tuple[LocalFile, ...]
    markers: frozenset[str]  # which of the sidecar / key file exist here


@dataclass(slots=True)
class _Identity:
    stamp: tuple[int, int, int, int] | None
    trusted: bool
    identity: SeriesIdentity | None
    error: str | None


@dataclass(slots=True)
class ScanCache:
    """What a scan saw; hand it to the next scan_library call so unchanged folders are skipped."""

    root: str
    with_sizes: bool
    listings: dict[str, _Listing] = field(default_factory=dict)
    identities: dict[str, _Identity] = field(default_factory=dict)
    series: dict[str, LocalSeries] = field(default_factory=dict)  # reused when nothing changed


@dataclass(slots=True, frozen=True)
class ScanResult:
    """The series found (sorted by folder name) and the cache for the next scan."""

    series: tuple[LocalSeries, ...]
    cache: ScanCache
    stats: ScanStats


class _Walk:
    """One scan: reads through the old cache, writes a fresh one (the old one stays valid)."""

    def __init__(self, root: str, old: ScanCache | None, with_sizes: bool) -> None:
        self.root = root
        self.with_sizes = with_sizes
        usable = old is not None and old.root == root and old.with_sizes == with_sizes
        self.old = old if old is not None and usable else ScanCache(root, with_sizes)
        self.new = ScanCache(root, with_sizes)
        self.racy_before = time.time_ns() - RACY_WINDOW_NS
        self.directories = self.listed = 0

    def directory(self, path: str, st: os.stat_result, rel: str) -> tuple[_Listing, bool]:
        """The listing of a directory and whether it was listed anew (else from the cache)."""
        self.directories += 1
        stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
        cached = self.old.listings.get(path)
        if cached is not None and cached.trusted and cached.stamp == stamp:
            listing, fresh = cached, False
        else:
            listing, fresh = self._list(path, stamp, rel), True
        self.new.listings[path] = listing
        return listing, fresh

    def _list(self, path: str, stamp: tuple[int, int, int], rel: str) -> _Listing:
        # The hot loop of a full scan: d_type answers is_dir/is_file without a stat per entry.
        self.listed += 1
        subdirs: list[str] = []
        names: list[str] = []
        markers: list[str] = []
        with os.scandir(path) as entries:
            for entry in entries:
                name = entry.name
                if name[0] == ".":
                    if name == SIDECAR_NAME:
                        markers.append(name)
                elif entry.is_dir(follow_symlinks=False):
                    if name not in IGNORED_FOLDERS:
                        subdirs.append(name)
                elif entry.is_file():  # follows a symlink to a file; a broken one is skipped
                    names.append(name)
        if KEY_FILE_NAME in names:
            markers.append(KEY_FILE_NAME)
        names.sort()
        if self.with_sizes:
            files = [
                LocalFile(rel + name, episodes, size)
                for name, episodes in zip(names, map(parse_episodes, names), strict=True)
                if episodes and (size := _size(path, name)) >= 0
            ]
        else:
            files = [
                LocalFile(rel + name, episodes)
                for name, episodes in zip(names, map(parse_episodes, names), strict=True)
                if episodes
            ]
        trusted = max(stamp[1], stamp[2]) < self.racy_before
        return _Listing(stamp, trusted, tuple(sorted(subdirs)), tuple(files), frozenset(markers))

    def identity(self, path: str, listing: _Listing) -> tuple[_Identity | None, bool]:
        """Identity from the sidecar, else the key file, and whether it was read anew."""
        name = SIDECAR_NAME if SIDECAR_NAME in listing.markers else KEY_FILE_NAME
        if name not in listing.markers:
            return None, False
        file = os.path.join(path, name)
        try:
            st = os.stat(file)
        except OSError as err:
            return _Identity(None, False, None, f"cannot read {name}: {err.strerror}"), True
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self.old.identities.get(path)
        if cached is not None and cached.trusted and cached.stamp == stamp:
            known, fresh = cached, False
        else:
            trusted = max(st.st_mtime_ns, st.st_ctime_ns) < self.racy_before
            known, fresh = _Identity(stamp, trusted, *read_identity(file, name)), True
        self.new.identities[path] = known
        return known, fresh

    def series(self, name: str) -> LocalSeries | None:
        """One series folder, walked depth first without following symlinked folders."""
        path = os.path.join(self.root, name)
        errors: list[str] = []
        files: list[LocalFile] = []
        known: _Identity | None = None
        changed = False
        stack = [(path, "", 0)]
        while stack:
            directory, rel, depth = stack.pop()
            try:
                st = os.lstat(directory)
                if not stat.S_ISDIR(st.st_mode):
                    raise FileNotFoundError(directory)  # now a file or symlink: not a folder
                listing, fresh = self.directory(directory, st, rel)
            except FileNotFoundError:
                if depth == 0:
                    return None  # the series folder went away during the scan
                continue
            except OSError as err:
                errors.append(f"cannot read {rel or 'the folder'}: {err.strerror}")
                continue
            changed |= fresh
            if depth == 0:
                known, fresh = self.identity(directory, listing)
                changed |= fresh
            files.extend(listing.files)
            if listing.subdirs and depth >= MAX_DEPTH:
                errors.append(f"folders nested deeper than {MAX_DEPTH} levels are not scanned")
                continue
            for sub in reversed(listing.subdirs):
                stack.append((os.path.join(directory, sub), f"{rel}{sub}/", depth + 1))
        previous = self.old.series.get(path)
        if previous is not None and not changed and not errors:
            # Same listings, same identity: the old result is exact, and building it is most of
            # a rescan's cost (a dict entry per episode).
            self.new.series[path] = previous
            return previous
        if known is not None and known.error:
            errors.insert(0, known.error)
        identity = known.identity if known is not None else None
        error = "; ".join(errors) or None
        result = LocalSeries(name, Path(path), identity, _episodes(files), error, tuple(files))
        if error is None:
            self.new.series[path] = result
        return result


def _size(path: str, name: str) -> int:
    """A file's size, -1 when it went away since the listing."""
    try:
        return os.stat(os.path.join(path, name)).st_size
    except OSError:
        return -1


def _episodes(files: list[LocalFile]) -> dict[EpisodeNumber, LocalFile]:
    """One file per episode: the largest when sizes are known, else the first in walk order."""
    if not files or files[0].size is None:
        # Without sizes the first file wins: fill from the last file back, so earlier files
        # overwrite later ones, in one C-level dict build instead of a Python step per file.
        return {number: file for file in reversed(files) for number in file.episodes}
    episodes: dict[EpisodeNumber, LocalFile] = {}
    for file in files:
        for number in file.episodes:
            best = episodes.setdefault(number, file)
            if (file.size or 0) > (best.size or 0):
                episodes[number] = file
    return episodes


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a scan creates a value per file.

    Each collection re-traversed the growing heap: a sixth of a full scan. A scan creates no
    cycles, so nothing is left for the collector; it runs again as soon as the scan ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:  # whoever found it disabled leaves it to whoever disabled it
            # What the scan made is long-lived (the cache, the result): move it straight to
            # the oldest generation (freeze, then unfreeze) rather than have the first young
            # collection after enable() traverse every one of those objects.
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def scan_library(
    root: Path | str,
    cache: ScanCache | None = None,
    progress: Progress | None = None,
    *,
    with_sizes: bool = False,
) -> ScanResult:
    """Walk the library (blocking: run it in a thread); unchanged folders come from cache."""
    started = time.perf_counter()
    root_path = os.path.abspath(root)
    try:
        st = os.stat(root_path)
    except FileNotFoundError as err:
        raise LibraryError(f"the library folder {root_path} does not exist") from err
    except OSError as err:
        raise LibraryError(f"cannot open the library folder {root_path}: {err.strerror}") from err
    if not stat.S_ISDIR(st.st_mode):
        raise LibraryError(f"the library path {root_path} is not a folder")
    walk = _Walk(root_path, cache, with_sizes)
    try:
        names = walk.directory(root_path, st, "")[0].subdirs
    except OSError as err:
        raise LibraryError(f"cannot list the library folder {root_path}: {err.strerror}") from err
    found: list[LocalSeries] = []
    with _gc_paused():
        for done, name in enumerate(names, 1):
            series = walk.series(name)
            if series is not None:
                found.append(series)
            if progress is not None:
                progress(done, len(names))
    files = sum(len(series.files) for series in found)
    stats = ScanStats(walk.directories, walk.listed, files, time.perf_counter() - started)
    return ScanResult(tuple(found), walk.new, stats)
