"""/health, /api/system/status, /api/system/logs and /api/operations."""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from aniworld_addon import keys
from aniworld_addon.errors import ServiceUnavailableError, ValidationError
from aniworld_addon.health import CheckResult
from aniworld_addon.operations import Operation
from aniworld_addon.options import Options
from aniworld_addon.scheduler_start import SchedulerSlot
from tests.site.plugin import RunningSite

from .conftest import AiohttpClient, Authed, open_client_sockets, series_folder
from .test_queue_api import FakeClock, start_service


async def test_health_reports_real_and_unknown_checks(client: TestClient[Any, Any]) -> None:
    body = await (await client.get("/health")).json()
    assert set(body) == {"status", "version", "uptime_s", "checks"}
    checks = body["checks"]
    assert set(checks) == {
        "database",
        "library",
        "provider",
        "mqtt",
        "scheduler",
        "disk",
        "webhooks",
        "ffprobe",
    }
    assert checks["ffprobe"]["status"] == ("ok" if shutil.which("ffprobe") else "error")
    assert checks["database"]["status"] == "ok"
    assert checks["library"]["status"] == "ok"
    assert checks["disk"]["status"] in ("ok", "error")
    assert checks["mqtt"]["status"] == "disabled"  # no broker configured
    assert checks["webhooks"]["status"] == "disabled"  # no webhook configured
    assert checks["scheduler"]["status"] == "ok"
    assert checks["provider"]["status"] == "unknown"  # no scan yet


async def test_health_degrades_when_the_library_disappears(
    client: TestClient[Any, Any], options: Any
) -> None:
    options.library_path.rmdir()
    body = await (await client.get("/health")).json()
    assert body["status"] == "degraded"
    assert body["checks"]["library"]["status"] == "error"
    assert str(options.library_path) in body["checks"]["library"]["message"]


async def test_health_degrades_below_min_free_space(authed: Authed) -> None:
    client = authed.client
    await client.put(
        "/api/config", json={"downloads": {"min_free_space_mb": 10**12}}, headers=authed.headers
    )
    body = await (await client.get("/health")).json()
    assert body["status"] == "degraded"
    assert body["checks"]["disk"]["status"] == "error"


async def test_system_status_and_logs(authed: Authed) -> None:
    client = authed.client
    status = await (await client.get("/api/system/status", headers=authed.headers)).json()
    assert status["versions"]["python"]
    assert status["paths"]["library"].endswith("library")
    assert status["disk"]["data"]["free_mb"] >= 0
    marker = "a line only this test writes"
    logging.getLogger("aniworld_addon.test").error(marker)
    file_logging = client.app[keys.FILE_LOGGING]
    file_logging.stop()  # joins the writer thread: every queued line is on disk afterwards
    file_logging.start()
    logs = await (await client.get("/api/system/logs?lines=50", headers=authed.headers)).json()
    assert any(marker in line for line in logs["lines"])
    errors = await (await client.get("/api/system/logs?file=error", headers=authed.headers)).json()
    assert any(marker in line for line in errors["lines"])
    bad = await client.get("/api/system/logs?lines=0", headers=authed.headers)
    assert bad.status == 400


async def test_operations_are_tracked_to_completion(authed: Authed) -> None:
    client = authed.client
    operations = client.app[keys.OPERATIONS]

    async def work(op: Operation) -> dict[str, int]:
        op.progress = 0.5
        return {"found": 3}

    async def failing(op: Operation) -> None:
        raise ValidationError("nothing to do")

    done = operations.start("test", work)
    failed = operations.start("test", failing)
    running = await client.get(f"/api/operations/{done.id}", headers=authed.headers)
    assert (await running.json())["kind"] == "test"
    await operations.wait(done.id)
    await operations.wait(failed.id)
    finished = await (await client.get(f"/api/operations/{done.id}", headers=authed.headers)).json()
    assert finished["status"] == "completed" and finished["result"] == {"found": 3}
    assert finished["progress"] == 1.0
    error = await (await client.get(f"/api/operations/{failed.id}", headers=authed.headers)).json()
    assert error["status"] == "failed" and error["error"]["code"] == "validation_error"
    missing = await client.get("/api/operations/nope", headers=authed.headers)
    assert missing.status == 404


async def test_the_scheduler_runs_once_the_app_is_up_and_health_lists_its_jobs(
    authed: Authed,
) -> None:
    # That requests wait for a scheduler still starting is the slot test's below: here the
    # start is over before a request could see it.
    health = await (await authed.client.get("/health")).json()
    assert health["checks"]["scheduler"]["status"] == "ok"
    response = await authed.client.get("/api/scheduler/config", headers=authed.headers)
    assert response.status == 200
    assert (await response.json())["running"] is True
    scheduler = await authed.client.app[keys.SCHEDULER].get()
    assert scheduler.running
    health = await (await authed.client.get("/health")).json()
    assert health["checks"]["scheduler"]["message"].endswith("jobs scheduled")


async def test_the_scheduler_slot_holds_requests_until_the_start_and_reports_a_failure(
    authed: Authed,
) -> None:
    running = await authed.client.app[keys.SCHEDULER].get()
    slot = SchedulerSlot()
    waiting = asyncio.create_task(slot.get())
    await asyncio.sleep(0)  # one loop turn: the waiter is now parked on the slot
    assert not waiting.done()
    assert slot.scheduler is None
    assert await slot.check() == CheckResult("ok", "starting")
    slot.started(running)
    assert await waiting is running
    assert slot.scheduler is running

    broken = SchedulerSlot()
    broken.failed(RuntimeError("no apscheduler"))
    with pytest.raises(ServiceUnavailableError, match="no apscheduler"):
        await broken.get()
    result = await broken.check()
    assert result.status == "error" and "no apscheduler" in result.message


async def test_shutdown_cancels_a_rescan_before_the_provider_client_closes(
    aiohttp_client: AiohttpClient,
    options: Options,
    provider_site: RunningSite,
    caplog: pytest.LogCaptureFixture,
) -> None:
    series_folder(options.library_path, "Kaiju Academy (2012)", "kaiju-academy")
    svc = await start_service(aiohttp_client, options, provider_site, FakeClock())
    await svc.call("PUT", "/api/config", json={"providers": provider_site.providers_config()})
    provider_site.control.latency_s = 10  # the rescan's first page is on its way at shutdown
    op = await svc.call("POST", "/api/anime/rescan", status=202)
    await provider_site.control.wait_for("series")
    operations = svc.client.app[keys.OPERATIONS]

    with caplog.at_level(logging.WARNING, logger="aniworld_addon.providers.http"):
        await svc.client.close()

    # The rescan was cancelled first, so the client had no request left to wait for.
    stopped = operations.get(op["operation_id"])
    assert stopped.status == "failed" and stopped.error is not None
    assert stopped.error["code"] == "cancelled"
    assert not [r for r in caplog.records if "in flight" in r.getMessage()]
    port = int(provider_site.base_url.rsplit(":", 1)[1])
    assert open_client_sockets(port) == 0
