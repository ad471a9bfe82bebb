"""parse_folder: a folder's names parsed together must mean exactly what parse_episodes says."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aniworld_addon.library import episode_tags
from aniworld_addon.library.episode_tags import EpisodeNumber, parse_episodes, parse_folder

FUZZ = settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Pieces that move a name between the batch patterns' paths: tags, ranges, hidden and temp
# names, dotted titles, non-ASCII look-alikes, line breaks, NULs, other extensions.
PIECES = st.sampled_from(
    [
        "S", "s", "E", "e", "0", "1", "07", "12", "-", "-E", "E3", " ", "x", "X", "_", "[G] ",
        ".", "..", ".mkv", ".MP4", ".m2ts", ".ts", ".srt", ".nfo", ".part", ".part.", ".temp.",
        ".f137.", ".fhls-1080p.", ".partial.", "9" * 12, "E00", "S01E01", "s02e03", "-04",
        "Show ", "Dr. ", "ı", "ſ", "Ｓ", "\n", "\x00", "\t", "日本",
    ]
)  # fmt: skip
TAGGED = st.from_regex(
    r"\A\.?[A-Za-z .]{0,6}[Ss][0-9]{1,3}[Ee][0-9]{1,3}([-Ee]{1,2}[0-9]{1,3}){0,2}"
    r"[ .a-z0-9-]{0,8}\.(mkv|MP4|webm|srt|ts|m2ts|part|temp\.mkv)\Z",
    fullmatch=True,
)
NAMES = st.lists(PIECES, max_size=10).map("".join) | TAGGED | st.text(max_size=24)


@FUZZ
@given(names=st.lists(NAMES, max_size=12))
@example(names=["Show S01E01.mkv", "Show S01E02.mkv"])  # every name a plain episode
@example(names=["Show S01E01.mkv", "Show S01E01.nfo", "poster.jpg"])  # some are no episode
@example(names=["Show S01E01.mkv", ".Show S01E02.mkv", "._Show S01E03.mkv"])  # hidden names
@example(names=["Show.S01E01.1080p.mkv", "Show.S01E02.part.mkv"])  # dots, a temp file
@example(names=["A S01E01.X S01E02.MKV", "A S01E05 then S01E06.mkv"])  # the first tag counts
@example(names=["Show S01E01-E03.mkv", "Show S01E05-1080p.mkv", "Show S01E04E05.mkv"])
@example(names=["Shōw S01E01.mkv", "Show S01E02.mkv"])  # not ASCII
@example(names=["Show S01E01.mkv\nShow S01E02.mkv"])  # a line break inside a name
@example(names=[""])
def test_parse_folder_answers_what_parse_episodes_answers_name_by_name(names: list[str]) -> None:
    assert parse_folder(names) == [parse_episodes(name) for name in names]


@pytest.mark.parametrize(
    "names",
    [
        [f"Series 0001 - S01E{n:02d} - Episode {n}.mkv" for n in range(1, 26)],
        ["Show S01E01.mkv", "Show S01E01.nfo", "Show S01E02.mkv", "folder.jpg"],
        ["Show S01E01.mkv", ".Show S01E02.mkv", "Dr. Show S01E03.mkv"],
    ],
    ids=["episodes only", "with other files", "hidden and dotted"],
)
def test_ascii_folders_take_no_name_by_name_path(
    names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = [parse_episodes(name) for name in names]

    def refuse(name: str) -> tuple[EpisodeNumber, ...]:
        raise AssertionError(f"{name!r} was parsed by itself")

    monkeypatch.setattr(episode_tags, "parse_episodes", refuse)
    assert parse_folder(names) == expected
