"""The shape of config.json (SPEC §3): defaults and the voluptuous schema that guards it."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import voluptuous as vol

from .errors import ValidationError
from .library.naming import validate_template

CONFIG_VERSION: Final = 2
LANGUAGES: Final = ("German Dub", "German Sub", "English Sub", "English Dub")

DEFAULT_CONFIG: Final[dict[str, Any]] = {
    "version": CONFIG_VERSION,
    "providers": {
        "aniworld": {"url": "https://aniworld.to", "enabled": True},
        "sto": {"url": "https://serienstream.to", "enabled": True},
        "ytdlp": {"enabled": True},
    },
    "languages": ["German Dub", "German Sub", "English Sub"],
    "downloads": {
        "max_concurrent": 2,
        "max_retries": 3,
        "retry_backoff_s": [60, 300, 900],
        "series_folder": "{Series TitleYear}",
        "episode_path": (
            "Season {season:00}/{Series Title} - S{season:00}E{episode:00} - {Episode Title}"
        ),
        "min_free_space_mb": 1024,
        "verify": True,
        # Not in SPEC §3's sample (config v2): replace a file held in a lesser language once a
        # preferred one appears; a series can say otherwise (PUT /api/anime/{key}/languages).
        "upgrade": False,
    },
    "scheduler": {
        "rescan_interval_h": 6,
        "rescan_cron": None,
        "new_episodes_interval_min": 60,
        "auto_download": False,
    },
    "mqtt": {"enabled": True, "topic_prefix": "aniworld", "discovery_prefix": "homeassistant"},
    "notifications": {"webhooks": []},
    "auth": {"session_hours": 24},
    # Not in SPEC §3's sample: set by POST /api/config/directory; null = the deployment option.
    "library_path": None,
}

_TOPIC_RE: Final = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


def http_url(value: Any, *, keep_slash: bool = False) -> str:
    """An absolute http(s) URL with a host; no trailing slash kept unless asked."""
    if not isinstance(value, str):
        raise vol.Invalid("must be a URL string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise vol.Invalid("must be an absolute http:// or https:// URL")
    try:
        port = parts.port  # urlsplit checks the range only when asked
    except ValueError:
        port = 0
    if port == 0:
        raise vol.Invalid("the port must be a number from 1 to 65535")
    try:  # what the HTTP client will make of it: a host that is no IDNA name failed there
        httpx.URL(value.strip())
    except (httpx.InvalidURL, ValueError) as err:
        raise vol.Invalid(f"not a usable URL: {err}") from err
    return value.strip() if keep_slash else value.strip().rstrip("/")


def webhook_url(value: Any) -> str:
    """A webhook's address exactly as given: its path is the receiver's, a trailing slash
    included (cut off, a receiver that redirects /hook to /hook/ got nothing)."""
    return http_url(value, keep_slash=True)


def site_url(value: Any) -> str:
    """A provider site's address: an http(s) URL of a host alone. A path, query or fragment
    would be dropped silently (every page path is absolute), so it is refused instead."""
    url = http_url(value)
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in url or "#" in url:
        raise vol.Invalid("must be the site's address alone, like https://aniworld.to")
    if parts.username is not None or parts.password is not None:
        raise vol.Invalid("must not carry a user name or password")
    return url


MAX_TOPIC_PREFIX: Final = 100  # a topic is at most 65,535 bytes: longer killed paho's thread


def topic(value: Any) -> str:
    """An MQTT topic prefix: levels of letters, digits, '_' and '-', no wildcards."""
    if not isinstance(value, str) or not _TOPIC_RE.match(value):
        raise vol.Invalid("must be topic levels of letters, digits, '_' or '-' joined by '/'")
    if len(value) > MAX_TOPIC_PREFIX:
        raise vol.Invalid(f"must be at most {MAX_TOPIC_PREFIX} characters")
    return value


def cron(value: Any) -> str | None:
    """A five-field crontab expression, or null."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise vol.Invalid("must be a crontab expression such as '0 3 * * *'")
    from .crontab import crontab_trigger

    try:
        trigger = crontab_trigger(value, UTC)
    except ValueError as err:
        raise vol.Invalid(f"not a valid crontab expression: {err}") from err
    # "0 0 30 2 *" parses but never fires: the job would silently never run, and every look
    # at its next run would search up to the year 9999.
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise vol.Invalid(f"the crontab expression {value!r} never fires")
    return value


