"""The outermost error middleware, the body-size guard and authentication."""

from __future__ import annotations

import hmac
import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from .. import keys
from ..const import CSRF_HEADER, MAX_BODY_BYTES, SESSION_COOKIE
from ..errors import (
    AppError,
    CsrfError,
    ForbiddenError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UnauthorizedError,
    ValidationError,
)
from .auth import Identity, Via
from .ingress import render

_LOGGER = logging.getLogger(__name__)

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def wants_json(request: web.Request) -> bool:
    """API clients get JSON errors; browsers on pages get HTML."""
    path = request.path
    if path.startswith(("/api/", "/ws/")) or path in ("/api", "/health"):
        return True
    return "application/json" in request.headers.get("Accept", "")


def _error_response(request: web.Request, err: AppError) -> web.StreamResponse:
    headers = {}
    if isinstance(err, RateLimitedError):
        headers["Retry-After"] = str(max(1, int(err.retry_after + 0.999)))
    if wants_json(request):
        return web.json_response(err.to_dict(), status=err.status, headers=headers)
    response = render("error.html", request, {"error": err}, status=err.status)
    response.headers.update(headers)
    return response


def _from_http_exception(exc: web.HTTPException) -> AppError:
    if isinstance(exc, web.HTTPNotFound):
        return NotFoundError("no such page or API route")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowedError(f"method {exc.method} is not allowed here")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLargeError(f"the request body exceeds {MAX_BODY_BYTES} bytes")
    if isinstance(exc, web.HTTPUnauthorized):
        return UnauthorizedError("authentication required")
    if isinstance(exc, web.HTTPForbidden):
        return ForbiddenError(exc.text or "forbidden")
    if exc.status < 500:
        return ValidationError(f"bad request: {exc.reason}")
    return AppError(exc.reason)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a clear JSON (or HTML) error; no stack trace reaches a client."""
    try:
        return await handler(request)
    except AppError as err:
        if err.status >= 500:
            _LOGGER.warning("%s %s: %s (%s)", request.method, request.path, err.message, err.code)
        return _error_response(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and 2xx raised as exceptions pass through
            raise
        response = _error_response(request, _from_http_exception(exc))
        if isinstance(exc, web.HTTPMethodNotAllowed):
            # RFC 9110: a 405 names the methods the resource does support.
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except web.RequestPayloadError as exc:
        # A body that cannot be read: a broken gzip or deflate stream, a chunk cut short.
        # The client's fault, and sent without credentials too: no traceback in error.log.
        cause = exc.__cause__ or exc
        unreadable = ValidationError(f"the request body cannot be read: {cause}")
        return _error_response(request, unreadable)
    except Exception:
        _LOGGER.exception("Unhandled error on %s %s", request.method, request.path)
        return _error_response(request, AppError("an internal error occurred; see the log"))


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a declared oversize body before reading a byte of it."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the request body exceeds {MAX_BODY_BYTES} bytes")
    return await handler(request)


def needs_auth(request: web.Request) -> bool:
    """Everything under /api/ and /ws/ except the routes documented as public (ApiDoc)."""
    path = request.path
    if not path.startswith(("/api/", "/ws/")):
        return False
    # HEAD is GET without the body (aiohttp routes it so): the same route, the same rule.
    method = "GET" if request.method == "HEAD" else request.method
    doc = request.app[keys.API_DOCS].get((method, path))
    return doc is None or not doc.public


def _presented(request: web.Request) -> tuple[str, Via] | None:
    """The credential on the request and how it came, in a fixed order of preference."""
    authorization = request.headers.get("Authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip(), "bearer"
    if api_key := request.headers.get("X-Api-Key"):
        return api_key.strip(), "api_key"
    if query_key := request.query.get("apikey"):
        return query_key, "query"
    if cookie := request.cookies.get(SESSION_COOKIE):
        return cookie, "cookie"
    return None


async def identify(request: web.Request) -> Identity | None:
    """Who the request is, from a trusted front door or from a presented token."""
    if keys.TRUSTED_IDENTITY in request:
        return request[keys.TRUSTED_IDENTITY]
    presented = _presented(request)
    if presented is None:
        return None
    token, via = presented
    return await request.app[keys.AUTH].authenticate(token, via)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the identity; refuse protected routes without one; CSRF-check cookie writes."""
    if request.path == "/health" or request.path.startswith("/static/"):
        # Public, and nobody's identity matters: no token lookup (a page's assets would each
        # cost one), and /health, the probe of last resort, must answer even while another
        # process holds the database, where a lookup would wait behind the lock.
        request[keys.IDENTITY] = None
        return await handler(request)
    identity = await identify(request)
    request[keys.IDENTITY] = identity
    if needs_auth(request):
        if identity is None:
            raise UnauthorizedError(
                "authentication required: send a Bearer token, X-Api-Key, ?apikey= or log in"
            )
        if identity.via == "cookie":
            _check_cookie_request(request, identity)
    return await handler(request)


def _check_cookie_request(request: web.Request, identity: Identity) -> None:
    """A browser's cookie rides along on cross-site requests; demand proof it is our page."""
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        expected = identity.csrf_token or ""
        # compare_digest refuses str with non-ASCII characters (a TypeError, a 500): bytes
        sent_bytes = sent.encode("utf-8", "surrogateescape")
        if not sent or not expected or not hmac.compare_digest(sent_bytes, expected.encode()):
            raise CsrfError(f"missing or wrong {CSRF_HEADER} header for a cookie session")
    origin = request.headers.get("Origin")
    if request.headers.get("Upgrade", "").lower() == "websocket" and origin:
        # Browsers do not apply CORS to WebSockets: check the Origin ourselves.
        host = origin.split("://", 1)[-1]
        if host != request.host:
            raise CsrfError("cross-origin WebSocket refused")
