"""App settings in <data>/config.json: schema, atomic writes, backups, versions and migrations."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import voluptuous as vol

from .const import CONFIG_BACKUP_DIR, CONFIG_BACKUPS_KEPT, CONFIG_FILENAME
from .errors import NotFoundError, SettingsWriteError, StorageError, ValidationError
from .fsutil import atomic_write_text
from .settings_schema import (
    CONFIG_VERSION,
    DEFAULT_CONFIG,
    SETTINGS_SCHEMA,
    defaults,
    invalid_details,
)

_LOGGER = logging.getLogger(__name__)

BACKUP_NAME_RE: Final = re.compile(r"^config-\d{8}T\d{6}-\d{6}(?:-[a-z0-9_]+)?\.json$")

Listener = Callable[[Mapping[str, Any], Mapping[str, Any]], None]


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merge key by key; anything else in the patch (lists, scalars, null) replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate_settings(document: Any) -> dict[str, Any]:
    """Validate a whole settings document; raise ValidationError listing every problem."""
    try:
        valid: dict[str, Any] = SETTINGS_SCHEMA(document)
    except vol.Invalid as err:
        raise ValidationError("the settings are not valid", details=invalid_details(err)) from err
    return valid


def _migrate_0(doc: dict[str, Any]) -> dict[str, Any]:
    """Unversioned files (early builds) used flat download keys; fold them into the v1 shape."""
    doc = dict(doc)
    downloads = dict(doc.get("downloads") or {})
    if "max_concurrent_downloads" in doc:
        downloads.setdefault("max_concurrent", doc.pop("max_concurrent_downloads"))
    if "max_retries" in doc:
        downloads.setdefault("max_retries", doc.pop("max_retries"))
    if downloads:
        doc["downloads"] = downloads
    doc["version"] = 1
    return deep_merge(DEFAULT_CONFIG, doc)


def _migrate_1(doc: dict[str, Any]) -> dict[str, Any]:
    """v2 added downloads.upgrade (off, as before it existed)."""
    doc = dict(doc)
    downloads = doc.get("downloads")
    if isinstance(downloads, dict):
        doc["downloads"] = {"upgrade": False, **downloads}
    doc["version"] = 2
    return doc


# MIGRATIONS[n] turns a version-n document into version n+1.
MIGRATIONS: Final[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    0: _migrate_0,
    1: _migrate_1,
}


def migrate_document(doc: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Bring a document to CONFIG_VERSION; return it and the version it had."""
    found = doc.get("version", 0)
    if not isinstance(found, int) or found < 0:
        raise ValidationError(f"config.json has an invalid version {found!r}")
    if found > CONFIG_VERSION:
        raise StorageError(
            f"config.json has version {found}, newer than this add-on supports ({CONFIG_VERSION})"
        )
    version = found
    while version < CONFIG_VERSION:
        try:
            doc = MIGRATIONS[version](doc)
        except (TypeError, AttributeError, ValueError) as err:  # a section of the wrong type
            raise ValidationError(
                f"config version {version} cannot be migrated: {type(err).__name__}: {err}"
            ) from err
        version += 1
    return doc, found


