"""naming.py: episode tags, sanitising, templates and the library confinement (SPEC §4).

Besides examples, hostile titles and templates are fuzzed: nothing leaves the library root.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aniworld_addon.errors import PathOutsideLibraryError, ValidationError
from aniworld_addon.library.episode_tags import (
    MAX_EPISODE,
    MAX_SEASON,
    EpisodeNumber,
    parse_episode,
    parse_episodes,
)
from aniworld_addon.library.naming import (
    COMPONENT_MAX_BYTES,
    confine,
    final_episode_path,
    rename_preview,
    render_episode_path,
    render_series_folder,
    sanitize_component,
    validate_template,
)
from aniworld_addon.library.scanner import LocalFile

DEFAULT_EPISODE = "Season {season:00}/{Series Title} - S{season:00}E{episode:00} - {Episode Title}"
TEMPLATES = [
    DEFAULT_EPISODE,
    "{Series TitleYear}/Season {season}/{Series Title} S{season:00}E{episode:000} {Language}",
    "{Episode Title} S{season}E{episode} {Series Title}",
    "{Language}/{Series Title}.s{season:00}e{episode:00}.{Episode Title}",
    "d/" * 12 + "S{season:00}E{episode:00}",  # as deep as the scan reads
]
HYPOTHESIS = settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Deterministic (the same examples on every run and in CI), bounded, no per-example deadline.
FUZZ = settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- hostile input for the fuzzing properties ---------------------------------------------------

# Everything that has ever turned a file name into a path trick somewhere.
HOSTILE = [
    "..",
    ".",
    "/",
    "\\",
    "../..",
    "..\\..",
    "/etc/passwd",
    "C:\\Windows",
    "\\\\server\\share",
    "~",
    "\x00",
    "\x1b[31m",
    "\n",
    "\r\n",
    "\t",
    "\x7f",
    "\u200b",  # zero-width space
    "\u202e",  # right-to-left override
    "\ufeff",
    "\u2028",
    "\uff0e\uff0e",  # fullwidth '..'
    "\uff0f",  # fullwidth solidus
    "\uff3c",  # fullwidth reverse solidus
    "\u2215",  # division slash
    "\u2044",  # fraction slash
    "\u2024\u2024",  # one dot leader x2
    "\ufe52",  # small full stop
    "e\u0301",  # decomposed accent
    "\U0001f600",
    "\ud800",  # lone surrogate
    "\udcff",  # a surrogate-escaped byte
    "CON",
    "nul.mkv",
    "COM1",
    "S01E01",
    "s99e99",
    ":",
    "*?<>|\"'",
    "%2e%2e%2f",
    "\x85",
    "a" * 300,
    "日本" * 120,
]
TOKENS = [
    "{Series Title}",
    "{Series TitleYear}",
    "{series title}",
    "{SERIES TITLEYEAR}",
    "{Episode Title}",
    "{Language}",
    "{season}",
    "{season:00}",
    "{season:0000}",
    "{episode}",
    "{episode:00}",
    "{episode:000}",
    "{episode:0000}",
]
# Placeholders a str.format-style renderer would have trouble with.
MALICIOUS = [
    "{}",
    "{0}",
    "{__class__}",
    "{season.__class__}",
    "{season!r}",
    "{season:>99999}",
    "{episode:099999999}",
    "{season:00000}",
    "{Series Title:{episode}}",
    "{Series Title[0]}",
    "{..}",
    "{/}",
    "{\x00}",
    "{{",
    "}}",
    "{",
    "}",
    "%s",
    "$HOME",
    "${season}",
]

hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.text(
        st.characters(codec=None, categories=["Cc", "Cf", "Cs", "Zs", "Zl", "Po"]), max_size=20
    ),
    st.lists(st.sampled_from(HOSTILE), max_size=5).map("".join),
)
template_piece = st.one_of(
    st.sampled_from(TOKENS),
    st.sampled_from(MALICIOUS),
    st.sampled_from(HOSTILE),
    st.sampled_from([" ", "-", "S", "E", " - ", "Season ", "/", "/../", "./", "//"]),
    st.text(max_size=6),
)
templates = st.one_of(
    st.lists(template_piece, max_size=10).map("".join),
    # Mostly valid episode templates with one hostile part spliced in somewhere.
    st.tuples(
        st.sampled_from(
            [
                "Season {season:00}/{Series Title} - S{season:00}E{episode:00} - {Episode Title}",
                "{Language}/{Series TitleYear}/S{season:00}E{episode:000}",
                "S{season}E{episode} {Episode Title}",
            ]
        ),
        st.integers(0, 80),
        template_piece,
    ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]),
)


def ep(season: int, episode: int) -> EpisodeNumber:
    return EpisodeNumber(season, episode)


def _assert_safe_component(name: str, max_bytes: int = COMPONENT_MAX_BYTES) -> None:
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name)
    assert len(name.encode("utf-8")) <= max_bytes
    assert not name.startswith(".") and not name.endswith((" ", "."))


def _episode_case(template: str, **changes: object) -> dict[str, object]:
    """An explicit example of the episode-path fuzz test: S01E01 of "x" unless changed."""
    case = {"template": template, "series_title": "x", "episode_title": "", "language": ""}
    return case | {"season": 1, "episode": 1, "year": None} | changes


def _final_case(template: str, **changes: object) -> dict[str, object]:
    """An explicit example of the final-path fuzz test: S01E01 of "Show" unless changed."""
    case = {"template": template, "folder": "Show", "series_title": "Show", "episode_title": ""}
    return case | {"language": "", "season": 1, "episode": 1, "ext": "mkv"} | changes


def _files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Show - S01E02 - Title.mkv", (ep(1, 2),)),
        ("S1E2.mkv", (ep(1, 2),)),
        ("show.s01e002.MP4", (ep(1, 2),)),
        ("Show S0001E0002.webm", (ep(1, 2),)),
        ("Show S00E05 Film.mkv", (ep(0, 5),)),
        ("Show_S02E10_[1080p].avi", (ep(2, 10),)),
        ("[Group] Show - S03E100.ts", (ep(3, 100),)),
        ("進撃の巨人 S02E03.mkv", (ep(2, 3),)),
        ("Dr. Stone S01E01 - Dr. Fone.mkv", (ep(1, 1),)),
        ("Show S01E01E02.mkv", (ep(1, 1), ep(1, 2))),
        ("Show S01E01-E03.mkv", (ep(1, 1), ep(1, 2), ep(1, 3))),
        ("Show S01E01-03.mkv", (ep(1, 1), ep(1, 2), ep(1, 3))),
        ("Show S01E05-1080p.mkv", (ep(1, 5),)),  # a resolution, not a range
        ("Show S01E05-E200.mkv", (ep(1, 5),)),  # a range longer than MAX_RANGE is ignored
        ("Show S01E05 then S01E06.mkv", (ep(1, 5),)),  # the first tag counts
    ],
)
def test_episode_tags_are_read_from_video_names(name: str, expected: tuple[EpisodeNumber]) -> None:
    assert parse_episodes(name) == expected
    assert parse_episode(name) == expected[0]


@pytest.mark.parametrize(
    "name",
    [
        "Show S01E02.mkv.part",
        "Show S01E02.part",
        "Show S01E02.mkv.ytdl",
        "Show S01E02.mkv.tmp",
        "Show S01E02.temp.mkv",
        "Show S01E02.part.mp4",
        "Show S01E02.f137.mp4",
        "Show S01E02.fhls-1080p.mp4",
        "Show S01E02.mkv.part-Frag12",
        ".Show S01E02.mkv",
        "._Show S01E02.mkv",
        "Show S01E02.srt",
        "Show S01E02.nfo",
        "Show S01E02",
        "ShowS01E02.mkv",  # no word boundary before the tag
        "Show S01E00.mkv",  # no provider numbers an episode 0
        "Show 1x02.mkv",
        "Show ſ01E02.mkv",  # a long s is not an S
        "",
    ],
)
def test_partial_hidden_and_other_files_are_no_episodes(name: str) -> None:
    assert parse_episodes(name) == ()
    assert parse_episode(name) is None


def test_episode_numbers_order_and_hash_like_values() -> None:
    assert ep(1, 2) == EpisodeNumber(1, 2) and hash(ep(1, 2)) == hash(EpisodeNumber(1, 2))
    assert sorted([ep(2, 1), ep(0, 3), ep(1, 10), ep(1, 2)]) == [
        ep(0, 3),
        ep(1, 2),
        ep(1, 10),
        ep(2, 1),
    ]
    assert {ep(1, 2): "a"}[EpisodeNumber(1, 2)] == "a"
    assert ep(0, 7).tag == "S00E07" and ep(1, 2).to_dict() == {"season": 1, "episode": 2}
    for season, episode in ((-1, 1), (1, 0), (MAX_SEASON + 1, 1), (1, MAX_EPISODE + 1)):
        with pytest.raises(ValueError, match="no such episode"):
            EpisodeNumber(season, episode)


tag_like = st.tuples(
    st.sampled_from(["", "Show ", "[G] ", ".", "x", "ſ", "\ud800", "日本 "]),
    st.sampled_from(["S", "s", "Ｓ"]),
    st.from_regex(r"\A[0-9]{0,300}\Z", fullmatch=True),
    st.sampled_from(["E", "e", "Ｅ", ""]),
    st.from_regex(r"\A[0-9]{0,300}\Z", fullmatch=True),
    st.lists(
        st.tuples(st.sampled_from(["-", "-E", "E", "e", "-e", "--"]), st.integers(0, 10**40)).map(
            lambda t: f"{t[0]}{t[1]}"
        ),
        max_size=5,
    ).map("".join),
    st.sampled_from(["", ".part", ".temp", ".f137", ".fhls-1080p", " - Title", ".\x00", "."]),
    st.sampled_from([".mkv", ".MP4", ".srt", "", ".", ".mkv.part", ".webm\n", ".m\u0130v"]),
).map("".join)


@FUZZ
@given(name=st.text(st.characters(codec=None)) | tag_like | st.text())
@example(name="S01E" + "9" * 300 + ".mkv")
@example(name="S01E01-" + "9" * 300 + ".mkv")
@example(name="S" + "0" * 250 + "1E1.mkv")
def test_parse_episodes_never_raises_and_claims_only_valid_numbers(name: str) -> None:
    found = parse_episodes(name)
    assert isinstance(found, tuple)
    for number in found:
        assert 0 <= number.season <= MAX_SEASON and 1 <= number.episode <= MAX_EPISODE
    assert list(found) == sorted(set(found))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("S" + "9" * 5000 + "E1.mkv", ()),
        ("S01E" + "1" * 5000 + ".mkv", ()),
        ("S01E01-E" + "9" * 5000 + ".mkv", (EpisodeNumber(1, 1),)),
    ],
    ids=["season", "episode", "range"],
)
def test_parse_episodes_survives_digit_runs_beyond_the_int_limit(
    name: str, expected: tuple[EpisodeNumber, ...]
) -> None:
    assert parse_episodes(name) == expected


# --- sanitising --------------------------------------------------------------------------------

RESERVED = ["CON", "con", "Prn", "AUX", "NUL", "COM1", "com9", "LPT1", "lpt9", "COM0", "COM¹"]


@pytest.mark.parametrize("name", RESERVED)
@pytest.mark.parametrize("suffix", ["", ".txt", ".mkv", ".tar.gz", " .txt"])
def test_windows_reserved_names_are_defused(name: str, suffix: str) -> None:
    result = sanitize_component(name + suffix)
    assert result.split(".")[0].strip().upper() not in {r.upper() for r in RESERVED}
    assert result.startswith("_")


@pytest.mark.parametrize("name", ["CONSOLE", "COM10", "LPT", "nullable.mkv", "_CON", "Aux Tales"])
def test_names_that_only_look_reserved_are_kept(name: str) -> None:
    assert sanitize_component(name) == name


def test_truncation_that_would_leave_a_reserved_name_is_defused() -> None:
    assert sanitize_component("CONSOLE", max_bytes=3) == "_CO"
    assert sanitize_component("nul.x", max_bytes=4) == "_nul"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "_"),
        (".", "_"),
        ("..", "_"),
        (" . . ", "_"),
        ("\x00\x01", "_"),
        ("???", "_"),
        (".hidden", "hidden"),
        ("..secret..", "secret"),
        ("name. . ", "name"),
        ("Re:Zero", "Re-Zero"),
        ("Title: Subtitle", "Title - Subtitle"),
        ("Fate/Zero", "Fate-Zero"),
        ("a\\b", "a-b"),
        ('What? <"Really"> | *', "What Really"),
        ("tab\tand\nnewline", "tabandnewline"),
        ("many    spaces", "many spaces"),
        ("zero\u200bwidth", "zerowidth"),
        ("e\u0301", "é"),  # NFC
    ],
)
def test_sanitize_examples(text: str, expected: str) -> None:
    assert sanitize_component(text) == expected


def test_sanitize_caps_utf8_bytes_without_cutting_a_character() -> None:
    result = sanitize_component("日本" * 100, max_bytes=200)
    assert len(result.encode("utf-8")) == 198  # 66 three-byte characters: 200 would split one
    assert result == "日本" * 33
    assert len(sanitize_component("a" * 300).encode()) == COMPONENT_MAX_BYTES


FORBIDDEN = set('/\\<>:"|?*\x00')


@HYPOTHESIS
@given(text=st.text(), max_bytes=st.integers(1, 255))
@example(text="CON", max_bytes=3)
@example(text="e\u200b\u0301", max_bytes=255)
@example(text="a" * 10 + " .", max_bytes=11)
def test_sanitized_components_are_always_safe(text: str, max_bytes: int) -> None:
    result = sanitize_component(text, max_bytes)
    _assert_safe_component(result, max_bytes)
    assert not FORBIDDEN & set(result)
    assert result.split(".")[0].rstrip(" ").upper() not in {"CON", "PRN", "AUX", "NUL"}
    assert sanitize_component(result, max_bytes) == result


# --- templates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "kind", "message"),
    [
        ("", "series_folder", "empty"),
        ("   ", "episode_path", "empty"),
        ("{Series Title", "series_folder", "unbalanced"),
        ("Series Title}", "series_folder", "unbalanced"),
        ("{{Series Title}}", "series_folder", "unbalanced"),
        ("{Series/Title}", "episode_path", "unbalanced"),
        ("{Series Title} {Quality}", "series_folder", "unknown token {Quality}"),
        ("{season} {Series Title}", "series_folder", "unknown token {season}"),
        ("S{season:00}E{episode:00} {Year}", "episode_path", "unknown token {Year}"),
        ("Anime", "series_folder", "needs {Series Title}"),
        ("{Series Title}/x", "series_folder", "one folder"),
        ("/abs/S{season}E{episode}", "episode_path", "relative"),
        ("../S{season}E{episode}", "episode_path", "'..'"),
        ("a/../S{season}E{episode}", "episode_path", "'..'"),
        ("./S{season}E{episode}", "episode_path", "'..'"),
        ("a//S{season}E{episode}", "episode_path", "empty"),
        ("S{season}E{episode}/", "episode_path", "empty"),
        ("a\\S{season}E{episode}", "episode_path", "'/'"),
        ("S{season}E{episode}\x00", "episode_path", "control"),
        ("{Series Title}", "episode_path", "S{season:00}E{episode:00}"),
        ("S{season}/E{episode}", "episode_path", "S{season:00}E{episode:00}"),
        ("S{season:00}x{episode:00}", "episode_path", "S{season:00}E{episode:00}"),
        ("Show{Series Title}S{season}E{episode}", "episode_path", "S{season:00}E{episode:00}"),
        ("{Episode Title}/S{season:00}E{episode:00}", "episode_path", "empty name"),
        # Deeper than the scan reads: the file would be downloaded again after every rescan.
        ("d/" * 13 + "S{season:00}E{episode:00}", "episode_path", "nests 13 folders"),
    ],
)
def test_invalid_templates_are_refused_with_a_reason(
    template: str, kind: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("?", r"\?")):
        validate_template(template, kind)


@pytest.mark.parametrize("template", TEMPLATES)
def test_useful_episode_templates_are_accepted(template: str) -> None:
    validate_template(template, "episode_path")


@pytest.mark.parametrize(
    "template", ["{Series TitleYear}", "{Series Title}", "Anime {series title}"]
)
def test_series_folder_templates_are_accepted(template: str) -> None:
    validate_template(template, "series_folder")


def test_unknown_template_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="kind"):
        validate_template("{Series Title}", "folder")


def test_series_folder_rendering() -> None:
    assert render_series_folder("{Series TitleYear}", "Attack on Titan", 2013) == (
        "Attack on Titan (2013)"
    )
    assert render_series_folder("{Series TitleYear}", "Attack on Titan", None) == "Attack on Titan"
    assert render_series_folder("{Series TitleYear}", "Dune (2021)", 2021) == "Dune (2021)"
    assert (
        render_series_folder("{Series Title}", "Fate/Zero: Part 2?", 2011) == "Fate-Zero - Part 2"
    )
    for useless in ("???", "..", " . ", ""):
        with pytest.raises(ValidationError, match="nothing usable"):
            render_series_folder("{Series TitleYear}", useless, 2020)


def test_episode_path_rendering_follows_the_tokens() -> None:
    path = render_episode_path(
        DEFAULT_EPISODE,
        series_title="Fate/Zero",
        year=2011,
        season=1,
        episode=2,
        episode_title="The Knights' Feast",
    )
    assert str(path) == "Season 01/Fate-Zero - S01E02 - The Knights' Feast"
    path = render_episode_path(
        "{Series TitleYear}/S{season}E{episode:000} {Language}",
        series_title="Show",
        year=2020,
        season=0,
        episode=5,
        language="German Dub",
    )
    assert str(path) == "Show (2020)/S0E005 German Dub"
    # A token with no text takes the separator before it along (a file keeps its name).
    empty_title = render_episode_path(
        DEFAULT_EPISODE, series_title="Show", year=None, season=2, episode=3
    )
    assert empty_title.name == "Show - S02E03"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{Series Title} - S{season:00}E{episode:00} - {Episode Title}", "Show - S02E03"),
        ("{Series Title}.S{season:00}E{episode:00}.{Episode Title}", "Show.S02E03"),
        ("{Series Title} S{season:00}E{episode:00} [{Language}]", "Show S02E03"),
        ("{Series Title} S{season:00}E{episode:00} ({Language}) - {Episode Title}", "Show S02E03"),
        ("{Episode Title} - {Series Title} S{season:00}E{episode:00}", "Show S02E03"),
        ("S{season:00}E{episode:00}{Episode Title}", "S02E03"),
        # the longer separator stays: "S02E03-03" would read as a range of episodes
        ("S{season:00}E{episode:00} - {Episode Title}-03", "S02E03 - 03"),
    ],
)
def test_empty_tokens_leave_no_dangling_separator(template: str, expected: str) -> None:
    path = render_episode_path(template, series_title="Show", year=None, season=2, episode=3)
    assert path.name == expected
    full = render_episode_path(
        template,
        series_title="Show",
        year=None,
        season=2,
        episode=3,
        episode_title="Pilot",
        language="German Dub",
    )
    assert "Pilot" in full.name or "German Dub" in full.name  # with text, nothing is dropped


def test_only_the_template_s_brackets_around_an_empty_token_go() -> None:
    template = "{Series Title} S{season:00}E{episode:00} ({Language}) - {Episode Title}"
    path = render_episode_path(
        template, series_title="Show [ ]", year=None, season=2, episode=3, episode_title="X"
    )
    assert path.name == "Show [ ] S02E03 - X"


def test_a_tag_inside_a_title_cannot_mislead_the_scanner() -> None:
    path = render_episode_path(
        "{Series Title} {Episode Title} - S{season:00}E{episode:00}",
        series_title="Show S09E09",
        year=None,
        season=1,
        episode=2,
        episode_title="recap of s01e01",
    )
    assert parse_episode(path.name + ".mkv") == ep(1, 2)


def test_long_titles_are_shortened_before_the_tag_is_lost() -> None:
    path = render_episode_path(
        "{Episode Title} {Series Title} S{season:00}E{episode:00} {Episode Title}",
        series_title="T" * 300,
        year=None,
        season=1,
        episode=2,
        episode_title="日本" * 200,
    )
    assert len(path.name.encode()) <= COMPONENT_MAX_BYTES - 16
    assert parse_episode(path.name + ".mkv") == ep(1, 2)


@HYPOTHESIS
@given(
    template=st.sampled_from(TEMPLATES),
    season=st.integers(0, MAX_SEASON),
    episode=st.integers(1, MAX_EPISODE),
    title=st.text(min_size=1).filter(lambda t: sanitize_component(t) != "_"),
    episode_title=st.text(),
    language=st.sampled_from(["German Dub", "English Sub", "x/../..", "S01E01"]),
    year=st.none() | st.integers(1900, 2100),
)
@example(DEFAULT_EPISODE, 0, 1, "S12E34", "S56E78", "German Dub", None)
@example("{Series Title}.s{season:00}e{episode:00}.{Episode Title}", 1, 2, "T", "F0", "", None)
@example("{Series Title}.s{season:00}e{episode:00}.{Episode Title}", 1, 2, "T", "a.Part", "", None)
def test_any_rendered_episode_path_parses_back_to_its_numbers(
    template: str,
    season: int,
    episode: int,
    title: str,
    episode_title: str,
    language: str,
    year: int | None,
) -> None:
    path = render_episode_path(
        template,
        series_title=title,
        year=year,
        season=season,
        episode=episode,
        episode_title=episode_title,
        language=language,
    )
    assert not path.is_absolute()
    assert all(part not in (".", "..") and part == sanitize_component(part) for part in path.parts)
    assert parse_episode(path.name + ".mkv") == EpisodeNumber(season, episode)


@FUZZ
@given(template=templates | st.text(), title=hostile_text, year=st.none() | st.integers(0, 99999))
@example(template="{Series Title}", title="..", year=None)
@example(template="{Series Title}\uff0f..\uff0f{Series Title}", title="\uff0e\uff0e", year=None)
@example(template="{Series Title:{episode}}", title="x", year=None)
@example(template="{Series Title}", title="\ud800", year=None)
def test_series_folder_is_one_safe_name_or_a_validation_error(
    template: str, title: str, year: int | None
) -> None:
    try:
        folder = render_series_folder(template, title, year)
    except ValidationError:
        return
    _assert_safe_component(folder)


@FUZZ
@given(
    template=templates,
    series_title=hostile_text,
    episode_title=hostile_text,
    language=hostile_text,
    season=st.integers(-2, MAX_SEASON + 2),
    episode=st.integers(-1, MAX_EPISODE + 2),
    year=st.none() | st.integers(-1, 99999),
)
@example(**_episode_case("Season {season:00}/S{season:00}E{episode:00}"))
@example(**_episode_case("../S{season:00}E{episode:00}"))
@example(**_episode_case("{Language}/S{season:00}E{episode:00}", language="../../.."))
@example(**_episode_case("S{season:00}E{episode:00}{Episode Title}", episode_title="-03"))
def test_episode_path_is_relative_safe_and_findable_or_a_validation_error(
    template: str,
    series_title: str,
    episode_title: str,
    language: str,
    season: int,
    episode: int,
    year: int | None,
) -> None:
    try:
        path = render_episode_path(
            template,
            series_title=series_title,
            year=year,
            season=season,
            episode=episode,
            episode_title=episode_title,
            language=language,
        )
    except ValidationError:
        return
    assert not path.is_absolute()
    # '/' in a title or a fullwidth slash never makes a folder the template did not ask for
    assert len(path.parts) == template.count("/") + 1
    for part in path.parts:
        _assert_safe_component(part)
    assert parse_episodes(path.name + ".mkv") == (EpisodeNumber(season, episode),)


def test_a_lone_surrogate_in_a_template_literal_is_a_validation_error() -> None:
    # Found by the episode path property above: the length check encoded the raw literal
    # before cleaning.
    with pytest.raises(ValidationError):
        render_episode_path(
            "\ud800",
            series_title="..",
            year=None,
            season=0,
            episode=1,
            episode_title="..",
            language="..",
        )


@pytest.mark.parametrize("title", ["E03", "-03", "-E3", "e2", "-5 Grad"])
def test_a_title_glued_to_the_tag_cannot_claim_more_episodes(title: str) -> None:
    for template in ("S{season:00}E{episode:00}{Episode Title}", "S{season}E{episode}{Language}"):
        path = render_episode_path(
            template, series_title="Show", year=None, season=1, episode=1,
            episode_title=title, language=title,
        )  # fmt: skip
        assert parse_episodes(path.name + ".mkv") == (EpisodeNumber(1, 1),)
        assert path.name == f"S01E01 {title}" or path.name == f"S1E1 {title}"


@FUZZ
@given(template=templates)
def test_template_validation_accepts_only_templates_that_render(template: str) -> None:
    for kind in ("series_folder", "episode_path"):
        try:
            validate_template(template, kind)
        except ValidationError:
            continue
        # an accepted template renders ordinary values; hostile ones stay safe or are refused
        if kind == "series_folder":
            _assert_safe_component(render_series_folder(template, "Title", 2020))
            _assert_safe_component(render_series_folder(template, "../../etc", None))
            continue
        path = render_episode_path(
            template, series_title="Show", year=2020, season=1, episode=2,
            episode_title="", language="German Dub",
        )  # fmt: skip
        assert parse_episodes(path.name + ".mkv") == (EpisodeNumber(1, 2),)
        try:
            path = render_episode_path(
                template, series_title="..", year=None, season=1, episode=2,
                episode_title="/etc/passwd", language="-E3",
            )  # fmt: skip
        except ValidationError:
            continue
        assert not path.is_absolute() and ".." not in path.parts
        assert parse_episodes(path.name + ".mkv") == (EpisodeNumber(1, 2),)


# --- confinement -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library root with symlinks that point inside, outside and in circles.

    Some folders a template can produce are symlinks that point outside: a season folder, a
    {Language} folder and a whole series folder. The fuzzing properties write into this tree.
    """
    base = tmp_path_factory.mktemp("confine")
    root, outside = base / "library", base / "outside"
    (root / "Show" / "Season 01").mkdir(parents=True)
    (outside / "Season 02").mkdir(parents=True)
    (outside / "Show").mkdir()
    (root / "Show" / "Season 02").symlink_to(outside / "Season 02")  # a season folder
    (root / "Show" / "German Dub").symlink_to(outside)  # a {Language} folder
    (root / "Linked").symlink_to(outside / "Show")  # a whole series folder
    (root / "Show" / "Season 03").symlink_to("Season 01")  # inside: allowed
    (root / "Show" / "loop").symlink_to("loop")
    (root / "escape").symlink_to(outside)
    (root / "up").symlink_to("..")
    (root / "slash").symlink_to("/")
    (root / "self").symlink_to(".")
    return root


