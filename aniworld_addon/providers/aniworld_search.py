"""The aniworld.to / s.to search endpoints' JSON as SearchResults (ProviderParseError if not)."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from ..errors import ProviderParseError
from .aniworld_fields import ANIWORLD_PREFIX, SLUG_RE, clean, find_year, guard, site_url
from .base import SearchResult

_EM_TAG: Final = re.compile(r"</?em\b[^>]*>", re.IGNORECASE)


def _strip_em(value: str | None) -> str | None:
    """The search's highlight tags removed, before entities are decoded."""
    return None if value is None else clean(_EM_TAG.sub("", value))


def _json_list(text: str | bytes, url: str, kind: str) -> list[Any]:
    try:
        data = json.loads(text) if text.strip() else []
    except (ValueError, RecursionError) as err:
        raise ProviderParseError(f"{kind} {url} is not JSON: {err}", details={"url": url}) from err
    if not isinstance(data, list):
        raise ProviderParseError(f"{kind} {url} is not a JSON array", details={"url": url})
    return data


def parse_search_json(
    text: str | bytes, url: str, *, provider: str = "aniworld"
) -> list[SearchResult]:
    """`GET /ajax/seriesSearch` results: `{name, link (a bare slug), description, cover, ...}`."""
    items = _json_list(text, url, "search result")

    def parse() -> list[SearchResult]:
        results: dict[str, SearchResult] = {}
        for item in items:
            if not isinstance(item, dict):
                continue
            link, name = item.get("link"), item.get("name")
            if not isinstance(link, str) or not isinstance(name, str):
                continue
            key = link.strip().strip("/")
            name_clean = clean(name)
            if not SLUG_RE.match(key) or not name_clean:
                continue
            description, cover = item.get("description"), item.get("cover")
            year = item.get("productionYear")
            results.setdefault(
                key,
                SearchResult(
                    provider=provider,
                    key=key,
                    name=name_clean,
                    year=find_year(year) if isinstance(year, str) else None,
                    description=clean(description) if isinstance(description, str) else None,
                    cover_url=site_url(url, cover) if isinstance(cover, str) else None,
                ),
            )
        return list(results.values())

    return guard("search result", url, parse)


def parse_search_alt_json(
    text: str | bytes, url: str, *, provider: str = "aniworld", path_prefix: str = ANIWORLD_PREFIX
) -> list[SearchResult]:
    """`POST /ajax/search` results: `{title (with <em>), description, link (path)}`, series only."""
    items = _json_list(text, url, "search result")
    series_link = re.compile(rf"^{re.escape(path_prefix)}/([a-z0-9-]+)/?$")

    def parse() -> list[SearchResult]:
        results: dict[str, SearchResult] = {}
        for item in items:
            if not isinstance(item, dict):
                continue
            link, title = item.get("link"), item.get("title")
            if not isinstance(link, str) or not isinstance(title, str):
                continue
            match = series_link.match(link.strip())
            name = _strip_em(title)
            if match is None or not SLUG_RE.match(match.group(1)) or not name:
                continue
            description = item.get("description")
            results.setdefault(
                match.group(1),
                SearchResult(
                    provider=provider,
                    key=match.group(1),
                    name=name,
                    year=None,
                    description=_strip_em(description) if isinstance(description, str) else None,
                    cover_url=None,
                ),
            )
        return list(results.values())

    return guard("search result", url, parse)
