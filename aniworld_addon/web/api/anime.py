"""/api/anime: the library list, one series, search, add, match and rescan."""

from __future__ import annotations

from typing import Any, cast

import voluptuous as vol
from aiohttp import web

from ... import keys
from ...library.store import SORT_KEYS, Filter
from ...scheduler_start import start_rescan
from ...settings_schema import LANGUAGES, unique_languages
from ..routing import (
    PAGING_QUERY,
    ApiDoc,
    ApiRoutes,
    json_response,
    paging,
    query_choice,
    query_value,
    read_json,
)
from ..schemas import BOOL, INT, NULL_INT, NULL_NUM, NULL_STR, STR, array, obj, page

routes = ApiRoutes()
TAG = "library"

SERIES = obj(
    {
        "key": NULL_STR,
        "provider": NULL_STR,
        "name": STR,
        "year": NULL_INT,
        "folder": STR,
        "local_count": INT,
        "missing_count": INT,
        "description": NULL_STR,
        "cover_url": NULL_STR,
        "languages": {"type": "array", "items": STR, "nullable": True},
        "upgrade": {"type": "boolean", "nullable": True},
        "error": {
            **obj({"code": STR, "message": STR}),
            "nullable": True,
            "description": "why the last provider refresh failed (kept until one succeeds)",
        },
        "refreshed_at": {**NULL_NUM, "description": "the last successful provider refresh"},
        "scan_error": {
            **NULL_STR,
            "description": "what the last walk of the folder could not read",
        },
    },
    required=["key", "provider", "name", "year", "folder", "local_count", "missing_count"],
)
EPISODE = obj(
    {
        "season": INT,
        "episode": INT,
        "title": NULL_STR,
        "state": {"type": "string", "enum": ["local", "missing", "queued", "downloading"]},
        "on_provider": BOOL,
        "file": {**NULL_STR, "description": "the local file, relative to the series folder"},
        "language": {
            **NULL_STR,
            "description": "the language of a file this service downloaded (null: unknown)",
        },
    },
    required=["season", "episode", "title", "state"],
)
DETAIL = {
    **SERIES,
    "properties": {**SERIES["properties"], "episodes": array(EPISODE)},
    "required": [*SERIES["required"], "episodes"],
}
SEARCH_RESULT = obj(
    {
        "provider": STR,
        "key": STR,
        "name": STR,
        "year": NULL_INT,
        "description": NULL_STR,
        "cover_url": NULL_STR,
    }
)
PROVIDER_NAME = vol.All(str, vol.Length(min=1, max=32))
KEY = vol.All(str, vol.Length(min=1, max=2048))
SEARCH_SCHEMA = vol.Schema(
    {
        vol.Required("query"): vol.All(str, vol.Strip, vol.Length(min=1, max=200)),
        vol.Optional("provider"): vol.Any(None, PROVIDER_NAME),
    }
)
IDENTITY_SCHEMA = vol.Schema({vol.Required("provider"): PROVIDER_NAME, vol.Required("key"): KEY})
LANGUAGES_SCHEMA = vol.Schema(
    {
        vol.Required("languages"): vol.Any(
            None, vol.All([vol.In(LANGUAGES)], vol.Length(min=1), unique_languages)
        ),
        # Replace files held in a lesser language once a better one appears; null: the global
        # downloads.upgrade. Left out, it is null too: the body states the whole profile.
        vol.Optional("upgrade", default=None): vol.Any(None, bool),
        # which provider's series, when two share the key (also as ?provider=)
        vol.Optional("provider"): vol.Any(None, PROVIDER_NAME),
    }
)
LIST_QUERY: dict[str, dict[str, Any]] = {
    "filter": {"type": "string", "enum": ["all", "missing", "unmatched"]},
    "q": {"type": "string"},
    **PAGING_QUERY,
    "sort_key": {"type": "string", "enum": list(SORT_KEYS)},
    "sort_direction": {"type": "string", "enum": ["asc", "desc"]},
}


