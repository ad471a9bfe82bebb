"""pytest fixtures that run the test site on loopback (load with -p tests.site.plugin)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.site.app import SITE_CONTROL, create_site
from tests.site.control import SiteControl
from tests.site.data import Catalogue, default_catalogue
from tests.site.media import MediaSet, ffmpeg_available, make_media
from tests.site.pages import LayoutName


@dataclass(slots=True, frozen=True)
class RunningSite:
    """A site being served: where it is and the handles to steer it."""

    base_url: str  # no trailing slash
    control: SiteControl
    catalogue: Catalogue
    app: web.Application

    def url(self, path: str) -> str:
        """Absolute URL of a site path."""
        return self.base_url + path

    def providers_config(self) -> dict[str, dict[str, object]]:
        """The service's `providers` settings with this site as the only provider."""
        return {
            "aniworld": {"url": self.base_url},
            "sto": {"enabled": False},
            "ytdlp": {"enabled": False},
        }


@pytest.fixture
def site_catalogue() -> Catalogue:
    """The default catalogue (a fresh one per test)."""
    return default_catalogue()


@pytest.fixture(scope="session")
def media_set(tmp_path_factory: pytest.TempPathFactory) -> MediaSet:
    """The sample MP4 and HLS rendition, made once per session with ffmpeg."""
    if not ffmpeg_available():
        reason = "ffmpeg is not installed: the media fixtures need it to make sample video"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return make_media(tmp_path_factory.mktemp("site-media"))


def _media_dir(request: pytest.FixtureRequest) -> Path | None:
    # Provider tests run without ffmpeg; only tests that ask for media_set themselves skip.
    if not ffmpeg_available():
        return None
    media: MediaSet = request.getfixturevalue("media_set")
    return media.root


async def _serve(
    aiohttp_server: AiohttpServer,
    catalogue: Catalogue,
    layout: LayoutName,
    media_dir: Path | None,
) -> RunningSite:
    app = create_site(catalogue, layout=layout, media_dir=media_dir)
    server = await aiohttp_server(app, host="127.0.0.1")
    base = str(server.make_url("/")).rstrip("/")
    return RunningSite(base, app[SITE_CONTROL], catalogue, app)


@pytest.fixture
async def provider_site(
    aiohttp_server: AiohttpServer, site_catalogue: Catalogue, request: pytest.FixtureRequest
) -> RunningSite:
    """The aniworld-layout site serving `site_catalogue`, plus the sample media if ffmpeg exists."""
    return await _serve(aiohttp_server, site_catalogue, "aniworld", _media_dir(request))


@pytest.fixture
async def sto_site(
    aiohttp_server: AiohttpServer, site_catalogue: Catalogue, request: pytest.FixtureRequest
) -> RunningSite:
    """The same catalogue in the old s.to layout (/serie/stream, English Dub = key 2)."""
    return await _serve(aiohttp_server, site_catalogue, "sto", _media_dir(request))
