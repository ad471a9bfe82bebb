"""The aniworld.to / s.to URL shapes and the field cleaning its page and search parsers share."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from typing import Final, TypeVar
from urllib.parse import urljoin, urlsplit

from ..errors import ProviderParseError
from ..jsonutil import valid_text
from ..library.episode_tags import MAX_EPISODE  # the range the library can hold

T = TypeVar("T")

ANIWORLD_PREFIX: Final = "/anime/stream"
STO_PREFIX: Final = "/serie/stream"
SLUG_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,199}$")
_YEAR: Final = re.compile(r"\b([0-9]{4})\b")
_SPACE: Final = re.compile(r"\s+")
# Only whole references, `;` included: the second decoding must not read the legacy bare
# forms, or "Sticky&notes" (once "Sticky&amp;notes") becomes "Sticky¬es".
_ENTITY: Final = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_MAX_NUMBER: Final = 100_000


def clean(value: str | None) -> str | None:
    """Entities decoded (again for HTML text: `&amp;#039;` occurs), whitespace collapsed."""
    if value is None:
        return None
    decoded = _ENTITY.sub(lambda m: html_lib.unescape(m.group(0)), value)
    text = _SPACE.sub(" ", valid_text(decoded)).strip()
    return text or None


def to_number(value: str | None) -> int | None:
    """A plain ASCII count below 100 000, else None."""
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is true, int("²") fails
        return None
    number = int(text)
    return number if 0 <= number < _MAX_NUMBER else None


def find_year(value: str | None) -> int | None:
    """The first four-digit year in `value`."""
    match = _YEAR.search(value or "")
    return int(match.group(1)) if match else None


def to_episode(value: str | None) -> int | None:
    """An episode number within the library's range, else None."""
    number = to_number(value)
    return number if number is not None and 1 <= number <= MAX_EPISODE else None


def site_url(url: str, ref: str | None) -> str | None:
    """`ref` made absolute against the site root (site paths are root-relative); None unless
    that gives an http(s) URL: one broken link must not make the whole page unreadable."""
    if not ref or not ref.strip():
        return None
    parts = urlsplit(url)
    try:
        absolute = urljoin(f"{parts.scheme}://{parts.netloc}/", valid_text(ref.strip()))
        target = urlsplit(absolute)
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 host)
        return None
    return absolute if target.scheme in ("http", "https") and target.netloc else None


def url_path(href: str | None) -> str:
    """The path of a link, '' when the link cannot be parsed at all."""
    try:
        return urlsplit(href or "").path
    except ValueError:
        return ""


def guard(kind: str, url: str, parse: Callable[[], T]) -> T:
    """Run a parser; any structural surprise becomes a ProviderParseError naming the page."""
    try:
        return parse()
    except ProviderParseError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as err:
        message = f"unexpected {kind} at {url}: {err}"
        raise ProviderParseError(message, details={"url": url}) from err
