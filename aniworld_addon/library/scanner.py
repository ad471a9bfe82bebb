"""The library walk (SPEC §4): series folders, who they are, and the episode files they hold.

Everything here is synchronous and blocking: the library service calls ``scan_library`` through
``asyncio.to_thread`` (and ``progress`` then runs in that worker thread, not on the loop).
"""

from __future__ import annotations

import errno
import gc
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, compress
from operator import attrgetter, itemgetter, not_
from pathlib import Path
from typing import Any, ClassVar, Final, NamedTuple

from ..errors import AppError
from ..jsonutil import is_text, valid_text
from .episode_tags import EpisodeNumber, parse_folder
from .folders import (
    Listing,
    ReadAhead,
    Stat,
    cpus,
    list_folder,
    list_folders,
    stat_of,
    stat_paths,
)
from .sidecar import KEY_FILE_NAME, SIDECAR_NAME, SeriesIdentity, read_identity_stat

MAX_DEPTH: Final = 12  # levels below a series folder; deeper trees are not episode folders
# A directory changed less than this long before a scan may change again within the same
# timestamp tick (coarse clocks, FAT's 2 s): its listing is used but not trusted next time.
RACY_WINDOW_NS = 2_000_000_000
# Folders that NAS systems and file systems put everywhere; never series, never episodes.
IGNORED_FOLDERS: Final = frozenset(
    {"@eaDir", "#recycle", "#snapshot", "lost+found", "$RECYCLE.BIN", "System Volume Information"}
)
Progress = Callable[[int, int], None]
# C-level steps of LocalSeries.local_paths.
_FIRST = itemgetter(0)
_TRUSTED = attrgetter("trusted")
_STAMP = attrgetter("stamp")
_SEASON_EPISODE = attrgetter("season", "episode")


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


class _Files(NamedTuple):
    """The episode files of one folder, in name order, as columns rather than a LocalFile each.

    A full scan finds every file of the library; an object per file would cost it more than the
    listing does, and its one regular consumer (LocalSeries.local_paths) needs none.
    """

    rel: str  # the folder relative to its series folder: "" or "Season 01/"
    names: tuple[str, ...]  # in the order the folder listed them
    numbers: tuple[tuple[EpisodeNumber, ...], ...]
    sizes: tuple[int, ...] | None  # with_sizes only


