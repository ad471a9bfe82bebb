"""The app's services start in order and stop in reverse, also when one fails to start."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from aniworld_addon.app import in_order


async def test_a_service_failing_to_start_stops_those_started_before_it() -> None:
    # aiohttp's runner leaves started contexts open when its setup fails: the database's
    # worker thread then kept a service alive that never answered (a read-only library
    # after a crash did it).
    trail: list[str] = []

    def service(name: str, fails: bool = False):  # type: ignore[no-untyped-def]
        async def context(app: web.Application) -> AsyncIterator[None]:
            if fails:
                raise OSError(f"{name} cannot start")
            trail.append(f"+{name}")
            yield
            trail.append(f"-{name}")

        return context

    app = web.Application()
    app.cleanup_ctx.append(in_order([service("db"), service("auth"), service("queue", True)]))
    runner = web.AppRunner(app)
    with pytest.raises(OSError, match="queue cannot start"):
        await runner.setup()
    assert trail == ["+db", "+auth", "-auth", "-db"]

    trail.clear()
    app = web.Application()
    app.cleanup_ctx.append(in_order([service("db"), service("auth")]))
    runner = web.AppRunner(app)
    await runner.setup()
    await runner.cleanup()
    assert trail == ["+db", "+auth", "-auth", "-db"]
