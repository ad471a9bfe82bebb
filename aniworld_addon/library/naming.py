"""Library file names (SPEC §4): naming templates, safe components, confinement, renames."""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Literal

from ..errors import PathOutsideLibraryError, ValidationError
from .episode_tags import VIDEO_EXTENSIONS, EpisodeNumber, is_temp_part, parse_episodes
from .scanner import MAX_DEPTH

if TYPE_CHECKING:
    from .scanner import LocalFile

NAME_MAX_BYTES: Final = 255  # the longest file name ext4, btrfs, XFS and NTFS-3G accept
COMPONENT_MAX_BYTES: Final = 200  # below the usual 255-byte limit: room for ".part" and friends
EXT_RESERVE_BYTES: Final = 16

_COLON_SPACE = re.compile(r"\s*:\s+")
_REPLACE = str.maketrans({":": "-", "/": "-", "\\": "-", **dict.fromkeys('<>"|?*')})
_DROPPED = frozenset({"Cc", "Cf", "Cs"})  # controls, invisible format characters, lone surrogates
_EDGES = re.compile(r"\A[ .]+|[ .]+\Z")
_TRAILING = re.compile(r"[ .]+\Z")
_RESERVED: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")}
)


def _clean_text(text: str) -> str:
    """Drop what no file name may hold; collapse white space. Keeps edges as they are."""
    text = _COLON_SPACE.sub(" - ", unicodedata.normalize("NFC", text)).translate(_REPLACE)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROPPED)
    # Dropping a format character can leave a letter and its accent side by side: compose again.
    return " ".join(unicodedata.normalize("NFC", text).split())


def _truncate(text: str, max_bytes: int) -> str:
    """Cut to max_bytes of UTF-8 without splitting a character."""
    raw = text.encode("utf-8")
    return text if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", "ignore")


def _is_reserved(name: str) -> bool:
    """Windows device names, also with an extension: 'con', 'NUL.mkv', 'com1 .txt'."""
    return name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED


