"""Route tables that also carry each API route's OpenAPI description, and the JSON body reader."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import voluptuous as vol
from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import BadJsonError, ValidationError
from ..jsonutil import dumps, is_text
from ..settings_schema import invalid_details

JsonSchema = Mapping[str, Any]
# SQLite integers are 64-bit signed: a larger id cannot exist and must not reach the driver.
MAX_ID: Final = 2**63 - 1
ID_PARAM: Final = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_INTEGER: Final = re.compile(r"-?[0-9]+")
_PATTERN: Final = re.compile(r"{(\w+):[^{}]*}")
# A path segment that is an id: other words (/api/queue/status) are other resources, and a
# method they do not offer is a 405 there, not a bad id here.
ID_SEGMENT: Final = "[0-9]+"


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
    # Error statuses this route answers beyond the ones every route of its kind can give.
    errors: tuple[int, ...] = ()
    # Path parameters that are not plain strings (ids), by name.
    path: Mapping[str, JsonSchema] = field(default_factory=dict)


class ApiRoutes(web.RouteTableDef):
    """A RouteTableDef whose `api` decorator records an ApiDoc per (method, path)."""

    def __init__(self) -> None:
        super().__init__()
        self.docs: dict[tuple[str, str], ApiDoc] = {}

    def api(self, method: str, path: str, doc: ApiDoc) -> Callable[[Handler], Handler]:
        """Register handler for method+path and remember its documentation."""
        # Keyed like the router's formatter: "/api/queue/{id:[0-9]+}" is "/api/queue/{id}".
        self.docs[(method.upper(), _PATTERN.sub(r"{\1}", path))] = doc
        return self.route(method, path)


async def read_json(request: web.Request, schema: vol.Schema | None = None) -> Any:
    """Parse the body as JSON and validate it; errors become 400s with details."""
    raw = await request.read()
    if not raw:
        body: Any = {}
    else:
        try:
            body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadJsonError(f"the request body is not valid JSON: {err}") from err
        except RecursionError:
            raise BadJsonError("the request body is nested too deeply") from None
        # JSON can escape a lone surrogate ("\ud800"); no database, file name or UTF-8 reply
        # can hold one, and every handler would fail on it somewhere else. Only a body with a
        # backslash or a non-ASCII byte can carry one: the others are not serialized again.
        if (b"\\" in raw or not raw.isascii()) and not is_text(dumps(body)):
            raise BadJsonError("the request body holds a lone surrogate (\\ud800-\\udfff)")
        # No request of the API nests deeper than a few levels; a deeper body reached code
        # that copies or merges recursively (a settings patch) and ended in RecursionError.
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(
            body, MAX_JSON_DEPTH
        ):
            raise BadJsonError(f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")
    if schema is None:
        return body
    try:
        return schema(body)
    except vol.Invalid as err:
        raise ValidationError("the request is not valid", details=invalid_details(err)) from err


MAX_JSON_DEPTH: Final = 32


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in value nest more than limit levels (no recursion)."""
    if not isinstance(value, dict | list):
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _no_constant(name: str) -> Any:
    # Python's json takes NaN and Infinity; JSON (RFC 8259) has no such values.
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a number JSON cannot give back
        raise ValueError(f"number {text} is out of range")
    return value


CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def query_value(request: web.Request, name: str) -> str | None:
    """The one value of a query parameter (None when absent), or a 400 when it is repeated.

    A control character is a 400 too: a NUL cut SQLite's LIKE pattern short (?q=%00x
    matched every series), and no name, key or filter holds one.
    """
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ValidationError(
            f"query parameter {name!r} may be given only once",
            details=[{"path": name, "message": "given more than once"}],
        )
    if values and CONTROL_CHARS.search(values[0]):
        raise ValidationError(
            f"query parameter {name!r} holds a control character",
            details=[{"path": name, "message": "control characters are not allowed"}],
        )
    return values[0] if values else None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi], or a 400 naming it."""
    raw = query_value(request, name)
    if raw is None:
        return default
    # int() would also take " 7", "1_0" and non-ASCII digits; the API documents plain integers.
    if not _INTEGER.fullmatch(raw):
        raise ValidationError(
            f"query parameter {name!r} must be an integer",
            details=[{"path": name, "message": "expected an integer"}],
        )
    value = int(raw)
    if not lo <= value <= hi:
        raise ValidationError(
            f"query parameter {name!r} must be between {lo} and {hi}",
            details=[{"path": name, "message": f"out of range {lo}..{hi}"}],
        )
    return value


MAX_PAGE: Final = 1_000_000
MAX_PAGE_SIZE: Final = 500
#: the OpenAPI description of ?page= and ?page_size=, with the bounds paging() enforces
PAGING_QUERY: Final[dict[str, dict[str, Any]]] = {
    "page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
}


def paging(request: web.Request) -> tuple[int, int]:
    """?page= (from 1) and ?page_size= (default 50), or a 400 naming the one out of range."""
    return (
        query_int(request, "page", 1, 1, MAX_PAGE),
        query_int(request, "page_size", 50, 1, MAX_PAGE_SIZE),
    )


def query_choice(request: web.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    """A query parameter that must be one of `allowed` when given, or a 400 naming it."""
    value = query_value(request, name)
    if value is None:
        return default
    if value not in allowed:
        raise ValidationError(
            f"{name} must be one of {', '.join(allowed)}",
            details=[{"path": name, "message": "not allowed"}],
        )
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path (1 .. MAX_ID), or a 400 naming it."""
    raw = request.match_info[name]
    if not _INTEGER.fullmatch(raw) or not 1 <= int(raw) <= MAX_ID:
        raise ValidationError(
            f"{name} must be a number between 1 and {MAX_ID}",
            details=[{"path": name, "message": "not a valid id"}],
        )
    return int(raw)


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON with the project's encoder settings."""
    return web.json_response(data, status=status, dumps=dumps)
