"""A series and its episodes as the library tables hold them, and their JSON shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite


@dataclass(slots=True, frozen=True)
class SeriesRecord:
    """One series as the API lists it."""

    id: int
    key: str | None
    provider: str | None
    name: str
    year: int | None
    folder: str
    local_count: int
    missing_count: int
    description: str | None
    cover_url: str | None
    languages: tuple[str, ...] | None
    error: dict[str, Any] | None
    refreshed_at: float | None
    upgrade: bool | None = None  # None: the global downloads.upgrade
    scan_error: str | None = None  # what the last walk of the folder could not read

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> SeriesRecord:
        """Build from a row of the counting query."""
        return cls(
            id=row["id"],
            key=row["key"],
            provider=row["provider"],
            name=row["name"],
            year=row["year"],
            folder=row["folder"],
            local_count=row["local_count"],
            missing_count=row["missing_count"],
            description=row["description"],
            cover_url=row["cover_url"],
            languages=tuple(json.loads(row["languages"])) if row["languages"] else None,
            error=json.loads(row["error"]) if row["error"] else None,
            refreshed_at=row["refreshed_at"],
            upgrade=None if row["upgrade"] is None else bool(row["upgrade"]),
            scan_error=row["scan_error"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The SPEC §5 record plus what the panel shows beside it."""
        return {
            "key": self.key,
            "provider": self.provider,
            "name": self.name,
            "year": self.year,
            "folder": self.folder,
            "local_count": self.local_count,
            "missing_count": self.missing_count,
            "description": self.description,
            "cover_url": self.cover_url,
            "languages": list(self.languages) if self.languages is not None else None,
            "error": self.error,
            "refreshed_at": self.refreshed_at,
            "upgrade": self.upgrade,
            "scan_error": self.scan_error,
        }


@dataclass(slots=True, frozen=True)
class EpisodeRecord:
    """One episode of a series, local and/or listed by the provider."""

    season: int
    episode: int
    title: str | None
    title_en: str | None
    on_provider: bool
    local_path: str | None
    queue_status: str | None = None
    #: the language of a file this service downloaded; None for files it found on disk
    local_language: str | None = None

    @property
    def state(self) -> str:
        """local, downloading, queued or missing."""
        if self.local_path:
            return "local"
        if self.queue_status == "downloading":
            return "downloading"
        return "queued" if self.queue_status == "pending" else "missing"
