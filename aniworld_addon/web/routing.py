"""Route tables that also carry each API route's OpenAPI description, and the JSON body reader."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import voluptuous as vol
from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import BadJsonError, ValidationError
from ..settings_schema import invalid_details

JsonSchema = Mapping[str, Any]


@dataclass(slots=True, frozen=True)
class ApiDoc:
    """What /api/openapi.json says about one route."""

    summary: str
    tag: str
    request: vol.Schema | JsonSchema | None = None
    response: JsonSchema | None = None
    status: int = 200
    query: Mapping[str, JsonSchema] = field(default_factory=dict)
    public: bool = False
    content_type: str = "application/json"


class ApiRoutes(web.RouteTableDef):
    """A RouteTableDef whose `api` decorator records an ApiDoc per (method, path)."""

    def __init__(self) -> None:
        super().__init__()
        self.docs: dict[tuple[str, str], ApiDoc] = {}

    def api(self, method: str, path: str, doc: ApiDoc) -> Callable[[Handler], Handler]:
        """Register handler for method+path and remember its documentation."""
        self.docs[(method.upper(), path)] = doc
        return self.route(method, path)


async def read_json(request: web.Request, schema: vol.Schema | None = None) -> Any:
    """Parse the body as JSON and validate it; errors become 400s with details."""
    raw = await request.read()
    if not raw:
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadJsonError(f"the request body is not valid JSON: {err}") from err
    if schema is None:
        return body
    try:
        return schema(body)
    except vol.Invalid as err:
        raise ValidationError("the request is not valid", details=invalid_details(err)) from err


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi], or a 400 naming it."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(
            f"query parameter {name!r} must be an integer",
            details=[{"path": name, "message": "expected an integer"}],
        ) from None
    if not lo <= value <= hi:
        raise ValidationError(
            f"query parameter {name!r} must be between {lo} and {hi}",
            details=[{"path": name, "message": f"out of range {lo}..{hi}"}],
        )
    return value


def query_choice(request: web.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    """A query parameter that must be one of `allowed`, or a 400 naming it."""
    value = request.query.get(name, default) or default
    if value not in allowed:
        raise ValidationError(
            f"{name} must be one of {', '.join(allowed)}",
            details=[{"path": name, "message": "not allowed"}],
        )
    return value


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON with the project's encoder settings."""
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
