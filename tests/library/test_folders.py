"""folders.py and _folders.c: the C listing answers as the Python one, and ReadAhead's thread.

The scanner's own tests (test_scanner.py) run each of them the three ways it can list.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aniworld_addon.library import folders, scanner
from aniworld_addon.library.folders import Listing, list_folder_py
from aniworld_addon.library.scanner import scan_library
from aniworld_addon.library.sidecar import SIDECAR_NAME
from tests.library.listing import require_c_listing


@pytest.fixture
def native() -> Any:
    """The C module; in CI its absence fails the test (the install must build it)."""
    require_c_listing()
    from aniworld_addon.library import _folders

    return _folders


@pytest.fixture
def odd_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder with one of every kind of entry a library may hold."""
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "Show S01E01.mkv").write_bytes(b"x" * 10)
    (folder / ".hidden").touch()
    (folder / "Season 01").mkdir()
    (folder / "to-file.mkv").symlink_to("Show S01E01.mkv")
    (folder / "to-folder").symlink_to("Season 01")
    (folder / "broken").symlink_to("nowhere")
    (folder / "loop").symlink_to("loop")  # following it fails: ELOOP
    (folder / "through-file").symlink_to("Show S01E01.mkv/x")  # ENOTDIR
    os.mkfifo(folder / "fifo")
    (folder / os.fsdecode(b"caf\xe9 S01E02.mkv")).touch()  # Latin-1: not UTF-8
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock"))
        yield folder


def _sorted(listing: Listing) -> tuple[object, ...]:
    return (listing[0], *(sorted(names) for names in listing[1:]))


def test_the_c_listing_answers_as_the_python_one(native: Any, odd_folder: Path) -> None:
    path = str(odd_folder)
    found = native.list_folder(path)
    assert _sorted(found) == _sorted(list_folder_py(path))
    _, files, subfolders, others = found
    assert sorted(files) == sorted(
        [".hidden", "Show S01E01.mkv", "to-file.mkv", os.fsdecode(b"caf\xe9 S01E02.mkv")]
    )
    assert subfolders == ["Season 01"]
    assert sorted(others) == ["broken", "fifo", "loop", "sock", "through-file", "to-folder"]
    st = os.lstat(path)
    assert found[0] == (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    # A symlinked folder is listed only when asked to follow (the library root may be one).
    link = str(odd_folder / "to-folder")
    assert native.list_folder(link, follow_symlinks=True)[1:] == ([], [], [])
    assert _sorted(native.list_folder(link, follow_symlinks=True)) == _sorted(
        list_folder_py(link, follow_symlinks=True)
    )


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("to-folder", NotADirectoryError),  # a symlink is not followed
        ("Show S01E01.mkv", NotADirectoryError),
        ("fifo", NotADirectoryError),  # and never waited on
        ("missing", FileNotFoundError),
    ],
)
def test_the_c_listing_fails_as_the_python_one(
    native: Any, odd_folder: Path, name: str, error: type[OSError]
) -> None:
    path = str(odd_folder / name)
    with pytest.raises(error) as python:
        list_folder_py(path)
    with pytest.raises(error) as c:
        native.list_folder(path)
    assert (c.value.errno, c.value.filename) == (python.value.errno, path)
    (batched,) = native.list_folders([path])
    assert type(batched) is type(python.value) and batched.filename == path


