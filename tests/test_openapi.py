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
