"""Long-running work (rescans, bulk queueing) tracked as operations a client can poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .errors import AppError, NotFoundError
from .events import EventBus, EventType

_LOGGER = logging.getLogger(__name__)
KEEP_FINISHED: Final = 200

Status = Literal["running", "completed", "failed"]


@dataclass(slots=True)
class Operation:
    """Mutable while running; read through to_dict()."""

    id: str
    kind: str
    status: Status = "running"
    progress: float = 0.0
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """SPEC §5 shape of GET /api/operations/{id}."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress, 4),
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


Work = Callable[[Operation], Awaitable[Any]]


class Operations:
    """Starts, tracks and owns the tasks of operations; keeps the last finished ones."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._ops: OrderedDict[str, Operation] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, kind: str, work: Work) -> Operation:
        """Run work(operation) in a task owned here; its return value becomes the result."""
        op = Operation(id=uuid.uuid4().hex, kind=kind)
        self._ops[op.id] = op
        self._tasks[op.id] = asyncio.get_running_loop().create_task(
            self._run(op, work), name=f"operation:{kind}:{op.id}"
        )
        self._prune()
        return op

    def running(self, kind: str) -> Operation | None:
        """The running operation of this kind, if any (callers use it to avoid doubles)."""
        return next(
            (o for o in self._ops.values() if o.kind == kind and o.status == "running"), None
        )

    async def _run(self, op: Operation, work: Work) -> None:
        try:
            op.result = await work(op)
            op.status = "completed"
            op.progress = 1.0
        except asyncio.CancelledError:
            op.status = "failed"
            op.error = {"code": "cancelled", "message": "the service stopped"}
            raise
        except AppError as err:
            op.status = "failed"
            op.error = err.to_dict()["error"]
        except Exception as err:
            _LOGGER.exception("Operation %s (%s) failed", op.id, op.kind)
            op.status = "failed"
            op.error = {"code": "internal_error", "message": f"{type(err).__name__}: {err}"}
        finally:
            op.finished_at = time.time()
            self._tasks.pop(op.id, None)
            self._bus.publish(EventType.OPERATION_UPDATED, op.to_dict())

    async def wait(self, op_id: str) -> Operation:
        """Wait until the operation has finished (CLI commands and tests use it)."""
        op = self.get(op_id)
        task = self._tasks.get(op_id)
        if task is not None:
            await asyncio.shield(task)
        return op

    def get(self, op_id: str) -> Operation:
        """The operation with this id, or NotFoundError."""
        try:
            return self._ops[op_id]
        except KeyError:
            raise NotFoundError(f"no operation {op_id!r}") from None

    def _prune(self) -> None:
        finished = [k for k, o in self._ops.items() if o.status != "running"]
        for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._ops[key]

    async def close(self) -> None:
        """Cancel and await every running operation."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
