"""Settings, scheduler, history and system pages."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from aiohttp import web

from ... import keys
from ...health import overall
from ...logging_setup import read_tail
from ...settings_schema import LANGUAGES
from ..api import system as system_api
from .common import (
    fmt_duration,
    fmt_size,
    fmt_time,
    full_context,
    has_route,
    is_htmx,
    iso_time,
    render_page,
    require_login,
    routes,
)

LOG_FILES: Final = ("app", "download", "error")
LOG_LINES: Final = (50, 200, 500, 1000)


@routes.get("/settings")
async def settings_page(request: web.Request) -> web.Response:
    """Every setting, validated inline; backups, API tokens, export and reset."""
    identity = await require_login(request)
    context = await full_context(request, "settings", "settings.title")
    settings = request.app[keys.SETTINGS]
    config = settings.get()
    lang = context["lang"]
    backups = [
        {**b.to_dict(), "created": fmt_time(b.created_at, lang), "iso": iso_time(b.created_at)}
        for b in await settings.list_backups()
    ]
    tokens = [
        {
            **tok.to_dict(),
            "created": fmt_time(tok.created_at, lang),
            "expires": fmt_time(tok.expires_at, lang),
            "used": fmt_time(tok.last_used_at, lang),
        }
        for tok in await request.app[keys.AUTH].list_api_tokens()
    ]
    enabled = list(config["languages"])
    context.update(
        {
            "config": config,
            "languages": enabled + [lang_ for lang_ in LANGUAGES if lang_ not in enabled],
            "languages_enabled": set(enabled),
            "backups": backups,
            "tokens": tokens,
            "default_library": str(request.app[keys.OPTIONS].library_path),
            "can_logout": identity.kind == "session",
        }
    )
    part = request.query.get("part", "")
    fragment = is_htmx(request) and part in ("backups", "tokens")
    template = f"admin/_{part}.html" if fragment else "admin/settings.html"
    return render_page(template, request, context)


@routes.get("/scheduler")
async def scheduler_page(request: web.Request) -> web.Response:
    """The schedule (filled in by the page script from /api/scheduler/config)."""
    await require_login(request)
    context = await full_context(request, "scheduler", "scheduler.title")
    context.update(
        {
            "available": has_route(request, "GET", "/api/scheduler/config"),
            "scheduler": request.app[keys.SETTINGS].section("scheduler"),
        }
    )
    return render_page("admin/scheduler.html", request, context)


@routes.get("/history")
async def history_page(request: web.Request) -> web.Response:
    """Grabbed, downloaded, failed, deleted and scan records (rendered from /api/history)."""
    await require_login(request)
    context = await full_context(request, "history", "history.title")
    context.update(
        {
            "available": has_route(request, "GET", "/api/history"),
            "events": ("grabbed", "downloaded", "failed", "deleted", "upgraded", "scan"),
        }
    )
    return render_page("admin/history.html", request, context)


async def _system_status(request: web.Request) -> dict[str, Any]:
    """What GET /api/system/status answers (the same handler, so they never disagree)."""
    response = await system_api.system_status(request)
    if not isinstance(response, web.Response) or response.text is None:
        return {}
    data: dict[str, Any] = json.loads(response.text)
    return data


@routes.get("/system")
async def system_page(request: web.Request) -> web.Response:
    """Health checks, versions, paths, disk space, WebSocket counters and the log tail."""
    await require_login(request)
    context = await full_context(request, "system", "system.title")
    log_file = request.query.get("file", "app")
    log_file = log_file if log_file in LOG_FILES else "app"
    try:
        lines = int(request.query.get("lines", "200"))
    except ValueError:
        lines = 200
    lines = lines if lines in LOG_LINES else 200
    log_dir = request.app[keys.FILE_LOGGING].log_dir
    tail = await asyncio.to_thread(read_tail, log_dir / f"{log_file}.log", lines)
    context.update({"log_file": log_file, "log_lines": lines, "log": tail})
    context.update({"log_files": LOG_FILES, "log_line_choices": LOG_LINES})
    if is_htmx(request):
        return render_page("admin/_log.html", request, context)
    results = await request.app[keys.HEALTH].run()
    status = await _system_status(request)
    disks = []
    for name, disk in status.get("disk", {}).items():
        total, free = disk.get("total_mb"), disk.get("free_mb")
        used_pct = round(100 * (total - free) / total, 1) if total and free is not None else None
        disks.append(
            {
                "name": name,
                "path": disk.get("path"),
                "error": disk.get("error"),
                "free": fmt_size(free),
                "total": fmt_size(total),
                "used_pct": used_pct,
            }
        )
    context.update(
        {
            "health": overall(results),
            "checks": {name: r.to_dict() for name, r in results.items()},
            "system": status,
            "uptime": fmt_duration(status.get("uptime_s")),
            "disks": disks,
            "ws": request.app[keys.WS_HUB].status(),
        }
    )
    return render_page("admin/system.html", request, context)
