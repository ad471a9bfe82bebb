"""create_app(): middlewares, routes and the cleanup contexts, in dependency order."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import httpx
from aiohttp import web

from . import keys
from .const import DB_FILENAME, MAX_BODY_BYTES
from .db import open_database
from .downloads.blocklist import Blocklist
from .downloads.ownership import LOCK_NAME, QueueLock
from .downloads.queue import DownloadQueue
from .downloads.queue_store import QueueStore
from .downloads.resolver import Resolver
from .events import EventBus
from .health import CheckResult, HealthChecks
from .history import history_ctx
from .integrations.mqtt import mqtt_ctx
from .integrations.webhooks import webhooks_ctx
from .integrations.websocket import WebSocketHub
from .library.service import RESCAN_KIND, LibraryService
from .library.store import LibraryStore
from .logging_setup import FileLogging
from .operations import Operations
from .options import Options
from .providers.http import HttpOptions, LazyTransport
from .providers.live import LiveProviders
from .scheduler_start import scheduler_ctx
from .settings import Settings
from .web import pages
from .web.api import anime as anime_api
from .web.api import auth as auth_api
from .web.api import config as config_api
from .web.api import history as history_api
from .web.api import queue as queue_api
from .web.api import scheduler as scheduler_api
from .web.api import system as system_api
from .web.auth import AuthService
from .web.ingress import ingress_middleware
from .web.middlewares import auth_middleware, body_limit_middleware, error_middleware
from .web.openapi import routes as openapi_routes
from .web.ratelimit import LoginLimiter
from .web.rendering import Templates

API_TABLES = (
    auth_api.routes,
    config_api.routes,
    system_api.routes,
    queue_api.routes,
    scheduler_api.routes,
    history_api.routes,
    anime_api.routes,
    openapi_routes,
)


def library_root(app: web.Application) -> Path:
    """The library folder: the one set in the panel, else the deployment option."""
    return app[keys.SETTINGS].library_path(app[keys.OPTIONS].library_path)


async def _logging_ctx(app: web.Application) -> AsyncIterator[None]:
    options = app[keys.OPTIONS]
    # Defaults need nothing from the user: ./data and ./library (_settings_ctx) are created on
    # first start.
    await asyncio.to_thread(options.data_path.mkdir, parents=True, exist_ok=True)
    file_logging = FileLogging(options.data_path, options.log_level)
    await asyncio.to_thread(file_logging.start)
    app[keys.FILE_LOGGING] = file_logging
    yield
    await asyncio.to_thread(file_logging.stop)


async def _settings_ctx(app: web.Application) -> AsyncIterator[None]:
    options = app[keys.OPTIONS]
    settings = Settings(options.data_path, clock=app[keys.CLOCK])
    await settings.load()
    app[keys.SETTINGS] = settings
    if settings.library_path(options.library_path) == options.library_path:
        # Only while it is the library: once the panel names another, the option's folder
        # was made anew at every start (an empty /media/anime, a ./library wherever a
        # command ran).
        await asyncio.to_thread(options.library_path.mkdir, parents=True, exist_ok=True)
    yield


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = await open_database(app[keys.OPTIONS].data_path / DB_FILENAME)
    app[keys.DB] = db

    async def check() -> CheckResult:
        await db.fetchone("SELECT 1")
        return CheckResult("ok", "SQLite answers")

    unregister = app[keys.HEALTH].register("database", check)
    yield
    unregister()
    await db.close()


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    bus = EventBus()
    app[keys.BUS] = bus
    operations = Operations(bus)
    app[keys.OPERATIONS] = operations
    hub = WebSocketHub(bus, state=lambda: _live_state(app))
    hub.start()
    app[keys.WS_HUB] = hub
    yield
    # Operations are closed by _operations_ctx, before the library and providers they use.
    await hub.close()
    await bus.close()


async def _live_state(app: web.Application) -> dict[str, Any]:
    """What a WebSocket client is told when it connects: the queue's counts and flags, and
    the progress of a running rescan (None when none runs)."""
    queue = app.get(keys.QUEUE)
    scan = app[keys.OPERATIONS].running(RESCAN_KIND)
    return {
        "queue": None if queue is None else await queue.summary(),
        "scan": None if scan is None else {"operation_id": scan.id, "progress": scan.progress},
    }


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    app[keys.AUTH] = AuthService(
        app[keys.DB],
        session_hours=lambda: int(settings.section("auth")["session_hours"]),
        bcrypt_rounds=app[keys.OPTIONS].bcrypt_rounds,
        clock=app[keys.CLOCK],
    )
    app[keys.LOGIN_LIMITER] = LoginLimiter()
    hub = app[keys.WS_HUB]

    def sessions_shortened(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        hours = new["auth"]["session_hours"]
        if hours < old["auth"]["session_hours"]:  # open sockets end by the new rule too
            hub.limit_sessions(hours)

    remove = settings.add_listener(sessions_shortened)
    yield
    remove()


async def _providers_ctx(app: web.Application) -> AsyncIterator[None]:
    # One client for every provider: connection reuse and one place that is closed.
    transport = LazyTransport()  # TLS set-up on the first request, not at start-up
    async with httpx.AsyncClient(
        transport=transport, follow_redirects=False, timeout=20.0
    ) as client:
        app[keys.HTTP_CLIENT] = client
        agent = app[keys.OPTIONS].user_agent
        http_options = HttpOptions() if agent is None else HttpOptions(user_agent=agent)
        live = LiveProviders(client, http_options, clock=app[keys.CLOCK])
        settings = app[keys.SETTINGS]
        live.rebuild(settings.get())
        app[keys.PROVIDERS] = live
        remove = settings.add_listener(live.on_settings_change)
        yield
        remove()


async def _library_ctx(app: web.Application) -> AsyncIterator[None]:
    library = app[keys.LIBRARY] = LibraryService(
        LibraryStore(app[keys.DB]),
        app[keys.PROVIDERS],
        app[keys.SETTINGS],
        app[keys.BUS],
        app[keys.OPERATIONS],
        lambda: library_root(app),
        clock=app[keys.CLOCK],
    )

    async def provider_check() -> CheckResult:
        # The last scan's outcome: /health must never cost the provider a request.
        last = await library.store.meta("last_scan")
        if not isinstance(last, dict):
            return CheckResult("unknown", "no scan has run yet")
        errors, refreshed = len(last.get("errors", [])), int(last.get("refreshed", 0))
        if errors and not refreshed:
            first = last["errors"][0]
            return CheckResult(
                "error",
                f"every series failed in the last scan: {first['message']}",
                {"errors": errors},
            )
        message = f"last scan: {refreshed} series read" + (f", {errors} failed" if errors else "")
        return CheckResult("ok", message, {"errors": errors, "refreshed": refreshed})

    unregister = app[keys.HEALTH].register("provider", provider_check)
    yield
    unregister()


async def _operations_ctx(app: web.Application) -> AsyncIterator[None]:
    # Operations (rescans) read provider pages: they must end before the HTTP client and the
    # library close, which unwind after this.
    yield
    await app[keys.OPERATIONS].close()


async def _queue_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    queue = DownloadQueue(
        QueueStore(app[keys.DB]),
        app[keys.LIBRARY].store,
        app[keys.PROVIDERS],
        Resolver(app[keys.HTTP_CLIENT]),
        Blocklist(app[keys.DB]),
        settings,
        app[keys.BUS],
        lambda: library_root(app),
        clock=app[keys.CLOCK],
    )
    role = app[keys.ROLE]
    holder = "service" if role is AppRole.SERVICE else "cli"
    lock = QueueLock(app[keys.OPTIONS].data_path / LOCK_NAME, holder)
    # A command-line download waits too, for when another command line holds the queue (it
    # returns at once when a service does: see cli.download).
    await queue.start_up(lock, wait=role is not AppRole.CLI, run=role is not AppRole.CLI)
    app[keys.QUEUE] = queue
    remove = settings.add_listener(queue.on_settings_change)
    yield
    remove()
    # Before the database closes: running downloads are cancelled and left pending.
    await queue.close()


# Below this, the data disk is reported full: SQLite, the logs and the nightly backup need room.
DATA_MIN_FREE_MB: Final = 100


async def _library_checks_ctx(app: web.Application) -> AsyncIterator[None]:
    health = app[keys.HEALTH]

    async def library() -> CheckResult:
        root = library_root(app)
        ok = await asyncio.to_thread(lambda: root.is_dir() and os.access(root, os.W_OK | os.X_OK))
        if not ok:
            return CheckResult("error", f"{root} is missing or not writable")
        unavailable = app[keys.LIBRARY].unavailable
        if unavailable is not None:  # an empty folder where series were: not mounted?
            return CheckResult("error", unavailable)
        return CheckResult("ok", f"{root} is writable")

    async def disk() -> CheckResult:
        root, data = library_root(app), app[keys.OPTIONS].data_path
        minimum = int(app[keys.SETTINGS].section("downloads")["min_free_space_mb"])
        try:
            free = (await asyncio.to_thread(shutil.disk_usage, root)).free // 2**20
            data_free = (await asyncio.to_thread(shutil.disk_usage, data)).free // 2**20
        except OSError as err:
            return CheckResult("error", f"cannot read free space of {err.filename}: {err.strerror}")
        details = {"free_mb": free, "min_free_space_mb": minimum, "data_free_mb": data_free}
        # The database, logs and backups live on the data disk: full, every write fails.
        if data_free < DATA_MIN_FREE_MB:
            return CheckResult(
                "error",
                f"the data folder {data} has only {data_free} MiB free,"
                f" {DATA_MIN_FREE_MB} MiB needed for the database and backups",
                details,
            )
        if free < minimum:
            return CheckResult("error", f"only {free} MiB free, {minimum} MiB needed", details)
        return CheckResult("ok", f"{free} MiB free", details)

    async def ffprobe() -> CheckResult:
        found = await asyncio.to_thread(shutil.which, "ffprobe")
        if found is None:
            return CheckResult("error", "ffprobe is not installed: downloads cannot be verified")
        return CheckResult("ok", found)

    unregister = [
        health.register("library", library),
        health.register("disk", disk),
        health.register("ffprobe", ffprobe),
    ]
    yield
    for undo in unregister:
        undo()


async def _close_websockets(app: web.Application) -> None:
    # on_shutdown runs before cleanup: open sockets must be closed or shutdown waits for them.
    await app[keys.WS_HUB].close()


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


class AppRole(enum.Enum):
    """What the process is for; a CLI run shares the service's data and must not act as it."""

    SERVICE = "service"  # the web service: MQTT, the scheduler, runs the download queue
    CLI = "cli"  # a command that reads and rescans: the queue is left to the service
    CLI_DOWNLOAD = "cli-download"  # runs the queue unless the service already does


