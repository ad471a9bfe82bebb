"""/api/scheduler: the schedule settings with the next run times, and a rescan on demand."""

from __future__ import annotations

import voluptuous as vol
from aiohttp import web

from ... import keys
from ..routing import ApiDoc, ApiRoutes, json_response, read_json
from ..schemas import BOOL, INT, STR, obj

routes = ApiRoutes()
TAG = "scheduler"

NULL_TIME = {"type": "string", "format": "date-time", "nullable": True}
JOBS = ("rescan", "new_episodes", "backup", "prune_history")
CONFIG = obj(
    {
        "rescan_interval_h": INT,
        "rescan_cron": {"type": "string", "nullable": True},
        "new_episodes_interval_min": INT,
        "auto_download": BOOL,
        "running": BOOL,
        "next_runs": obj(dict.fromkeys(JOBS, NULL_TIME)),
        "last_runs": {"type": "object"},
    }
)
# Types and ranges are checked by the settings schema on the merged document (one place);
# here only the shape: a partial object of the known keys.
PATCH_SCHEMA = vol.Schema(
    {
        vol.Optional("rescan_interval_h"): object,
        vol.Optional("rescan_cron"): object,
        vol.Optional("new_episodes_interval_min"): object,
        vol.Optional("auto_download"): object,
    }
)
PATCH_DOC = obj(
    {
        "rescan_interval_h": {"type": "integer", "minimum": 0, "maximum": 720},
        "rescan_cron": {"type": "string", "nullable": True},
        "new_episodes_interval_min": {"type": "integer", "minimum": 0, "maximum": 10080},
        "auto_download": BOOL,
    },
    required=[],
) | {"additionalProperties": False}  # PATCH_SCHEMA refuses unknown settings


@routes.api(
    "GET", "/api/scheduler/config", ApiDoc("The schedule and the next run times", TAG, None, CONFIG)
)
async def get_config(request: web.Request) -> web.Response:
    """The scheduler settings plus next_runs, last_runs and whether it is running."""
    return json_response((await request.app[keys.SCHEDULER].get()).status())


@routes.api(
    "POST",
    "/api/scheduler/config",
    ApiDoc("Change the schedule (partial); applies at once", TAG, PATCH_DOC, CONFIG),
)
async def set_config(request: web.Request) -> web.Response:
    """Partial update of the scheduler settings, validated and backed up like /api/config."""
    body = await read_json(request, PATCH_SCHEMA)
    await request.app[keys.SETTINGS].update({"scheduler": body})
    return json_response((await request.app[keys.SCHEDULER].get()).status())


@routes.api(
    "POST",
    "/api/scheduler/trigger-rescan",
    ApiDoc(
        "Run the scheduled rescan now (with auto-download if on)",
        TAG,
        None,
        obj({"operation_id": STR}),
        status=202,
    ),
)
async def trigger_rescan(request: web.Request) -> web.Response:
    """Start (or join) a rescan; poll /api/operations/{id} or watch scan_progress."""
    operation = (await request.app[keys.SCHEDULER].get()).trigger_rescan()
    return json_response({"operation_id": operation.id}, status=202)
