"""/api/queue and POST /api/anime/{key}/download."""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from aiohttp import web

from ... import keys
from ...const import MAX_EPISODE_NUMBER, MAX_SEASON_NUMBER
from ...downloads.blocklist import SORT_KEYS as BLOCKLIST_SORT_KEYS
from ...downloads.queue_store import Priority
from ...errors import NotFoundError
from ...settings_schema import strict_int
from ..routing import (
    ID_PARAM,
    ID_SEGMENT,
    MAX_ID,
    PAGING_QUERY,
    ApiDoc,
    ApiRoutes,
    json_response,
    paging,
    path_id,
    query_choice,
    query_value,
    read_json,
)
from ..schemas import ANY_OBJECT, BOOL, INT, NULL_NUM, NULL_STR, NUM, OK, STR, array, obj, page

routes = ApiRoutes()
TAG = "queue"

PROGRESS = obj(
    {
        "percent": NUM,
        "downloaded_mb": NULL_NUM,
        "total_mb": NULL_NUM,
        "speed_mbps": NULL_NUM,
        "eta_seconds": NULL_NUM,
    }
)
ITEM = obj(
    {
        "id": INT,
        "provider": STR,
        "series_key": STR,
        "season": INT,
        "episode": INT,
        "language": NULL_STR,
        "status": {
            "type": "string",
            "enum": ["pending", "downloading", "completed", "failed", "cancelled"],
        },
        "priority": {"type": "string", "enum": ["HIGH", "NORMAL", "LOW"]},
        "position": {"type": "integer", "nullable": True},
        "progress": PROGRESS,
        "retry_count": INT,
        "error": NULL_STR,
        "error_code": {
            **NULL_STR,
            "description": "the error's stable code (the codes of error responses)",
        },
        "attempts": array(
            {**ANY_OBJECT, "description": "each hoster tried: hoster, language, error"}
        ),
        "next_attempt_at": {**NULL_NUM, "description": "when a retry in backoff starts"},
        "file_path": NULL_STR,
        "created_at": NUM,
        "started_at": NULL_NUM,
        "completed_at": NULL_NUM,
        "upgrade_from": NULL_STR,
    },
)
STATUS = obj(
    {
        "is_running": BOOL,
        "is_paused": BOOL,
        "active_downloads": array(ITEM),
        "pending_queue": array(ITEM),
        "completed_downloads": array(ITEM),
        "failed_downloads": array(ITEM),
        "stats": {"type": "object"},
    }
)
IDS = obj({"item_ids": array(INT)})

