"""/api/config: settings, validation, backups, export, reset and the library directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import voluptuous as vol
from aiohttp import web

from ... import keys
from ...errors import ValidationError
from ...settings import deep_merge, validate_settings
from ...settings_schema import CONFIG_VERSION, absolute_path
from ..routing import ApiDoc, ApiRoutes, json_response, read_json
from ..schemas import ANY_OBJECT, BOOL, NUM, OK, STR, array, obj

routes = ApiRoutes()
TAG = "config"

PATCH_SCHEMA = vol.Schema(dict)
DIRECTORY_SCHEMA = vol.Schema(
    {vol.Required("path"): absolute_path, vol.Optional("create", default=True): bool}
)
BACKUP = obj({"name": STR, "created_at": NUM, "size": {"type": "integer"}})
VALIDATION = obj({"valid": BOOL, "errors": array(obj({"path": STR, "message": STR}))})


@routes.api("GET", "/api/config", ApiDoc("The current settings", TAG, None, ANY_OBJECT))
async def get_config(request: web.Request) -> web.Response:
    """The whole config.json document."""
    return json_response(request.app[keys.SETTINGS].get())


@routes.api(
    "PUT",
    "/api/config",
    ApiDoc(
        "Deep-merge a partial settings document, validate the whole, save",
        TAG,
        ANY_OBJECT,
        ANY_OBJECT,
    ),
)
async def put_config(request: web.Request) -> web.Response:
    """Partial update; 400 with every problem when the result is invalid."""
    patch = await read_json(request, PATCH_SCHEMA)
    await _check_library_path(request, patch)
    return json_response(await request.app[keys.SETTINGS].update(patch))


async def _check_library_path(request: web.Request, patch: dict[str, Any]) -> None:
    """A library folder the patch changes gets the proof of POST /api/config/directory
    (without creating it): a file or a folder the add-on cannot write was taken before and
    failed every download later."""
    library_path = patch.get("library_path")
    if not isinstance(library_path, str):
        return  # null (the deployment's folder), or a type validation names
    if library_path == request.app[keys.SETTINGS].get()["library_path"]:
        return
    try:
        absolute_path(library_path)  # first: a NUL byte failed in the file system calls
    except vol.Invalid as err:
        problem = [{"path": "library_path", "message": str(err)}]
        raise ValidationError(f"library_path {err}", details=problem) from err
    data = request.app[keys.OPTIONS].data_path
    await asyncio.to_thread(_prepare_directory, Path(library_path), False, data, "library_path")


@routes.api(
    "POST",
    "/api/config/validate",
    ApiDoc("Check a partial settings document without saving it", TAG, ANY_OBJECT, VALIDATION),
)
async def validate(request: web.Request) -> web.Response:
    """{valid, errors} for the current settings merged with the body."""
    patch = await read_json(request, PATCH_SCHEMA)
    candidate = deep_merge(request.app[keys.SETTINGS].get(), patch)
    candidate["version"] = CONFIG_VERSION
    try:
        validate_settings(candidate)
        await _check_library_path(request, patch)  # what PUT would refuse is not valid here
    except ValidationError as err:
        return json_response({"valid": False, "errors": err.details})
    return json_response({"valid": True, "errors": []})


@routes.api("GET", "/api/config/backups", ApiDoc("Backups, newest first", TAG, None, array(BACKUP)))
async def list_backups(request: web.Request) -> web.Response:
    """Files in config_backups/."""
    backups = await request.app[keys.SETTINGS].list_backups()
    return json_response([b.to_dict() for b in backups])


@routes.api(
    "POST",
    "/api/config/backups",
    ApiDoc("Back up the current settings now", TAG, None, BACKUP, status=201),
)
async def create_backup(request: web.Request) -> web.Response:
    """A manual backup."""
    backup = await request.app[keys.SETTINGS].create_backup()
    return json_response(backup.to_dict(), status=201)


@routes.api(
    "POST",
    "/api/config/backups/{name}/restore",
    ApiDoc("Restore a backup (the current settings are backed up first)", TAG, None, ANY_OBJECT),
)
async def restore_backup(request: web.Request) -> web.Response:
    """Make a backup current."""
    restored = await request.app[keys.SETTINGS].restore_backup(request.match_info["name"])
    return json_response(restored)


@routes.api("DELETE", "/api/config/backups/{name}", ApiDoc("Delete a backup", TAG, None, OK))
async def delete_backup(request: web.Request) -> web.Response:
    """Remove one backup file."""
    await request.app[keys.SETTINGS].delete_backup(request.match_info["name"])
    return json_response({"ok": True})


@routes.api(
    "POST",
    "/api/config/export",
    ApiDoc("Download the settings as a JSON file", TAG, None, ANY_OBJECT),
)
async def export(request: web.Request) -> web.Response:
    """The settings as an attachment named with the date."""
    response = json_response(request.app[keys.SETTINGS].get())
    response.headers["Content-Disposition"] = 'attachment; filename="aniworld-config.json"'
    return response


@routes.api(
    "POST",
    "/api/config/reset",
    ApiDoc("Reset every setting to its default (backed up first)", TAG, None, ANY_OBJECT),
)
async def reset(request: web.Request) -> web.Response:
    """Defaults, after a backup."""
    return json_response(await request.app[keys.SETTINGS].reset())


DIRECTORY_RESULT = obj({"path": STR, "writable": BOOL, "free_mb": NUM, "config": ANY_OBJECT})


@routes.api(
    "POST",
    "/api/config/directory",
    ApiDoc(
        "Set the library directory (created if missing; must be writable)",
        TAG,
        DIRECTORY_SCHEMA,
        DIRECTORY_RESULT,
    ),
)
async def set_directory(request: web.Request) -> web.Response:
    """Check the folder, then store it as library_path in the settings."""
    body = await read_json(request, DIRECTORY_SCHEMA)
    path = Path(body["path"])
    data = request.app[keys.OPTIONS].data_path
    free_mb = await asyncio.to_thread(_prepare_directory, path, body["create"], data)
    config = await request.app[keys.SETTINGS].update({"library_path": str(path)})
    result: dict[str, Any] = {
        "path": str(path),
        "writable": True,
        "free_mb": free_mb,
        "config": config,
    }
    return json_response(result)


def _refuse_overlap(path: Path, data: Path, problem: list[dict[str, str]]) -> None:
    """Every folder in the library is a series: not the whole disk, and not the add-on's own
    data (its logs and backups became series, and a scan of the folder they are in walked
    them along)."""
    try:
        folder, own = path.resolve(), data.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop (RuntimeError before 3.13)
        problem[0]["message"] = "cannot be resolved"
        raise ValidationError(f"{path} cannot be resolved: {err}", details=problem) from err
    if folder == Path(folder.anchor):
        problem[0]["message"] = "the root of the file system"
        raise ValidationError(
            f"{path} is the root of the file system, not a library", details=problem
        )
    if folder == own or own in folder.parents or folder in own.parents:
        problem[0]["message"] = "overlaps the data folder"
        raise ValidationError(
            f"{path} and the add-on's data folder {data} would be one inside the other",
            details=problem,
        )


def _prepare_directory(path: Path, create: bool, data: Path, field: str = "path") -> float:
    """Create if asked, prove it is a writable directory, return free space in MiB;
    `field` names the request's field in the error."""
    problem = [{"path": field, "message": ""}]
    _refuse_overlap(path, data, problem)
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            problem[0]["message"] = "not an existing directory"
            raise ValidationError(f"{path} is not a directory", details=problem)
        if not os.access(path, os.W_OK | os.X_OK):
            problem[0]["message"] = "not writable"
            raise ValidationError(f"{path} is not writable by the add-on", details=problem)
        # os.access says yes to root everywhere, /proc and /sys included: write to be sure
        # (once, when the folder is chosen; /health never writes, so disks may sleep).
        fd, probe = tempfile.mkstemp(prefix=".aniworld-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
        return shutil.disk_usage(path).free / 2**20
    except OSError as err:
        problem[0]["message"] = err.strerror or str(err)
        raise ValidationError(f"{path} cannot be used: {err.strerror}", details=problem) from err
