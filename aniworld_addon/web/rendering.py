"""The panel's Jinja2 environment, made on the first page instead of at start-up.

jinja2 takes about a sixth of the service's start-up to import, and an API client or Home
Assistant polling /health never renders a page. The environment is the one
aiohttp_jinja2.setup() would build (its `url` and `static` helpers, `app` as a global,
autoescaping) and pages render the way aiohttp_jinja2 renders them (the request's context
merged under the page's); it is kept here rather than in the app, which is frozen by then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

if TYPE_CHECKING:
    import jinja2

# aiohttp_jinja2.REQUEST_CONTEXT_KEY: read here without importing aiohttp_jinja2 at start-up.
REQUEST_CONTEXT_KEY: Final = "aiohttp_jinja2_context"


class Templates:
    """Loads jinja2 and the package's templates on first use."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._env: jinja2.Environment | None = None

    @property
    def env(self) -> jinja2.Environment:
        """The environment (built on the first call: an import, about 20 ms, once).

        Only the event loop renders pages, so no lock is needed to build it once.
        """
        if self._env is None:
            self._env = _build(self._app)
        return self._env

    def render(
        self,
        template: str,
        request: web.Request,
        context: Mapping[str, Any],
        *,
        status: int = 200,
    ) -> web.Response:
        """One page as HTML, as aiohttp_jinja2.render_template does it."""
        shared = request.get(REQUEST_CONTEXT_KEY)
        merged = {**shared, **context} if isinstance(shared, dict) else dict(context)
        text = self.env.get_template(template).render(merged)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _build(app: web.Application) -> jinja2.Environment:
    import aiohttp_jinja2.helpers
    import jinja2

    assert aiohttp_jinja2.REQUEST_CONTEXT_KEY == REQUEST_CONTEXT_KEY  # kept in step on upgrades
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aniworld_addon", "web/templates"),
        autoescape=jinja2.select_autoescape(default=True),
        # The templates ship inside the package: no stat of each file on every render.
        auto_reload=False,
    )
    env.globals.update(aiohttp_jinja2.helpers.GLOBAL_HELPERS)
    env.globals["app"] = app
    return env
