"""/api/openapi.json matches the router exactly."""

from __future__ import annotations

from aiohttp import web

from .conftest import Authed


def _routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "HEAD" and path.startswith(("/api", "/ws", "/health")):
            found.add((route.method.lower(), path))
    return found


async def test_openapi_lists_every_route_and_nothing_else(authed: Authed) -> None:
    spec = await (await authed.client.get("/api/openapi.json")).json()
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == _routes(authed.client.app)
    assert spec["openapi"].startswith("3.")


async def test_openapi_describes_bodies_and_errors(authed: Authed) -> None:
    spec = await (await authed.client.get("/api/openapi.json")).json()
    login = spec["paths"]["/api/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"]["required"] == ["password"]
    assert login["security"] == []
    assert "401" in spec["paths"]["/api/config"]["get"]["responses"]
    for ops in spec["paths"].values():
        for op in ops.values():
            assert op["summary"] and op["operationId"]


async def test_documented_bounds_are_the_bounds_the_routes_keep(authed: Authed) -> None:
    # A request the document called valid was refused (page=1000001), and ones it called
    # invalid were not said to be (unknown scheduler settings, a short master password).
    spec = await (await authed.client.get("/api/openapi.json")).json()
    checked = 0
    for path, ops in spec["paths"].items():
        get = ops.get("get")
        if "{" in path or get is None:
            continue
        for parameter in get.get("parameters", []):
            schema = parameter["schema"]
            if parameter["in"] != "query" or "maximum" not in schema:
                continue
            name, top = parameter["name"], schema["maximum"]
            ok = await authed.client.get(path, params={name: top}, headers=authed.headers)
            assert ok.status == 200, (path, name, top)
            over = await authed.client.get(path, params={name: top + 1}, headers=authed.headers)
            assert over.status == 400, (path, name, top + 1)
            checked += 1
    assert checked >= 6  # page and page_size of the library, the history and the blocklist

    scheduler = spec["paths"]["/api/scheduler/config"]["post"]["requestBody"]["content"]
    assert scheduler["application/json"]["schema"]["additionalProperties"] is False
    extra = await authed.client.post(
        "/api/scheduler/config", json={"extra": 1}, headers=authed.headers
    )
    assert extra.status == 400
    setup = spec["paths"]["/api/auth/setup"]["post"]["requestBody"]["content"]
    assert setup["application/json"]["schema"]["properties"]["master_password"]["minLength"] == 8