def test_the_c_listing_takes_str_paths_and_batches_of_them(native: Any, tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        native.list_folder(os.fsencode(tmp_path))  # its names would be str, not bytes
    with pytest.raises(TypeError):
        native.list_folders(str(tmp_path))  # one path, not a list of its characters
    with pytest.raises(TypeError):
        native.stat_paths([os.fsencode(tmp_path)])
    assert native.list_folders([]) == [] and native.stat_paths(()) == []
    paths: list[Any] = []

    class Shrinking:  # changes the caller's list while the batch reads it
        def __fspath__(self) -> str:
            paths.clear()
            return str(tmp_path)

    paths += [Shrinking(), str(tmp_path), str(tmp_path / "missing")]
    listed = native.list_folders(paths)
    assert len(listed) == 3 and isinstance(listed[2], FileNotFoundError)
    assert listed[2].filename == str(tmp_path / "missing")


def test_batches_answer_path_by_path(native: Any, odd_folder: Path) -> None:
    paths = [str(odd_folder), str(odd_folder / "missing"), str(odd_folder / "Season 01")]
    listed = native.list_folders(paths)
    assert _sorted(listed[0]) == _sorted(list_folder_py(paths[0]))
    assert isinstance(listed[1], FileNotFoundError)
    assert listed[2][1:] == ([], [], [])
    files = [*paths, str(odd_folder / "to-file.mkv")]
    stats = native.stat_paths(files)
    followed = native.stat_paths(files, follow_symlinks=True)
    for path, st, st_followed in zip(files, stats, followed, strict=True):
        if path.endswith("missing"):
            assert isinstance(st, FileNotFoundError) and st.filename == path
            continue
        assert st == folders.stat_of(os.lstat(path))
        assert st_followed == folders.stat_of(os.stat(path))
    assert stats[-1] != followed[-1]  # the symlink, and the file it leads to


def _library(root: Path, series: int) -> Path:
    for n in range(series):
        season = root / f"Show {n:03d}" / "Season 01"
        season.mkdir(parents=True)
        (season / f"Show {n:03d} S01E01.mkv").touch()
        (season.parent / SIDECAR_NAME).write_text(f'{{"provider": "aniworld", "key": "s-{n}"}}')
    return root


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "scan-read-ahead"]


@pytest.fixture
def two_cpus(native: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanner, "cpus", lambda: 2)


def test_a_full_scan_lists_in_batches_ahead_and_finds_what_one_thread_finds(
    tmp_path: Path, two_cpus: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _library(tmp_path, 70)
    batches: list[int] = []
    batch = scanner.list_folders
    assert batch is not None

    def list_folders(paths: list[str]) -> list[Listing | OSError]:
        batches.append(len(paths))
        return batch(paths)

    monkeypatch.setattr(scanner, "list_folders", list_folders)
    ahead = scan_library(root)
    # 70 series in chunks of 32: each chunk's series folders, then their season folders,
    # then an empty level below those.
    assert sorted(batches) == sorted([32, 32, 32, 32, 6, 6])
    assert ahead.stats.listed == 1 + 70 * 2
    monkeypatch.setattr(scanner, "cpus", lambda: 1)
    alone = scan_library(root)
    assert ahead.series == alone.series
    assert [s.local_paths() for s in ahead.series] == [s.local_paths() for s in alone.series]
    assert not _read_ahead_threads()


def test_a_rescan_takes_its_stats_from_the_read_ahead_thread(
    tmp_path: Path, two_cpus: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanner, "RACY_WINDOW_NS", 0)
    root = _library(tmp_path, 40)
    first = scan_library(root)
    called: list[str] = []
    real = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if threading.current_thread() is threading.main_thread():
            called.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    again = scan_library(root, first.cache)
    assert again.series == first.series and again.stats.listed == 0
    assert called == []  # every folder's and sidecar's stat came from the thread
    monkeypatch.setattr(scanner, "cpus", lambda: 1)
    alone = scan_library(root, first.cache)
    assert alone.series == first.series
    assert len(called) == 40 * 3  # the same checks in this thread: 2 folders and a sidecar each


def test_a_scan_that_fails_midway_stops_its_read_ahead_thread(
    tmp_path: Path, two_cpus: None
) -> None:
    root = _library(tmp_path, 300)  # more chunks than the queue holds: the thread must block

    def progress(done: int, total: int) -> None:
        if done == 40:
            raise RuntimeError("the scan was cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        scan_library(root, progress=progress)
    assert not _read_ahead_threads()


def test_a_read_ahead_that_fails_leaves_the_scan_to_list_alone(
    tmp_path: Path,
    two_cpus: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = _library(tmp_path, 50)
    expected = scan_library(root)

    def list_folders(paths: list[str]) -> list[Listing | OSError]:
        raise MemoryError  # not an OSError for one folder: the whole batch failed

    monkeypatch.setattr(scanner, "list_folders", list_folders)
    with caplog.at_level(logging.ERROR, logger="aniworld_addon.library.folders"):
        found = scan_library(root)
    assert found.series == expected.series and found.stats.listed == expected.stats.listed
    assert "reading the library ahead of the scan failed" in caplog.text
    assert not _read_ahead_threads()
