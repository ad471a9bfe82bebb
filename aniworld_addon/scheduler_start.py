"""The scheduler's cleanup context: it starts once the app serves, not before.

apscheduler 3 scans every installed package's entry points when it is imported (about a
fifth of the service's start-up). No job is due in the first second anyway, so the scheduler
is imported (in a worker thread, off the loop) and started by an owned task right after
start-up; requests that need it wait for it, and /health says "starting" meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from . import keys
from .errors import ServiceUnavailableError
from .health import CheckResult

if TYPE_CHECKING:
    from .operations import Operation
    from .scheduler import Scheduler

_LOGGER = logging.getLogger(__name__)


class SchedulerSlot:
    """Where the scheduler will be: `get()` waits until it has started (or failed to)."""

    def __init__(self) -> None:
        self._started: asyncio.Future[Scheduler] = asyncio.get_running_loop().create_future()

    @property
    def scheduler(self) -> Scheduler | None:
        """The running scheduler, or None while it starts (or when it failed to)."""
        done = self._started.done() and not self._started.cancelled()
        return self._started.result() if done and not self._started.exception() else None

    async def get(self) -> Scheduler:
        """The scheduler once started; a start that failed is a 503."""
        try:
            return await asyncio.shield(self._started)
        except Exception as err:
            raise ServiceUnavailableError(f"the scheduler did not start: {err}") from err

    def started(self, scheduler: Scheduler) -> None:
        """Hand over the running scheduler."""
        self._started.set_result(scheduler)

    def failed(self, err: Exception) -> None:
        """The start failed; waiters get a 503 saying why."""
        self._started.set_exception(err)
        self._started.exception()  # retrieved: the health check reports it, not asyncio

    async def check(self) -> CheckResult:
        """Health: the scheduler's own check, "starting" before, the reason after a failure."""
        if not self._started.done():
            return CheckResult("ok", "starting")
        if (error := self._started.exception()) is not None:
            return CheckResult("error", f"the scheduler did not start: {error}")
        return await self._started.result().check()


def start_rescan(app: web.Application) -> Operation:
    """A rescan a user asked for (the panel, the API, MQTT's button), followed like a
    scheduled one: auto-download and language upgrades come after it, as DOCS says. They
    came only after scheduled rescans. Before the scheduler runs (or if it failed to start),
    a plain rescan."""
    slot = app.get(keys.SCHEDULER)
    scheduler = slot.scheduler if slot is not None else None
    if scheduler is not None:
        return scheduler.trigger_rescan()
    return app[keys.LIBRARY].rescan()


async def _start(app: web.Application, slot: SchedulerSlot, undo: list[Callable[[], None]]) -> None:
    try:
        module = await asyncio.to_thread(importlib.import_module, "aniworld_addon.scheduler")
        settings = app[keys.SETTINGS]
        scheduler: Scheduler = module.Scheduler(
            settings=settings,
            library=app[keys.LIBRARY],
            queue=app[keys.QUEUE],
            operations=app[keys.OPERATIONS],
            bus=app[keys.BUS],
            history=app.get(keys.HISTORY),
            data_path=app[keys.OPTIONS].data_path,
            clock=app[keys.CLOCK],
        )
        await scheduler.restore()
        scheduler.start()
    except Exception as err:  # reported by /health and to every waiter, never swallowed
        _LOGGER.exception("the scheduler did not start")
        slot.failed(err)
        return
    undo.append(settings.add_listener(scheduler.on_settings_change))
    slot.started(scheduler)


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: start the scheduler right after start-up; stop it leaving nothing."""
    slot = app[keys.SCHEDULER] = SchedulerSlot()
    undo = [app[keys.HEALTH].register("scheduler", slot.check)]
    starting = asyncio.get_running_loop().create_task(
        _start(app, slot, undo), name="scheduler-start"
    )
    yield
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    for step in reversed(undo):
        step()
    if (scheduler := slot.scheduler) is not None:
        await scheduler.close()
