"""The test site's aiohttp application: routes, search API, redirects and fault middleware."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from tests.site import pages
from tests.site.control import Fault, SiteControl, classify, fault_response
from tests.site.data import Catalogue, SiteHoster, SiteSeries
from tests.site.hosters import embed_page, serve_media
from tests.site.pages import Layout, LayoutName

SITE_CONTROL: Final = web.AppKey("site_control", SiteControl)
SITE_CATALOGUE: Final = web.AppKey("site_catalogue", Catalogue)
SITE_LAYOUT: Final = web.AppKey("site_layout", Layout)


@dataclass(slots=True, frozen=True)
class _State:
    hosters: dict[int, SiteHoster]
    media_dir: Path | None


_STATE: Final = web.AppKey("site_state", _State)

_GIF: Final = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_SVG: Final = '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="14"></svg>'


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def _not_found(request: web.Request) -> web.Response:
    return _html(pages.not_found_page(request.app[SITE_LAYOUT]), status=404)


def _series(request: web.Request) -> SiteSeries:
    catalogue, slug = request.app[SITE_CATALOGUE], request.match_info["slug"]
    if (new := catalogue.renamed.get(slug)) is not None:
        raise web.HTTPMovedPermanently(request.path.replace(f"/{slug}", f"/{new}", 1))
    series = catalogue.series.get(slug)
    if series is None:
        raise web.HTTPNotFound()
    return series


def _season_number(request: web.Request) -> int:
    # /filme is season 0; /staffel-0 does not exist on the site.
    season = int(request.match_info.get("season", "0"))
    if "season" in request.match_info and season == 0:
        raise web.HTTPNotFound()
    return season


async def series_handler(request: web.Request) -> web.Response:
    """GET <prefix>/<slug>."""
    app = request.app
    return _html(pages.series_page(app[SITE_LAYOUT], app[SITE_CATALOGUE], _series(request)))


async def season_handler(request: web.Request) -> web.Response:
    """GET <prefix>/<slug>/staffel-<N> and <prefix>/<slug>/filme."""
    series, season = _series(request), _season_number(request)
    if season not in series.seasons:
        raise web.HTTPNotFound()
    return _html(pages.season_page(request.app[SITE_LAYOUT], series, season))


async def episode_handler(request: web.Request) -> web.Response:
    """GET <prefix>/<slug>/staffel-<N>/episode-<M> and <prefix>/<slug>/filme/film-<K>."""
    series, season = _series(request), _season_number(request)
    episode = series.episode(season, int(request.match_info["episode"]))
    if episode is None:
        raise web.HTTPNotFound()
    return _html(pages.episode_page(request.app[SITE_LAYOUT], series, season, episode))


async def redirect_handler(request: web.Request) -> web.Response:
    """GET /redirect/<id>: 302 to the hoster's embed page, made absolute."""
    link_id = int(request.match_info["link_id"])
    hoster = request.app[_STATE].hosters.get(link_id)
    if hoster is None:  # a link a test added to the catalogue while the site runs
        catalogue = request.app[SITE_CATALOGUE].hosters()
        hoster = next((h for h in catalogue if h.link_id == link_id), None)
    if hoster is None:
        raise web.HTTPNotFound()
    location = request.url.origin().join(URL(hoster.target))
    return web.Response(status=302, headers={"Location": str(location)})


def series_search_entry(series: SiteSeries) -> dict[str, str]:
    """One hit of /ajax/seriesSearch; the site keeps HTML entities in name and description."""
    return {
        "name": escape(series.name),
        "link": series.slug,
        "description": escape(series.description),
        "cover": series.cover,
        "productionYear": series.production_year(),
    }


def search_entries(layout: Layout, keyword: str, hits: list[SiteSeries]) -> list[dict[str, str]]:
    """The hits of /ajax/search: series mixed with season and support pages clients must drop."""
    marked = re.compile(re.escape(escape(keyword.strip())), re.IGNORECASE)

    def em(text: str) -> str:
        return marked.sub(lambda m: f"<em>{m.group(0)}</em>", escape(text))

    entries = [
        {
            "title": f"Hilfe: Wie finde ich {em(keyword.strip())}?",
            "description": "Antworten rund um die Suche.",
            "link": "/support/fragen/suche",
        }
    ]
    for series in hits:
        if 1 in series.seasons:
            entries.append(
                {
                    "title": f"{em(series.name)} Staffel 1",
                    "description": escape(series.description),
                    "link": layout.season_path(series.slug, 1),
                }
            )
        entries.append(
            {
                "title": em(series.name),
                "description": escape(series.description),
                "link": layout.series_path(series.slug),
            }
        )
    return entries