def _distinct_prefixes(section: dict[str, Any]) -> dict[str, Any]:
    # <topic_prefix>/status is our availability topic and <discovery_prefix>/status Home
    # Assistant's birth topic: one prefix for both, and our own "online" reads as a birth, which
    # makes us publish everything again, and again.
    # Home Assistant's default birth topic is homeassistant/status whatever the discovery
    # prefix, so "homeassistant" as topic_prefix loops the same way.
    if section["topic_prefix"] in (section["discovery_prefix"], "homeassistant"):
        raise vol.Invalid(
            "must differ from discovery_prefix and from homeassistant", path=["topic_prefix"]
        )
    return section


def template(kind: str) -> Any:
    """A Sonarr-style naming template that renders to a safe relative path."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise vol.Invalid("must be a template string")
        try:
            validate_template(value, kind)
        except ValidationError as err:
            raise vol.Invalid(err.message) from err
        return value

    return check


def absolute_path(value: Any) -> str:
    """An absolute file-system path without NUL bytes."""
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        raise vol.Invalid("must be an absolute path")
    return value.rstrip("/") or "/"


def unique_languages(value: list[str]) -> list[str]:
    """Each language at most once: the list is an order of preference."""
    if len(set(value)) != len(value):
        raise vol.Invalid("each language may appear only once")
    return value


def strict_int(value: Any) -> int:
    """An integer; JSON true/false must not pass as 1/0."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid("expected an integer")
    return value


SETTINGS_SCHEMA: Final = vol.Schema(
    {
        vol.Required("version"): vol.All(int, vol.In([CONFIG_VERSION])),
        vol.Required("providers"): {
            vol.Required("aniworld"): {
                vol.Required("url"): site_url,
                vol.Required("enabled"): bool,
            },
            vol.Required("sto"): {vol.Required("url"): site_url, vol.Required("enabled"): bool},
            vol.Required("ytdlp"): {vol.Required("enabled"): bool},
        },
        vol.Required("languages"): vol.All(
            [vol.In(LANGUAGES)], vol.Length(min=1), unique_languages
        ),
        vol.Required("downloads"): {
            vol.Required("max_concurrent"): vol.All(strict_int, vol.Range(min=1, max=10)),
            vol.Required("max_retries"): vol.All(strict_int, vol.Range(min=0, max=20)),
            vol.Required("retry_backoff_s"): vol.All(
                [vol.All(strict_int, vol.Range(min=0, max=86400))], vol.Length(min=1, max=20)
            ),
            vol.Required("series_folder"): template("series_folder"),
            vol.Required("episode_path"): template("episode_path"),
            # Past 2**40 MB (an exabyte) no disk qualifies, and free-space math overflows.
            vol.Required("min_free_space_mb"): vol.All(strict_int, vol.Range(min=0, max=2**40)),
            vol.Required("verify"): bool,
            vol.Required("upgrade"): bool,
        },
        vol.Required("scheduler"): {
            vol.Required("rescan_interval_h"): vol.All(strict_int, vol.Range(min=0, max=24 * 30)),
            vol.Required("rescan_cron"): cron,
            vol.Required("new_episodes_interval_min"): vol.All(
                strict_int, vol.Range(min=0, max=10080)
            ),
            vol.Required("auto_download"): bool,
        },
        vol.Required("mqtt"): vol.All(
            {
                vol.Required("enabled"): bool,
                vol.Required("topic_prefix"): topic,
                vol.Required("discovery_prefix"): topic,
            },
            _distinct_prefixes,
        ),
        vol.Required("notifications"): {
            vol.Required("webhooks"): vol.All([webhook_url], vol.Length(max=20)),
        },
        vol.Required("auth"): {
            vol.Required("session_hours"): vol.All(strict_int, vol.Range(min=1, max=24 * 365)),
        },
        vol.Optional("library_path", default=None): vol.Any(None, absolute_path),
    }
)


def invalid_details(err: vol.Invalid) -> list[dict[str, str]]:
    """Turn voluptuous errors into [{"path": "a.b", "message": ...}] for the JSON error."""
    errors = err.errors if isinstance(err, vol.MultipleInvalid) else [err]
    return [{"path": ".".join(str(p) for p in e.path), "message": _message(e)} for e in errors]


def _message(err: vol.Invalid) -> str:
    return "unknown setting" if err.msg == "extra keys not allowed" else err.msg


def defaults() -> dict[str, Any]:
    """A fresh copy of the default settings."""
    return copy.deepcopy(DEFAULT_CONFIG)
