"""/health, /api/system/*, /api/operations and the WebSocket endpoints."""

from __future__ import annotations

import asyncio
import platform
import shutil
import sqlite3
import time
from typing import Any

import aiohttp
from aiohttp import web

from ... import keys
from ...const import VERSION
from ...health import CHECK_NAMES, overall
from ...logging_setup import read_tail
from ..routing import ApiDoc, ApiRoutes, json_response, query_choice, query_int
from ..schemas import ANY_OBJECT, INT, NUM, STR, array, obj

routes = ApiRoutes()
TAG = "system"

CHECK = obj(
    {
        "status": {"type": "string", "enum": ["ok", "error", "unknown", "disabled"]},
        "message": STR,
        "details": {"type": "object", "nullable": True, "additionalProperties": True},
    },
    required=["status", "message"],
)
HEALTH = obj(
    {
        "status": {"type": "string", "enum": ["healthy", "degraded"]},
        "version": STR,
        "uptime_s": NUM,
        # SPEC's six, then webhooks and ffprobe (DOCS.md)
        "checks": obj(dict.fromkeys((*CHECK_NAMES, "webhooks", "ffprobe"), CHECK)),
    }
)
OPERATION = obj(
    {
        "id": STR,
        "kind": STR,
        "status": {"type": "string", "enum": ["running", "completed", "failed"]},
        "progress": NUM,
        "result": {"nullable": True},
        "error": {"nullable": True},
        "created_at": NUM,
        "finished_at": {"type": "number", "nullable": True},
    }
)
WS_STATUS = obj(
    {
        "connections": INT,
        "rooms": {"type": "object"},
        "dropped_slow_clients": INT,
        "messages_sent": INT,
    }
)


@routes.api(
    "GET",
    "/health",
    ApiDoc("Liveness and the state of each dependency", TAG, None, HEALTH, public=True),
)
async def health(request: web.Request) -> web.Response:
    """healthy unless a check reports an error; unbuilt checks say unknown."""
    app = request.app
    results = await app[keys.HEALTH].run()
    return json_response(
        {
            "status": overall(results),
            "version": VERSION,
            "uptime_s": round(time.monotonic() - app[keys.STARTED_AT], 3),
            "checks": {name: result.to_dict() for name, result in results.items()},
        }
    )


@routes.api(
    "GET", "/api/system/status", ApiDoc("Versions, paths and disk space", TAG, None, ANY_OBJECT)
)
async def system_status(request: web.Request) -> web.Response:
    """What a bug report needs to know about this installation."""
    options = request.app[keys.OPTIONS]
    settings = request.app[keys.SETTINGS]
    library = str(settings.library_path(options.library_path))

    def disk(path: str) -> dict[str, Any]:
        try:
            usage = shutil.disk_usage(path)
        except OSError as err:
            return {"path": path, "error": err.strerror}
        return {"path": path, "total_mb": usage.total // 2**20, "free_mb": usage.free // 2**20}

    data_disk, library_disk = await asyncio.gather(
        asyncio.to_thread(disk, str(options.data_path)), asyncio.to_thread(disk, library)
    )
    ytdlp_version = await asyncio.to_thread(_ytdlp_version)
    return json_response(
        {
            "version": VERSION,
            "mode": "addon" if options.addon else "standalone",
            "uptime_s": round(time.monotonic() - request.app[keys.STARTED_AT], 3),
            "versions": {
                "python": platform.python_version(),
                "aiohttp": aiohttp.__version__,
                "sqlite": sqlite3.sqlite_version,
                "yt_dlp": ytdlp_version,
                "ffmpeg": shutil.which("ffmpeg") is not None,
                "ffprobe": shutil.which("ffprobe") is not None,
            },
            "paths": {
                "data": str(options.data_path),
                "library": library,
                "config": str(settings.path),
                "logs": str(request.app[keys.FILE_LOGGING].log_dir),
            },
            "disk": {"data": data_disk, "library": library_disk},
            "config_problem": settings.load_problem,
        }
    )


def _ytdlp_version() -> str | None:
    try:
        from yt_dlp.version import __version__
    except ImportError:
        return None
    return str(__version__)


@routes.api(
    "GET",
    "/api/system/logs",
    ApiDoc(
        "The last lines of a log file (app.log unless ?file= names another)",
        TAG,
        None,
        obj({"file": STR, "lines": array(STR)}),
        query={
            "lines": {"type": "integer", "minimum": 1, "maximum": 5000},
            "file": {"type": "string", "enum": ["app", "download", "error"]},
        },
    ),
)
async def system_logs(request: web.Request) -> web.Response:
    """Tail of one log file (?lines=N, ?file=app|download|error)."""
    lines = query_int(request, "lines", 200, 1, 5000)
    name = query_choice(request, "file", ("app", "download", "error"), "app")
    path = request.app[keys.FILE_LOGGING].log_dir / f"{name}.log"
    return json_response({"file": name, "lines": await asyncio.to_thread(read_tail, path, lines)})


@routes.api("GET", "/api/operations/{id}", ApiDoc("A long-running operation", TAG, None, OPERATION))
async def get_operation(request: web.Request) -> web.Response:
    """Status of a rescan or another background operation."""
    return json_response(request.app[keys.OPERATIONS].get(request.match_info["id"]).to_dict())


@routes.api("GET", "/ws/status", ApiDoc("WebSocket connections per room", TAG, None, WS_STATUS))
async def ws_status(request: web.Request) -> web.Response:
    """Hub counters."""
    return json_response(request.app[keys.WS_HUB].status())


@routes.api(
    "GET",
    "/ws/connect",
    ApiDoc(
        "WebSocket: send {action: join|leave, room}; receive {type, timestamp, data}",
        TAG,
        None,
        None,
        status=101,
    ),
)
async def ws_connect(request: web.Request) -> web.StreamResponse:
    """Upgrade to a WebSocket served by the hub."""
    return await request.app[keys.WS_HUB].handle(request)


@routes.api("GET", "/api/ws", ApiDoc("Alias of /ws/connect", TAG, None, None, status=101))
async def api_ws(request: web.Request) -> web.StreamResponse:
    """Same as /ws/connect."""
    return await request.app[keys.WS_HUB].handle(request)
