"""Episode -> ordered hoster candidates -> a media source the downloader can fetch.

Resolver plugins are the public extension API of this module. A package adds support for a
hoster that yt-dlp cannot read by registering an entry point in the group
``aniworld_addon.resolvers``::

    [project.entry-points."aniworld_addon.resolvers"]
    myhoster = "my_package.resolvers:MyHosterResolver"

The entry point loads an object (or a class, instantiated without arguments) that satisfies
:class:`ResolverPlugin`:

- ``name: str`` names the plugin in logs and on the media source;
- ``suitable(embed_url: str) -> bool`` says whether it reads that hoster embed page; it must be
  cheap and must not touch the network (a URL pattern test, like yt-dlp's ``_VALID_URL``);
- ``async resolve(embed_url: str, client: httpx.AsyncClient) -> ResolvedMedia`` returns a direct
  media URL (file or HLS playlist) plus the HTTP headers the download needs. It uses the given
  client (owned by the service) and raises any exception when the page yields nothing.

The first suitable plugin wins; when none is suitable, the embed URL goes to yt-dlp as is and its
own extractors (generic HTML5 ``<video>``, JW Player set-ups, direct media) read it at download
time. Plugins must not defeat a hoster's obfuscation, captcha or signed-URL protection: this
project ships none that do, and a hoster nobody can read fails with "no resolver for hoster X".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from ..errors import AppError, ProviderNotFoundError, ProviderParseError
from ..providers.base import EpisodeLinks, HosterLink, Language, Provider

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

_LOGGER = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "aniworld_addon.resolvers"
#: `MediaSource.resolver` when yt-dlp's own extractors are left to read the embed page
YTDLP: Final = "yt-dlp"
DEFAULT_PLUGIN_TIMEOUT_S: Final = 60.0


class DownloadFailedError(AppError):
    """A download attempt failed; `next_candidate` tells the queue to try the next hoster."""

    code = "download_failed"
    status = 502
    #: False when every other hoster would fail the same way (e.g. a full disk)
    next_candidate: ClassVar[bool] = True


class HosterUnavailableError(DownloadFailedError):
    """The hoster answered an HTTP error, is unreachable, or its link is gone."""

    code = "hoster_unavailable"


class NoResolverError(HosterUnavailableError):
    """Neither a resolver plugin nor yt-dlp can find media on the hoster's embed page."""

    code = "no_resolver"


