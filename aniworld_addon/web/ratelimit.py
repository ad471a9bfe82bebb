"""Login throttling per client address: 5 attempts a minute, lock-out after 10 failures in a row."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ..errors import RateLimitedError

WINDOW_S: Final = 60.0
ATTEMPTS_PER_WINDOW: Final = 5
FAILURES_BEFORE_LOCKOUT: Final = 10
LOCKOUT_S: Final = 15 * 60.0
MAX_TRACKED: Final = 10_000


@dataclass(slots=True)
class _AddressState:
    attempts: deque[float] = field(default_factory=deque)
    failures_in_a_row: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0


class LoginLimiter:
    """Decides whether an address may try a password now; remembers outcomes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._state: dict[str, _AddressState] = {}

    def check(self, address: str) -> None:
        """Raise RateLimitedError (429, with retry_after) if address may not try now."""
        now = self.clock()
        state = self._state.get(address)
        if state is None:
            return
        if state.locked_until > now:
            raise RateLimitedError(
                "too many failed logins from this address; locked out for 15 minutes",
                retry_after=state.locked_until - now,
                details={"reason": "locked_out"},
            )
        _expire(state.attempts, now)
        if len(state.attempts) >= ATTEMPTS_PER_WINDOW:
            raise RateLimitedError(
                "too many login attempts; try again in a minute",
                retry_after=state.attempts[0] + WINDOW_S - now,
                details={"reason": "rate_limited"},
            )

    def begin(self, address: str) -> None:
        """check(), and count the attempt before its password is checked.

        Counting only after the (slow) check let a burst of parallel requests all pass check()
        before any of them was counted: every password of the burst was tried.
        """
        self.check(address)
        now = self.clock()
        state = self._state.setdefault(address, _AddressState())
        state.last_seen = now
        state.attempts.append(now)
        if len(self._state) > MAX_TRACKED:
            self._forget_idle(now)

    def record(self, address: str, *, success: bool) -> None:
        """The outcome of an attempt begin() counted; success resets the failure streak."""
        now = self.clock()
        state = self._state.setdefault(address, _AddressState())
        state.last_seen = now
        if success:
            state.failures_in_a_row = 0
            return
        state.failures_in_a_row += 1
        if state.failures_in_a_row >= FAILURES_BEFORE_LOCKOUT:
            state.locked_until = now + LOCKOUT_S
            state.failures_in_a_row = 0

    def _forget_idle(self, now: float) -> None:
        # Bounded memory under an address-spraying attack: idle, unlocked entries go first.
        for key in [
            k
            for k, s in self._state.items()
            if s.locked_until <= now and now - s.last_seen > WINDOW_S
        ]:
            del self._state[key]


def _expire(attempts: deque[float], now: float) -> None:
    while attempts and attempts[0] <= now - WINDOW_S:
        attempts.popleft()
