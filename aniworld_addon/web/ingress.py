"""Home Assistant ingress: the Supervisor alone on the ingress listener, and its headers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from .. import keys
from ..const import VERSION
from ..errors import ForbiddenError, ValidationError
from .auth import Identity

INGRESS_PATH_RE: Final = re.compile(r"^/api/hassio_ingress/[A-Za-z0-9_-]{1,128}$")


def local_port(request: web.Request) -> int | None:
    """The port of the listener that accepted this request."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return int(sockname[1]) if sockname else None


def base_path(request: web.Request) -> str:
    """The prefix every URL we emit must carry ("" outside ingress), without a trailing slash."""
    path: str = request.get(keys.BASE_PATH, "")
    return path


@web.middleware
async def ingress_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On the ingress listener: refuse everyone but the Supervisor; trust its user headers."""
    options = request.app[keys.OPTIONS]
    if not options.addon or local_port(request) != options.port:
        return await handler(request)
    if request.remote != options.ingress_address:
        # Anything else reaching this port bypassed Home Assistant's authentication.
        raise ForbiddenError("the ingress port only serves Home Assistant's Supervisor")
    path = request.headers.get("X-Ingress-Path", "")
    if path:
        if not INGRESS_PATH_RE.match(path):
            raise ValidationError("invalid X-Ingress-Path header")
        request[keys.BASE_PATH] = path
    name = (
        request.headers.get("X-Remote-User-Display-Name")
        or request.headers.get("X-Remote-User-Name")
        or "Home Assistant user"
    )
    request[keys.TRUSTED_IDENTITY] = Identity(kind="ingress", via="ingress", name=name[:100])
    return await handler(request)


def render(
    template: str, request: web.Request, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """Render a page; `base` starts every link so pages work under the ingress prefix."""
    if "t" not in context:
        # Error pages for unknown URLs get the panel's navigation and language too.
        from .pages import error_context

        context = {**error_context(request), **context}
    full = {"base": base_path(request) + "/", "version": VERSION, **context}
    return request.app[keys.TEMPLATES].render(template, request, full, status=status)
