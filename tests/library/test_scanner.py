"""scanner.py: series folders, identities, episode files and the incremental rescan (SPEC §4)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aniworld_addon.errors import ValidationError
from aniworld_addon.library import folders, scanner
from aniworld_addon.library import sidecar as sidecar_module
from aniworld_addon.library.episode_tags import EpisodeNumber
from aniworld_addon.library.naming import render_episode_path, validate_template
from aniworld_addon.library.scanner import LibraryError, LocalSeries, ScanResult, scan_library
from aniworld_addon.library.sidecar import SIDECAR_NAME, SeriesIdentity, write_sidecar
from tests.library.listing import counting_listings, refuse_listing, require_c_listing


def ep(season: int, episode: int) -> EpisodeNumber:
    return EpisodeNumber(season, episode)


def build(root: Path, tree: dict[str, Any]) -> None:
    """Create files from {name: content-or-subtree}; str content is written, None is empty."""
    root.mkdir(parents=True, exist_ok=True)
    for name, value in tree.items():
        if isinstance(value, dict):
            build(root / name, value)
        else:
            (root / name).write_text(value or "")


def sidecar(key: str, **extra: Any) -> str:
    return json.dumps({"provider": "aniworld", "key": key, **extra})


def settle(root: Path) -> None:
    """Make every folder look long unchanged, so the next scan may trust its listing.

    Scans refuse to trust folders changed in the last RACY_WINDOW_NS; tests set that window to
    zero and move mtimes an hour back, so the next change is guaranteed a different mtime even on
    file systems whose clock ticks coarsely.
    """
    past = time.time() - 3600
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            os.utime(os.path.join(folder, name), (past, past), follow_symlinks=False)
    os.utime(root, (past, past))


@pytest.fixture(autouse=True, params=["read-ahead", "c", "python"])
def listing_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs each way the scanner may list: what it finds must not differ.

    read-ahead: the C listing with a second thread (a full scan, a rescan's stats); c: the C
    listing in the scan's own thread (one CPU); python: a build without the C module.
    """
    way: str = request.param
    if way != "python":
        require_c_listing()
    if way == "python":
        monkeypatch.setattr(scanner, "list_folder", folders.list_folder_py)
        monkeypatch.setattr(scanner, "list_folders", None)
        monkeypatch.setattr(scanner, "stat_paths", None)
    monkeypatch.setattr(scanner, "cpus", lambda: 2 if way == "read-ahead" else 1)
    return way


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanner, "RACY_WINDOW_NS", 0)


def by_name(result: ScanResult) -> dict[str, LocalSeries]:
    return {series.folder_name: series for series in result.series}


# --- what a scan finds -------------------------------------------------------------------------


