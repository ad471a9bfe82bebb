"""The library, one series, searching and adding a series, matching a folder."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Final, cast

from aiohttp import web

from ... import keys
from ...errors import AppError, NotFoundError
from ...library.store import Filter
from ...settings_schema import LANGUAGES
from ..routing import CONTROL_CHARS, MAX_PAGE
from .common import (
    episode_code,
    fmt_time,
    full_context,
    is_htmx,
    iso_time,
    render_page,
    require_login,
    routes,
)

FILTERS: Final = ("all", "missing", "unmatched")
SORTS: Final = ("name", "year", "local_count", "missing_count", "folder")
PAGE_SIZE: Final = 50


def _choice(value: str | None, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


def _typed(value: str | None) -> str:
    """A search box's text: control characters dropped (a NUL matched every series), trimmed
    and capped. The API refuses them; a page shows what it can."""
    return CONTROL_CHARS.sub("", value or "").strip()[:200]


def _page_no(value: str | None) -> int:
    try:
        return max(1, min(int(value or "1"), MAX_PAGE))
    except ValueError:
        return 1


@routes.get("/")
async def library_page(request: web.Request) -> web.Response:
    """Series with local/missing counts; filter, search, sort and pages (HTMX swaps the list)."""
    await require_login(request)
    store = request.app[keys.LIBRARY].store
    filter_ = _choice(request.query.get("filter"), FILTERS, "all")
    sort = _choice(request.query.get("sort"), SORTS, "name")
    direction = _choice(request.query.get("dir"), ("asc", "desc"), "asc")
    query = _typed(request.query.get("q"))
    page_no = _page_no(request.query.get("page"))

    async def read(page: int) -> tuple[int, list[Any]]:
        return await store.page(
            filter_=cast(Filter, filter_),
            query=query or None,
            page=page,
            page_size=PAGE_SIZE,
            sort_key=sort,
            descending=direction == "desc",
        )

    total, records = await read(page_no)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page_no > pages:  # a bookmark, or a list that shrank: the last page, not "empty"
        page_no = pages
        total, records = await read(page_no)
    counts: dict[str, int] = {}
    for name in FILTERS:
        counts[name] = (
            await store.page(
                filter_=name,
                query=query or None,
                page=1,
                page_size=1,
                sort_key="name",
                descending=False,
            )
        )[0]
    context = await full_context(request, "library", "library.title")
    last_scan = await store.meta("last_scan")
    finished = last_scan.get("finished_at") if isinstance(last_scan, dict) else None
    scan_errors = last_scan.get("scan_errors") if isinstance(last_scan, dict) else None
    context.update(
        {
            "series": [r.to_dict() for r in records],
            "total": total,
            "counts": counts,
            "filter": filter_,
            "sort": sort,
            "dir": direction,
            "q": query,
            "page_no": page_no,
            "pages": pages,
            "filters": FILTERS,
            "sorts": SORTS,
            "last_scan": fmt_time(finished, context["lang"]) if finished else "",
            "last_scan_iso": iso_time(finished) if finished else "",
            "scan_errors": scan_errors if isinstance(scan_errors, list) else [],
            "fragment": is_htmx(request),
        }
    )
    template = "library/_list.html" if is_htmx(request) else "library/index.html"
    return render_page(template, request, context)


def _seasons(episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Episodes grouped by season, films and specials (season 0) last."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for episode in episodes:
        episode["code"] = episode_code(episode["season"], episode["episode"])
        grouped.setdefault(episode["season"], []).append(episode)
    order = sorted(grouped, key=lambda s: (s == 0, s))
    return [
        {
            "season": number,
            "episodes": grouped[number],
            "local": sum(1 for e in grouped[number] if e["state"] == "local"),
            "missing": sum(1 for e in grouped[number] if e["state"] != "local"),
            "selectable": sum(1 for e in grouped[number] if e["state"] == "missing"),
        }
        for number in order
    ]


@routes.get("/series")
async def series_page(request: web.Request) -> web.Response:
    """One series: seasons, episodes with state, queueing, its language profile."""
    await require_login(request)
    context = await full_context(request, "library", "library.title")
    key = request.query.get("key", "")
    if not key:
        raise NotFoundError("no series key given")
    provider = request.query.get("provider") or None
    detail = await request.app[keys.LIBRARY].detail(key, provider)
    settings = request.app[keys.SETTINGS].get()
    own = detail.get("languages")
    order = list(own) if own else list(settings["languages"])
    order += [lang for lang in LANGUAGES if lang not in order]
    context.update(
        {
            "title": detail["name"],
            "series": detail,
            "seasons": _seasons(detail["episodes"]),
            "language_order": order,
            "language_enabled": set(own or settings["languages"]),
            "own_languages": own is not None,
            "priorities": ("HIGH", "NORMAL", "LOW"),
        }
    )
    return render_page("library/series.html", request, context)


async def _search(
    request: web.Request, query: str, provider: str | None
) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """Results marked with whether they are in the library; an error; partial failures."""
    library = request.app[keys.LIBRARY]
    try:
        outcome = await library.providers.search_all(query, names=[provider] if provider else None)
    except AppError as err:
        return [], err.message, None
    results = outcome.to_list()
    failures = "; ".join(f"{f.provider}: {f.message}" for f in outcome.failures) or None
    known: set[tuple[str, str]] = set()

    async def mark(result: dict[str, Any]) -> None:
        try:
            await library.store.by_key(result["key"], result["provider"])
        except AppError:
            return
        known.add((result["provider"], result["key"]))

    await asyncio.gather(*(mark(r) for r in results))
    for result in results:
        result["in_library"] = (result["provider"], result["key"]) in known
    return results, None, failures


def _providers(request: web.Request) -> list[str]:
    return request.app[keys.LIBRARY].providers.names


@routes.get("/add")
async def add_page(request: web.Request) -> web.Response:
    """Search the providers and add a series."""
    await require_login(request)
    return await _search_page(request, mode="add", folder=None)


@routes.get("/match")
async def match_page(request: web.Request) -> web.Response:
    """Search for the series an unmatched folder holds, and match it."""
    await require_login(request)
    folder = request.query.get("folder", "")
    record = await request.app[keys.LIBRARY].store.by_folder(folder) if folder else None
    if record is None:
        raise NotFoundError(f"no series folder {folder!r} in the library")
    return await _search_page(request, mode="match", folder=folder)


def _folder_query(folder: str) -> str:
    """A search query from a folder name: "Kaiju Academy (2012)" -> "Kaiju Academy"."""
    name = folder.rsplit("(", 1)[0] if folder.rstrip().endswith(")") else folder
    return " ".join(name.replace(".", " ").replace("_", " ").split())[:200]


async def _search_page(request: web.Request, *, mode: str, folder: str | None) -> web.Response:
    context = await full_context(request, "add" if mode == "add" else "library", f"{mode}.title")
    query = _typed(request.query.get("q"))
    if not query and folder and not is_htmx(request):
        query = _folder_query(folder)
    providers = _providers(request)
    provider = request.query.get("provider") or None
    if provider not in providers:
        provider = None
    results: list[dict[str, Any]] = []
    error: str | None = None
    failures: str | None = None
    if query:
        results, error, failures = await _search(request, query, provider)
    context.update(
        {
            "mode": mode,
            "folder": folder,
            "q": query,
            "provider": provider or "",
            "providers": providers,
            "results": results,
            "error": error,
            "failures": failures,
            "searched": bool(query),
        }
    )
    template = "library/_results.html" if is_htmx(request) else "library/search.html"
    return render_page(template, request, context)
