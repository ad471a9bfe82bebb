"""Server-rendered pages (the web panel grows here)."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from ..const import VERSION

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """Start page."""
    return aiohttp_jinja2.render_template("index.html", request, {"version": VERSION})
