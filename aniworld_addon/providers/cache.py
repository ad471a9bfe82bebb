"""Small async building blocks for provider reads: a TTL+LRU cache and request coalescing."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
Clock = Callable[[], float]


class TtlCache(Generic[K, V]):
    """A bounded LRU mapping whose entries expire `ttl_s` after they were stored."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Clock = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max(1, max_entries)
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value of `key`, refreshing its LRU position; None if absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store `value`, evicting the least recently used entries beyond the bound."""
        if self._ttl_s <= 0:
            return
        self._entries[key] = (self._clock() + self._ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: K | None = None) -> None:
        """Forget one entry, or all of them."""
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    def invalidate_prefix(self, prefix: str) -> None:
        """Forget every entry whose (string) key starts with `prefix`."""
        for key in [k for k in self._entries if str(k).startswith(prefix)]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class Coalescer(Generic[K, V]):
    """Concurrent calls for one key share a single run of the work (the first caller's)."""

    def __init__(self) -> None:
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """The work's result and whether it came from another caller's run."""
        while (pending := self._pending.get(key)) is not None:
            try:
                return await asyncio.shield(pending), True
            except asyncio.CancelledError:
                # the leader was cancelled: a waiter that was not cancelled itself takes over
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            result = await work()
        except Exception as err:
            future.set_exception(err)
            future.exception()  # marks it retrieved when nobody else was waiting
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._pending[key]
        future.set_result(result)
        return result, False
