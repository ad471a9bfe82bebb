"""/api/openapi.json, built from the router and each route's ApiDoc so the two cannot drift."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import voluptuous as vol
import voluptuous_openapi
from aiohttp import web

from .. import keys
from ..const import APP_NAME, VERSION
from ..settings_schema import strict_int
from .routing import ApiDoc, ApiRoutes, json_response
from .schemas import ERROR, obj

routes = ApiRoutes()
_PARAM: Final = re.compile(r"{(\w+)(?::[^}]*)?}")
_ERROR_STATUSES: Final = {
    "400": "Invalid input",
    "401": "Not authenticated",
    "404": "Not found",
    "409": "Conflict",
    "413": "Body too large",
    "429": "Too many requests",
    "503": "Unavailable",
}


def _serialize(value: Any) -> Any:
    if value is strict_int:
        return {"type": "integer"}
    if callable(value) and not isinstance(value, type):
        return {"type": "string"}
    return voluptuous_openapi.UNSUPPORTED


def _request_schema(request: vol.Schema | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(request, vol.Schema):
        result: dict[str, Any] = voluptuous_openapi.convert(request, custom_serializer=_serialize)
        return result
    return dict(request)


def _operation(method: str, path: str, doc: ApiDoc) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "Success"}
    if doc.response is not None:
        ok["content"] = {doc.content_type: {"schema": dict(doc.response)}}
    responses[str(doc.status)] = ok
    for status, text in _ERROR_STATUSES.items():
        if status == "401" and doc.public:
            continue
        responses[status] = {
            "description": text,
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
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
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
            "required": True,
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
    return json_response(build_openapi(request.app))