def _validated_resetting(doc: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """validate_settings, with each refused value set back to its default (an unknown key
    dropped); the valid document and what was reset. Raises when that does not help."""
    reset: list[dict[str, str]] = []
    document = copy.deepcopy(doc)
    for _ in range(5):  # a reset may uncover a rule that needs another (prefixes, say)
        try:
            return validate_settings(document), reset
        except ValidationError as err:
            problems = err.details if isinstance(err.details, list) else []
            if not problems or not all(_reset(document, p["path"]) for p in problems):
                raise
            reset += problems
    return validate_settings(document), reset


def _reset(document: dict[str, Any], path: str) -> bool:
    """Set the setting at dotted `path` (or its nearest part the defaults know) back to its
    default, or drop a key the defaults do not have; False if neither applies."""
    parts = path.split(".") if path else []
    target: Any = document
    default: Any = DEFAULT_CONFIG
    for depth, part in enumerate(parts):
        if not isinstance(target, dict) or not isinstance(default, dict):
            return False
        if part not in default:  # a key no version has: nothing to keep
            if part not in target:
                return False
            del target[part]
            return True
        last = depth == len(parts) - 1
        if last or not isinstance(default[part], dict) or not isinstance(target.get(part), dict):
            target[part] = copy.deepcopy(default[part])  # a list's item: the whole list
            return True
        target, default = target[part], default[part]
    return False


def _site_urls_trimmed(doc: dict[str, Any]) -> dict[str, Any]:
    """Cut a path off a stored provider URL. Earlier versions took `https://s.to/serie` and
    used only its host; now such a value is refused, and a stored one must not cost the
    user every other setting (the file would be set aside as unusable)."""
    providers = doc.get("providers")
    if not isinstance(providers, dict):
        return doc
    for name, section in providers.items():
        url = section.get("url") if isinstance(section, dict) else None
        if not isinstance(url, str):
            continue
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            continue
        if (
            parts.scheme in ("http", "https")
            and parts.netloc
            and (parts.path not in ("", "/") or parts.query or parts.fragment)
        ):
            section["url"] = f"{parts.scheme}://{parts.netloc}"
            _LOGGER.warning("providers.%s.url: kept %s of %s", name, section["url"], url)
    return doc


def _parse_json(text: str, what: str) -> Any:
    """json.loads, with nesting past the parser's stack as a ValueError like any bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None


@dataclass(slots=True, frozen=True)
class BackupInfo:
    """One file in config_backups/."""

    name: str
    created_at: float
    size: int

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for the API."""
        return {"name": self.name, "created_at": self.created_at, "size": self.size}


class Settings:
    """The settings file and its backups; reads once, writes atomically under a lock."""

    def __init__(self, data_path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = data_path / CONFIG_FILENAME
        self._backup_dir = data_path / CONFIG_BACKUP_DIR
        self._clock = clock
        self._current: dict[str, Any] = defaults()
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self.load_problem: str | None = None

    @property
    def path(self) -> Path:
        """Where config.json lives."""
        return self._path

    def get(self) -> dict[str, Any]:
        """A copy of the current settings (callers may not mutate the live one)."""
        return copy.deepcopy(self._current)

    def section(self, name: str) -> Any:
        """A copy of one top-level section."""
        return copy.deepcopy(self._current[name])

    def library_path(self, default: Path) -> Path:
        """The library folder set in the panel, else `default` (the deployment option)."""
        configured = self._current["library_path"]
        return Path(configured) if configured else default

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call listener(old, new) after each change; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def load(self) -> None:
        """Read config.json (creating, migrating or recovering it); runs file I/O in a thread."""
        self._current = await asyncio.to_thread(self._load_sync)

    def _load_sync(self) -> dict[str, Any]:
        self._backup_dir.mkdir(parents=True, exist_ok=True)
        if not self._path.exists():
            atomic_write_text(self._path, _dump(DEFAULT_CONFIG))
            return defaults()
        try:
            raw = _parse_json(self._path.read_text(encoding="utf-8"), "config.json")
            if not isinstance(raw, dict):
                raise ValidationError("config.json does not hold a JSON object")
            migrated, found = migrate_document(raw)
            valid, reset = _validated_resetting(_site_urls_trimmed(migrated))
        except (ValueError, ValidationError) as err:
            # Never lose the user's file: keep it beside, named so they can find and fix it.
            aside = self._path.with_name(f"{CONFIG_FILENAME}.corrupt-{_stamp(self._clock())}")
            os.replace(self._path, aside)
            self.load_problem = f"config.json was unusable ({err}); moved to {aside.name}"
            _LOGGER.error("%s; using defaults", self.load_problem)
            atomic_write_text(self._path, _dump(DEFAULT_CONFIG))
            return defaults()
        if reset:
            # A value an earlier version took and this one refuses (a rule tightened since):
            # that value goes back to its default, not the whole file. The file as it was
            # stays in config_backups.
            kept = self._backup_sync(suffix="refused")
            atomic_write_text(self._path, _dump(valid))
            self.load_problem = (
                "config.json held values this version refuses, reset to their defaults: "
                + "; ".join(f"{d['path']} ({d['message']})" for d in reset)
                + f"; the file as it was is config_backups/{kept.name}"
            )
            _LOGGER.warning("%s", self.load_problem)
        if found != CONFIG_VERSION:
            self._backup_sync(suffix=f"v{found}")
            atomic_write_text(self._path, _dump(valid))
            _LOGGER.info("config.json migrated from version %d to %d", found, CONFIG_VERSION)
        return valid

    async def update(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Deep-merge a partial document, validate the whole, back up, write; return the result."""
        async with self._lock:
            candidate = deep_merge(self._current, patch)
            candidate["version"] = CONFIG_VERSION
            return await self._write(validate_settings(candidate))

    async def replace(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Replace everything (reset, restore) after validation and a backup."""
        async with self._lock:
            return await self._write(validate_settings(dict(document)))

    async def reset(self) -> dict[str, Any]:
        """Back to the defaults (the old file is backed up first)."""
        return await self.replace(DEFAULT_CONFIG)

    async def _write(self, valid: dict[str, Any]) -> dict[str, Any]:
        old = self._current
        if valid == old and await asyncio.to_thread(self._path.is_file):
            # Nothing changes: a backup now would push out one that holds an earlier state
            # (a panel's Save pressed ten times left ten copies of the same settings).
            return copy.deepcopy(valid)
        try:
            await asyncio.to_thread(self._backup_sync)
            await asyncio.to_thread(atomic_write_text, self._path, _dump(valid))
        except OSError as err:  # a full or read-only data disk: a 503 that changed nothing
            raise SettingsWriteError(
                f"cannot write the settings: {err.strerror or err} (is the data disk full?)",
                details={"path": str(err.filename or self._path)},
            ) from err
        self._current = valid
        for listener in list(self._listeners):
            listener(old, copy.deepcopy(valid))
        return copy.deepcopy(valid)

    async def list_backups(self) -> list[BackupInfo]:
        """Newest first."""
        return await asyncio.to_thread(self._list_backups_sync)

    def _list_backups_sync(self) -> list[BackupInfo]:
        found = []
        for entry in os.scandir(self._backup_dir):
            if entry.is_file() and BACKUP_NAME_RE.match(entry.name):
                stat = entry.stat()
                found.append(BackupInfo(entry.name, stat.st_mtime, stat.st_size))
        return sorted(found, key=lambda b: b.name, reverse=True)

    async def create_backup(self) -> BackupInfo:
        """Copy the current file into config_backups/ now."""
        async with self._lock:
            return await asyncio.to_thread(self._backup_sync, "manual")

    def _backup_sync(self, suffix: str | None = None) -> BackupInfo:
        self._backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"config-{_stamp(self._clock())}{'-' + suffix if suffix else ''}.json"
        target = self._backup_dir / name
        content = self._path.read_text(encoding="utf-8") if self._path.exists() else "{}"
        atomic_write_text(target, content)
        stat = target.stat()
        self._prune_sync(keep=name)
        return BackupInfo(name, stat.st_mtime, stat.st_size)

    def _prune_sync(self, keep: str) -> None:
        # By name (newest first), never the one just written: with the clock behind (a Pi
        # without a clock before NTP) it sorted last and was deleted at once, and the
        # migration that had asked for it as its safety copy failed.
        others = [b for b in self._list_backups_sync() if b.name != keep]
        for old in others[CONFIG_BACKUPS_KEPT - 1 :]:
            (self._backup_dir / old.name).unlink(missing_ok=True)

    def _backup_path(self, name: str) -> Path:
        if not BACKUP_NAME_RE.match(name):
            raise NotFoundError(f"no backup named {name!r}")
        path = self._backup_dir / name
        if not path.is_file():
            raise NotFoundError(f"no backup named {name!r}")
        return path

    async def restore_backup(self, name: str) -> dict[str, Any]:
        """Make a backup the current settings (migrated and validated first)."""
        path = await asyncio.to_thread(self._backup_path, name)
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            raw = _parse_json(text, f"backup {name!r}")
        except FileNotFoundError:  # pruned or deleted since the look-up
            raise NotFoundError(f"no backup named {name!r}") from None
        except ValueError as err:
            raise ValidationError(f"backup {name!r} is not valid JSON ({err})") from err
        if not isinstance(raw, dict):
            raise ValidationError(f"backup {name!r} does not hold a JSON object")
        try:
            migrated, _ = migrate_document(raw)
        except StorageError as err:  # a newer version's: the backup, not the service, is at fault
            raise ValidationError(f"backup {name!r} cannot be restored: {err.message}") from err
        return await self.replace(migrated)

    async def delete_backup(self, name: str) -> None:
        """Remove one backup file."""
        path = await asyncio.to_thread(self._backup_path, name)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:  # two deletes at once: the second finds it gone
            raise NotFoundError(f"no backup named {name!r}") from None


def _stamp(now: float) -> str:
    micro = round(now * 1_000_000) % 1_000_000
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{micro:06d}"


def _dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
