"""Episode tags in file names (SPEC §4): S01E02, multi-episode files, what is a finished video.

The scanner parses every file name of the library with parse_episodes, so it is written for
speed; naming.py renders names that parse back to what they were made for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

VIDEO_EXTENSIONS: Final = frozenset(
    {"3gp", "asf", "avi", "divx", "f4v", "flv", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg"}
    | {"mpg", "mts", "ogm", "ogv", "rm", "rmvb", "ts", "vob", "webm", "wmv"}
)
# A dot-separated part after the tag that marks an unfinished download: "x.temp.mkv" (yt-dlp's
# merger), "x.part.mp4", and "x.f137.mp4" (one yt-dlp format stream, see _FORMAT_PART).
_TEMP_PARTS: Final = frozenset({"PART", "TEMP", "TMP", "YTDL", "PARTIAL", "CRDOWNLOAD"})
_FORMAT_PART = re.compile(r"F\d+|F(?:HLS|DASH|HTTP)-[A-Z0-9-]+", re.ASCII)
MAX_SEASON: Final = 9999
MAX_EPISODE: Final = 99999
MAX_RANGE: Final = 50  # "S01E01-E300" is a typo or a resolution, not 300 episodes in one file

# Upper-cased ASCII names use a pattern that starts with a literal, which re finds with a fast
# scan: this is the scanner's hottest line. Other names take the general pattern.
_TAG_FAST = re.compile(
    r"S(?<![A-Z0-9]S)(\d++E\d++)((?:-?E\d++|-\d++(?![A-Z]))*)(.*)\.([A-Z0-9]+)\Z", re.S | re.A
)
_TAG_ANY = re.compile(
    r"(?<![A-Za-z0-9])[Ss](\d++[Ee]\d++)((?:-?[Ee]\d++|-\d++(?![A-Za-z]))*)"
    r"(.*)\.([A-Za-z0-9]+)\Z",
    re.S | re.A,
)
_EXTRA = re.compile(r"(-?)[Ee]?(\d+)", re.A)
_VIDEO_UPPER: Final = frozenset(ext.upper() for ext in VIDEO_EXTENSIONS)
# parse_folder's patterns run over a folder's upper-cased ASCII names joined by line breaks. A
# name gets its first tag and what follows it, where _TAG_FAST finds them: the first S that starts
# a tag decides, as the extension and the dotted parts do not depend on which S it is.
_VIDEO_ALTERNATIVES: Final = "|".join(  # the usual ones first: re tries them in this order
    sorted(_VIDEO_UPPER, key=lambda ext: (ext not in {"MKV", "MP4"}, ext))
)
_TAGS_OF_LINES = re.compile(
    r"S(?<![A-Z0-9]S)(\d++E\d++(?:-?E\d++|-\d++(?![A-Z]))*+)[^\n]*\.(?:"
    + _VIDEO_ALTERNATIVES
    + r")$",
    re.M | re.A,
)
# When some names have no tag: mark each S that starts a tag (a NUL is in no file name), then
# read one group per line, empty for hidden names and names without a mark.
_MARK_TAGS = re.compile(
    r"S(?<![A-Z0-9]S)(?=\d++E\d++(?:-?E\d++|-\d++(?![A-Z]))*+[^\n]*\.(?:"
    + _VIDEO_ALTERNATIVES
    + r")$)",
    re.M | re.A,
)
_FIRST_MARK = re.compile(
    r"^(?:\.[^\n]*+|[^\x00\n]*+(?:\x00(\d++E\d++(?:-?E\d++|-\d++(?![A-Z]))*+))?[^\n]*+)$",
    re.M | re.A,
)
# A dotted part that _is_temp calls unfinished, anywhere in the names: then the slow path.
_TEMP_PART_ANY = re.compile(
    rf"\.(?:{'|'.join(sorted(_TEMP_PARTS))}|{_FORMAT_PART.pattern})(?=\.)", re.A
)


@dataclass(slots=True, frozen=True, order=True)
class EpisodeNumber:
    """One episode: season 0 holds films and specials; episodes count from 1."""

    season: int
    episode: int
    # Dicts keyed by episode are built for every file of every scan: hash once, not per lookup.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.season <= MAX_SEASON or not 1 <= self.episode <= MAX_EPISODE:
            raise ValueError(f"no such episode number: season {self.season}, {self.episode}")
        object.__setattr__(self, "_hash", hash((self.season, self.episode)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def tag(self) -> str:
        """The Sonarr-style tag, e.g. S01E02."""
        return f"S{self.season:02d}E{self.episode:02d}"

    def to_dict(self) -> dict[str, int]:
        """The JSON shape {season, episode}."""
        return {"season": self.season, "episode": self.episode}


# Interned one-episode tuples by their upper-cased tag ("01E08"): a library holds a few thousand.
_EPISODES: dict[str, tuple[EpisodeNumber, ...]] = {}
# parse_folder's results by the captured tag and what follows it ("01E08", "01E01-E03").
_BY_TAG: dict[str, tuple[EpisodeNumber, ...]] = {"": ()}


def _number(digits: str) -> int:
    """A run of digits as an int; a run past int()'s 4300-digit limit is simply too big."""
    return int(digits) if len(digits) <= 9 else int(digits.lstrip("0")[:10] or "0")