ITEM_ID = vol.All(strict_int, vol.Range(min=1, max=MAX_ID))
EPISODE = vol.Schema(
    {
        vol.Required("season"): vol.All(strict_int, vol.Range(min=0, max=MAX_SEASON_NUMBER)),
        vol.Required("episode"): vol.All(strict_int, vol.Range(min=1, max=MAX_EPISODE_NUMBER)),
    }
)
PRIORITY = vol.Any(None, vol.All(str, vol.In(["HIGH", "NORMAL", "LOW", "high", "normal", "low"])))
DOWNLOAD_SCHEMA = vol.Schema(
    vol.All(
        {
            vol.Optional("episodes"): vol.All([EPISODE], vol.Length(min=1, max=5000)),
            vol.Optional("missing"): bool,
            vol.Optional("priority"): PRIORITY,
            vol.Optional("provider"): vol.Any(None, str),
        },
        vol.Any(
            vol.Schema({vol.Required("episodes"): list}, extra=vol.ALLOW_EXTRA),
            vol.Schema({vol.Required("missing"): True}, extra=vol.ALLOW_EXTRA),
            msg='give "episodes": [{"season", "episode"}] or "missing": true',
        ),
    )
)
ADD_SCHEMA = vol.Schema(
    {
        vol.Required("series_key"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Optional("provider"): vol.Any(None, str),
        vol.Required("episodes"): vol.All([EPISODE], vol.Length(min=1, max=5000)),
        vol.Optional("priority"): PRIORITY,
    }
)
IDS_SCHEMA = vol.Schema({vol.Required("item_ids"): vol.All([ITEM_ID], vol.Length(max=10_000))})
RETRY_SCHEMA = vol.Schema(
    {vol.Optional("item_ids", default=list): vol.All([ITEM_ID], vol.Length(max=10_000))}
)
REORDER_SCHEMA = vol.Schema(
    vol.Any(
        {vol.Required("item_ids"): vol.All([ITEM_ID], vol.Length(min=1, max=10_000))},
        {
            vol.Required("item_id"): ITEM_ID,
            vol.Required("new_position"): vol.All(strict_int, vol.Range(min=1, max=MAX_ID)),
        },
    )
)


def _pairs(episodes: list[dict[str, int]]) -> list[tuple[int, int]]:
    return [(e["season"], e["episode"]) for e in episodes]


@routes.api(
    "POST",
    "/api/anime/{key:[^/]+}/download",
    ApiDoc(
        "Queue episodes of a series (a list, or every missing one)",
        "library",
        DOWNLOAD_SCHEMA,
        obj({"item_ids": array(INT)}),
        query={"provider": {"type": "string"}},
    ),
)
async def download_series(request: web.Request) -> web.Response:
    """{"episodes": [...]} or {"missing": true}, optional priority -> {"item_ids"}."""
    body = await read_json(request, DOWNLOAD_SCHEMA)
    library = request.app[keys.LIBRARY]
    provider = body.get("provider") or query_value(request, "provider") or None
    series = await library.store.by_key(request.match_info["key"], provider)
    assert series.provider is not None and series.key is not None
    if body.get("episodes"):
        episodes = _pairs(body["episodes"])
    else:
        episodes = await library.store.missing(series.id)
    ids = await request.app[keys.QUEUE].add(
        series.provider, series.key, episodes, Priority.parse(body.get("priority"))
    )
    return json_response({"item_ids": ids})


@routes.api("GET", "/api/queue/status", ApiDoc("The queue with every item", TAG, None, STATUS))
async def status(request: web.Request) -> web.Response:
    """Running/paused flags, items per state, stats (the shape of DownloadQueue.status())."""
    body = await request.app[keys.QUEUE].status_json()
    return web.Response(body=body, content_type="application/json")


@routes.api("POST", "/api/queue/add", ApiDoc("Queue episodes", TAG, ADD_SCHEMA, IDS))
async def add(request: web.Request) -> web.Response:
    """{"series_key", "episodes", "priority"?} -> {"item_ids"}."""
    body = await read_json(request, ADD_SCHEMA)
    series = await request.app[keys.LIBRARY].store.by_key(body["series_key"], body.get("provider"))
    assert series.provider is not None and series.key is not None
    ids = await request.app[keys.QUEUE].add(
        series.provider, series.key, _pairs(body["episodes"]), Priority.parse(body.get("priority"))
    )
    return json_response({"item_ids": ids})


@routes.api(
    "DELETE",
    "/api/queue",
    ApiDoc("Remove (and cancel) items", TAG, IDS_SCHEMA, obj({"removed": INT})),
)
async def remove_many(request: web.Request) -> web.Response:
    """{"item_ids": [...]}; 404 naming the unknown ones, nothing removed then."""
    body = await read_json(request, IDS_SCHEMA)
    queue = request.app[keys.QUEUE]
    ids: list[int] = body["item_ids"]
    unknown = sorted(set(ids) - await queue.store.existing_ids(ids))
    if unknown:
        raise NotFoundError("unknown queue items", details={"unknown": unknown})
    return json_response({"removed": await queue.remove(ids)})


def _state_route(name: str, **state: bool) -> None:
    async def handler(request: web.Request) -> web.Response:
        queue = request.app[keys.QUEUE]
        await queue.set_state(**state)
        return json_response(await queue.summary())

    handler.__name__ = f"queue_{name}"
    routes.api(
        "POST",
        f"/api/queue/{name}",
        ApiDoc(f"{name.capitalize()} the queue", TAG, None, {"type": "object"}),
    )(handler)


_state_route("start", running=True)
_state_route("stop", running=False)
_state_route("pause", paused=True)
_state_route("resume", paused=False)


@routes.api(
    "POST",
    "/api/queue/reorder",
    ApiDoc(
        "New order of pending items ({item_ids} or {item_id, new_position})",
        TAG,
        REORDER_SCHEMA,
        OK,
    ),
)
async def reorder(request: web.Request) -> web.Response:
    """Priorities still rank first; within them this order holds."""
    body = await read_json(request, REORDER_SCHEMA)
    queue = request.app[keys.QUEUE]
    if "item_ids" in body:
        await queue.reorder(body["item_ids"])
    else:
        await queue.move(body["item_id"], body["new_position"])
    return json_response({"ok": True})


@routes.api("DELETE", "/api/queue/completed", ApiDoc("Clear completed items", TAG, None, IDS))
async def clear_completed(request: web.Request) -> web.Response:
    """Remove every completed item."""
    return json_response({"item_ids": await request.app[keys.QUEUE].clear("completed")})


@routes.api("DELETE", "/api/queue/failed", ApiDoc("Clear failed items", TAG, None, IDS))
async def clear_failed(request: web.Request) -> web.Response:
    """Remove every failed item."""
    return json_response({"item_ids": await request.app[keys.QUEUE].clear("failed")})


@routes.api(
    "POST", "/api/queue/retry", ApiDoc("Retry failed items ([] = all)", TAG, RETRY_SCHEMA, IDS)
)
async def retry(request: web.Request) -> web.Response:
    """Failed items back to pending."""
    body: dict[str, Any] = await read_json(request, RETRY_SCHEMA)
    return json_response({"item_ids": await request.app[keys.QUEUE].retry(body["item_ids"])})


@routes.api(
    "DELETE",
    f"/api/queue/{{id:{ID_SEGMENT}}}",
    ApiDoc("Remove (and cancel) one item", TAG, None, OK, path={"id": ID_PARAM}),
)
async def remove_one(request: web.Request) -> web.Response:
    """404 for an unknown id."""
    item_id = path_id(request)
    queue = request.app[keys.QUEUE]
    await queue.store.get(item_id)
    await queue.remove([item_id])
    return json_response({"ok": True})


BLOCKED = obj(
    {
        "id": INT,
        "provider": STR,
        "series_key": STR,
        "season": INT,
        "episode": INT,
        "hoster": STR,
        "language": STR,
        "link": STR,
        "reason": NULL_STR,
        "failures": INT,
        "created_at": NUM,
        "updated_at": NUM,
    }
)


@routes.api(
    "GET",
    "/api/blocklist",
    ApiDoc(
        "Hoster links skipped for an episode after failing max_retries times",
        "blocklist",
        None,
        page(BLOCKED),
        query={
            **PAGING_QUERY,
            "sort_key": {"type": "string", "enum": list(BLOCKLIST_SORT_KEYS)},
            "sort_direction": {"type": "string", "enum": ["asc", "desc"]},
        },
    ),
)
async def blocklist(request: web.Request) -> web.Response:
    """Paged, newest first unless sorted otherwise."""
    page_no, page_size = paging(request)
    sort_key = query_choice(request, "sort_key", tuple(BLOCKLIST_SORT_KEYS), "updated_at")
    direction = query_choice(request, "sort_direction", ("asc", "desc"), "desc")
    total, entries = await request.app[keys.QUEUE].blocklist.page(
        page_no, page_size, sort_key, direction == "desc"
    )
    return json_response(
        {
            "page": page_no,
            "page_size": page_size,
            "total_records": total,
            "records": [e.to_dict() for e in entries],
        }
    )


@routes.api(
    "DELETE",
    f"/api/blocklist/{{id:{ID_SEGMENT}}}",
    ApiDoc("Unblock a hoster link", "blocklist", None, OK, path={"id": ID_PARAM}),
)
async def unblock(request: web.Request) -> web.Response:
    """404 for an unknown id."""
    await request.app[keys.QUEUE].blocklist.remove(path_id(request))
    return json_response({"ok": True})