@routes.api(
    "GET", "/api/anime", ApiDoc("The library, paged", TAG, None, page(SERIES), query=LIST_QUERY)
)
async def list_series(request: web.Request) -> web.Response:
    """Series with local and missing counts (?filter=all|missing|unmatched, ?q=)."""
    filter_ = cast(Filter, query_choice(request, "filter", ("all", "missing", "unmatched"), "all"))
    sort_key = query_choice(request, "sort_key", tuple(SORT_KEYS), "name")
    direction = query_choice(request, "sort_direction", ("asc", "desc"), "asc")
    page_no, page_size = paging(request)
    query = (query_value(request, "q") or "").strip()[:200] or None
    total, records = await request.app[keys.LIBRARY].store.page(
        filter_=filter_,
        query=query,
        page=page_no,
        page_size=page_size,
        sort_key=sort_key,
        descending=direction == "desc",
    )
    return json_response(
        {
            "page": page_no,
            "page_size": page_size,
            "total_records": total,
            "records": [r.to_dict() for r in records],
        }
    )


@routes.api(
    "POST",
    "/api/anime/search",
    ApiDoc("Search the providers", TAG, SEARCH_SCHEMA, array(SEARCH_RESULT)),
)
async def search(request: web.Request) -> web.Response:
    """[{provider, key, name, year, description, cover_url}]."""
    body = await read_json(request, SEARCH_SCHEMA)
    return json_response(
        await request.app[keys.LIBRARY].search(body["query"], body.get("provider"))
    )


@routes.api(
    "POST",
    "/api/anime",
    ApiDoc(
        "Add a series: its folder, sidecar and episode list",
        TAG,
        IDENTITY_SCHEMA,
        DETAIL,
        status=201,
    ),
)
async def add_series(request: web.Request) -> web.Response:
    """Create the folder (series_folder template) and sidecar, read the episodes."""
    body = await read_json(request, IDENTITY_SCHEMA)
    detail = await request.app[keys.LIBRARY].add(body["provider"], body["key"])
    return json_response(detail, status=201)


@routes.api(
    "POST",
    "/api/anime/rescan",
    ApiDoc(
        "Rescan the library and the providers", TAG, None, obj({"operation_id": STR}), status=202
    ),
)
async def rescan(request: web.Request) -> web.Response:
    """Start (or join) a rescan; poll /api/operations/{id} or watch scan_progress."""
    operation = start_rescan(request.app)
    return json_response({"operation_id": operation.id}, status=202)


@routes.api(
    "GET",
    "/api/anime/{key:[^/]+}",
    ApiDoc(
        "One series with its episodes", TAG, None, DETAIL, query={"provider": {"type": "string"}}
    ),
)
async def get_series(request: web.Request) -> web.Response:
    """Series record plus episodes [{season, episode, title, state}]."""
    detail = await request.app[keys.LIBRARY].detail(
        request.match_info["key"], query_value(request, "provider") or None
    )
    return json_response(detail)


@routes.api(
    "POST",
    "/api/anime/{folder:[^/]+}/match",
    ApiDoc("Give an unmatched folder its provider series", TAG, IDENTITY_SCHEMA, DETAIL),
)
async def match(request: web.Request) -> web.Response:
    """Write the folder's sidecar and read its episodes."""
    body = await read_json(request, IDENTITY_SCHEMA)
    detail = await request.app[keys.LIBRARY].match(
        request.match_info["folder"], body["provider"], body["key"]
    )
    return json_response(detail)


@routes.api(
    "PUT",
    "/api/anime/{key:[^/]+}/languages",
    ApiDoc(
        "Set a series' language order and upgrade switch (null: the global setting)",
        TAG,
        LANGUAGES_SCHEMA,
        DETAIL,
        query={"provider": {"type": "string"}},
    ),
)
async def set_languages(request: web.Request) -> web.Response:
    """The series' own language profile."""
    body = await read_json(request, LANGUAGES_SCHEMA)
    detail = await request.app[keys.LIBRARY].set_languages(
        request.match_info["key"],
        body["languages"],
        body["upgrade"],
        body.get("provider") or query_value(request, "provider") or None,
    )
    return json_response(detail)