def _outside(library: Path) -> Path:
    return library.parent / "outside"


def test_confine_accepts_paths_inside_the_library(library: Path) -> None:
    real = library.resolve()
    assert confine(library, "Show/Season 01/x.mkv") == real / "Show/Season 01/x.mkv"
    assert confine(library, "Show/Season 03/x.mkv") == real / "Show/Season 01/x.mkv"
    assert confine(library, "new/a/../b.mkv") == real / "new/b.mkv"
    assert confine(library, "self/Show") == real / "Show"
    assert confine(library, "up/library/Show") == real / "Show"  # out and back in


@pytest.mark.parametrize(
    "relative",
    [
        "",
        ".",
        "Show/..",
        "../x",
        "Show/../../x",
        "/etc/passwd",
        "escape/x",
        "Show/Season 02/x.mkv",
        "Show/German Dub/x",
        "Linked/x",
        "up/outside/x",
        "slash/etc/passwd",
        "self",
        "a\x00b",
    ],
)
def test_confine_refuses_the_root_itself_and_everything_outside(
    library: Path, relative: str
) -> None:
    with pytest.raises(PathOutsideLibraryError):
        confine(library, relative)


PIECES = [
    "..",
    ".",
    "",
    "Show",
    "Season 01",
    "Season 02",
    "Season 03",
    "German Dub",
    "Linked",
    "loop",
    "escape",
    "up",
    "slash",
    "self",
]
relative_paths = st.tuples(
    st.booleans(),
    st.lists(st.sampled_from(PIECES) | st.text(max_size=8) | hostile_text, max_size=6),
).map(lambda t: ("/" if t[0] else "") + "/".join(t[1]))


