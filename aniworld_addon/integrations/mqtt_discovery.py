"""What Home Assistant reads over MQTT: the topic layout, the discovery payload, state shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ..const import APP_NAME, VERSION

DEVICE_ID: Final = "aniworld"
ORIGIN_NAME: Final = "aniworld-addon"
PAYLOAD_ONLINE: Final = "online"
PAYLOAD_OFFLINE: Final = "offline"
PAYLOAD_PRESS: Final = "PRESS"
PAYLOAD_ON: Final = "ON"
PAYLOAD_OFF: Final = "OFF"
COMMAND_RESCAN: Final = "rescan"
COMMAND_DOWNLOAD_MISSING: Final = "download_missing"
COMMAND_QUEUE: Final = "queue"


def dumps(value: Any) -> str:
    """JSON for MQTT: sorted and compact, so the same content is the same retained text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


HA_BIRTH_TOPIC: Final = "homeassistant/status"  # Home Assistant's default birth topic


@dataclass(slots=True, frozen=True)
class Topics:
    """Every topic the bridge uses, from the two prefixes in the settings."""

    prefix: str
    discovery_prefix: str

    @property
    def status(self) -> str:
        """Availability: online/offline, retained, also the last will."""
        return f"{self.prefix}/status"

    @property
    def queue(self) -> str:
        """Retained queue summary."""
        return f"{self.prefix}/queue"

    @property
    def download(self) -> str:
        """Retained active download (or idle)."""
        return f"{self.prefix}/download"

    @property
    def library(self) -> str:
        """Retained library totals and last scan."""
        return f"{self.prefix}/library"

    @property
    def scan(self) -> str:
        """Retained scan state and progress."""
        return f"{self.prefix}/scan"

    @property
    def paused(self) -> str:
        """Retained switch state ON/OFF."""
        return f"{self.prefix}/queue/paused"

    @property
    def paused_set(self) -> str:
        """The switch's command topic."""
        return f"{self.prefix}/queue/paused/set"

    def command(self, name: str) -> str:
        """A command topic under <prefix>/command/."""
        return f"{self.prefix}/command/{name}"

    def event(self, type_: str) -> str:
        """A non-retained event topic."""
        return f"{self.prefix}/event/{type_}"

    def sync(self, client_id: str) -> str:
        """A private topic the bridge echoes to itself to know retained messages have arrived."""
        return f"{self.prefix}/bridge/{client_id}/sync"

    @property
    def discovery(self) -> str:
        """Home Assistant's device-based discovery topic."""
        return f"{self.discovery_prefix}/device/{DEVICE_ID}/config"

    @property
    def ha_statuses(self) -> tuple[str, ...]:
        """Where Home Assistant's birth may arrive: its default birth topic, which does not
        follow a changed discovery prefix, and <discovery prefix>/status (set by users who
        moved both)."""
        return tuple(dict.fromkeys((HA_BIRTH_TOPIC, f"{self.discovery_prefix}/status")))

    @property
    def commands(self) -> tuple[str, ...]:
        """Every topic a command may arrive on."""
        return (
            self.command(COMMAND_RESCAN),
            self.command(COMMAND_DOWNLOAD_MISSING),
            self.command(COMMAND_QUEUE),
            self.paused_set,
        )

    @property
    def retained(self) -> tuple[str, ...]:
        """Every retained topic under the prefix (cleared when the prefix changes)."""
        return (self.status, self.queue, self.download, self.library, self.scan, self.paused)


@dataclass(slots=True, frozen=True)
class DeviceInfo:
    """How the service appears in Home Assistant's device registry."""

    configuration_url: str
    support_url: str | None = None
    name: str = "AniWorld"
    sw_version: str = VERSION


def _component(platform: str, key: str, name: str, **config: Any) -> dict[str, Any]:
    unique_id = f"{DEVICE_ID}_{key}"
    return {
        "platform": platform,
        "name": name,
        "unique_id": unique_id,
        "default_entity_id": f"{platform}.{unique_id}",
        **config,
    }