def test_identity_comes_from_the_sidecar_then_the_key_file(tmp_path: Path) -> None:
    build(
        tmp_path,
        {
            "Sidecar": {SIDECAR_NAME: sidecar("one-piece", name="One Piece", year=1999)},
            "Keyed": {"key": "attack-on-titan\n"},
            "Notepad": {"key": "\ufeffkaiju-academy\r\n"},  # Windows Notepad's BOM
            "Both": {SIDECAR_NAME: sidecar("from-sidecar"), "key": "from-key"},
            "Unmatched": {"Show S01E01.mkv": None},
        },
    )
    found = by_name(scan_library(tmp_path))
    assert found["Sidecar"].identity == SeriesIdentity("aniworld", "one-piece", "One Piece", 1999)
    assert found["Keyed"].identity == SeriesIdentity("aniworld", "attack-on-titan")
    assert found["Notepad"].identity == SeriesIdentity("aniworld", "kaiju-academy")
    assert found["Both"].identity is not None and found["Both"].identity.key == "from-sidecar"
    assert found["Unmatched"].identity is None and found["Unmatched"].error is None
    assert found["Unmatched"].episodes.keys() == {ep(1, 1)}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid"),
        ("[]", "not a JSON object"),
        ('{"provider": "aniworld"}', '"key"'),
        (sidecar("two\nlines"), "not a series key"),
        (sidecar(" padded"), "not a series key"),
        (sidecar(""), "not a series key"),
        (sidecar("ok", year="1999"), '"year"'),
        # JSON can escape a lone surrogate; UTF-8, SQLite and file names cannot hold one.
        (sidecar("ok\ud800"), "not a series key"),
        (sidecar("ok", name="A \udc80 B"), "lone surrogate"),
        (sidecar("ok", languages=["de", "\ud83d"]), "lone surrogate"),
        ('{"provider": "aniworld", "key": "ok"} trailing', "Extra data"),
        # Both once escaped the reader and failed the whole rescan.
        ('{"provider": "aniworld", "key": "ok", "year": ' + "9" * 4301 + "}", "4300 digits"),
        ('{"provider": "aniworld", "key": "ok", "a": ' + "[" * 5000 + "]" * 5000 + "}", "deeply"),
        (sidecar("ok", languages="German"), '"languages"'),
        (json.dumps({"provider": "Ani World", "key": "ok"}), "provider"),
        ("\udcff", "not valid"),
        pytest.param("x" * (70 * 1024), "larger than", id="oversized"),
    ],
)
def test_a_corrupt_sidecar_leaves_the_series_unmatched_with_the_reason(
    tmp_path: Path, content: str, reason: str
) -> None:
    build(tmp_path, {"Show": {"Show S01E01.mkv": None}})
    (tmp_path / "Show" / SIDECAR_NAME).write_bytes(content.encode("utf-8", "surrogateescape"))
    (series,) = scan_library(tmp_path).series
    assert series.identity is None
    assert series.error is not None and reason in series.error and SIDECAR_NAME in series.error
    assert series.episodes.keys() == {ep(1, 1)}  # the files are still listed


def test_a_fifo_in_place_of_the_sidecar_is_reported_without_waiting_on_it(
    tmp_path: Path,
) -> None:
    build(tmp_path, {"Show": {"Show S01E01.mkv": None}})
    fifo = tmp_path / "Show" / SIDECAR_NAME
    os.mkfifo(fifo)
    found: list[ScanResult] = []
    scan = threading.Thread(target=lambda: found.append(scan_library(tmp_path)), daemon=True)
    scan.start()
    scan.join(timeout=30)
    if scan.is_alive():  # blocked opening the fifo: a writer releases it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        scan.join()
        pytest.fail("the scan waited on a fifo named like the sidecar")
    (series,) = found[0].series
    assert series.identity is None
    assert series.error == f"{SIDECAR_NAME} is not a regular file"
    assert series.episodes.keys() == {ep(1, 1)}


def test_an_invalid_key_file_is_reported(tmp_path: Path) -> None:
    build(tmp_path, {"Show": {"key": "https://aniworld.to/anime/stream/x"}})
    (series,) = scan_library(tmp_path).series
    assert series.identity is None
    assert series.error is not None and "must hold only an aniworld series slug" in series.error


def test_episodes_are_found_in_nested_folders_and_others_ignored(tmp_path: Path) -> None:
    build(
        tmp_path,
        {
            "Show": {
                SIDECAR_NAME: sidecar("show"),
                "Show S01E01.mkv": None,
                "Season 01": {"Show - S01E02 - Two.mp4": None, "Show S01E03.mkv.part": None},
                "Season 02": {"Extras": {"deep": {"show.s02e01.avi": None}}},
                "Specials": {"Show S00E01 Movie.mkv": None, "Show S00E02.srt": None},
                "Show S01E04.nfo": None,
                ".Show S01E05.mkv": None,
                ".hidden": {"Show S01E06.mkv": None},
                "@eaDir": {"Show S01E07.mkv": None},
                "Show S01E08.temp.mkv": None,
                "Show S01E09.f137.mp4": None,
            },
            ".trash": {"Other S01E01.mkv": None},
            "Root S01E01.mkv": None,
        },
    )
    (series,) = scan_library(tmp_path).series
    assert series.folder_name == "Show" and series.path == tmp_path / "Show"
    assert sorted(series.episodes) == [ep(0, 1), ep(1, 1), ep(1, 2), ep(2, 1)]
    assert series.episodes[ep(2, 1)].relative == "Season 02/Extras/deep/show.s02e01.avi"
    assert series.file_path(series.episodes[ep(2, 1)]) == (
        tmp_path / "Show/Season 02/Extras/deep/show.s02e01.avi"
    )
    assert series.error is None


