"""Constants shared across the package."""

from __future__ import annotations

from typing import Final

# The same as pyproject.toml's and config.yaml's (a test holds all three together). A literal,
# not importlib.metadata.version(): that import and its scan of the installed packages cost
# start-up time on every start.
VERSION: Final = "0.1.0"

APP_NAME: Final = "AniWorld add-on"
DB_FILENAME: Final = "aniworld.db"
CONFIG_FILENAME: Final = "config.json"
CONFIG_BACKUP_DIR: Final = "config_backups"
CONFIG_BACKUPS_KEPT: Final = 10
LOG_DIR: Final = "logs"
MAX_BODY_BYTES: Final = 1024 * 1024
# The season and episode numbers a request or a command may name (season 0: films, specials).
MAX_SEASON_NUMBER: Final = 10_000
MAX_EPISODE_NUMBER: Final = 100_000
SESSION_COOKIE: Final = "aniworld_session"
CSRF_COOKIE: Final = "aniworld_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
