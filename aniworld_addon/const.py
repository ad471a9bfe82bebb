"""Constants shared across the package."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Final


def _version() -> str:
    try:
        return version("aniworld-addon")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


VERSION: Final = _version()

APP_NAME: Final = "AniWorld add-on"
DB_FILENAME: Final = "aniworld.db"
CONFIG_FILENAME: Final = "config.json"
CONFIG_BACKUP_DIR: Final = "config_backups"
CONFIG_BACKUPS_KEPT: Final = 10
LOG_DIR: Final = "logs"
MAX_BODY_BYTES: Final = 1024 * 1024
SESSION_COOKIE: Final = "aniworld_session"
CSRF_COOKIE: Final = "aniworld_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
