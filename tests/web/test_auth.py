"""Every auth rule of SPEC §5/§8 against the real app."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient

from aniworld_addon import keys
from aniworld_addon.const import CSRF_HEADER
from aniworld_addon.web.ratelimit import LOCKOUT_S

from ..conftest import PASSWORD, Authed


async def test_setup_only_once_then_conflict(client: TestClient[Any, Any]) -> None:
    status = await (await client.get("/api/auth/status")).json()
    assert status == {"configured": False, "authenticated": False}
    first = await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    assert first.status == 200
    again = await client.post("/api/auth/setup", json={"master_password": "another password"})
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "conflict"
    short = await client.post("/api/auth/setup", json={"master_password": "short"})
    assert short.status == 409  # set already: that answer comes first, whatever the body


async def test_head_follows_the_rule_of_get(client: TestClient[Any, Any]) -> None:
    for public in ("/api/auth/status", "/api/openapi.json"):
        assert (await client.head(public)).status == 200, public
    assert (await client.head("/api/config")).status == 401


@pytest.mark.parametrize("password", ["short", " " * 12, "\t \n" * 4])
async def test_setup_rejects_short_password(client: TestClient[Any, Any], password: str) -> None:
    response = await client.post("/api/auth/setup", json={"master_password": password})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "validation_error"
    assert (await (await client.get("/api/auth/status")).json())["configured"] is False


async def test_protected_routes_need_credentials(client: TestClient[Any, Any]) -> None:
    for path in ("/api/config", "/api/system/status", "/ws/status", "/api/auth/tokens"):
        response = await client.get(path)
        assert response.status == 401, path
        assert (await response.json())["error"]["code"] == "unauthorized"
    assert (await client.get("/health")).status == 200
    assert (await client.get("/api/openapi.json")).status == 200


async def test_login_returns_token_and_cookie(authed: Authed) -> None:
    client = authed.client
    response = await client.post("/api/auth/login", json={"password": PASSWORD})
    assert response.status == 200
    body = await response.json()
    assert body["token_type"] == "bearer"
    assert len(body["access_token"]) >= 43  # 256 bits in urlsafe base64
    cookie = response.headers.getall("Set-Cookie")
    session = next(c for c in cookie if c.startswith("aniworld_session="))
    assert "HttpOnly" in session and "SameSite=Strict" in session


async def test_wrong_password_is_401(authed: Authed) -> None:
    response = await authed.client.post("/api/auth/login", json={"password": "wrong password!"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize("form", ["bearer", "x-api-key", "query", "cookie"])
async def test_every_credential_form_is_accepted(authed: Authed, form: str) -> None:
    client = authed.client
    created = await client.post("/api/auth/tokens", json={"name": "script"}, headers=authed.headers)
    assert created.status == 201
    token = (await created.json())["token"]
    client.session.cookie_jar.clear()
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if form == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    elif form == "x-api-key":
        headers["X-Api-Key"] = token
    elif form == "query":
        params["apikey"] = token
    else:
        login = await client.post("/api/auth/login", json={"password": PASSWORD})
        assert login.status == 200
    response = await client.get("/api/config", headers=headers, params=params)
    assert response.status == 200, form
    status = await (await client.get("/api/auth/status", headers=headers, params=params)).json()
    assert status["authenticated"] is True


async def test_unknown_token_is_401(client: TestClient[Any, Any]) -> None:
    for headers in ({"Authorization": "Bearer aw_nope"}, {"X-Api-Key": "garbage"}):
        assert (await client.get("/api/config", headers=headers)).status == 401


async def test_tokens_are_stored_hashed_and_listed_without_value(authed: Authed) -> None:
    client = authed.client
    created = await (
        await client.post("/api/auth/tokens", json={"name": "ha"}, headers=authed.headers)
    ).json()
    db = client.app[keys.DB]
    async with db.execute("SELECT token_hash FROM auth_tokens") as cursor:
        stored = [row[0] for row in await cursor.fetchall()]
    assert created["token"] not in stored and authed.token not in stored
    listed = await (await client.get("/api/auth/tokens", headers=authed.headers)).json()
    assert [t["name"] for t in listed] == ["ha"]
    assert "token" not in listed[0]


async def test_deleted_token_stops_working(authed: Authed) -> None:
    client = authed.client
    created = await (
        await client.post("/api/auth/tokens", json={"name": "x"}, headers=authed.headers)
    ).json()
    api_headers = {"X-Api-Key": created["token"]}
    client.session.cookie_jar.clear()
    assert (await client.get("/api/config", headers=api_headers)).status == 200
    deleted = await client.delete(f"/api/auth/tokens/{created['id']}", headers=authed.headers)
    assert deleted.status == 200
    assert (await client.get("/api/config", headers=api_headers)).status == 401
    again = await client.delete(f"/api/auth/tokens/{created['id']}", headers=authed.headers)
    assert again.status == 404


async def test_logout_revokes_the_session(authed: Authed) -> None:
    client = authed.client
    client.session.cookie_jar.clear()
    assert (await client.get("/api/config", headers=authed.headers)).status == 200
    assert (await client.post("/api/auth/logout", headers=authed.headers)).status == 200
    assert (await client.get("/api/config", headers=authed.headers)).status == 401


async def test_session_expires_after_session_hours(authed: Authed) -> None:
    client = authed.client
    client.session.cookie_jar.clear()
    auth = client.app[keys.AUTH]
    real_clock = auth.clock
    auth.clock = lambda: real_clock() + 24 * 3600 + 1
    assert (await client.get("/api/config", headers=authed.headers)).status == 401


async def test_lowering_session_hours_shortens_sessions_already_open(authed: Authed) -> None:
    client = authed.client
    client.session.cookie_jar.clear()
    lowered = await client.put(
        "/api/config", json={"auth": {"session_hours": 2}}, headers=authed.headers
    )
    assert lowered.status == 200
    auth = client.app[keys.AUTH]
    real_clock = auth.clock
    auth.clock = lambda: real_clock() + 3600
    assert (await client.get("/api/config", headers=authed.headers)).status == 200
    auth.clock = lambda: real_clock() + 2 * 3600 + 1  # the login's 24 hours are not over
    assert (await client.get("/api/config", headers=authed.headers)).status == 401
    # Raising it again does not lengthen a session past what it was issued with.
    auth.clock = real_clock
    fresh = await client.post("/api/auth/login", json={"password": PASSWORD})
    token = (await fresh.json())["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    raised = await client.put("/api/config", json={"auth": {"session_hours": 48}}, headers=bearer)
    assert raised.status == 200
    auth.clock = lambda: real_clock() + 2 * 3600 + 1
    assert (await client.get("/api/config", headers=bearer)).status == 401


async def test_cookie_writes_need_the_csrf_token(authed: Authed) -> None:
    client = authed.client
    login = await client.post("/api/auth/login", json={"password": PASSWORD})
    csrf = (await login.json())["csrf_token"]
    # Reads with the cookie alone are fine.
    assert (await client.get("/api/config")).status == 200
    refused = await client.post("/api/config/backups")
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "csrf_failed"
    wrong = await client.post("/api/config/backups", headers={CSRF_HEADER: "x" * 43})
    assert wrong.status == 403
    accepted = await client.post("/api/config/backups", headers={CSRF_HEADER: csrf})
    assert accepted.status == 201
    # A header credential needs no CSRF token: no browser attaches it on its own.
    client.session.cookie_jar.clear()
    assert (await client.post("/api/config/backups", headers=authed.headers)).status == 201


async def test_login_rate_limit_is_five_a_minute(authed: Authed) -> None:
    client = authed.client
    limiter = client.app[keys.LOGIN_LIMITER]
    now = [1000.0]
    limiter.clock = lambda: now[0]
    for _ in range(5):
        response = await client.post("/api/auth/login", json={"password": "wrong password"})
        assert response.status == 401
    limited = await client.post("/api/auth/login", json={"password": PASSWORD})
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await limited.json())["error"]["code"] == "rate_limited"
    now[0] += 61
    assert (await client.post("/api/auth/login", json={"password": PASSWORD})).status == 200


async def test_a_burst_of_parallel_logins_tries_five_passwords_at_most(authed: Authed) -> None:
    # Counted only after the slow password check, a burst all passed the limit together:
    # 100 parallel guesses were all tried (with the right one among them, it logged in).
    client = authed.client
    limiter = client.app[keys.LOGIN_LIMITER]
    limiter.clock = lambda: 1000.0
    guesses = [f"wrong password {n}" for n in range(20)]
    responses = await asyncio.gather(
        *(client.post("/api/auth/login", json={"password": guess}) for guess in guesses)
    )
    statuses = [response.status for response in responses]
    assert (statuses.count(401), statuses.count(429)) == (5, 15)


async def test_bytes_past_the_72_bcrypt_reads_do_not_log_in(client: TestClient[Any, Any]) -> None:
    master = "m" * 72  # the longest master password setup takes
    assert (await client.post("/api/auth/setup", json={"master_password": master})).status == 200
    for longer in (master + "anything", master + "\u00fc"):
        response = await client.post("/api/auth/login", json={"password": longer})
        assert response.status == 401
    assert (await client.post("/api/auth/login", json={"password": master})).status == 200


async def test_ten_failures_in_a_row_lock_out_for_fifteen_minutes(authed: Authed) -> None:
    client = authed.client
    limiter = client.app[keys.LOGIN_LIMITER]
    now = [1000.0]
    limiter.clock = lambda: now[0]
    for attempt in range(10):
        response = await client.post("/api/auth/login", json={"password": "wrong password"})
        assert response.status == 401, attempt
        if attempt == 4:
            now[0] += 61  # stay under the per-minute limit so only the streak counts
    locked = await client.post("/api/auth/login", json={"password": PASSWORD})
    assert locked.status == 429
    assert (await locked.json())["error"]["details"]["reason"] == "locked_out"
    now[0] += LOCKOUT_S - 5
    assert (await client.post("/api/auth/login", json={"password": PASSWORD})).status == 429
    now[0] += 10
    assert (await client.post("/api/auth/login", json={"password": PASSWORD})).status == 200


async def test_websocket_upgrade_needs_credentials(
    client: TestClient[Any, Any], authed: Authed
) -> None:
    client.session.cookie_jar.clear()
    refused = await client.get("/ws/connect")
    assert refused.status == 401
    ws = await client.ws_connect("/ws/connect", headers=authed.headers)
    hello = await ws.receive_json()
    assert hello["type"] == "connected"
    await ws.close()


@pytest.mark.parametrize(
    "header",
    [b"X-Api-Key: aw_\xff", b"Authorization: Bearer aw_\xff", b"Cookie: aniworld_session=aw_\xe9"],
)
async def test_a_credential_that_is_not_utf8_is_no_credential(
    client: TestClient[Any, Any], header: bytes
) -> None:
    # The byte reached the token hash as a lone surrogate: a 500 on every route, login and
    # the login page included, and a traceback in error.log per request.
    def ask(path: bytes) -> bytes:  # raw bytes: aiohttp's client sends headers as UTF-8
        with socket.create_connection((client.host, client.port), timeout=10) as sock:
            sock.sendall(
                b"GET "
                + path
                + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + header
                + b"\r\n\r\n"
            )
            return b"".join(iter(lambda: sock.recv(65536), b""))

    for path, status in ((b"/api/auth/status", b"200"), (b"/api/config", b"401")):
        answer = await asyncio.to_thread(ask, path)
        assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 " + status + b" " + (
            b"OK" if status == b"200" else b"Unauthorized"
        ), answer[:300]


async def test_a_csrf_header_that_is_not_ascii_is_refused_not_a_crash(authed: Authed) -> None:
    client = authed.client
    login = await client.post("/api/auth/login", json={"password": PASSWORD})  # the cookie
    assert login.status == 200 and (await login.json())["csrf_token"]
    refused = await client.put(
        "/api/config", json={"auth": {"session_hours": 2}}, headers={CSRF_HEADER: "é"}
    )
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "csrf_failed"


async def test_revoking_a_credential_closes_the_sockets_it_opened(authed: Authed) -> None:
    # Credentials are checked at the upgrade: an open socket went on receiving every event
    # after its session logged out or its API token was deleted.
    client = authed.client
    created = await client.post("/api/auth/tokens", json={"name": "tv"}, headers=authed.headers)
    token = await created.json()
    login = await client.post("/api/auth/login", json={"password": PASSWORD})
    csrf = (await login.json())["csrf_token"]
    api_ws = await client.ws_connect(
        "/ws/connect", headers={"Authorization": f"Bearer {token['token']}"}
    )
    session_ws = await client.ws_connect("/ws/connect")  # the session cookie of the login
    other_ws = await client.ws_connect("/ws/connect", headers=authed.headers)
    for ws in (api_ws, session_ws, other_ws):
        assert (await ws.receive_json())["type"] == "connected"
    deleted = await client.delete(f"/api/auth/tokens/{token['id']}", headers=authed.headers)
    assert deleted.status == 200
    await api_ws.receive(timeout=10)  # a bound for failing, not a wait for success
    assert (api_ws.closed, api_ws.close_code) == (True, WSCloseCode.POLICY_VIOLATION)
    assert (await client.post("/api/auth/logout", headers={CSRF_HEADER: csrf})).status == 200
    await session_ws.receive(timeout=10)
    assert (session_ws.closed, session_ws.close_code) == (True, WSCloseCode.POLICY_VIOLATION)
    await other_ws.send_json({"action": "ping"})
    assert (await other_ws.receive_json())["type"] == "pong"  # the others stay
    await other_ws.close()


async def test_a_socket_closes_when_its_session_expires(authed: Authed) -> None:
    # The upgrade is checked once: a socket opened the minute before a session ended went on
    # receiving every event for as long as the browser tab stayed open.
    client = authed.client
    auth = client.app[keys.AUTH]
    real_clock = auth.clock
    auth.clock = lambda: real_clock() + 24 * 3600 - 0.5  # the session has half a second left
    ws = await client.ws_connect("/ws/connect", headers=authed.headers)
    assert (await ws.receive_json())["type"] == "connected"
    closing = await ws.receive(timeout=10)  # a bound for failing, not a wait for success
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert (ws.closed, ws.close_code) == (True, WSCloseCode.POLICY_VIOLATION)
    assert (await client.get("/api/config", headers=authed.headers)).status == 401


async def test_lowering_session_hours_ends_sockets_already_open(authed: Authed) -> None:
    # A socket's end was set at its upgrade: with auth.session_hours lowered, the session
    # ended at its next request, but a panel tab's socket went on receiving events.
    client = authed.client
    created = await client.post("/api/auth/tokens", json={"name": "ha"}, headers=authed.headers)
    api = {"Authorization": f"Bearer {(await created.json())['token']}"}
    auth = client.app[keys.AUTH]
    real_clock = auth.clock
    auth.clock = lambda: real_clock() + 2 * 3600 - 2  # the session is 2 hours old, nearly
    session_ws = await client.ws_connect("/ws/connect", headers=authed.headers)
    api_ws = await client.ws_connect("/ws/connect", headers=api)
    for ws in (session_ws, api_ws):
        assert (await ws.receive_json())["type"] == "connected"
    lowered = await client.put("/api/config", json={"auth": {"session_hours": 2}}, headers=api)
    assert lowered.status == 200
    await session_ws.receive(timeout=10)  # a bound for failing, not a wait for success
    assert (session_ws.closed, session_ws.close_code) == (True, WSCloseCode.POLICY_VIOLATION)
    await api_ws.send_json({"action": "ping"})
    assert (await api_ws.receive_json())["type"] == "pong"  # an API token is no session
    await api_ws.close()
    await session_ws.close()
