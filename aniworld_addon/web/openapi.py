"""/api/openapi.json, built from the router and each route's ApiDoc so the two cannot drift."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final

import voluptuous as vol
import voluptuous_openapi
from aiohttp import web

from .. import keys
from ..const import APP_NAME, VERSION
from ..jsonutil import dumps
from ..settings_schema import absolute_path, strict_int, unique_languages
from .routing import ApiDoc, ApiRoutes
from .schemas import ERROR, obj

routes = ApiRoutes()
_PARAM: Final = re.compile(r"{(\w+)(?::[^}]*)?}")
# Every route can answer these (the error middleware, the body guard, the services' AppErrors).
_ERROR_STATUSES: Final = {
    400: "Invalid input",
    401: "Not authenticated",
    403: "Forbidden (a cookie session without its CSRF token)",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    429: "Too many requests",
    503: "Unavailable",
}
# A public route never asks for credentials, so it cannot refuse them (unless it says so).
_AUTH_STATUSES: Final = frozenset({401, 403})
# Our own validators, by what they accept; voluptuous_openapi converts voluptuous' own.
_CUSTOM: Final[tuple[tuple[Callable[..., Any], dict[str, Any]], ...]] = (
    (strict_int, {"type": "integer"}),
    (absolute_path, {"type": "string", "pattern": "^/"}),
    (unique_languages, {"uniqueItems": True}),
)


def _serialize(value: Any) -> Any:
    for validator, schema in _CUSTOM:
        if value is validator:
            return dict(schema)
    if value is list:  # the library would claim an array of strings
        return {"type": "array"}
    if value is vol.Strip:  # a transformation, not a constraint (see _all_of)
        return {}
    if isinstance(value, vol.All):
        return _all_of(value)
    return voluptuous_openapi.UNSUPPORTED


def _convert(schema: Any) -> dict[str, Any]:
    result: dict[str, Any] = voluptuous_openapi.convert(schema, custom_serializer=_serialize)
    return result


def _all_of(value: vol.All) -> dict[str, Any]:
    """One schema that every validator of All holds for (they constrain one value in turn)."""
    merged: dict[str, Any] = {}
    stripped = False
    for validator in value.validators:
        stripped = stripped or validator is vol.Strip
        merged.update(_convert(validator))
    if merged.get("type") == "array":
        # vol.Length counts items of a list; JSON Schema has separate keywords for that.
        for length, items in (("minLength", "minItems"), ("maxLength", "maxItems")):
            if length in merged:
                merged[items] = merged.pop(length)
    if stripped and merged.get("minLength", 0) >= 1:
        merged["pattern"] = r"\S"  # blanks alone are stripped to nothing, which is too short
    return merged


def _closed(schema: Any) -> None:
    """additionalProperties: false on objects that do not say otherwise (PREVENT_EXTRA)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for child in schema.values():
            _closed(child)
    elif isinstance(schema, list):
        for child in schema:
            _closed(child)


def _request_schema(request: vol.Schema | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(request, vol.Schema):
        result = _convert(request)
        if request.extra == vol.PREVENT_EXTRA:
            _closed(result)
        return result
    return dict(request)


def _body_required(request: vol.Schema | Mapping[str, Any]) -> bool:
    """read_json reads a missing body as {}: the body is optional when {} is valid."""
    if isinstance(request, vol.Schema):
        try:
            request({})
        except vol.Invalid:
            return True
        return False
    return bool(request.get("required")) or request.get("type") != "object"


def _error_statuses(doc: ApiDoc) -> list[int]:
    statuses = set(_ERROR_STATUSES)
    if doc.public:
        statuses -= _AUTH_STATUSES
    return sorted(statuses | set(doc.errors))


def _operation(method: str, path: str, doc: ApiDoc) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "Success"}
    if doc.response is not None:
        ok["content"] = {doc.content_type: {"schema": dict(doc.response)}}
    responses[str(doc.status)] = ok
    for status in _error_statuses(doc):
        responses[str(status)] = {
            "description": _ERROR_STATUSES.get(status) or HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": ERROR}},
        }
    operation: dict[str, Any] = {
        "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
        "summary": doc.summary,
        "tags": [doc.tag],
        "responses": responses,
    }
    if doc.public:
        operation["security"] = []
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(doc.path.get(name, {"type": "string"})),
        }
        for name in _PARAM.findall(path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": dict(schema)}
        for name, schema in doc.query.items()
    ]
    if parameters:
        operation["parameters"] = parameters
    if doc.request is not None:
        operation["requestBody"] = {
            "required": _body_required(doc.request),
            "content": {"application/json": {"schema": _request_schema(doc.request)}},
        }
    return operation


def build_openapi(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.0 document for every documented route registered on app."""
    docs = app[keys.API_DOCS]
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path is None or route.method == "HEAD":
            continue
        doc = docs.get((route.method, path))
        if doc is None:
            continue
        paths.setdefault(path, {})[route.method.lower()] = _operation(route.method, path, doc)
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{APP_NAME} API", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "apikey"},
            },
        },
        "security": [{"bearer": []}, {"apiKeyHeader": []}, {"apiKeyQuery": []}],
    }


@routes.api(
    "GET",
    "/api/openapi.json",
    ApiDoc(
        "This document",
        "system",
        None,
        obj({"openapi": {"type": "string"}}, required=["openapi"]),
        public=True,
    ),
)
async def openapi(request: web.Request) -> web.Response:
    """Serve the OpenAPI document (built once per app, routes are frozen by then)."""
    cache = request.app[keys.OPENAPI_BODY]
    if "body" not in cache:
        cache["body"] = dumps(build_openapi(request.app)).encode()
    return web.Response(body=cache["body"], content_type="application/json", charset="utf-8")