def in_order(contexts: Sequence[CleanupContext]) -> CleanupContext:
    """One cleanup context that enters `contexts` in order and leaves them in reverse.

    Unlike a list in app.cleanup_ctx, a context that fails to start unwinds those started
    before it: aiohttp's runner leaves them open when its setup fails, and the database's
    worker thread then kept the process alive, a service that never answered or exited.
    """

    async def services(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                for context in contexts:
                    await stack.enter_async_context(contextlib.asynccontextmanager(context)(app))
            except BaseException:
                # closed as at a normal stop: the contexts' clean-up code follows their yield
                # without a try/finally, and would be skipped with the error thrown in
                await stack.aclose()
                raise
            yield

    return services


def create_app(
    options: Options, *, clock: Callable[[], float] = time.time, role: AppRole = AppRole.SERVICE
) -> web.Application:
    """Build the application; nothing touches the network or blocks the loop until startup.

    A CLI role leaves out MQTT (a second client under the service's will topic published
    "offline" for it on exit) and the scheduler (jobs of a command's lifetime).
    """
    app = web.Application(
        middlewares=[
            error_middleware,
            body_limit_middleware,
            ingress_middleware,
            auth_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[keys.OPTIONS] = options
    app[keys.ROLE] = role
    app[keys.CLOCK] = clock
    app[keys.STARTED_AT] = time.monotonic()
    app[keys.HEALTH] = HealthChecks()
    docs = {}
    for table in API_TABLES:
        app.router.add_routes(table)
        docs.update(table.docs)
    app[keys.API_DOCS] = docs
    app[keys.OPENAPI_BODY] = {}
    app.router.add_routes(pages.routes)
    app.router.add_static(
        "/static", Path(__file__).parent / "web" / "static", name="static", append_version=True
    )
    app[keys.TEMPLATES] = Templates(app)  # jinja2 loads on the first page
    app.cleanup_ctx.append(
        in_order(
            [
                _logging_ctx,
                _settings_ctx,
                _database_ctx,
                _bus_ctx,
                _auth_ctx,
                _providers_ctx,
                _library_ctx,
                _operations_ctx,
                _queue_ctx,
                *([mqtt_ctx] if role is AppRole.SERVICE else []),
                history_ctx,
                webhooks_ctx,
                *([scheduler_ctx] if role is AppRole.SERVICE else []),
                _library_checks_ctx,
            ]
        )
    )
    app.on_shutdown.append(_close_websockets)
    app.on_response_prepare.append(_cache_versioned_static)
    return app


async def _cache_versioned_static(request: web.Request, response: web.StreamResponse) -> None:
    # The panel links static files with ?v=<hash of the file>: such an address never changes
    # its content, so the browser may keep it. Without this it asked again for each of them
    # on every page (a 304 each, slow through ingress).
    if response.status == 200 and "v" in request.query and request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
