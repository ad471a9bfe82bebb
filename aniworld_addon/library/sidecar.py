"""Who a series folder holds: its `.aniworld.json` sidecar or a plain `key` file (SPEC §4)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..errors import ValidationError
from ..fsutil import atomic_write_text
from ..jsonutil import is_text

SIDECAR_NAME: Final = ".aniworld.json"
KEY_FILE_NAME: Final = "key"
SIDECAR_MAX_BYTES: Final = 64 * 1024
# Never through a symlink, and never waiting on a fifo left where the file should be.
_OPEN_FILE: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PROVIDER = re.compile(r"[a-z][a-z0-9_]{0,31}", re.A)
# Keys are the provider's business (an aniworld slug, a yt-dlp playlist URL): one printable line.
# A lone surrogate (JSON can escape one) is no text: UTF-8, SQLite and file names cannot hold it.
_KEY = re.compile(
    r"[^\x00-\x20\x7f\ud800-\udfff]"
    r"(?:[^\x00-\x1f\x7f\ud800-\udfff]{0,2046}[^\x00-\x20\x7f\ud800-\udfff])?"
)
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,199}", re.A)  # what a plain key file may hold


@dataclass(slots=True, frozen=True)
class SeriesIdentity:
    """Which provider series a folder holds: its sidecar, or a plain key file."""

    provider: str
    key: str
    name: str | None = None
    year: int | None = None
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _PROVIDER.fullmatch(self.provider):
            raise ValidationError(f"{self.provider!r} is not a provider name")
        if not _KEY.fullmatch(self.key):
            raise ValidationError(f"{self.key!r} is not a series key")

    @classmethod
    def from_dict(cls, data: object) -> SeriesIdentity:
        """Read a sidecar document; raises ValidationError saying what is wrong."""
        if not isinstance(data, dict):
            raise ValidationError("the sidecar is not a JSON object")
        provider, key = data.get("provider"), data.get("key")
        name, year, languages = data.get("name"), data.get("year"), data.get("languages", [])
        if not isinstance(provider, str) or not isinstance(key, str):
            raise ValidationError('the sidecar needs "provider" and "key" strings')
        if name is not None and not isinstance(name, str):
            raise ValidationError('"name" must be a string')
        if year is not None and (type(year) is not int or not 1 <= year <= 9999):
            raise ValidationError('"year" must be a year')
        if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
            raise ValidationError('"languages" must be a list of strings')
        if not is_text("".join((name or "", *languages))):
            raise ValidationError('"name" and "languages" must be text (a lone surrogate is not)')
        return cls(provider, key, name, year, tuple(languages))

    def to_dict(self) -> dict[str, Any]:
        """The sidecar document."""
        return {
            "provider": self.provider,
            "key": self.key,
            "name": self.name,
            "year": self.year,
            "languages": list(self.languages),
        }


def read_identity(file: str, name: str) -> tuple[SeriesIdentity | None, str | None]:
    """Parse a sidecar or key file; a broken one leaves the series unmatched with the reason."""
    return read_identity_stat(file, name)[1:]


def read_identity_stat(
    file: str, name: str
) -> tuple[os.stat_result | None, SeriesIdentity | None, str | None]:
    """read_identity, and the file's stat taken from the open file (None: it cannot be read).

    The scanner keeps the stat to know the file unchanged next time; from the open file it
    costs no second path lookup.
    """
    try:  # os.open/os.read: half the cost of open() for a file read once per series
        fd = os.open(file, _OPEN_FILE)
        try:
            st = os.fstat(fd)
            raw = os.read(fd, SIDECAR_MAX_BYTES + 1) if stat.S_ISREG(st.st_mode) else None
        finally:
            os.close(fd)
    except OSError as err:
        return None, None, f"cannot read {name}: {err.strerror}"
    if raw is None:  # read and refused, like a broken file: its stat says when it changes
        return st, None, f"{name} is not a regular file"
    return (st, *parse_identity(raw, name))


def parse_identity(raw: bytes, name: str) -> tuple[SeriesIdentity | None, str | None]:
    """The identity a sidecar's or key file's bytes hold, or why they hold none."""
    if len(raw) > SIDECAR_MAX_BYTES:
        return None, f"{name} is larger than {SIDECAR_MAX_BYTES // 1024} KiB"
    try:
        if name == KEY_FILE_NAME:
            slug = raw.decode("utf-8-sig").strip()  # Notepad's BOM, as json.loads allows
            if not _SLUG.fullmatch(slug):
                return None, f"{name} must hold only an aniworld series slug, not {slug[:80]!r}"
            return SeriesIdentity("aniworld", slug), None
        return SeriesIdentity.from_dict(_load_json(raw)), None
    except RecursionError:  # "[[[[..." deeper than the parser's stack
        return None, f"{name} is not valid: nested too deeply"
    except ValueError as err:  # bad UTF-8 or JSON, or an integer of more than 4300 digits
        return None, f"{name} is not valid: {err}"
    except ValidationError as err:
        return None, f"{name} is not valid: {err.message}"


_DECODER: Final = json.JSONDecoder()
_JSON_SPACE: Final = " \t\n\r"


def _load_json(raw: bytes) -> object:
    """json.loads(raw), for the UTF-8 object every sidecar we write is, in a third of the time.

    json.loads spends most of a small document guessing its encoding in Python: a first byte
    "{" followed by a non-NUL byte is what its guess calls UTF-8, so decode and parse directly,
    with the same whitespace rule after the document. Anything else takes json.loads.
    """
    if raw[:1] != b"{" or raw[1:2] == b"\x00":
        return json.loads(raw)
    text = raw.decode("utf-8", "surrogatepass")  # the error handler json.loads decodes with
    data, end = _DECODER.raw_decode(text)
    if text[end:].strip(_JSON_SPACE):
        raise json.JSONDecodeError(
            "Extra data", text, len(text) - len(text[end:].lstrip(_JSON_SPACE))
        )
    return data


def write_sidecar(folder: Path, identity: SeriesIdentity) -> Path:
    """Write <folder>/.aniworld.json atomically (temp file in the folder, fsync, rename).

    Fields of an existing sidecar that the identity does not set stay (SPEC §4 allows more:
    a note, other ids, a language list): a match rewrote them away. Like any file in the
    library it is readable by others (0644 less the umask), for Jellyfin's or Plex's user.
    """
    path = folder / SIDECAR_NAME
    document: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, RecursionError):
        with path.open("rb") as existing:
            kept = _load_json(existing.read(SIDECAR_MAX_BYTES + 1))
        if isinstance(kept, dict) and is_text(json.dumps(kept, ensure_ascii=False)):
            document = kept
    fresh = identity.to_dict()
    if not identity.languages and "languages" in document:
        fresh.pop("languages", None)  # a re-match does not know the user's language list
    document.update(fresh)
    text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True)
    atomic_write_text(path, text + "\n", mode=0o644)
    return path
