"""A local stand-in for aniworld.to and the old s.to engine, served over loopback HTTP."""

from __future__ import annotations

from tests.site.app import SITE_CONTROL, create_site
from tests.site.control import Fault, SiteControl
from tests.site.data import (
    ENGLISH_DUB,
    ENGLISH_SUB,
    GERMAN_DUB,
    GERMAN_SUB,
    Catalogue,
    SiteEpisode,
    SiteHoster,
    SiteNewEpisode,
    SiteSeries,
    default_catalogue,
    generated_catalogue,
)
from tests.site.media import MediaSet, ffmpeg_available, make_media

__all__ = [
    "ENGLISH_DUB",
    "ENGLISH_SUB",
    "GERMAN_DUB",
    "GERMAN_SUB",
    "SITE_CONTROL",
    "Catalogue",
    "Fault",
    "MediaSet",
    "SiteControl",
    "SiteEpisode",
    "SiteHoster",
    "SiteNewEpisode",
    "SiteSeries",
    "create_site",
    "default_catalogue",
    "ffmpeg_available",
    "generated_catalogue",
    "make_media",
]
