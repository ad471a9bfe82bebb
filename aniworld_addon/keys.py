"""Every piece of app state, under a typed key (no module-level singletons)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import httpx

    from .app import AppRole
    from .db import Database
    from .downloads.queue import DownloadQueue
    from .events import EventBus
    from .health import HealthChecks
    from .history import History
    from .integrations.mqtt import MqttBridge
    from .integrations.webhooks import WebhookNotifier
    from .integrations.websocket import WebSocketHub
    from .library.service import LibraryService
    from .logging_setup import FileLogging
    from .operations import Operations
    from .options import Options
    from .providers.live import LiveProviders
    from .scheduler_start import SchedulerSlot
    from .settings import Settings
    from .web.auth import AuthService, Identity
    from .web.ratelimit import LoginLimiter
    from .web.rendering import Templates
    from .web.routing import ApiDoc

# Annotations carry the types (evaluated only by the type checker, so no import cycles).
OPTIONS: web.AppKey[Options] = web.AppKey("options")
ROLE: web.AppKey[AppRole] = web.AppKey("role")
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
FILE_LOGGING: web.AppKey[FileLogging] = web.AppKey("file_logging")
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DB: web.AppKey[Database] = web.AppKey("db")
BUS: web.AppKey[EventBus] = web.AppKey("bus")
OPERATIONS: web.AppKey[Operations] = web.AppKey("operations")
HEALTH: web.AppKey[HealthChecks] = web.AppKey("health")
AUTH: web.AppKey[AuthService] = web.AppKey("auth")
LOGIN_LIMITER: web.AppKey[LoginLimiter] = web.AppKey("login_limiter")
WS_HUB: web.AppKey[WebSocketHub] = web.AppKey("ws_hub")
HTTP_CLIENT: web.AppKey[httpx.AsyncClient] = web.AppKey("http_client")
PROVIDERS: web.AppKey[LiveProviders] = web.AppKey("providers")
LIBRARY: web.AppKey[LibraryService] = web.AppKey("library")
QUEUE: web.AppKey[DownloadQueue] = web.AppKey("queue")
MQTT: web.AppKey[MqttBridge] = web.AppKey("mqtt")
HISTORY: web.AppKey[History] = web.AppKey("history")
WEBHOOKS: web.AppKey[WebhookNotifier] = web.AppKey("webhooks")
SCHEDULER: web.AppKey[SchedulerSlot] = web.AppKey("scheduler")
API_DOCS: web.AppKey[dict[tuple[str, str], ApiDoc]] = web.AppKey("api_docs")
# /api/openapi.json once built: {"body": the encoded document}; the routes are frozen by then.
OPENAPI_BODY: web.AppKey[dict[str, bytes]] = web.AppKey("openapi_body")
TEMPLATES: web.AppKey[Templates] = web.AppKey("templates")

# Per-request state.
IDENTITY: web.RequestKey[Identity | None] = web.RequestKey("identity")
# Set by a trusted front door (Home Assistant ingress) before authentication runs.
TRUSTED_IDENTITY: web.RequestKey[Identity] = web.RequestKey("trusted_identity")
# The ingress base path (X-Ingress-Path), "" outside ingress.
BASE_PATH: web.RequestKey[str] = web.RequestKey("base_path")
