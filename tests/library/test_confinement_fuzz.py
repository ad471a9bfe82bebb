"""Fuzzing the naming code with hostile titles and templates: nothing leaves the library root."""

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
    parse_episodes,
)
from aniworld_addon.library.naming import (
    COMPONENT_MAX_BYTES,
    confine,
    final_episode_path,
    render_episode_path,
    render_series_folder,
    validate_template,
)

# Deterministic (the same examples on every run and in CI), bounded, no per-example deadline.
FUZZ = settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

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


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real library root; some folders inside it are symlinks that point outside it."""
    base = tmp_path_factory.mktemp("confinement")
    root, outside = base / "library", base / "outside"
    (root / "Show" / "Season 01").mkdir(parents=True)
    (outside / "Season 02").mkdir(parents=True)
    (outside / "Show").mkdir()
    (root / "Show" / "Season 02").symlink_to(outside / "Season 02")  # a season folder
    (root / "Show" / "German Dub").symlink_to(outside)  # a {Language} folder
    (root / "Linked").symlink_to(outside / "Show")  # a whole series folder
    (root / "Show" / "Season 03").symlink_to("Season 01")  # inside: allowed
    return root


def _outside(library: Path) -> Path:
    return library.parent / "outside"


def _files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _assert_safe_component(name: str) -> None:
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name)
    assert len(name.encode("utf-8")) <= COMPONENT_MAX_BYTES
    assert not name.startswith(".") and not name.endswith((" ", "."))


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
@example(
    template="Season {season:00}/S{season:00}E{episode:00}",
    series_title="x",
    episode_title="",
    language="",
    season=1,
    episode=1,
    year=None,
)
@example(
    template="../S{season:00}E{episode:00}",
    series_title="x",
    episode_title="",
    language="",
    season=1,
    episode=1,
    year=None,
)
@example(
    template="{Language}/S{season:00}E{episode:00}",
    series_title="x",
    episode_title="",
    language="../../..",
    season=1,
    episode=1,
    year=None,
)
@example(
    template="S{season:00}E{episode:00}{Episode Title}",
    series_title="x",
    episode_title="-03",
    language="",
    season=1,
    episode=1,
    year=None,
)
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


@FUZZ
@given(
    folder=st.sampled_from(["Show", "Linked", "New Show", "Show/Season 02", "..", ""])
    | hostile_text,
    template=templates,
    series_title=hostile_text,
    episode_title=hostile_text,
    language=st.sampled_from(["German Dub", "English Sub"]) | hostile_text,
    season=st.integers(0, 4),
    episode=st.integers(1, 30),
    ext=st.sampled_from(["mkv", ".mp4", "MKV", "../mkv", "mkv/..", "", "mkv\x00"]),
)
@example(
    folder="Show",
    template="{Language}/S{season:00}E{episode:00}",
    series_title="Show",
    episode_title="",
    language="German Dub",
    season=1,
    episode=1,
    ext="mkv",
)
@example(
    folder="Show",
    template="Season {season:00}/S{season:00}E{episode:00}",
    series_title="Show",
    episode_title="",
    language="",
    season=2,
    episode=1,
    ext="mkv",
)
@example(
    folder="Linked",
    template="S{season:00}E{episode:00}",
    series_title="Show",
    episode_title="",
    language="",
    season=1,
    episode=1,
    ext="mkv",
)
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
    assert parse_episodes(path.name) == (EpisodeNumber(season, episode),)
    # and really write there: the folders outside the library stay as they were
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    assert Path(os.path.realpath(path)).is_relative_to(real_root)
    assert _files_under(_outside(library)) == outside_before


@pytest.mark.parametrize("title", ["E03", "-03", "-E3", "e2", "-5 Grad"])
def test_a_title_glued_to_the_tag_cannot_claim_more_episodes(title: str) -> None:
    for template in ("S{season:00}E{episode:00}{Episode Title}", "S{season}E{episode}{Language}"):
        path = render_episode_path(
            template, series_title="Show", year=None, season=1, episode=1,
            episode_title=title, language=title,
        )  # fmt: skip
        assert parse_episodes(path.name + ".mkv") == (EpisodeNumber(1, 1),)
        assert path.name == f"S01E01 {title}" or path.name == f"S1E1 {title}"


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


relative_paths = st.lists(
    st.sampled_from(["..", ".", "Show", "Season 02", "Season 03", "German Dub", "Linked", ""])
    | hostile_text,
    max_size=6,
).map("/".join)


@FUZZ
@given(relative=relative_paths | hostile_text)
@example(relative="Show/\ud800")
@example(relative="Linked/x")
@example(relative="Show/German Dub/x")
@example(relative="\uff0e\uff0e/\uff0e\uff0e/etc")
def test_confine_answers_a_path_inside_or_the_documented_error(
    library: Path, relative: str
) -> None:
    try:
        result = confine(library, relative)
    except PathOutsideLibraryError:
        return
    real_root = os.path.realpath(library)
    assert str(result).startswith(real_root + os.sep)
    assert Path(real_root) in result.parents
    assert os.path.realpath(result) == str(result)


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


# --- file-name parsing never raises -----------------------------------------------------------

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


def test_a_lone_surrogate_in_a_template_literal_is_a_validation_error() -> None:
    # Found by the property above: the length check encoded the raw literal before cleaning.
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
