"""Errors are JSON with stable codes (HTML for pages); bodies are capped; no traces leak."""

from __future__ import annotations

import io
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aniworld_addon.const import MAX_BODY_BYTES

from .conftest import PASSWORD, AiohttpClient, Authed


async def test_unknown_api_route_is_json_404(authed: Authed) -> None:
    response = await authed.client.get("/api/nope", headers=authed.headers)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_unknown_page_is_html_404(client: TestClient[Any, Any]) -> None:
    response = await client.get("/nope")
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "not_found" in await response.text()


async def test_wrong_method_is_405_json(authed: Authed) -> None:
    response = await authed.client.patch("/api/config", headers=authed.headers)
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_malformed_json_is_400(authed: Authed) -> None:
    response = await authed.client.put(
        "/api/config",
        data=b"{not json",
        headers={**authed.headers, "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"
    wrong_type = await authed.client.put("/api/config", json=[1, 2], headers=authed.headers)
    assert wrong_type.status == 400


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/auth/login", '{"password": "\\ud800"}'),  # no credentials needed
        ("POST", "/api/anime", '{"provider": "aniworld", "key": "\\udc80"}'),
        ("POST", "/api/anime/search", '{"query": "x\\ud800"}'),
        ("POST", "/api/auth/tokens", '{"name": "\\ud83d"}'),
        ("PUT", "/api/config", '{"notifications": {"webhooks": ["http://x/\\ud800"]}}'),
        ("POST", "/api/anime/search", b'{"query": "\xed\xa0\x80"}'),  # raw, not escaped
    ],
)
async def test_a_lone_surrogate_in_a_body_is_400_everywhere(
    authed: Authed, method: str, path: str, body: str | bytes
) -> None:
    # JSON can carry one; UTF-8, SQLite and file names cannot: each of these was a 500.
    response = await authed.client.request(
        method,
        path,
        data=body.encode() if isinstance(body, str) else body,
        headers={**authed.headers, "Content-Type": "application/json"},
    )
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "invalid_json" and "lone surrogate" in error["message"]
    pair = await authed.client.post(  # a surrogate pair is one character (an emoji): fine
        "/api/anime/search",
        data=b'{"query": "\\ud83d\\ude00", "provider": "nope"}',
        headers={**authed.headers, "Content-Type": "application/json"},
    )
    assert pair.status != 500 and (await pair.json())["error"]["code"] != "invalid_json"


async def test_a_deeply_nested_body_is_400_even_where_settings_merge_it(authed: Authed) -> None:
    # 600 levels passed json.loads and then overflowed the recursive merge of a settings
    # patch: a 500 with a 160 KB traceback in error.log per request.
    deep = '{"downloads": ' + '{"a": ' * 600 + "1" + "}" * 601
    for path in ("/api/config", "/api/config/validate"):
        method = "PUT" if path == "/api/config" else "POST"
        response = await authed.client.request(
            method, path, data=deep, headers={**authed.headers, "Content-Type": "application/json"}
        )
        assert response.status == 400, await response.text()
        assert "nested deeper than 32 levels" in (await response.json())["error"]["message"]
    text = '{"query": "' + "[" * 100 + '"}'  # brackets in a string are no nesting
    response = await authed.client.post("/api/anime/search", data=text, headers=authed.headers)
    assert "nested" not in (await response.json())["error"]["message"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decompress_is_400_without_credentials(
    client: TestClient[Any, Any], encoding: str
) -> None:
    response = await client.post(
        "/api/auth/login",
        data=b'{"password": "x"}',
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith("the request body cannot be read")


async def test_oversize_body_is_413(authed: Authed) -> None:
    big = io.BytesIO(b"[" + b"1," * (MAX_BODY_BYTES // 2) + b"1]")
    response = await authed.client.put(
        "/api/config", data=big, headers={**authed.headers, "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"

    async def chunks() -> Any:  # no Content-Length: the cap must hold while reading
        for _ in range(20):
            yield b"x" * 100_000

    streamed = await authed.client.put("/api/config", data=chunks(), headers=authed.headers)
    assert streamed.status == 413


async def test_a_crash_in_a_handler_is_a_plain_500(
    aiohttp_client: AiohttpClient, app: web.Application
) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals /etc/passwd")

    app.router.add_get("/api/test-boom", boom)
    client = await aiohttp_client(app)
    setup = await client.post("/api/auth/setup", json={"master_password": PASSWORD})
    token = (await setup.json())["access_token"]
    response = await client.get("/api/test-boom", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 500
    text = await response.text()
    assert (await response.json())["error"]["code"] == "internal_error"
    assert "secret" not in text and "Traceback" not in text
