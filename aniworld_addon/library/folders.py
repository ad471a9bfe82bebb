"""One folder's entries, sorted into files, folders and the rest: the scanner's only listing.

list_folder is the C version (_folders.c) where the package was built with it, else
list_folder_py; both answer alike. With the C version and a second CPU, ReadAhead lists the
folders of a full scan in a second thread while the scan reads what was listed
(bench/scan.py prints which way ran).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import stat
import threading
from collections.abc import Callable, Sequence
from itertools import compress
from operator import attrgetter, methodcaller, not_, or_
from typing import Final, Generic, TypeVar

# (st_mode, st_ino, st_size, st_mtime_ns, st_ctime_ns): what the scanner keeps of a stat.
Stat = tuple[int, int, int, int, int]
# The folder's Stat, taken before its entries are read, then the names of: files (symlinks to
# files too), folders (not symlinks), the rest (symlinks to folders, broken symlinks, fifos,
# sockets, devices). "." and ".." are left out.
Listing = tuple[Stat, list[str], list[str], list[str]]
Lister = Callable[..., Listing]  # (path, *, follow_symlinks=False)

T = TypeVar("T")
_NAME = attrgetter("name")
_IS_FOLDER = methodcaller("is_dir", follow_symlinks=False)
_IS_FILE = os.DirEntry.is_file


def stat_of(st: os.stat_result) -> Stat:
    """The Stat of an os.stat_result."""
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def list_folder_py(path: str, *, follow_symlinks: bool = False) -> Listing:
    """The listing of one folder; OSError as os.scandir raises it.

    A symlink (unless follow_symlinks) or a file at path raises NotADirectoryError.
    """
    st = os.stat(path) if follow_symlinks else os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    with os.scandir(path) as it:
        entries = list(it)
    names = list(map(_NAME, entries))
    folder = list(map(_IS_FOLDER, entries))
    try:
        file = list(map(_IS_FILE, entries))  # False for a folder; follows a symlink
    except OSError:  # a symlink it cannot follow (a loop, no permission): "the rest", as in C
        file = list(map(_is_file, entries))
    other = list(map(not_, map(or_, folder, file)))
    return (
        stat_of(st),
        list(compress(names, file)),
        list(compress(names, folder)),
        list(compress(names, other)),
    )


BatchLister = Callable[[list[str]], list[Listing | OSError]]
BatchStat = Callable[..., list[Stat | OSError]]  # (paths, *, follow_symlinks=False)


def _native() -> tuple[Lister, BatchLister, BatchStat] | tuple[None, None, None]:
    try:
        from ._folders import list_folder, list_folders, stat_paths
    except ImportError:  # built without a C compiler, or not on a POSIX system
        return None, None, None
    return list_folder, list_folders, stat_paths


# The batch functions exist in C only: ReadAhead is worth it with them alone.
NATIVE, list_folders, stat_paths = _native()
list_folder: Final[Lister] = NATIVE or list_folder_py
_log = logging.getLogger(__name__)


def cpus() -> int:
    """The CPUs this process may run on (a container's limit, where the system says it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class ReadAhead(Generic[T]):
    """Runs work over a scan's series folders in a second thread, CHUNK folders at a time.

    work lists or stats the folders with the batch functions above, which hold no GIL while
    they touch the disk: the kernel's part of the next chunk overlaps the scan's Python work on
    this one. Batches, because handing the GIL over once per folder cost more than the overlap
    gained. work is given an event to look at between batches: set, it should stop early.
    The owner calls take() once per CHUNK folders, in order, and close() when done.
    """

    CHUNK: Final = 32

    def __init__(
        self, work: Callable[[Sequence[str], threading.Event], T], tops: Sequence[str]
    ) -> None:
        self._work, self._tops = work, tops
        # A few chunks ahead at most: what was read waits in memory until the scan uses it.
        self._chunks: queue.Queue[T | None] = queue.Queue(4)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="scan-read-ahead", daemon=True)
        self._thread.start()

    def take(self) -> T | None:
        """What work gave for the next CHUNK folders; None once the thread has stopped."""
        if self._ended:
            return None
        chunk = self._chunks.get()
        self._ended = chunk is None
        return chunk

    def close(self) -> None:
        """Stop the thread and wait for it (it ends after the batch it is on)."""
        self._stop.set()
        # Make room for the put() it may be blocked in; it then puts at most a chunk and its end.
        while not self._chunks.empty():
            self._chunks.get_nowait()
        self._thread.join()

    def _run(self) -> None:
        try:
            for start in range(0, len(self._tops), self.CHUNK):
                if self._stop.is_set():
                    break
                self._chunks.put(self._work(self._tops[start : start + self.CHUNK], self._stop))
        except Exception:  # noqa: BLE001  # the scan reads what it lacks itself: slower, not wrong
            _log.exception("reading the library ahead of the scan failed")
        finally:
            self._chunks.put(None)