def test_multi_episode_files_and_duplicates(tmp_path: Path) -> None:
    build(
        tmp_path,
        {"Show": {"Show S01E01-E03.mkv": None, "Season 01": {"Show S01E02.mkv": "bigger"}}},
    )
    (series,) = scan_library(tmp_path).series
    assert sorted(series.episodes) == [ep(1, 1), ep(1, 2), ep(1, 3)]
    assert series.episodes[ep(1, 2)].relative == "Show S01E01-E03.mkv"  # first in walk order
    assert len(series.files) == 2 and series.files[0].size is None
    sized = scan_library(tmp_path, with_sizes=True).series[0]
    assert sized.episodes[ep(1, 2)].relative == "Season 01/Show S01E02.mkv"  # the larger one
    assert sized.episodes[ep(1, 2)].size == len("bigger")


def test_symlinked_folders_are_not_followed_and_loops_end(tmp_path: Path) -> None:
    root, outside = tmp_path / "library", tmp_path / "outside"
    build(outside, {"Elsewhere": {"Else S01E01.mkv": None}, "Else S02E01.mkv": None})
    build(root, {"Show": {"Season 01": {"Show S01E01.mkv": None}}})
    (root / "Linked").symlink_to(outside / "Elsewhere")
    (root / "Show" / "Season 01" / "loop").symlink_to("..")
    (root / "Show" / "self").symlink_to(".")
    (root / "Show" / "out").symlink_to(outside)
    (root / "Show" / "Show S01E02.mkv").symlink_to(outside / "Else S02E01.mkv")  # a file: counted
    (root / "Show" / "Show S01E03.mkv").symlink_to(outside / "missing.mkv")  # broken: not counted
    (series,) = scan_library(root).series
    assert series.folder_name == "Show"
    assert sorted(series.episodes) == [ep(1, 1), ep(1, 2)]


def test_names_that_are_not_utf8_are_left_out_and_named(tmp_path: Path) -> None:
    # Bytes that are not UTF-8 (a Latin-1 name copied from an old share) decode to lone
    # surrogates, which no database or JSON can hold: such names are left out, and said so.
    build(tmp_path, {"Show": {"Season 01": {"Show S01E01.mkv": None}}, "Fine": {}})
    raw = os.fsencode(tmp_path)
    for folder in (b"/Caf\xe9 Show", b"/Show/Season \xff2", b"/Show/Season 01/\xe9"):
        os.mkdir(raw + folder)
    for file in (
        b"/Caf\xe9 Show/Caf\xe9 S01E01.mkv",
        b"/Show/Season \xff2/Show S02E01.mkv",
        b"/Show/Season 01/Show S01E02 \xe9.mkv",
        b"/Show/Season 01/notes \xe9.txt",  # not an episode: not worth a word
        b"/Show/Show S01E03 \xc3\xa9.mkv",  # valid UTF-8 (\u00e9): kept
    ):
        open(raw + file, "wb").close()
    result = scan_library(tmp_path)
    assert [s.folder_name for s in result.series] == ["Fine", "Show"]
    assert result.unreadable == (os.fsdecode(b"Caf\xe9 Show"),)
    show = result.series[1]
    assert sorted(show.local_paths().values()) == [
        "Season 01/Show S01E01.mkv",
        "Show S01E03 \u00e9.mkv",
    ]
    assert show.error == (
        "names that are not valid UTF-8 were left out (rename them): "
        "'Season \ufffd2/', 'Season 01/\ufffd/', 'Season 01/Show S01E02 \ufffd.mkv'"
    )
    assert show.identity is None and show.error.encode("utf-8")  # storable text
    again = scan_library(tmp_path, result.cache)  # from the cache: still said
    assert again.series[1].error == show.error and again.unreadable == result.unreadable


def test_symlinks_that_cannot_be_followed_are_passed_over(tmp_path: Path) -> None:
    build(tmp_path, {"Show": {"Show S01E01.mkv": None, "Season 01": {"Show S01E02.mkv": None}}})
    (tmp_path / "Show" / "loop.mkv").symlink_to("loop.mkv")
    (tmp_path / "Show" / "Season 01" / "Show S01E03.mkv").symlink_to("../Show S01E01.mkv/x")
    (series,) = scan_library(tmp_path).series
    assert series.error is None and series.complete
    assert sorted(series.episodes) == [ep(1, 1), ep(1, 2)]


