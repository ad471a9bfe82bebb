"""Server-rendered pages (the web panel grows here)."""

from __future__ import annotations

from aiohttp import web

from .ingress import render

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """Start page."""
    return render("index.html", request, {})
