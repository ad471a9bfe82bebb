"""The download queue: active, pending, completed and failed, live over the WebSocket."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Final

from aiohttp import web

from ... import keys
from ...errors import AppError
from .common import (
    episode_code,
    fmt_duration,
    fmt_size,
    fmt_time,
    full_context,
    is_htmx,
    iso_time,
    render_page,
    require_login,
    routes,
)

# A page shows this many pending items; the rest are counted (and keep their order on reorder).
PENDING_SHOWN: Final = 250
DONE_SHOWN: Final = 100


async def _names(
    request: web.Request, items: list[dict[str, Any]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Series names and episode titles for the items, one lookup per series."""
    store = request.app[keys.LIBRARY].store
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for provider, key in {(i.get("provider") or "", i["series_key"]) for i in items}:
        try:
            series = await store.by_key(key, provider or None)
        except AppError:
            found[(provider, key)] = {"name": key, "titles": {}}
            continue
        titles = {
            (e.season, e.episode): e.title or e.title_en or ""
            for e in await store.episodes(series.id)
        }
        found[(provider, key)] = {"name": series.name, "titles": titles}
    return found


def _relative(path: str | None, root: str) -> str:
    """A file path shown relative to the library (the full path stays in the tooltip)."""
    if not path:
        return ""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def _decorate(
    item: dict[str, Any], names: dict[tuple[str, str], dict[str, Any]], lang: str, root: str
) -> dict[str, Any]:
    info = names.get((item.get("provider") or "", item["series_key"]), {})
    code = episode_code(item["season"], item["episode"])
    progress = item.get("progress") or {}
    started, completed = item.get("started_at"), item.get("completed_at")
    return {
        **item,
        "series_name": info.get("name", item["series_key"]),
        "title": info.get("titles", {}).get((item["season"], item["episode"]), ""),
        "code": code,
        "label": f"{info.get('name', item['series_key'])} {code}",
        "percent": round(float(progress.get("percent") or 0.0), 1),
        "downloaded": fmt_size(progress.get("downloaded_mb")),
        "total": fmt_size(progress.get("total_mb")),
        "speed": progress.get("speed_mbps"),
        "eta": fmt_duration(progress.get("eta_seconds")),
        "completed_text": fmt_time(completed, lang),
        "completed_iso": iso_time(completed),
        "took": fmt_duration(completed - started) if started and completed else "",
        "retry_text": fmt_time(item.get("next_attempt_at"), lang),
        "retry_iso": iso_time(item.get("next_attempt_at")),
        "file_display": _relative(item.get("file_path"), root),
    }


@routes.get("/queue")
async def queue_page(request: web.Request) -> web.Response:
    """The queue; HTMX re-fetches the sections when the WebSocket says something changed."""
    await require_login(request)
    context = await full_context(request, "queue", "queue.title")
    status, snapshot = await request.app[keys.QUEUE].overview()
    groups = snapshot.groups
    # Only the items shown become dicts: the queue may hold thousands.
    newest = functools.partial(sorted, key=lambda i: i.completed_at or 0, reverse=True)
    completed, failed = newest(groups["completed"]), newest(groups["failed"])
    shown = {
        "active": status["active_downloads"],
        "pending": [i.to_dict() for i in groups["pending"][:PENDING_SHOWN]],
        "completed": [i.to_dict() for i in completed[:DONE_SHOWN]],
        "failed": [i.to_dict() for i in failed[:DONE_SHOWN]],
    }
    names = await _names(request, [i for group in shown.values() for i in group])
    lang = context["lang"]
    library = request.app[keys.SETTINGS].library_path(request.app[keys.OPTIONS].library_path)
    # Stored file paths are resolved ones; resolving is file-system work, so off the loop.
    root = str(await asyncio.to_thread(library.resolve))
    context.update(
        {
            "status": status,
            "stats": status["stats"],
            "active": [_decorate(i, names, lang, root) for i in shown["active"]],
            "pending": [_decorate(i, names, lang, root) for i in shown["pending"]],
            "pending_hidden": max(0, len(groups["pending"]) - PENDING_SHOWN),
            "completed": [_decorate(i, names, lang, root) for i in shown["completed"]],
            "completed_hidden": max(0, len(completed) - DONE_SHOWN),
            "failed": [_decorate(i, names, lang, root) for i in shown["failed"]],
            "failed_hidden": max(0, len(failed) - DONE_SHOWN),
            "downloaded_total": fmt_size(status["stats"].get("downloaded_mb")),
        }
    )
    template = "queue/_sections.html" if is_htmx(request) else "queue/index.html"
    return render_page(template, request, context)