@FUZZ
@given(relative=relative_paths | hostile_text)
@example(relative="Show/\ud800")
@example(relative="Linked/x")
@example(relative="Show/German Dub/x")
@example(relative="\uff0e\uff0e/\uff0e\uff0e/etc")
def test_confine_never_returns_a_path_outside_the_library(library: Path, relative: str) -> None:
    try:
        result = confine(library, relative)
    except PathOutsideLibraryError:
        return
    real = os.path.realpath(library)
    assert str(result).startswith(real + os.sep)
    # An independent check: walking up from the result through real directories reaches root.
    assert Path(real) in result.parents
    assert os.path.realpath(result) == str(result)


@FUZZ
@given(
    folder=st.sampled_from(
        ["Show", "Linked", "New Show", "Show/Season 02", "escape", "up", "self", "..", ".", ""]
    )
    | st.sampled_from([".hidden", "a/b"])
    | hostile_text
    | st.text(),
    template=st.sampled_from([*TEMPLATES, "Season {season:00}/S{season:00}E{episode:00}"])
    | templates,
    series_title=hostile_text | st.text(),
    episode_title=hostile_text | st.text(),
    language=st.sampled_from(["German Dub", "English Sub"]) | hostile_text,
    season=st.integers(0, 4),
    episode=st.integers(1, 2000),
    ext=st.sampled_from(["mkv", ".mp4", "MKV", "../mkv", "mkv/..", "", "mkv\x00"]),
)
@example(**_final_case("{Language}/S{season:00}E{episode:00}", language="German Dub"))
@example(**_final_case("Season {season:00}/S{season:00}E{episode:00}", season=2))
@example(**_final_case("S{season:00}E{episode:00}", folder="Linked"))
def test_final_paths_resolve_inside_the_library_even_through_symlinks(
    library: Path,
    folder: str,
    template: str,
    series_title: str,
    episode_title: str,
    language: str,
    season: int,
    episode: int,
    ext: str,
) -> None:
    outside_before = _files_under(_outside(library))
    try:
        path = final_episode_path(
            library,
            folder,
            template,
            series_title=series_title,
            year=None,
            season=season,
            episode=episode,
            episode_title=episode_title,
            language=language,
            ext=ext,
        )
    except ValidationError:  # PathOutsideLibraryError included
        return
    real_root = Path(os.path.realpath(library))
    # an independent check of confine's answer: resolve again and walk the parents
    assert Path(os.path.realpath(path)) == path
    assert real_root in path.parents
    assert path.suffix == "." + ext.removeprefix(".").lower()
    assert parse_episodes(path.name) == (EpisodeNumber(season, episode),)
    # and really write there: the folders outside the library stay as they were
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    assert Path(os.path.realpath(path)).is_relative_to(real_root)
    assert _files_under(_outside(library)) == outside_before