def discovery_payload(topics: Topics, device: DeviceInfo) -> dict[str, Any]:
    """The device-based discovery document (SPEC §6); its keys are HA's long names."""
    components = [
        _component(
            "sensor",
            "pending",
            "Pending downloads",
            state_topic=topics.queue,
            value_template="{{ value_json.pending }}",
            state_class="measurement",
            icon="mdi:tray-full",
        ),
        _component(
            "sensor",
            "active_download",
            "Active download",
            state_topic=topics.download,
            value_template="{{ value_json.label }}",
            json_attributes_topic=topics.download,
            icon="mdi:download",
        ),
        _component(
            "sensor",
            "progress",
            "Download progress",
            state_topic=topics.download,
            value_template="{{ value_json.percent }}",
            unit_of_measurement="%",
            state_class="measurement",
            suggested_display_precision=1,
            icon="mdi:progress-download",
        ),
        _component(
            "sensor",
            "speed",
            "Download speed",
            state_topic=topics.download,
            value_template="{{ value_json.speed_mbps }}",
            unit_of_measurement="MiB/s",
            device_class="data_rate",
            state_class="measurement",
            suggested_display_precision=2,
        ),
        _component(
            "sensor",
            "missing_episodes",
            "Missing episodes",
            state_topic=topics.library,
            value_template="{{ value_json.missing }}",
            state_class="measurement",
            icon="mdi:filmstrip-off",
        ),
        _component(
            "sensor",
            "last_scan",
            "Last scan",
            state_topic=topics.library,
            # None renders as "None", which Home Assistant reads as unknown.
            value_template="{{ value_json.last_scan }}",
            device_class="timestamp",
        ),
        _component(
            "binary_sensor",
            "downloading",
            "Downloading",
            state_topic=topics.download,
            value_template="{{ 'ON' if value_json.state == 'downloading' else 'OFF' }}",
            device_class="running",
        ),
        _component(
            "button",
            "rescan",
            "Rescan library",
            command_topic=topics.command(COMMAND_RESCAN),
            payload_press=PAYLOAD_PRESS,
            icon="mdi:folder-refresh",
        ),
        _component(
            "button",
            "download_missing",
            "Download missing episodes",
            command_topic=topics.command(COMMAND_DOWNLOAD_MISSING),
            payload_press=PAYLOAD_PRESS,
            icon="mdi:download-multiple",
        ),
        _component(
            "switch",
            "queue_paused",
            "Queue paused",
            state_topic=topics.paused,
            command_topic=topics.paused_set,
            payload_on=PAYLOAD_ON,
            payload_off=PAYLOAD_OFF,
            icon="mdi:pause-circle",
        ),
    ]
    origin: dict[str, Any] = {"name": ORIGIN_NAME, "sw_version": device.sw_version}
    if device.support_url:
        origin["support_url"] = device.support_url
    return {
        "device": {
            "identifiers": [DEVICE_ID],
            "name": device.name,
            "manufacturer": APP_NAME,
            "model": APP_NAME,
            "sw_version": device.sw_version,
            "configuration_url": device.configuration_url,
        },
        "origin": origin,
        "availability": [
            {
                "topic": topics.status,
                "payload_available": PAYLOAD_ONLINE,
                "payload_not_available": PAYLOAD_OFFLINE,
            }
        ],
        "qos": 1,
        "components": {c["unique_id"]: c for c in components},
    }


# --- state payloads (the discovery templates above read these keys) ---------------------------


def queue_state(summary: Mapping[str, Any]) -> dict[str, Any]:
    """<prefix>/queue from DownloadQueue.summary() or an event carrying it."""
    running = bool(summary.get("is_running", True))
    paused = bool(summary.get("is_paused", False))
    return {
        "state": "paused" if paused else ("running" if running else "stopped"),
        "is_running": running,
        "is_paused": paused,
        "pending": int(summary.get("pending", 0)),
        "active": int(summary.get("active", 0)),
        "completed": int(summary.get("completed", 0)),
        "failed": int(summary.get("failed", 0)),
    }


def download_state(
    active: Mapping[str, Any] | None, count: int, name: str | None
) -> dict[str, Any]:
    """<prefix>/download: the shown active download ({item_id, series_key, ..., progress})."""
    if active is None:
        return {"state": "idle", "label": "idle", "active": 0, "percent": 0.0, "speed_mbps": 0.0}
    progress: Mapping[str, Any] = active.get("progress") or {}
    season, episode = int(active["season"]), int(active["episode"])
    return {
        "state": "downloading",
        "label": f"{name or active['series_key']} S{season:02d}E{episode:02d}",
        "active": count,
        "item_id": active["item_id"],
        "series_key": active["series_key"],
        "season": season,
        "episode": episode,
        "percent": round(float(progress.get("percent") or 0.0), 1),
        "speed_mbps": round(float(progress.get("speed_mbps") or 0.0), 3),
        "downloaded_mb": progress.get("downloaded_mb"),
        "total_mb": progress.get("total_mb"),
        "eta_seconds": progress.get("eta_seconds"),
    }


def library_state(totals: Mapping[str, int], last_scan: Any) -> dict[str, Any]:
    """<prefix>/library from LibraryStore.totals() and the `last_scan` meta value."""
    finished = last_scan.get("finished_at") if isinstance(last_scan, Mapping) else None
    return {
        "series": int(totals.get("series", 0)),
        "unmatched": int(totals.get("unmatched", 0)),
        "missing": int(totals.get("missing", 0)),
        "last_scan": (
            datetime.fromtimestamp(float(finished), UTC).isoformat()
            if isinstance(finished, int | float)
            else None
        ),
    }


def scan_state(
    state: str,
    *,
    operation_id: str | None = None,
    done: int = 0,
    total: int = 0,
    error: Any = None,
) -> dict[str, Any]:
    """<prefix>/scan: idle, running (done of total series) or failed."""
    return {
        "state": state,
        "operation_id": operation_id,
        "done": done,
        "total": total,
        "percent": round(100 * done / total, 1) if total else 0.0,
        "error": error,
    }
