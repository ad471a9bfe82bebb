"""/api/history: grabbed, downloaded, failed, deleted, upgraded and scan records, paged."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ... import keys
from ...history import HISTORY_EVENTS, SORT_KEYS
from ..routing import (
    PAGING_QUERY,
    ApiDoc,
    ApiRoutes,
    json_response,
    paging,
    query_choice,
    query_value,
)
from ..schemas import INT, NULL_INT, NULL_STR, NUM, STR, obj, page

routes = ApiRoutes()
TAG = "history"

RECORD = obj(
    {
        "id": INT,
        "at": NUM,
        "event": {"type": "string", "enum": list(HISTORY_EVENTS)},
        "provider": NULL_STR,
        "series_key": NULL_STR,
        "series_name": NULL_STR,
        "season": NULL_INT,
        "episode": NULL_INT,
        "language": NULL_STR,
        "message": NULL_STR,
        "data": {"type": "object"},
    }
)
QUERY: dict[str, dict[str, Any]] = {
    **PAGING_QUERY,
    "sort_key": {"type": "string", "enum": list(SORT_KEYS)},
    "sort_direction": {"type": "string", "enum": ["asc", "desc"]},
    "series_key": STR,
    "event": {"type": "string", "enum": list(HISTORY_EVENTS)},
}


@routes.api(
    "GET",
    "/api/history",
    ApiDoc("Download and library history, paged", TAG, None, page(RECORD), query=QUERY),
)
async def list_history(request: web.Request) -> web.Response:
    """Newest first by default; ?series_key= and ?event= filter."""
    sort_key = query_choice(request, "sort_key", tuple(SORT_KEYS), "at")
    direction = query_choice(request, "sort_direction", ("asc", "desc"), "desc")
    event = None
    if query_value(request, "event") is not None:
        event = query_choice(request, "event", HISTORY_EVENTS, "")
    page_no, page_size = paging(request)
    series_key = (query_value(request, "series_key") or "").strip()[:200] or None
    total, records = await request.app[keys.HISTORY].page(
        page_no,
        page_size,
        sort_key,
        direction == "desc",
        series_key=series_key,
        event=event,
    )
    return json_response(
        {
            "page": page_no,
            "page_size": page_size,
            "total_records": total,
            "records": [r.to_dict() for r in records],
        }
    )