async def series_search_handler(request: web.Request) -> web.Response:
    """GET /ajax/seriesSearch?keyword=<q>."""
    hits = request.app[SITE_CATALOGUE].search(request.query.get("keyword", ""))
    return web.json_response([series_search_entry(s) for s in hits])


async def search_handler(request: web.Request) -> web.Response:
    """POST /ajax/search (form keyword); like the site, only for XMLHttpRequest callers."""
    if request.headers.get("X-Requested-With") != "XMLHttpRequest":
        return web.Response(status=400, text="Bad Request")
    keyword = str((await request.post()).get("keyword", ""))
    if not keyword.strip():
        return web.json_response([])
    hits = request.app[SITE_CATALOGUE].search(keyword)
    return web.json_response(search_entries(request.app[SITE_LAYOUT], keyword, hits))


async def new_episodes_handler(request: web.Request) -> web.Response:
    """GET /neue-episoden."""
    return _html(pages.new_episodes_page(request.app[SITE_LAYOUT], request.app[SITE_CATALOGUE]))


async def home_handler(request: web.Request) -> web.Response:
    """GET /."""
    return _html(pages.home_page(request.app[SITE_LAYOUT], request.app[SITE_CATALOGUE]))


async def embed_handler(request: web.Request) -> web.Response:
    """GET /embed/<kind>/<name>: a hoster's embed page (unknown kinds are dead hosters)."""
    origin = str(request.url.origin())
    page = embed_page(request.match_info["kind"], request.match_info["name"], origin)
    if page is None:
        raise web.HTTPNotFound()
    return _html(page)


async def media_handler(request: web.Request) -> web.StreamResponse:
    """GET /media/<file>."""
    return await serve_media(request, request.app[_STATE].media_dir, request.app[SITE_CONTROL])


async def image_handler(request: web.Request) -> web.Response:
    """GET /public/img/...: covers and flags, as tiny placeholder images."""
    if request.match_info["tail"].endswith(".svg"):
        return web.Response(text=_SVG, content_type="image/svg+xml")
    return web.Response(body=_GIF, content_type="image/gif")


@web.middleware
async def site_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request, add latency, apply a switched-on fault, render 404 pages."""
    control = request.app[SITE_CONTROL]
    control.record(request.path)
    control.user_agents.add(request.headers.get("User-Agent", ""))
    if classify(request.path) != "media" and await control.pause(control.latency_s):
        return web.Response(status=503, text="shutting down")
    fault = control.fault_for(request.path)
    if fault is Fault.TIMEOUT:
        # Held until the hold time passes or the site stops, whichever comes first.
        if await control.pause(control.timeout_hold_s):
            return web.Response(status=503, text="shutting down")
    elif fault is not None and fault is not Fault.TRUNCATED:
        return fault_response(fault, control.retry_after)
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        return _not_found(request)
    if fault is Fault.TRUNCATED and isinstance(response, web.Response) and response.text:
        text = response.text
        return web.Response(text=text[: len(text) // 2], content_type=response.content_type)
    return response


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    server = request.app[SITE_CONTROL].server_header
    if server is not None:
        response.headers["Server"] = server


async def _wake_held_responses(app: web.Application) -> None:
    app[SITE_CONTROL].begin_shutdown()


def create_site(
    catalogue: Catalogue,
    *,
    layout: LayoutName = "aniworld",
    media_dir: Path | None = None,
) -> web.Application:
    """Build the site for `catalogue` in the aniworld or old s.to layout."""
    app = web.Application(middlewares=[site_middleware])
    site = pages.LAYOUTS[layout]
    app[SITE_CONTROL] = SiteControl()
    app[SITE_CATALOGUE] = catalogue
    app[SITE_LAYOUT] = site
    app[_STATE] = _State({h.link_id: h for h in catalogue.hosters()}, media_dir)
    app.on_shutdown.append(_wake_held_responses)
    app.on_response_prepare.append(_server_header)
    series = site.prefix + "/{slug:[a-z0-9-]+}"
    routes: list[web.RouteDef] = [
        web.get("/", home_handler),
        web.get(series, series_handler),
        web.get(series + "/filme", season_handler),
        web.get(series + r"/staffel-{season:\d+}", season_handler),
        web.get(series + r"/filme/film-{episode:\d+}", episode_handler),
        web.get(series + r"/staffel-{season:\d+}/episode-{episode:\d+}", episode_handler),
        web.get(r"/redirect/{link_id:\d+}", redirect_handler),
        web.get("/ajax/seriesSearch", series_search_handler),
        web.post("/ajax/search", search_handler),
        web.get("/neue-episoden", new_episodes_handler),
        web.get("/embed/{kind}/{name}", embed_handler),
        web.get("/media/{file:.+}", media_handler),
        web.get("/public/img/{tail:.+}", image_handler),
    ]
    app.add_routes(routes)
    return app