@dataclass(slots=True, frozen=True)
class LocalSeries:
    """One folder directly under the library root and what the scan found in it.

    files and episodes are built from the scan's per-folder columns when first asked for;
    local_paths answers what the library store keeps without building them.
    """

    folder_name: str
    location: str  # the absolute path of the folder
    identity: SeriesIdentity | None
    error: str | None
    parts: tuple[_Files, ...] = field(repr=False)  # the folders with episode files, walk order
    # False when a folder or the identity file could not be read (no permission, an I/O
    # error): what the walk did not see may still be there, so keep what was known of it.
    complete: bool = True
    _files: tuple[LocalFile, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _episodes: dict[EpisodeNumber, LocalFile] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _local_paths: dict[tuple[int, int], str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def path(self) -> Path:
        """The series folder."""
        return Path(self.location)

    @property
    def file_count(self) -> int:
        """How many episode files the folder holds (duplicates included)."""
        return sum(len(part.names) for part in self.parts)

    @property
    def files(self) -> tuple[LocalFile, ...]:
        """Every episode file, duplicates included, in walk order (by name in each folder)."""
        files = self._files
        if files is None:
            files = tuple(
                LocalFile(rel + name, numbers, size)
                for rel, names, column, sizes in self.parts
                for name, numbers, size in sorted(
                    zip(names, column, sizes or (None,) * len(names), strict=True),
                    key=_FIRST,
                )
            )
            object.__setattr__(self, "_files", files)
        return files

    @property
    def episodes(self) -> dict[EpisodeNumber, LocalFile]:
        """One file per episode: the largest when sizes are known, else the first in walk order."""
        episodes = self._episodes
        if episodes is None:
            episodes = _episodes(self.files)
            object.__setattr__(self, "_episodes", episodes)
        return episodes

    def local_paths(self) -> dict[tuple[int, int], str]:
        """{(season, episode): relative path} of the file that episodes picks for each episode.

        What the library store keeps: built once per result (a rescan hands an unchanged
        series' result on) without building files or episodes; each call returns a copy.
        """
        paths = self._local_paths
        if paths is None:
            paths = self._paths()
            object.__setattr__(self, "_local_paths", paths)
        return dict(paths)

    def _paths(self) -> dict[tuple[int, int], str]:
        parts = self.parts
        if all(part.sizes is None for part in parts):
            numbers = list(chain.from_iterable(part.numbers for part in parts))
            if sum(map(len, numbers)) == len(numbers):  # one episode a file: the rule
                relatives = chain.from_iterable(map(p.rel.__add__, p.names) for p in parts)
                keys = map(_SEASON_EPISODE, map(_FIRST, numbers))
                paths = dict(zip(keys, relatives, strict=True))
                if len(paths) == len(numbers):  # no episode twice: the order does not matter
                    return paths
        return {(n.season, n.episode): file.relative for n, file in self.episodes.items()}

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

    stamp: Stat  # ctime catches mtime put back
    trusted: bool
    subdirs: tuple[str, ...]
    files: _Files | None  # None when it holds no episode file
    markers: frozenset[str]  # which of the sidecar / key file exist here
    # Episode files and folders whose names are not valid UTF-8 (bytes os.fsdecode kept as lone
    # surrogates): left out, as no database, JSON or panel can hold their names; folders end in /.
    unreadable: tuple[str, ...] = ()


@dataclass(slots=True)
class _Identity:
    stamp: Stat | None
    trusted: bool
    identity: SeriesIdentity | None
    error: str | None
    unread: bool = False  # the file could not be read at all (rather than read and refused)


@dataclass(slots=True)
class ScanCache:
    """What a scan saw; hand it to the next scan_library call so unchanged folders are skipped."""

    root: str
    with_sizes: bool
    listings: dict[str, _Listing] = field(default_factory=dict)
    identities: dict[str, _Identity] = field(default_factory=dict)
    series: dict[str, LocalSeries] = field(default_factory=dict)  # reused when nothing changed
    checks: dict[str, _Check] = field(default_factory=dict)  # by series folder


class _Check(NamedTuple):
    """What proves a series folder unchanged: every path it was read from, with its Stat.

    Kept for a series whose listings and identity were all trusted; a rescan that finds the
    same stats takes the folder's result and cache entries as they are, in one comparison.
    """

    paths: tuple[str, ...]  # its folders, then its identity file if it has one
    stats: tuple[Stat, ...]
    listings: tuple[tuple[str, _Listing], ...]


@dataclass(slots=True, frozen=True)
class ScanResult:
    """The series found (sorted by folder name) and the cache for the next scan."""

    series: tuple[LocalSeries, ...]
    cache: ScanCache
    stats: ScanStats
    # Folders in the library root whose names are not valid UTF-8, as os.fsdecode gives them:
    # not scanned (see _Listing.unreadable).
    unreadable: tuple[str, ...] = ()


@dataclass(slots=True)
class _Ahead:
    """What ReadAhead read for a chunk of series folders, by path (see scan_library)."""

    listings: dict[str, Listing | OSError] = field(default_factory=dict)  # a full scan's
    # A rescan's: the stats of each _Check's paths, by series folder.
    checks: dict[str, tuple[Stat | OSError, ...]] = field(default_factory=dict)


class _Walk:
    """One scan: reads through the old cache, writes a fresh one (the old one stays valid)."""

    def __init__(self, root: str, old: ScanCache | None, with_sizes: bool) -> None:
        self.root = root
        self.prefix = root if root.endswith("/") else f"{root}/"  # root is absolute: "/" or "/a"
        self.with_sizes = with_sizes
        usable = old is not None and old.root == root and old.with_sizes == with_sizes
        self.old = old if old is not None and usable else ScanCache(root, with_sizes)
        self.new = ScanCache(root, with_sizes)
        self.racy_before = time.time_ns() - RACY_WINDOW_NS
        self.directories = self.listed = self.files = 0

    def directory(self, path: str, st: os.stat_result) -> _Listing:
        """The listing of the library root (a symlink to the library is followed).

        series() does the same for the folders below, inline.
        """
        self.directories += 1
        listing = self.old.listings.get(path)
        if listing is None or not listing.trusted or listing.stamp != stat_of(st):
            listing = self._list(path, "", follow_symlinks=True)
        self.new.listings[path] = listing
        return listing

    def _list(
        self,
        path: str,
        rel: str,
        ahead: Listing | OSError | None = None,
        *,
        follow_symlinks: bool = False,
    ) -> _Listing:
        # The hot path of a full scan: list_folder sorts the entries in C, and every step per
        # entry after it is C code too (map, compress, a regex pass over the folder's names):
        # a Python step per file would cost more than the listing itself.
        self.listed += 1
        if ahead is None:
            ahead = list_folder(path, follow_symlinks=follow_symlinks)
        elif isinstance(ahead, OSError):
            raise ahead
        stamp, files, folders, others = ahead
        unreadable: tuple[str, ...] = ()
        subdirs: tuple[str, ...] = ()
        if folders:
            subdirs = tuple(sorted(_walked(folders)))
            if not "".join(subdirs).isascii() and not all(map(is_text, subdirs)):
                unreadable = tuple(f"{n}/" for n in subdirs if not is_text(n))
                subdirs = tuple(filter(is_text, subdirs))
        sidecar = SIDECAR_NAME in files or SIDECAR_NAME in folders or SIDECAR_NAME in others
        markers = _markers(sidecar, KEY_FILE_NAME in files)
        # Hidden names are never episodes; where one is known to be here, drop them before
        # parsing, as parse_folder takes a slower path for a folder that holds any.
        names = [n for n in files if n[0] != "."] if sidecar else files
        result: _Files | None = None
        if names:  # in listing order: LocalSeries sorts them only where order matters
            text = "\n".join(names)
            episodes = parse_folder(names, text)  # () for all but videos and hidden names
            if not all(episodes):
                names = list(compress(names, episodes))
                episodes = list(filter(None, episodes))
            if not text.isascii() and not all(readable := list(map(is_text, names))):
                unreadable += tuple(compress(names, map(not_, readable)))
                names = list(compress(names, readable))
                episodes = list(compress(episodes, readable))
            if names:
                result = (
                    _sized(path, rel, names, episodes)
                    if self.with_sizes
                    else _Files(rel, tuple(names), tuple(episodes), None)
                )
        trusted = max(stamp[3], stamp[4]) < self.racy_before
        return _Listing(stamp, trusted, subdirs, result, markers, unreadable)

    def identity(self, path: str, listing: _Listing) -> tuple[_Identity | None, bool]:
        """Identity from the sidecar, else the key file, and whether it was read anew."""
        name = SIDECAR_NAME if SIDECAR_NAME in listing.markers else KEY_FILE_NAME
        if name not in listing.markers:
            return None, False
        file = f"{path}/{name}"
        cached = self.old.identities.get(path)
        if cached is not None and cached.trusted:
            try:  # lstat: a cached identity was read from a regular file (no symlink)
                st = stat_of(os.lstat(file))
            except OSError as err:
                failed = f"cannot read {name}: {err.strerror}"
                return _Identity(None, False, None, failed, unread=True), True
            if cached.stamp == st:
                self.new.identities[path] = cached
                return cached, False
        # Read it (a full scan reads every one): the stamp comes from the open file.
        found, identity, error = read_identity_stat(file, name)
        if found is None:
            return _Identity(None, False, None, error, unread=True), True
        trusted = max(found.st_mtime_ns, found.st_ctime_ns) < self.racy_before
        known = _Identity(stat_of(found), trusted, identity, error)
        self.new.identities[path] = known
        return known, True

    def series(self, name: str, ahead: _Ahead) -> LocalSeries | None:
        """One series folder, walked depth first without following symlinked folders.

        ahead holds what was read for this scan already (see ReadAhead).
        """
        path = self.prefix + name
        check = self.old.checks.get(path)
        if check is not None:
            stats = ahead.checks.pop(path, None) or _stats(check.paths)
            if stats == check.stats:
                return self._unchanged(path, check)
        cached, listings = self.old.listings, self.new.listings
        visited: list[tuple[str, _Listing]] = []
        errors: list[str] = []
        unreadable: list[str] = []
        parts: list[_Files] = []
        known: _Identity | None = None
        changed = False
        complete = True
        gone = False  # a folder below went away during the walk: its parent's listing is stale
        stack = [(path, "", 0)]
        while stack:
            # directory(), inline (this loop runs for every folder of every scan). A folder the
            # last scan did not see is listed straight away: the listing brings its own stamp.
            directory, rel, depth = stack.pop()
            try:
                listing = cached.get(directory)
                if listing is None:
                    listing = self._list(directory, rel, ahead.listings.pop(directory, None))
                    changed = True
                else:
                    st = stat_of(os.lstat(directory))
                    if not stat.S_ISDIR(st[0]):  # now a file or symlink: not a folder
                        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", directory)
                    if not listing.trusted or listing.stamp != st:
                        listing = self._list(directory, rel)
                        changed = True
            except (FileNotFoundError, NotADirectoryError) as err:
                if err.filename != directory:  # something below it, not the folder: an error
                    errors.append(f"cannot read {rel or 'the folder'}: {err.strerror}")
                    complete = False
                elif depth == 0:
                    return None  # the series folder went away during the scan
                else:
                    gone = True
                continue
            except OSError as err:
                errors.append(f"cannot read {rel or 'the folder'}: {err.strerror}")
                complete = False
                continue
            listings[directory] = listing
            visited.append((directory, listing))
            self.directories += 1
            if listing.unreadable:
                unreadable += [rel + n for n in listing.unreadable]
            if depth == 0:
                known, fresh = self.identity(directory, listing)
                changed |= fresh
            if listing.files is not None:
                parts.append(listing.files)
                self.files += len(listing.files.names)
            if listing.subdirs:
                if depth >= MAX_DEPTH:
                    too_deep = f"folders nested deeper than {MAX_DEPTH} levels are not scanned"
                    if too_deep not in errors:  # said once, however many branches go deeper
                        errors.append(too_deep)
                    continue
                for sub in reversed(listing.subdirs):
                    stack.append((f"{directory}/{sub}", f"{rel}{sub}/", depth + 1))
        previous = self.old.series.get(path)
        if previous is not None and not changed and not errors:
            # Same listings, same identity: the old result is exact (and may hold the views
            # built from it already).
            self.new.series[path] = previous
            if not gone:
                self._remember(path, visited, known)
            return previous
        if unreadable:
            errors.append(_unreadable_error(unreadable))
        if known is not None and known.error:
            errors.insert(0, known.error)
        identity = known.identity if known is not None else None
        complete = complete and not (known is not None and known.unread)
        error = "; ".join(errors) or None
        result = LocalSeries(name, path, identity, error, tuple(parts), complete)
        if error is None:
            self.new.series[path] = result
            if complete and not gone:
                self._remember(path, visited, known)
        return result

    def _remember(
        self, path: str, visited: list[tuple[str, _Listing]], known: _Identity | None
    ) -> None:
        """Keep the _Check of a series folder whose every listing and identity is trusted."""
        paths, listings = zip(*visited, strict=True)  # C-level steps: this runs for every series
        if not all(map(_TRUSTED, listings)):
            return
        stats = tuple(map(_STAMP, listings))
        if known is not None:
            if not known.trusted or known.stamp is None:
                return
            markers = listings[0].markers  # the series folder's own listing
            paths += (f"{path}/{SIDECAR_NAME if SIDECAR_NAME in markers else KEY_FILE_NAME}",)
            stats += (known.stamp,)
        self.new.checks[path] = _Check(paths, stats, tuple(visited))

    def _unchanged(self, path: str, check: _Check) -> LocalSeries:
        """What series() gives for a folder its check proves unchanged: the last result."""
        previous = self.old.series[path]  # a check is kept only with its result
        new = self.new
        new.listings.update(check.listings)
        identity = self.old.identities.get(path)
        if identity is not None:
            new.identities[path] = identity
        new.series[path] = previous
        new.checks[path] = check
        self.directories += len(check.listings)
        self.files += previous.file_count
        return previous


_NO_MARKERS: Final[frozenset[str]] = frozenset()


def _walked(folders: list[str]) -> Iterator[str]:
    """The subfolders a scan walks into (before it leaves out names that are not UTF-8)."""
    return (n for n in folders if n[0] != "." and n not in IGNORED_FOLDERS)


def _unreadable_error(names: list[str]) -> str:
    """The series error that names the episode files and folders left out for their names."""
    shown = ", ".join(repr(valid_text(name)) for name in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"names that are not valid UTF-8 were left out (rename them): {shown}{more}"


def _stats(paths: tuple[str, ...]) -> tuple[Stat, ...] | None:
    """The stats of a _Check's paths taken now; None when one is gone or cannot be read."""
    try:
        return tuple(stat_of(os.lstat(path)) for path in paths)
    except OSError:
        return None


def _listed_ahead(tops: Sequence[str], stop: threading.Event) -> _Ahead:
    """A full scan's ReadAhead work: the listings of the series folders' trees, level by level."""
    assert list_folders is not None
    ahead = _Ahead()
    level, depth = list(tops), 0
    while level and not stop.is_set():
        listed = list_folders(level)
        ahead.listings.update(zip(level, listed, strict=True))
        if depth == MAX_DEPTH:  # as deep as series() walks
            break
        level = [
            f"{path}/{name}"
            for path, listing in zip(level, listed, strict=True)
            if not isinstance(listing, OSError)
            for name in _walked(listing[2])
        ]
        depth += 1
    return ahead


def _stated_ahead(old: ScanCache, tops: Sequence[str], stop: threading.Event) -> _Ahead:
    """A rescan's ReadAhead work: the stats of the series folders' checks (one batch)."""
    assert stat_paths is not None
    paths: list[str] = []
    spans: list[tuple[str, int, int]] = []
    for top in tops:
        check = old.checks.get(top)
        if check is not None:
            spans.append((top, len(paths), len(paths) + len(check.paths)))
            paths += check.paths
    found = stat_paths(paths)
    ahead = _Ahead()
    for top, start, end in spans:
        ahead.checks[top] = tuple(found[start:end])
    return ahead


def _markers(sidecar: bool, key_file: bool) -> frozenset[str]:
    """Which identity files a folder holds."""
    if not (sidecar or key_file):
        return _NO_MARKERS
    return frozenset((SIDECAR_NAME,) * sidecar + (KEY_FILE_NAME,) * key_file)


def _sized(
    path: str, rel: str, names: list[str], episodes: list[tuple[EpisodeNumber, ...]]
) -> _Files:
    """A folder's episode files with their sizes (one stat each)."""
    found = [_size(path, name) for name in names]
    kept = [size >= 0 for size in found]  # a file gone since the listing is left out
    return _Files(
        rel,
        tuple(compress(names, kept)),
        tuple(compress(episodes, kept)),
        tuple(compress(found, kept)),
    )


def _size(path: str, name: str) -> int:
    """A file's size, -1 when it went away since the listing."""
    try:
        return os.stat(os.path.join(path, name)).st_size
    except OSError:
        return -1


def _episodes(files: tuple[LocalFile, ...]) -> dict[EpisodeNumber, LocalFile]:
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
        top = walk.directory(root_path, st)
    except OSError as err:
        raise LibraryError(f"cannot list the library folder {root_path}: {err.strerror}") from err
    names = top.subdirs
    found: list[LocalSeries] = []
    reader: ReadAhead[_Ahead] | None = None
    if list_folders is not None and stat_paths is not None and len(names) > 1 and cpus() > 1:
        # With a second CPU, the kernel's part of the walk (listings for a full scan, stats
        # for a rescan) runs in a second thread, ahead of this one.
        tops = [walk.prefix + name for name in names]
        old = walk.old
        if old.checks:
            reader = ReadAhead(partial(_stated_ahead, old), tops)
        elif not old.listings:
            reader = ReadAhead(_listed_ahead, tops)
    ahead = _Ahead()
    try:
        with _gc_paused():
            for done, name in enumerate(names, 1):
                if reader is not None and (done - 1) % reader.CHUNK == 0:
                    ahead = reader.take() or _Ahead()
                series = walk.series(name, ahead)
                if series is not None:
                    found.append(series)
                if progress is not None:
                    progress(done, len(names))
    finally:
        if reader is not None:
            reader.close()
    stats = ScanStats(walk.directories, walk.listed, walk.files, time.perf_counter() - started)
    unreadable = tuple(name[:-1] for name in top.unreadable if name[-1] == "/")
    return ScanResult(tuple(found), walk.new, stats, unreadable)
