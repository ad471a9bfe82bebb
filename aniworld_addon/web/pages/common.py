"""What every page shares: the route table, the page context, the login guard, formatting."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from ... import keys
from ..auth import Identity
from ..i18n import client_strings, negotiate, theme, translator
from ..ingress import base_path, render
from ..rendering import REQUEST_CONTEXT_KEY

routes = web.RouteTableDef()

# Where a page may send the browser after logging in: an app-relative path, nothing else.
_NEXT_RE: Final = re.compile(r"^/(?!/)[A-Za-z0-9/_.\-?=&%+,~]*$")
NAV_PAGES: Final = ("library", "add", "queue", "history", "scheduler", "settings", "system")


def is_htmx(request: web.Request) -> bool:
    """An HTMX request asks for the fragment of a page, not the whole document."""
    return request.headers.get("HX-Request") == "true"


def static_url(request: web.Request, filename: str) -> str:
    """The versioned URL of a static file, under the ingress prefix."""
    url = request.app.router["static"].url_for(filename=filename)
    return base_path(request) + str(url)


def safe_next(value: str | None) -> str:
    """An app-relative path to return to after login; anything else becomes the library."""
    if value and _NEXT_RE.match(value) and "//" not in value and "\\" not in value:
        return value
    return "/"


def has_route(request: web.Request, method: str, path: str) -> bool:
    """Whether the running app serves method+path (some APIs arrive in later versions)."""
    for resource in request.app.router.resources():
        info = resource.get_info()
        if info.get("path") == path or info.get("formatter") == path:
            return any(route.method in (method, "*") for route in resource)
    return False


def page_context(request: web.Request, page: str, title_key: str) -> dict[str, Any]:
    """The context every full page needs (language, theme, who is signed in, client config)."""
    lang = negotiate(request)
    t = translator(lang)
    identity: Identity | None = request.get(keys.IDENTITY)
    base = base_path(request) + "/"
    context: dict[str, Any] = {
        "lang": lang,
        "t": t,
        "theme": theme(request),
        "page": page,
        "title": t(title_key),
        "identity": identity,
        "static": lambda filename: static_url(request, filename),
        "client": {
            "base": base,
            "lang": lang,
            "page": page,
            "ingress": identity is not None and identity.kind == "ingress",
            "authenticated": identity is not None,
            "strings": client_strings(lang),
            "modules": {"live": static_url(request, "js/live.js")},
        },
    }
    # Errors raised while this page renders reach error.html with the same language and chrome.
    # (aiohttp_jinja2 reads this str key; aiohttp warns once about str keys, harmlessly.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        request[REQUEST_CONTEXT_KEY] = context
    return context


async def full_context(request: web.Request, page: str, title_key: str) -> dict[str, Any]:
    """page_context plus the queue counter of the navigation bar."""
    context = page_context(request, page, title_key)
    counts = await request.app[keys.QUEUE].store.counts()
    context["queue_count"] = counts["pending"] + counts["downloading"]
    return context


def error_context(request: web.Request) -> dict[str, Any]:
    """The panel's context for error pages rendered outside a page handler (404s of unknown
    URLs, middleware errors): language, theme, navigation. Meant for ingress.render()."""
    existing = request.get(REQUEST_CONTEXT_KEY)
    if isinstance(existing, dict) and "t" in existing:
        return existing
    return page_context(request, "error", "common.error")


def render_page(
    template: str,
    request: web.Request,
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    """Render a full page or an HTMX fragment; both vary on HX-Request for caches."""
    response = render(template, request, context, status=status)
    response.headers["Vary"] = "HX-Request, Cookie, Accept-Language"
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(request: web.Request, path: str) -> web.HTTPFound:
    """A redirect that stays under the ingress prefix (path is app-relative, starting '/')."""
    return web.HTTPFound(base_path(request) + path)


async def require_login(request: web.Request) -> Identity:
    """The signed-in identity; otherwise off to first-run setup or to the login page."""
    identity: Identity | None = request.get(keys.IDENTITY)
    if identity is not None:
        return identity
    configured = await request.app[keys.AUTH].is_configured()
    target = "/login" if configured else "/setup"
    here = safe_next(request.rel_url.path_qs)
    if here != "/":
        target += "?next=" + quote(here, safe="")
    if is_htmx(request):
        # HTMX would swap the login page into a fragment; make it navigate instead.
        raise web.HTTPOk(headers={"HX-Redirect": base_path(request) + target}, text="")
    raise redirect(request, target)


def fmt_time(value: float | None, lang: str) -> str:
    """A Unix time as local-looking text (the browser rewrites it to its own zone)."""
    if value is None:
        return ""
    moment = datetime.fromtimestamp(value, UTC)
    return moment.strftime("%d.%m.%Y %H:%M" if lang == "de" else "%Y-%m-%d %H:%M") + " UTC"


def iso_time(value: float | None) -> str:
    """A Unix time as ISO 8601 for <time datetime=...>."""
    if value is None:
        return ""
    return datetime.fromtimestamp(value, UTC).isoformat()


def fmt_duration(seconds: float | None) -> str:
    """3725 -> 1:02:05; 65 -> 1:05."""
    if seconds is None or seconds < 0:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def fmt_size(mib: float | None) -> str:
    """MiB as a human size."""
    if mib is None:
        return ""
    if mib >= 1024 * 1024:
        return f"{mib / 1024 / 1024:.1f} TiB"
    if mib >= 1024:
        return f"{mib / 1024:.1f} GiB"
    return f"{mib:.1f} MiB"


def now() -> float:
    """The wall clock (one place, so templates and tests agree)."""
    return time.time()


def episode_code(season: int, episode: int) -> str:
    """S01E02; films and specials read F1, F2."""
    if season == 0:
        return f"F{episode}"
    return f"S{season:02d}E{episode:02d}"
