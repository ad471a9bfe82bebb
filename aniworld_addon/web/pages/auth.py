"""First-run setup and login pages (the forms post to /api/auth/setup and /api/auth/login)."""

from __future__ import annotations

from aiohttp import web

from ... import keys
from .common import page_context, redirect, render_page, routes, safe_next


@routes.get("/setup")
async def setup_page(request: web.Request) -> web.Response:
    """Choose the master password; only before one exists."""
    if await request.app[keys.AUTH].is_configured():
        raise redirect(request, "/" if request[keys.IDENTITY] else "/login")
    context = page_context(request, "setup", "setup.title")
    context["next"] = safe_next(request.query.get("next"))
    return render_page("setup.html", request, context)


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    """The password form; signed-in users go straight on."""
    next_path = safe_next(request.query.get("next"))
    if not await request.app[keys.AUTH].is_configured():
        raise redirect(request, "/setup")
    if request[keys.IDENTITY] is not None:
        raise redirect(request, next_path)
    context = page_context(request, "login", "login.title")
    context["next"] = next_path
    return render_page("login.html", request, context)
