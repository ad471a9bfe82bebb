"""Idle yt-dlp instances kept for the next download.

Building a YoutubeDL costs about 60 ms (it lists some 1,750 extractors) and its first request
about 30 ms more (an SSL context loaded from the system's certificates). On a fast line that was
a third of a 200 MB episode's whole download. So a finished download hands its instance back,
and the next one with the same options borrows it: one download at a time per instance (yt-dlp
is not thread-safe), and nothing carried over but the connections (cookies are cleared).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Generic, Protocol, TypeVar

_LOGGER = logging.getLogger(__name__)

#: an idle instance older than this is closed rather than lent: hosters drop idle connections
IDLE_TTL_S: Final = 300.0


class Session(Protocol):
    """What the pool needs of what it keeps."""

    def close(self) -> None: ...


S = TypeVar("S", bound=Session)


class SessionPool(Generic[S]):
    """Idle sessions by the options they were made with; thread-safe, bounded, closable."""

    def __init__(
        self,
        max_idle: int = 4,
        *,
        idle_ttl_s: float = IDLE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_idle = max_idle
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: list[tuple[Hashable, float, S]] = []  # (key, returned at, session)
        self._closed = False
        self.made = 0  # how many sessions were built: benches and tests read it

    @contextmanager
    def borrow(self, key: Hashable, make: Callable[[], S]) -> Iterator[S]:
        """An idle session made for `key`, else a new one; kept afterwards only on success."""
        session = self._take(key, make)
        try:
            yield session
        except BaseException:
            # A failed or cancelled download may leave a response half read: not worth reusing.
            _close(session)
            raise
        self._give_back(key, session)

    def _take(self, key: Hashable, make: Callable[[], S]) -> S:
        stale: list[S] = []
        found: S | None = None
        with self._lock:
            oldest = self._clock() - self.idle_ttl_s
            keep: list[tuple[Hashable, float, S]] = []
            for entry in self._idle:
                if entry[1] < oldest:
                    stale.append(entry[2])
                elif found is None and entry[0] == key:
                    found = entry[2]
                else:
                    keep.append(entry)
            self._idle = keep
        for session in stale:
            _close(session)
        if found is not None:
            return found
        with self._lock:
            self.made += 1
        return make()

    def _give_back(self, key: Hashable, session: S) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append((key, self._clock(), session))
                return
        _close(session)

    def close(self) -> None:
        """Close every idle session; sessions handed back later are closed, not kept."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _key, _at, session in idle:
            _close(session)


def _close(session: Session) -> None:
    try:
        session.close()
    except Exception:  # closing sockets that are already gone must not fail a download
        _LOGGER.debug("closing a yt-dlp session failed", exc_info=True)


Hook = Callable[[Mapping[str, Any]], None]


def _ignore(_status: Mapping[str, Any]) -> None:
    """The hooks of an idle session: nobody listens."""


def _literal(template: str) -> str:
    """An output template without shell expansion (see YtdlpSession)."""
    return template


class YtdlpSession:
    """A YoutubeDL whose output template and hooks belong to whichever download borrowed it."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        import yt_dlp  # loads with the first download, not at start-up

        self.on_progress: Hook = _ignore
        self.on_postprocess: Hook = _ignore
        self.ydl: Any = yt_dlp.YoutubeDL(
            {
                **options,  # without "outtmpl": lend() sets it per download
                "progress_hooks": [lambda status: self.on_progress(status)],
                "postprocessor_hooks": [lambda status: self.on_postprocess(status)],
            }
        )
        # yt-dlp runs its output template through os.path.expandvars (and ~), and "$$" is no
        # escape there: a series titled "... $HOME ..." was written to another folder. Our
        # template is a literal path (only "%" is escaped), so it is taken as it is.
        self.ydl._outtmpl_expandpath = _literal

    @contextmanager
    def lend(self, template: str, progress: Hook, postprocess: Hook) -> Iterator[Any]:
        """The YoutubeDL for one download writing to `template`; idle again afterwards."""
        # yt-dlp reads the template from its params at every use; the cookies of the previous
        # download's hoster are not this one's business.
        self.ydl.params["outtmpl"]["default"] = template
        self.ydl.cookiejar.clear()
        self.on_progress, self.on_postprocess = progress, postprocess
        try:
            yield self.ydl
        finally:
            self.on_progress = self.on_postprocess = _ignore

    def close(self) -> None:
        """Close its connections."""
        self.ydl.close()
