"""/api/auth: first-run setup, login/logout, status and API tokens."""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from aiohttp import web

from ... import keys
from ...const import CSRF_COOKIE, SESSION_COOKIE
from ...errors import InvalidCredentialsError, NotFoundError
from ...settings_schema import strict_int
from ..auth import MIN_PASSWORD_LENGTH, IssuedToken
from ..routing import ApiDoc, ApiRoutes, json_response, read_json
from ..schemas import BOOL, NULL_NUM, NUM, OK, STR, array, obj

routes = ApiRoutes()
TAG = "auth"

SETUP_SCHEMA = vol.Schema({vol.Required("master_password"): str})
# The service checks the length after the first-run check (a second setup is a 409 whatever
# the body); the document states the rule all the same.
SETUP_DOC = obj({"master_password": {"type": "string", "minLength": MIN_PASSWORD_LENGTH}}) | {
    "additionalProperties": False
}
LOGIN_SCHEMA = vol.Schema({vol.Required("password"): vol.All(str, vol.Length(max=1024))})
TOKEN_SCHEMA = vol.Schema(
    {
        vol.Required("name"): vol.All(str, vol.Strip, vol.Length(min=1, max=100)),
        vol.Optional("expires_days"): vol.Any(
            None, vol.All(strict_int, vol.Range(min=1, max=3650))
        ),
    }
)
LOGIN_RESPONSE = obj({"access_token": STR, "token_type": STR, "expires_at": NUM, "csrf_token": STR})
TOKEN_INFO = obj(
    {
        "id": STR,
        "name": STR,
        "created_at": NUM,
        "expires_at": NULL_NUM,
        "last_used_at": NULL_NUM,
    }
)


def _client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def _login_response(request: web.Request, issued: IssuedToken) -> web.Response:
    assert issued.expires_at is not None and issued.csrf_token is not None
    response = json_response(
        {
            "access_token": issued.token,
            "token_type": "bearer",
            "expires_at": issued.expires_at,
            "csrf_token": issued.csrf_token,
        }
    )
    max_age = int(issued.expires_at - issued.created_at)
    secure = request.secure
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=max_age,
        httponly=True,
        samesite="Strict",
        secure=secure,
        path="/",
    )
    # Readable by the page's script, which echoes it in X-CSRF-Token (double submit).
    response.set_cookie(
        CSRF_COOKIE,
        issued.csrf_token,
        max_age=max_age,
        httponly=False,
        samesite="Strict",
        secure=secure,
        path="/",
    )
    return response


@routes.api(
    "POST",
    "/api/auth/setup",
    ApiDoc("Set the master password (first run only)", TAG, SETUP_DOC, LOGIN_RESPONSE, public=True),
)
async def setup(request: web.Request) -> web.Response:
    """First run: store the master password and log in."""
    body = await read_json(request, SETUP_SCHEMA)
    auth = request.app[keys.AUTH]
    await auth.setup(body["master_password"])
    return _login_response(request, await auth.create_session())


@routes.api(
    "POST",
    "/api/auth/login",
    ApiDoc(
        "Log in with the master password",
        TAG,
        LOGIN_SCHEMA,
        LOGIN_RESPONSE,
        public=True,
        errors=(401,),  # a wrong password
    ),
)
async def login(request: web.Request) -> web.Response:
    """Check the password under the per-address limits; issue a session."""
    body = await read_json(request, LOGIN_SCHEMA)
    limiter = request.app[keys.LOGIN_LIMITER]
    address = _client_address(request)
    limiter.begin(address)
    auth = request.app[keys.AUTH]
    ok = await auth.verify_password(body["password"])
    limiter.record(address, success=ok)
    if not ok:
        raise InvalidCredentialsError("wrong password")
    return _login_response(request, await auth.create_session())


@routes.api("POST", "/api/auth/logout", ApiDoc("Log out (revokes this session)", TAG, None, OK))
async def logout(request: web.Request) -> web.Response:
    """Revoke the session that made the request and clear the cookies."""
    identity = request[keys.IDENTITY]
    if identity is not None and identity.kind == "session" and identity.token_id:
        await request.app[keys.AUTH].revoke(identity.token_id, "session")
        request.app[keys.WS_HUB].drop_credential(identity.token_id)
    response = json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")
    return response


@routes.api(
    "GET",
    "/api/auth/status",
    ApiDoc(
        "Whether a password is set and this request is authenticated",
        TAG,
        None,
        obj({"configured": BOOL, "authenticated": BOOL}),
        public=True,
    ),
)
async def status(request: web.Request) -> web.Response:
    """{configured, authenticated}."""
    return json_response(
        {
            "configured": await request.app[keys.AUTH].is_configured(),
            "authenticated": request[keys.IDENTITY] is not None,
        }
    )


@routes.api("GET", "/api/auth/tokens", ApiDoc("List API tokens", TAG, None, array(TOKEN_INFO)))
async def list_tokens(request: web.Request) -> web.Response:
    """Every API token without its value."""
    tokens = await request.app[keys.AUTH].list_api_tokens()
    return json_response([t.to_dict() for t in tokens])


@routes.api(
    "POST",
    "/api/auth/tokens",
    ApiDoc(
        "Create an API token (its value is shown only in this response)",
        TAG,
        TOKEN_SCHEMA,
        obj({"id": STR, "name": STR, "token": STR, "created_at": NUM, "expires_at": NULL_NUM}),
        status=201,
    ),
)
async def create_token(request: web.Request) -> web.Response:
    """A new long-lived token for scripts and integrations."""
    body = await read_json(request, TOKEN_SCHEMA)
    issued = await request.app[keys.AUTH].create_api_token(body["name"], body.get("expires_days"))
    payload: dict[str, Any] = {
        "id": issued.id,
        "name": issued.name,
        "token": issued.token,
        "created_at": issued.created_at,
        "expires_at": issued.expires_at,
    }
    return json_response(payload, status=201)


@routes.api("DELETE", "/api/auth/tokens/{id}", ApiDoc("Revoke an API token", TAG, None, OK))
async def delete_token(request: web.Request) -> web.Response:
    """Revoke one API token; 404 if unknown."""
    token_id = request.match_info["id"]
    if not await request.app[keys.AUTH].revoke(token_id, "api"):
        raise NotFoundError("no such API token")
    request.app[keys.WS_HUB].drop_credential(token_id)
    return json_response({"ok": True})