def test_a_season_folder_symlinked_outside_is_refused(library: Path) -> None:
    def place(season: int) -> Path:
        return final_episode_path(
            library, "Show", DEFAULT_EPISODE, series_title="Show", year=None, season=season,
            episode=1, ext=".mkv",
        )  # fmt: skip

    assert place(1).parent == library.resolve() / "Show" / "Season 01"
    assert place(3).parent == library.resolve() / "Show" / "Season 01"  # a symlink inside
    with pytest.raises(PathOutsideLibraryError):
        place(2)


def test_symlinks_pointing_outside_are_refused_for_every_kind_of_folder(library: Path) -> None:
    # the examples above, spelled out: each would land outside if symlinks were not followed
    def place(folder: str, template: str) -> Path:
        return final_episode_path(
            library, folder, template, series_title="Show", year=None, season=2, episode=1,
            language="German Dub", ext="mkv",
        )  # fmt: skip

    for folder, template in [
        ("Show", "Season {season:00}/S{season:00}E{episode:00}"),
        ("Show", "{Language}/S{season:00}E{episode:00}"),
        ("Linked", "S{season:00}E{episode:00}"),
    ]:
        with pytest.raises(PathOutsideLibraryError):
            place(folder, template)
    inside = place("Show", "S{season:00}E{episode:00}")
    assert inside == library.resolve() / "Show" / "S02E01.mkv"


