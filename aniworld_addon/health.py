"""Health checks: each service registers a check; a check nobody registered reports unknown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

_LOGGER = logging.getLogger(__name__)

CHECK_NAMES: Final = ("database", "library", "provider", "mqtt", "scheduler", "disk")
CHECK_TIMEOUT_S: Final = 2.0

CheckStatus = Literal["ok", "error", "unknown", "disabled"]


@dataclass(slots=True, frozen=True)
class CheckResult:
    """The outcome of one check, with a reason a person can act on."""

    status: CheckStatus
    message: str = ""
    details: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape inside /health's checks."""
        result: dict[str, Any] = {"status": self.status, "message": self.message}
        if self.details is not None:
            result["details"] = self.details
        return result


Check = Callable[[], Awaitable[CheckResult]]


class HealthChecks:
    """Holds the registered checks and runs them together with a timeout each."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def register(self, name: str, check: Check) -> Callable[[], None]:
        """Register a check under one of CHECK_NAMES; returns an unregister function."""
        self._checks[name] = check
        return lambda: self._checks.pop(name, None) and None

    async def run(self) -> dict[str, CheckResult]:
        """Run every check concurrently; a check that hangs or raises is an error, not a crash."""
        names = list(dict.fromkeys([*CHECK_NAMES, *self._checks]))
        results = await asyncio.gather(*(self._run_one(n) for n in names))
        return dict(zip(names, results, strict=True))

    async def _run_one(self, name: str) -> CheckResult:
        check = self._checks.get(name)
        if check is None:
            return CheckResult("unknown", "not checked by this version")
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                return await check()
        except TimeoutError:
            return CheckResult("error", f"the check did not answer within {CHECK_TIMEOUT_S:g} s")
        except Exception as err:
            _LOGGER.exception("Health check %s failed", name)
            return CheckResult("error", f"{type(err).__name__}: {err}")


def overall(results: dict[str, CheckResult]) -> Literal["healthy", "degraded"]:
    """Degraded as soon as one check reports an error."""
    return "degraded" if any(r.status == "error" for r in results.values()) else "healthy"