@dataclass(slots=True, frozen=True)
class ResolvedMedia:
    """What a plugin returns: a direct media URL and the headers needed to fetch it."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class ResolverPlugin(Protocol):
    """The public plugin API (entry-point group `aniworld_addon.resolvers`)."""

    name: str

    def suitable(self, embed_url: str) -> bool:
        """True if this plugin reads the hoster page at `embed_url` (no network access)."""
        ...

    async def resolve(self, embed_url: str, client: httpx.AsyncClient) -> ResolvedMedia:
        """The direct media URL and headers behind `embed_url`."""
        ...


@dataclass(slots=True, frozen=True)
class Candidate:
    """One hoster link to try for an episode, in the order the queue should try them."""

    language: Language
    hoster: str
    link: HosterLink

    def __str__(self) -> str:
        return f"{self.hoster} ({self.language.value})"


@dataclass(slots=True, frozen=True)
class MediaSource:
    """What the downloader hands to yt-dlp: a URL, its headers and where it came from."""

    url: str
    headers: Mapping[str, str]
    hoster: str
    language: Language
    #: the plugin that produced `url`, or YTDLP when `url` is the embed page itself
    resolver: str = YTDLP


def load_plugins(group: str = ENTRY_POINT_GROUP) -> list[ResolverPlugin]:
    """The installed resolver plugins by entry-point name; broken ones are logged and skipped."""
    from importlib.metadata import entry_points  # scans every installed package: on first use

    plugins: list[ResolverPlugin] = []
    for entry in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        plugin = _load_one(entry)
        if plugin is not None:
            plugins.append(plugin)
    return plugins


def _load_one(entry: EntryPoint) -> ResolverPlugin | None:
    try:
        loaded = entry.load()
        plugin = loaded() if inspect.isclass(loaded) else loaded
    except Exception:  # a third-party package's import-time bug must not stop the service
        _LOGGER.exception("resolver plugin %s (%s) cannot be loaded", entry.name, entry.value)
        return None
    if not isinstance(plugin, ResolverPlugin) or not inspect.iscoroutinefunction(plugin.resolve):
        _LOGGER.error(
            "resolver plugin %s (%s) lacks name, suitable() or async resolve()",
            entry.name,
            entry.value,
        )
        return None
    _LOGGER.info("resolver plugin %s loaded from %s", plugin.name, entry.value)
    return plugin


def order_candidates(links: EpisodeLinks, languages: Iterable[Language]) -> list[Candidate]:
    """Languages in preference order, then hosters in page order; other languages are left out."""
    ordered: list[Candidate] = []
    seen: set[Language] = set()
    for language in languages:
        if language in seen:
            continue
        seen.add(language)
        ordered.extend(
            Candidate(language, link.hoster, link) for link in links.for_language(language)
        )
    return ordered


def _require_http(url: str, what: str) -> None:
    # Anything else (file:, data:, ...) handed to yt-dlp could read local files.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HosterUnavailableError(f"{what} is not an http(s) URL: {url!r}", details={"url": url})


class Resolver:
    """Orders an episode's hosters and turns one of them into a MediaSource."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        plugins: Sequence[ResolverPlugin] | None = None,
        *,
        plugin_timeout_s: float = DEFAULT_PLUGIN_TIMEOUT_S,
    ) -> None:
        self._client = client
        # None: read from the entry points when first needed, not at start-up.
        self._plugins: tuple[ResolverPlugin, ...] | None = (
            None if plugins is None else tuple(plugins)
        )
        self._plugin_timeout_s = plugin_timeout_s

    async def candidates(
        self,
        provider: Provider,
        key: str,
        season: int,
        episode: int,
        languages: Sequence[Language],
    ) -> list[Candidate]:
        """The hosters to try for one episode (reads the episode page once)."""
        links = await provider.episode_links(key, season, episode)
        return order_candidates(links, languages)

    async def plugins(self) -> tuple[ResolverPlugin, ...]:
        """The resolver plugins: the installed ones (imported in a thread on first use, as
        reading entry points and importing third-party code is file work), unless a list
        was given."""
        if self._plugins is None:
            self._plugins = tuple(await asyncio.to_thread(load_plugins))
        return self._plugins

    async def plugin_for(self, embed_url: str) -> ResolverPlugin | None:
        """The first plugin that reads `embed_url`, if any."""
        for plugin in await self.plugins():
            try:
                if plugin.suitable(embed_url):
                    return plugin
            except Exception:  # one buggy plugin must not stop every other hoster
                _LOGGER.exception("resolver plugin %s failed in suitable()", plugin.name)
        return None

    async def resolve(self, provider: Provider, candidate: Candidate) -> MediaSource:
        """Follow the candidate's redirect, then let a plugin (or later yt-dlp) find the media."""
        try:
            embed_url = await provider.resolve_redirect(candidate.link)
        except (ProviderNotFoundError, ProviderParseError) as err:
            # This one link is gone or broken; blocks and rate limits concern the whole site
            # and propagate as ProviderError so the queue retries later instead.
            raise HosterUnavailableError(
                f"link to hoster {candidate} does not lead anywhere: {err.message}",
                details={"hoster": candidate.hoster, "link": candidate.link.redirect_url},
            ) from err
        _require_http(embed_url, f"hoster {candidate} embed page")
        plugin = await self.plugin_for(embed_url)
        if plugin is None:
            return MediaSource(embed_url, {}, candidate.hoster, candidate.language)
        media = await self._run_plugin(plugin, embed_url, candidate)
        _require_http(media.url, f"media URL from resolver {plugin.name}")
        return MediaSource(
            media.url, dict(media.headers), candidate.hoster, candidate.language, plugin.name
        )

    async def _run_plugin(
        self, plugin: ResolverPlugin, embed_url: str, candidate: Candidate
    ) -> ResolvedMedia:
        details = {"hoster": candidate.hoster, "resolver": plugin.name, "url": embed_url}
        try:
            async with asyncio.timeout(self._plugin_timeout_s):
                media = await plugin.resolve(embed_url, self._client)
        except DownloadFailedError:
            raise
        except TimeoutError as err:
            raise HosterUnavailableError(
                f"resolver {plugin.name} timed out on hoster {candidate}", details=details
            ) from err
        except asyncio.CancelledError as err:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the queue stops or removes this download
            # The plugin's own cancelled inner task: taken for ours, it left the item
            # "downloading" with nothing running it.
            raise HosterUnavailableError(
                f"resolver {plugin.name} gave up on hoster {candidate} (cancelled)",
                details=details,
            ) from err
        except Exception as err:  # plugin code is third-party: any failure means "next hoster"
            raise HosterUnavailableError(
                f"resolver {plugin.name} cannot read hoster {candidate}: "
                f"{type(err).__name__}: {err}",
                details=details,
            ) from err
        if not isinstance(media, ResolvedMedia):
            raise HosterUnavailableError(
                f"resolver {plugin.name} returned {type(media).__name__}, not ResolvedMedia",
                details=details,
            )
        headers = media.headers
        if not isinstance(media.url, str) or not (
            isinstance(headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            # an httpx.URL, say: it failed later, outside this mapping, as an internal error
            # that ended the attempt without trying the other hosters
            raise HosterUnavailableError(
                f"resolver {plugin.name} returned a media URL or headers that are not text",
                details=details,
            )
        return media


__all__ = [
    "DEFAULT_PLUGIN_TIMEOUT_S",
    "ENTRY_POINT_GROUP",
    "YTDLP",
    "Candidate",
    "DownloadFailedError",
    "HosterUnavailableError",
    "MediaSource",
    "NoResolverError",
    "ResolvedMedia",
    "Resolver",
    "ResolverPlugin",
    "load_plugins",
    "order_candidates",
]