@pytest.mark.parametrize("ext", ["srt", "part", "", "mkv.part", "../mkv"])
def test_only_video_extensions_are_written(library: Path, ext: str) -> None:
    with pytest.raises(ValidationError, match="video"):
        final_episode_path(
            library, "Show", DEFAULT_EPISODE, series_title="Show", year=None, season=1,
            episode=1, ext=ext,
        )  # fmt: skip


@pytest.mark.parametrize("folder", ["a" * 256, "é" * 128, "\ud800", "", ".hidden", "a/b", "a\0b"])
def test_a_series_folder_that_cannot_exist_is_refused(library: Path, folder: str) -> None:
    # 256 bytes is one past NAME_MAX: no file system holds it, so writing would be an OSError.
    with pytest.raises(ValidationError, match="series folder"):
        final_episode_path(
            library, folder, DEFAULT_EPISODE, series_title="Show", year=None, season=1,
            episode=1, ext="mkv",
        )  # fmt: skip
    longest = final_episode_path(
        library, "a" * 255, DEFAULT_EPISODE, series_title="Show", year=None, season=1,
        episode=1, ext="mkv",
    )  # fmt: skip
    assert longest.relative_to(library.resolve()).parts[0] == "a" * 255


# --- rename preview ----------------------------------------------------------------------------