def _single(tag: str) -> tuple[EpisodeNumber, ...]:
    season, _, episode = tag.partition("E")
    number = _number(season), _number(episode)
    valid = number[0] <= MAX_SEASON and 1 <= number[1] <= MAX_EPISODE
    found = (EpisodeNumber(*number),) if valid else ()
    if len(_EPISODES) < 100_000:
        _EPISODES[tag] = found
    return found


def _expand(first: tuple[EpisodeNumber, ...], extra: str) -> tuple[EpisodeNumber, ...]:
    """S01E01E02 lists episodes, S01E01-E03 / S01E01-03 is a range; the first bad part ends it."""
    season, last = first[0].season, first[0].episode
    numbers = [last]
    for match in _EXTRA.finditer(extra):
        value = _number(match[2])
        if value <= last or value > MAX_EPISODE or (match[1] and value - last > MAX_RANGE):
            break
        numbers.extend(range(last + 1, value + 1) if match[1] else (value,))
        last = value
    return tuple(EpisodeNumber(season, n) for n in numbers)


def _is_temp(tail: str) -> bool:
    """Whether a dotted part between the tag and the extension marks an unfinished download."""
    return any(map(is_temp_part, tail.split(".")[1:]))


def is_temp_part(part: str) -> bool:
    """Whether one dot-separated part of a name ("part", "f137") marks an unfinished download."""
    upper = part.upper()
    return upper in _TEMP_PARTS or _FORMAT_PART.fullmatch(upper) is not None


# Parsing rules where SPEC §4 is silent: the first tag in a name counts; "S01E01E02" lists
# episodes and "S01E01-E03" / "S01E01-03" is a range (at most MAX_RANGE long); E00 is no episode
# (providers count from 1); a dotted part such as ".part", ".temp" or ".f137" between the tag and
# the extension marks an unfinished download; names starting with "." are hidden or partial.
def parse_episodes(filename: str) -> tuple[EpisodeNumber, ...]:
    """Every episode a video file's name claims (first tag only); () for others and temp files."""
    if not filename or filename[0] == ".":
        return ()
    if filename.isascii():
        match = _TAG_FAST.search(filename.upper())
        if match is None:
            return ()
        tag, extra, tail, ext = match.groups()
    else:
        match = _TAG_ANY.search(filename)
        if match is None:
            return ()
        tag, extra, tail, ext = match.groups()
        tag, ext = tag.upper(), ext.upper()
    if ext not in _VIDEO_UPPER or ("." in tail and _is_temp(tail)):
        return ()
    return _numbers(tag, extra)


def _numbers(tag: str, extra: str) -> tuple[EpisodeNumber, ...]:
    """The episodes of an upper-cased tag ("01E02") and what follows it ("-E04", "E03", "")."""
    found = _EPISODES.get(tag)
    if found is None:
        found = _single(tag)
    return _expand(found, extra) if extra and found else found


def parse_folder(names: list[str], text: str | None = None) -> list[tuple[EpisodeNumber, ...]]:
    """parse_episodes of each name, in order, by a regex pass over all the names at once.

    The scanner parses a folder's file names together: C code instead of a Python call per
    name. A folder the batch patterns cannot answer exactly (a name that is not ASCII or holds a
    line break, a dotted part that may mark a temp file) takes parse_episodes name by name.
    text, when given, is the names joined by line breaks (the caller needed them too).
    """
    if text is None:
        text = "\n".join(names)
    if not text.isascii() or text.count("\n") != len(names) - 1:  # before upper(): "ı" -> "I"
        return list(map(parse_episodes, names))
    text = text.upper()
    tags = _TAGS_OF_LINES.findall(text)  # at most one per line: equal counts line them up
    # Each name with a tag has a dot after it; with no other dot, no name is hidden or has a
    # dotted part such as ".part" between its tag and its extension: the common case.
    if len(tags) != len(names) or text.count(".") != len(names):
        if "\x00" in text or _TEMP_PART_ANY.search(text) is not None:
            return list(map(parse_episodes, names))  # a NUL would confuse the marks below
        if len(tags) != len(names) or text[:1] == "." or "\n." in text:
            tags = _FIRST_MARK.findall(_MARK_TAGS.sub("\x00", text))
    try:
        return list(map(_BY_TAG.__getitem__, tags))
    except KeyError:  # the first time a tag is seen
        return list(map(_by_tag, tags))


def _by_tag(captured: str) -> tuple[EpisodeNumber, ...]:
    """The episodes of a tag and what follows it, as the patterns capture them ("01E01-E03")."""
    found = _BY_TAG.get(captured)
    if found is None:
        season, _, rest = captured.partition("E")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        found = _numbers(f"{season}E{rest[:digits]}", rest[digits:])
        if len(_BY_TAG) < 100_000:
            _BY_TAG[captured] = found
    return found


def parse_episode(filename: str) -> EpisodeNumber | None:
    """The (first) episode a video file's name holds, None when it is no finished episode file."""
    found = parse_episodes(filename)
    return found[0] if found else None


# --- sanitising -------------------------------------------------------------------------------