def _component(text: str, max_bytes: int) -> str:
    """sanitize_component without the fallback: '' means nothing usable was left."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    text = _EDGES.sub("", _clean_text(text))
    if _is_reserved(text):
        text = "_" + text
    text = _TRAILING.sub("", _truncate(text, max_bytes))
    if _is_reserved(text):  # truncation turned 'CONSOLE' into 'CON'
        text = _TRAILING.sub("", _truncate("_" + text, max_bytes))
    return text


def sanitize_component(text: str, max_bytes: int = COMPONENT_MAX_BYTES) -> str:
    """One safe path component from any text: never empty, hidden, '..', reserved or too long."""
    return _component(text, max_bytes) or "_"


# --- templates --------------------------------------------------------------------------------

TemplateKind = Literal["series_folder", "episode_path"]
_TEXT_FIELDS: Final = frozenset({"series_title", "series_title_year", "episode_title", "language"})
_SEPARATORS: Final = " -._"  # what joins a token to the text before it
_PAIRS: Final = {"(": ")", "[": "]"}  # brackets a template puts around a token
_FOLDER_FIELDS: Final = frozenset({"series_title", "series_title_year"})
_TOKENS: Final[dict[str, tuple[str, int]]] = {
    "series title": ("series_title", 0),
    "series titleyear": ("series_title_year", 0),
    "episode title": ("episode_title", 0),
    "language": ("language", 0),
    **{f"{n}:{'0' * w}": (n, w) for n in ("season", "episode") for w in range(1, 5)},
    "season": ("season", 1),
    "episode": ("episode", 1),
}
_FOLDER_HELP: Final = "{Series Title}, {Series TitleYear}"
_EPISODE_HELP: Final = (
    "{Series Title}, {Series TitleYear}, {season}, {season:00}, {episode}, {episode:00}, "
    "{episode:000}, {Episode Title}, {Language}"
)
_TOKEN_SPLIT = re.compile(r"(\{[^{}]*\})")
_DEFUSE = re.compile(r"(?<![A-Za-z0-9])([Ss]\d+)([Ee]\d)", re.A)
# A text right after the tag must not extend it: "S01E01" + "-03" would read as episodes 1-3.
_DEFUSE_LEAD = re.compile(r"\A(?=-?[Ee]\d|-\d)", re.A)

Part = str | tuple[str, int]  # literal text, or (field, zero padding)
Segment = tuple[Part, ...]


def _parse_segment(raw: str, kind: TemplateKind, label: str) -> Segment:
    """Literal text and tokens of one '/'-separated part of a template."""
    parts: list[Part] = []
    for piece in _TOKEN_SPLIT.split(raw):
        if piece.startswith("{") and piece.endswith("}"):
            token = _TOKENS.get(piece[1:-1].lower())
            if token is None or (kind == "series_folder" and token[0] not in _FOLDER_FIELDS):
                known = _FOLDER_HELP if kind == "series_folder" else _EPISODE_HELP
                raise ValidationError(f"unknown token {piece} in the {label}; known: {known}")
            parts.append(token)
        elif "{" in piece or "}" in piece:
            raise ValidationError(f"unbalanced braces in the {label}")
        elif piece:
            parts.append(piece)
    return tuple(parts)


@lru_cache(maxsize=64)
def _compile(template: str, kind: TemplateKind) -> tuple[Segment, ...]:
    """Parse and check a template once; raises ValidationError naming the problem."""
    label = f"{kind.replace('_', ' ')} template"
    if not isinstance(template, str) or not template.strip():
        raise ValidationError(f"the {label} is empty")
    if len(template) > 1000:
        raise ValidationError(f"the {label} is longer than 1000 characters")
    if any(unicodedata.category(ch) == "Cc" for ch in template):
        raise ValidationError(f"the {label} contains control characters")
    if "\\" in template:
        raise ValidationError(f"the {label} must use '/' to separate folders")
    if template.startswith("/"):
        raise ValidationError(f"the {label} must be a relative path")
    if kind == "series_folder" and "/" in template:
        raise ValidationError(f"the {label} must name one folder (no '/')")
    if any(not raw.strip(" .") for raw in template.split("/")):
        raise ValidationError(f"the {label} has an empty, '.' or '..' folder name")
    segments = tuple(_parse_segment(raw, kind, label) for raw in template.split("/"))
    fields = {p[0] for seg in segments for p in seg if isinstance(p, tuple)}
    if kind == "series_folder" and not fields & _FOLDER_FIELDS:
        raise ValidationError(f"the {label} needs {{Series Title}} or {{Series TitleYear}}")
    return segments


def _values(title: str, year: int | None, episode_title: str, language: str) -> dict[str, str]:
    """Cleaned token texts; a tag inside a title is split so the scanner cannot misread it."""
    name = _clean_text(title)
    with_year = name if year is None or name.endswith(f"({year})") else f"{name} ({year})"
    texts = {
        "series_title": name,
        "series_title_year": with_year,
        "episode_title": _clean_text(episode_title),
        "language": _clean_text(language),
    }
    return {
        field: _DEFUSE_LEAD.sub(" ", _DEFUSE.sub(r"\1 \2", text)) for field, text in texts.items()
    }


def _join(
    segment: Segment, values: Mapping[str, str], numbers: Mapping[str, int], budget: int | None
) -> list[str]:
    """The pieces of one rendered component; free texts cut to budget bytes each."""
    out: list[str] = []
    for part in segment:
        if isinstance(part, str):
            out.append(part)
        elif part[0] in _TEXT_FIELDS:
            text = values[part[0]]
            out.append(text if budget is None else _truncate(text, budget).rstrip())
        else:
            out.append(f"{numbers[part[0]]:0{part[1]}d}")
    return _without_empty_tokens(segment, values, out)


def _without_empty_tokens(
    segment: Segment, values: Mapping[str, str], pieces: list[str]
) -> list[str]:
    """Drop the separator an empty token leaves doubled or dangling, as Sonarr does.

    "S01E02 - {Episode Title}" for an episode whose title the site does not give yet was
    "S01E02 -", a name the file keeps for good. Around an empty token, of the separator runs
    ending the text before it and starting the text after it one stays (the longer: "S01E02 -
    {Episode Title}-03" keeps " - ", as "S01E02-03" would read as a range), none at either end
    of the name, and a bracket pair of the template around it goes ("[{Language}]").
    """
    empty = [
        isinstance(part, tuple) and part[0] in _TEXT_FIELDS and not values[part[0]]
        for part in segment
    ]
    if not any(empty):
        return pieces
    out = list(pieces)
    literal = [isinstance(part, str) for part in segment]

    def neighbours(index: int) -> tuple[int | None, int | None]:
        before = next((i for i in range(index - 1, -1, -1) if out[i]), None)
        after = next((i for i in range(index + 1, len(out)) if out[i]), None)
        return before, after

    for index, is_empty in enumerate(empty):
        if not is_empty:
            continue
        before, after = neighbours(index)
        if before is not None and after is not None and literal[before] and literal[after]:
            opened = out[before].rstrip()
            if opened[-1:] in _PAIRS and out[after][:1] == _PAIRS[opened[-1]]:
                out[before], out[after] = opened[:-1], out[after][1:]
                before, after = neighbours(index)
        lead = _run_at_end(out[before]) if before is not None and literal[before] else ""
        trail = _run_at_start(out[after]) if after is not None and literal[after] else ""
        drop_lead = bool(lead) and (after is None or len(trail) > len(lead))
        drop_trail = bool(trail) and not drop_lead and (before is None or bool(lead))
        if before is not None and drop_lead:
            out[before] = out[before][: -len(lead)]
        if after is not None and drop_trail:
            out[after] = out[after][len(trail) :]
    return out


def _run_at_end(text: str) -> str:
    return text[len(text.rstrip(_SEPARATORS)) :]


def _run_at_start(text: str) -> str:
    return text[: len(text) - len(text.lstrip(_SEPARATORS))]


def _render(
    segment: Segment, values: Mapping[str, str], numbers: Mapping[str, int], cap: int
) -> str:
    """One sanitised component; long titles are shortened first so literals and numbers survive."""
    pieces = _join(segment, values, numbers, None)
    texts = [values[p[0]] for p in segment if isinstance(p, tuple) and p[0] in _TEXT_FIELDS]
    # A template literal is cleaned with the whole name below (a lone surrogate is dropped
    # there), so only measure it here.
    size = len("".join(pieces).encode("utf-8", "surrogatepass"))
    if size > cap and texts:
        fixed = size - sum(len(text.encode("utf-8")) for text in texts)
        pieces = _join(segment, values, numbers, max(0, cap - fixed) // len(texts))
    name = _component("".join(pieces), cap)
    if not name:
        raise ValidationError(
            f"the template renders an empty name from {''.join(pieces)!r} "
            "(is a token such as {Language} or {Episode Title} empty?)"
        )
    return name


def render_series_folder(template: str, title: str, year: int | None = None) -> str:
    """The folder name for a new series, e.g. 'Title (2019)' from '{Series TitleYear}'."""
    (segment,) = _compile(template, "series_folder")
    if not _component(title, COMPONENT_MAX_BYTES):
        raise ValidationError(f"the series title {title!r} has nothing usable as a folder name")
    return _render(segment, _values(title, year, "", ""), {}, COMPONENT_MAX_BYTES)


def render_episode_path(
    template: str,
    *,
    series_title: str,
    year: int | None,
    season: int,
    episode: int,
    episode_title: str = "",
    language: str = "",
) -> PurePosixPath:
    """The episode path relative to its series folder, without the extension."""
    segments = _compile(template, "episode_path")
    if len(segments) - 1 > MAX_DEPTH:  # the scan would never find the file
        raise ValidationError(
            f"the episode path nests {len(segments) - 1} folders; a scan reads at most"
            f" {MAX_DEPTH} below a series folder"
        )
    try:
        number = EpisodeNumber(season, episode)
    except ValueError as err:
        raise ValidationError(str(err)) from err
    values = _values(series_title, year, episode_title, language)
    numbers = {"season": season, "episode": episode}
    names = [_render(seg, values, numbers, COMPONENT_MAX_BYTES) for seg in segments[:-1]]
    names.append(_render(segments[-1], values, numbers, COMPONENT_MAX_BYTES - EXT_RESERVE_BYTES))
    # The scanner must find what we write, or the episode would be downloaded again and again;
    # and only that episode, or the ones the name also claims would never be downloaded.
    if parse_episodes(names[-1] + ".mkv") != (number,):
        names[-1] = _unmark(names[-1])
    if parse_episodes(names[-1] + ".mkv") != (number,):
        raise ValidationError(
            f"the file name {names[-1]!r} does not carry the tag {number.tag}: the episode path "
            "template needs S{season:00}E{episode:00} in the file name"
        )
    return PurePosixPath(*names)


def _unmark(name: str) -> str:
    """The name without dots before parts that read as unfinished-download markers.

    A dotted template with an episode titled "Part" or "F1" renders "Show.S01E01.Part": the
    scanner would take it for a temp file and never count it. Such a part is joined with a space.
    """
    first, *parts = name.split(".")
    return "".join([first, *((" " if is_temp_part(part) else ".") + part for part in parts)])


def validate_template(template: str, kind: str) -> None:
    """Refuse a template that cannot name files safely and findably (settings validation)."""
    if kind == "series_folder":
        render_series_folder(template, "Sample Title", None)
        render_series_folder(template, "Sample Title", 2019)
    elif kind == "episode_path":
        # An empty episode title (providers often lack one) and a three-digit special must both
        # give a findable name; a download always has a language, so {Language} may be a folder.
        for season, episode, title, language in ((3, 7, "", "German Dub"), (0, 123, "T", "Sub")):
            render_episode_path(
                template,
                series_title="Sample",
                year=2019,
                season=season,
                episode=episode,
                episode_title=title,
                language=language,
            )
    else:
        raise ValueError(f"unknown template kind {kind!r}")


# --- paths inside the library -----------------------------------------------------------------


def confine(root: Path | str, relative: str | os.PathLike[str]) -> Path:
    """root/relative with symlinks resolved; raises unless it lies strictly inside root."""
    rel = os.fspath(relative)
    if "\0" in rel:
        raise PathOutsideLibraryError("the path contains a NUL byte", details={"path": rel})
    if os.path.isabs(rel):
        raise PathOutsideLibraryError("the path must be relative", details={"path": rel})
    try:
        os.fsencode(rel)
    except UnicodeEncodeError as err:  # a lone surrogate: no file can have this name
        raise PathOutsideLibraryError(
            "the path is not a valid file name", details={"path": ascii(rel)}
        ) from err
    base = os.path.realpath(root)
    target = os.path.realpath(os.path.join(base, rel))
    if target == base or os.path.commonpath((base, target)) != base:
        raise PathOutsideLibraryError(
            f"{rel!r} does not lie inside the library folder", details={"path": rel}
        )
    return Path(target)


def _folder_name(name: str) -> str:
    """An existing folder is used verbatim (that is its name on disk) but must be one folder."""
    if not name or name[0] == "." or "/" in name or "\0" in name:
        raise ValidationError(f"{name!r} is not a series folder name")
    # Longer than a file system allows (NAME_MAX), or not encodable as a file name: no such
    # folder can exist, and writing into it would fail with an OSError, not this refusal.
    try:
        encoded = os.fsencode(name)
    except UnicodeEncodeError as err:
        raise ValidationError(f"{name!r} is not a series folder name") from err
    if len(encoded) > NAME_MAX_BYTES:
        raise ValidationError(f"the series folder name {name[:40]!r}... is too long")
    return name


def _extension(ext: str) -> str:
    """A video extension without its dot: anything else would be invisible to the scanner."""
    clean = ext.removeprefix(".").lower()
    if clean not in VIDEO_EXTENSIONS:
        raise ValidationError(f"{ext!r} is not a video file extension")
    return clean


def final_episode_path(
    library_root: Path | str,
    series_folder: str,
    episode_template: str,
    *,
    series_title: str,
    year: int | None,
    season: int,
    episode: int,
    episode_title: str = "",
    language: str = "",
    ext: str,
) -> Path:
    """Where an episode file goes: rendered, sanitised, then proven to lie inside the library."""
    relative = render_episode_path(
        episode_template,
        series_title=series_title,
        year=year,
        season=season,
        episode=episode,
        episode_title=episode_title,
        language=language,
    )
    name = f"{relative.name}.{_extension(ext)}"
    return confine(library_root, PurePosixPath(_folder_name(series_folder), relative.parent, name))


@dataclass(slots=True, frozen=True)
class RenamePlan:
    """One proposed rename; apply it only when problem is None (and it changes something)."""

    episodes: tuple[EpisodeNumber, ...]
    current: Path
    proposed: Path | None
    problem: str | None = None

    @property
    def changed(self) -> bool:
        """Whether applying the plan would move the file."""
        return self.proposed is not None and self.proposed != self.current

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of a plan."""
        return {
            "episodes": [ep.to_dict() for ep in self.episodes],
            "current": str(self.current),
            "proposed": None if self.proposed is None else str(self.proposed),
            "changed": self.changed,
            "problem": self.problem,
        }


def rename_preview(
    library_root: Path | str,
    series_folder: str,
    template: str,
    files: Iterable[LocalFile],
    *,
    series_title: str,
    year: int | None = None,
    episode_titles: Mapping[EpisodeNumber, str] | None = None,
    language: str = "",
) -> list[RenamePlan]:
    """Current -> proposed path of each episode file under the template; touches nothing."""
    titles = episode_titles or {}
    folder = confine(library_root, _folder_name(series_folder))
    plans: list[RenamePlan] = []
    for file in files:
        parent, _, name = file.relative.rpartition("/")
        current = (confine(folder, parent) if parent else folder) / name
        first = file.episodes[0]
        if len(file.episodes) > 1:
            problem = f"holds {len(file.episodes)} episodes; rename it by hand"
            plans.append(RenamePlan(file.episodes, current, None, problem))
            continue
        try:
            proposed = final_episode_path(
                library_root,
                series_folder,
                template,
                series_title=series_title,
                year=year,
                season=first.season,
                episode=first.episode,
                episode_title=titles.get(first, ""),
                language=language,
                ext=name.rpartition(".")[2],
            )
        except ValidationError as err:
            plans.append(RenamePlan(file.episodes, current, None, err.message))
            continue
        plans.append(RenamePlan(file.episodes, current, proposed))
    targets = Counter(plan.proposed for plan in plans if plan.proposed is not None)
    return [
        RenamePlan(
            p.episodes, p.current, p.proposed, f"{targets[p.proposed]} files would get this name"
        )
        if p.proposed is not None and targets[p.proposed] > 1
        else p
        for p in plans
    ]