def test_rename_preview_proposes_template_names_without_touching_files(tmp_path: Path) -> None:
    series = tmp_path / "Show"
    (series / "Season 01").mkdir(parents=True)
    names = ["Season 01/Show - S01E01 - Pilot.mkv", "show.s01e02.mp4", "Show S01E03.mkv"]
    names += ["Show S01E03 copy.mkv", "Show S01E04E05.mkv"]
    for name in names:
        (series / name).touch()
    before = sorted(p.name for p in series.rglob("*"))
    files = [LocalFile(name, parse_episodes(name.rpartition("/")[2])) for name in names]
    plans = rename_preview(
        tmp_path,
        "Show",
        DEFAULT_EPISODE,
        files,
        series_title="Show",
        episode_titles={ep(1, 1): "Pilot", ep(1, 2): "Second"},
    )
    real = series.resolve()
    by_name = {plan.current.name: plan for plan in plans}
    pilot = by_name["Show - S01E01 - Pilot.mkv"]
    assert not pilot.changed and pilot.problem is None
    second = by_name["show.s01e02.mp4"]
    assert second.changed and second.problem is None
    assert second.proposed == real / "Season 01" / "Show - S01E02 - Second.mp4"
    for clash in ("Show S01E03.mkv", "Show S01E03 copy.mkv"):
        assert by_name[clash].problem == "2 files would get this name"
    double = by_name["Show S01E04E05.mkv"]
    assert double.proposed is None and "2 episodes" in (double.problem or "")
    assert double.to_dict()["changed"] is False
    assert sorted(p.name for p in series.rglob("*")) == before