def test_the_deepest_episode_path_a_template_may_have_is_scanned(tmp_path: Path) -> None:
    # What a download writes, a rescan must find: else it is queued again after every rescan.
    template = "d/" * scanner.MAX_DEPTH + "S{season:00}E{episode:00}"
    relative = render_episode_path(template, series_title="Show", year=None, season=1, episode=2)
    file = tmp_path / "Show" / f"{relative}.mkv"
    file.parent.mkdir(parents=True)
    file.touch()
    (series,) = scan_library(tmp_path).series
    assert series.episodes.keys() == {ep(1, 2)} and series.error is None
    with pytest.raises(ValidationError, match="nests 13 folders"):
        validate_template("d/" + template, "episode_path")
    for branch in ("a", "b", "c"):  # three branches too deep: one error, said once
        (tmp_path / "Show" / branch / ("d/" * scanner.MAX_DEPTH)).mkdir(parents=True)
    (series,) = scan_library(tmp_path).series
    assert series.error == f"folders nested deeper than {scanner.MAX_DEPTH} levels are not scanned"


def test_series_are_sorted_and_progress_is_reported_per_folder(tmp_path: Path) -> None:
    build(tmp_path, {name: {} for name in ("b", "a", "c")} | {"file.mkv": None})
    calls: list[tuple[int, int]] = []
    result = scan_library(tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert [s.folder_name for s in result.series] == ["a", "b", "c"]
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_an_unreadable_root_is_a_clear_library_error(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="does not exist") as missing:
        scan_library(tmp_path / "missing")
    assert missing.value.code == "library_unavailable" and missing.value.status == 503
    (tmp_path / "file").touch()
    with pytest.raises(LibraryError, match="not a folder"):
        scan_library(tmp_path / "file")


def test_an_unreadable_series_folder_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(
        tmp_path,
        {
            "Open": {"Open S01E01.mkv": None, "Locked": {"Open S01E02.mkv": None}},
            "Closed": {"Closed S01E01.mkv": None},
        },
    )
    refuse_listing(monkeypatch, {str(tmp_path / "Closed"), str(tmp_path / "Open" / "Locked")})
    found = by_name(scan_library(tmp_path))
    assert found["Closed"].error == "cannot read the folder: Permission denied"
    assert not found["Closed"].episodes
    assert found["Open"].error == "cannot read Locked/: Permission denied"
    assert found["Open"].episodes.keys() == {ep(1, 1)}
    # What the walk did not see may still be there: the library keeps what it knew of it.
    assert not found["Closed"].complete and not found["Open"].complete


# --- sidecar writing ---------------------------------------------------------------------------


def test_write_sidecar_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    folder = tmp_path / "Show"
    folder.mkdir()
    (folder / SIDECAR_NAME).write_text("{broken")
    identity = SeriesIdentity("aniworld", "show", "Shōw", 2020, ("German Dub", "English Sub"))
    path = write_sidecar(folder, identity)
    assert path == folder / SIDECAR_NAME
    assert json.loads(path.read_text("utf-8"))["name"] == "Shōw"
    assert os.listdir(folder) == [SIDECAR_NAME]
    assert scan_library(tmp_path).series[0].identity == identity


def test_identity_validation() -> None:
    assert SeriesIdentity.from_dict({"provider": "sto", "key": "x-1"}).languages == ()
    url = "https://www.youtube.com/playlist?list=PL123"  # the ytdlp provider's keys are URLs
    assert SeriesIdentity.from_dict({"provider": "ytdlp", "key": url}).key == url
    for bad in ({"provider": "aniworld", "key": "a\tb"}, {"provider": "", "key": "a"}, None):
        with pytest.raises(ValidationError):
            SeriesIdentity.from_dict(bad)
    with pytest.raises(ValidationError):
        SeriesIdentity.from_dict({"provider": "aniworld", "key": "a", "year": True})


def _decoded(load: Any, raw: bytes) -> tuple[str, object]:
    try:
        return "value", load(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return type(err).__name__, str(err)


_JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
).map(json.dumps)


@given(
    st.one_of(
        st.binary(max_size=24),
        st.builds(  # a document with whitespace or garbage around it, in one of json's encodings
            lambda text, before, after, encoding: (before + text + after).encode(
                encoding, "surrogatepass"
            ),
            _JSON_TEXT,
            st.sampled_from(["", " ", "\n", "\ufeff", "x"]),
            st.sampled_from(["", " \t\r\n", "\x0c", "\xa0", "}", "x"]),
            st.sampled_from(["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-16"]),
        ),
    )
)
# The edges of the fast path: whitespace json does not skip, json's encoding guess, a BOM.
@example(b'{"a": 1}\x0c')
@example(b'{"a": 1}\xc2\xa0')
@example(b'{"a": 1} \r\n\t')
@example(b'{"a": 1} {')
@example(b"{\x00")
@example('{"a": 1}'.encode("utf-16-le"))
@example('{"a": 1}'.encode("utf-8-sig"))
@example(b'{"a": "\xed\xa0\x80"}')
def test_sidecar_json_reads_exactly_as_json_loads(raw: bytes) -> None:
    # The sidecar reader's fast path for UTF-8 objects must accept, refuse and explain exactly
    # what json.loads does, whatever the bytes.
    assert _decoded(sidecar_module._load_json, raw) == _decoded(json.loads, raw)


# --- incremental rescans -----------------------------------------------------------------------


@pytest.fixture
def library(tmp_path: Path, trusting: None) -> Path:
    root = tmp_path / "library"
    build(
        root,
        {
            f"Show {n}": {
                SIDECAR_NAME: sidecar(f"show-{n}"),
                "Season 01": {f"Show {n} S01E0{e}.mkv": None for e in range(1, 4)},
                "Season 02": {"Extras": {f"Show {n} S02E01.mkv": None}},
            }
            for n in range(3)
        },
    )
    settle(root)
    return root


def test_a_rescan_without_changes_lists_no_directory(
    library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = scan_library(library)
    with counting_listings(monkeypatch) as listed:
        again = scan_library(library, first.cache)
    assert listed == []
    assert again.stats.listed == 0 and again.stats.directories == first.stats.directories
    assert again.series == first.series
    with counting_listings(monkeypatch) as listed:
        scan_library(library)  # the same count without a cache proves the counter works
    assert len(listed) == first.stats.listed == 1 + 3 * 4


def test_a_new_file_deep_in_a_season_folder_is_found_by_listing_only_that_folder(
    library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache of a rescan that changed nothing serves as well as the first scan's.
    first = scan_library(library, scan_library(library).cache)
    assert first.stats.listed == 0
    extras = library / "Show 1" / "Season 02" / "Extras"
    (extras / "Show 1 S02E02.mkv").touch()
    with counting_listings(monkeypatch) as listed:
        result = scan_library(library, first.cache)
    assert listed == [str(extras)]
    assert ep(2, 2) in by_name(result)["Show 1"].episodes
    assert by_name(result)["Show 0"] is by_name(first)["Show 0"]  # untouched series reused


def test_a_deleted_file_disappears_and_a_new_series_appears(
    library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = scan_library(library)
    (library / "Show 2" / "Season 01" / "Show 2 S01E02.mkv").unlink()
    build(library / "New Show", {"key": "new-show", "New Show S01E01.mkv": None})
    with counting_listings(monkeypatch) as listed:
        result = scan_library(library, first.cache)
    found = by_name(result)
    assert ep(1, 2) not in found["Show 2"].episodes and ep(1, 1) in found["Show 2"].episodes
    assert found["New Show"].identity == SeriesIdentity("aniworld", "new-show")
    assert sorted(listed) == sorted(
        [str(library), str(library / "New Show"), str(library / "Show 2" / "Season 01")]
    )


def test_removed_and_renamed_series_folders(library: Path) -> None:
    first = scan_library(library)
    (library / "Show 0").rename(library / "Show Zero")
    for path in sorted((library / "Show 1").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (library / "Show 1").rmdir()
    result = scan_library(library, first.cache)
    assert [s.folder_name for s in result.series] == ["Show 2", "Show Zero"]
    assert by_name(result)["Show Zero"].identity == SeriesIdentity("aniworld", "show-0")
    assert scan_library(library, result.cache).series == scan_library(library).series


def test_a_sidecar_rewritten_or_edited_in_place_is_read_again(library: Path) -> None:
    first = scan_library(library)
    write_sidecar(library / "Show 0", SeriesIdentity("sto", "other"))
    with (library / "Show 1" / SIDECAR_NAME).open("w") as handle:  # same inode, same folder
        handle.write("{oops")
    result = by_name(scan_library(library, first.cache))
    assert result["Show 0"].identity == SeriesIdentity("sto", "other")
    assert result["Show 1"].identity is None and result["Show 1"].error is not None


def test_a_changed_folder_is_noticed_even_when_its_mtime_is_put_back(
    library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = scan_library(library)
    season = library / "Show 0" / "Season 01"
    before = season.stat()
    (season / "Show 0 S01E09.mkv").touch()  # like rsync -t or tar: a new file, the old mtime
    os.utime(season, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert season.stat().st_mtime_ns == before.st_mtime_ns
    with counting_listings(monkeypatch) as listed:
        result = scan_library(library, first.cache)
    assert listed == [str(season)]  # the ctime gave it away
    assert ep(1, 9) in by_name(result)["Show 0"].episodes


def test_folders_changed_moments_ago_are_listed_again_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path, {"Show": {"Season 01": {"Show S01E01.mkv": None}}})
    first = scan_library(tmp_path)  # everything was just created: within the racy window
    with counting_listings(monkeypatch) as listed:
        second = scan_library(tmp_path, first.cache)
    assert len(listed) == first.stats.listed == 3
    monkeypatch.setattr(scanner, "RACY_WINDOW_NS", 0)
    third = scan_library(tmp_path, second.cache)
    assert third.stats.listed == 3  # the second scan still did not trust them
    assert scan_library(tmp_path, third.cache).stats.listed == 0


def test_a_cache_from_another_root_or_mode_is_ignored(library: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    build(other, {"Show 0": {"Season 01": {"Other S05E05.mkv": None}}})
    settle(other)
    cache = scan_library(library).cache
    result = scan_library(other, cache)
    assert result.stats.listed == 3 and result.series[0].episodes.keys() == {ep(5, 5)}
    assert scan_library(library, cache, with_sizes=True).stats.listed == 13
    assert scan_library(library, cache).stats.listed == 0  # the old cache is still intact


# --- generated trees ---------------------------------------------------------------------------

NAMES = st.text("abcXYZ 01._-", min_size=1, max_size=8).filter(lambda n: n.strip() == n)
FOLDERS = st.sampled_from(["", "Season 01/", "Season 02/", "Specials/", "a/b/", ".hidden/"])
KINDS = st.sampled_from(["mkv", "mp4", "mkv.part", "srt", "temp.mkv", "hidden"])
FILES = st.tuples(FOLDERS, st.integers(0, 3), st.integers(1, 30), KINDS, NAMES)
LIBRARIES = st.dictionaries(
    NAMES.filter(lambda n: not n.startswith(".")), st.lists(FILES), max_size=4
)
TREES = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


Entry = tuple[str, int, int, str, str]  # folder, season, episode, kind, stem


def file_name(season: int, episode: int, kind: str, stem: str) -> str:
    if kind == "hidden":
        return f".{stem} S{season:02d}E{episode:02d}.mkv"
    return f"{stem} S{season:02d}E{episode:02d}.{kind}"


def counts(sub: str, name: str) -> bool:
    """The model: a finished video whose name and folders are not hidden."""
    return name.endswith((".mkv", ".mp4")) and not name.startswith(".") and not sub.startswith(".")


def populate(root: Path, library: dict[str, list[Entry]]) -> dict[str, set[EpisodeNumber]]:
    """Write a generated library (with a symlink loop in each series); return the model."""
    expected: dict[str, set[EpisodeNumber]] = {}
    for series, entries in library.items():
        folder = root / series
        folder.mkdir()
        (folder / "loop").symlink_to(".")
        found = expected.setdefault(series, set())
        for sub, season, episode, kind, stem in entries:
            name = file_name(season, episode, kind, stem)
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / sub / name).touch()
            if counts(sub, name) and ".temp." not in name and ".part" not in name:
                found.add(EpisodeNumber(season, episode))
    return expected


@TREES
@given(library=LIBRARIES, changes=st.lists(st.tuples(st.integers(0, 99), FILES), max_size=6))
def test_generated_libraries_scan_like_their_model_and_rescans_match_full_scans(
    library: dict[str, list[Entry]],
    changes: list[tuple[int, Entry]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scanner, "RACY_WINDOW_NS", 0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = populate(root, library)
        settle(root)
        first = scan_library(root)
        assert {s.folder_name: set(s.episodes) for s in first.series} == model
        # Delete some files and add others, then the cached rescan must equal a fresh scan.
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        for index, (sub, season, episode, kind, stem) in changes:
            if files and index % 2:
                files.pop(index % len(files)).unlink()
            elif library:
                folder = root / sorted(library)[index % len(library)] / sub
                folder.mkdir(parents=True, exist_ok=True)
                (folder / file_name(season, episode, kind, stem)).touch()
        rescan = scan_library(root, first.cache)
        assert rescan.series == scan_library(root).series
        if not changes:
            assert rescan.stats.listed == 0


# --- what the library store is handed, and folders st_nlink may call leaves ----------------------


def test_local_paths_are_the_episodes_files_without_building_them(tmp_path: Path) -> None:
    build(
        tmp_path,
        {
            "Show": {
                "Show S01E01-E03.mkv": None,
                "Show S01E05.mkv": None,
                "Season 01": {"Show S01E02.mkv": "bigger", "Show S01E04.mp4": None},
                "Specials": {"Show S00E01.mkv": None},
            }
        },
    )
    (series,) = scan_library(tmp_path).series
    expected = {
        (0, 1): "Specials/Show S00E01.mkv",
        (1, 1): "Show S01E01-E03.mkv",
        (1, 2): "Show S01E01-E03.mkv",  # the first in walk order
        (1, 3): "Show S01E01-E03.mkv",
        (1, 4): "Season 01/Show S01E04.mp4",
        (1, 5): "Show S01E05.mkv",
    }
    assert series.local_paths() == expected
    assert {(n.season, n.episode): f.relative for n, f in series.episodes.items()} == expected
    assert series.local_paths() == expected  # the same once the views exist
    sized = scan_library(tmp_path, with_sizes=True).series[0]
    assert sized.local_paths() == expected | {(1, 2): "Season 01/Show S01E02.mkv"}
    assert sized.file_count == len(sized.files) == 5


def test_local_paths_of_one_episode_files_build_no_file_records(tmp_path: Path) -> None:
    build(
        tmp_path,
        {
            "Show": {"Show S01E02.mkv": None, "Season 01": {"Show S01E02.mp4": None}},
            "Other": {"Season 01": {f"Other S01E{n:02d}.mkv": None for n in range(9, 0, -1)}},
        },
    )
    twice, once = sorted(scan_library(tmp_path).series, key=lambda s: s.folder_name != "Show")

    # No episode twice: the folders' columns are enough, in whatever order they were listed.
    assert once.local_paths() == {(1, n): f"Season 01/Other S01E{n:02d}.mkv" for n in range(1, 10)}
    assert once._files is None and once._episodes is None
    # An episode twice: the first file in walk order (by name in each folder) holds it.
    assert twice.local_paths() == {(1, 2): "Show S01E02.mkv"}
    assert [f.relative for f in once.files] == [
        f"Season 01/Other S01E{n:02d}.mkv" for n in range(1, 10)
    ]


def test_views_built_or_not_leave_results_equal(library: Path) -> None:
    first, second = scan_library(library), scan_library(library)
    assert [len(s.episodes) for s in first.series] == [4, 4, 4]  # builds first's views only
    assert first.series == second.series
    assert [s.files for s in first.series] == [s.files for s in second.series]


@TREES
@given(library=LIBRARIES)
def test_generated_libraries_hand_the_store_their_episodes_files(
    library: dict[str, list[Entry]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        populate(root, library)
        for series in scan_library(root).series:
            paths = series.local_paths()
            assert paths == {(n.season, n.episode): f.relative for n, f in series.episodes.items()}
            assert all(series.file_path(f).is_file() for f in series.files)
