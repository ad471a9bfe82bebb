"""The pool of idle yt-dlp sessions: reuse by options, expiry, failures, close.

The end-to-end reuse with real yt-dlp downloads is in test_downloader.py; these pin the pool's
own rules with plain sessions and an injected clock.
"""

from __future__ import annotations

import pytest

from aniworld_addon.downloads.ytdlp_sessions import IDLE_TTL_S, SessionPool


class Session:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_idle_sessions_are_reused_by_key_and_expire() -> None:
    now = [0.0]
    pool = SessionPool[Session](2, clock=lambda: now[0])
    made: list[Session] = []

    def make() -> Session:
        made.append(Session(f"s{len(made)}"))
        return made[-1]

    with pool.borrow("a", make) as first:
        pass
    with pool.borrow("b", make) as other:  # another key: a session of its own
        pass
    with pool.borrow("a", make) as again:
        pass
    assert again is first and other is not first
    assert pool.made == 2

    now[0] = IDLE_TTL_S + 1  # both idle too long: closed when the next borrow looks
    with pool.borrow("a", make) as fresh:
        assert fresh is not first
    assert first.closed and other.closed and not fresh.closed


def test_a_failed_borrow_closes_its_session_and_a_closed_pool_keeps_none() -> None:
    pool = SessionPool[Session](4)
    with pytest.raises(RuntimeError), pool.borrow("a", lambda: Session("x")) as broken:
        raise RuntimeError("the download failed")
    assert broken.closed
    with pool.borrow("a", lambda: Session("y")) as kept:
        pass
    assert not kept.closed and pool.made == 2

    pool.close()
    assert kept.closed
    with pool.borrow("a", lambda: Session("z")) as late:
        pass
    assert late.closed  # handed back after close: closed, not kept


def test_no_more_than_max_idle_are_kept() -> None:
    pool = SessionPool[Session](1)
    with (
        pool.borrow("a", lambda: Session("one")) as one,
        pool.borrow("a", lambda: Session("two")) as two,
    ):
        pass  # two downloads at once: two sessions; the inner one is handed back first
    assert not two.closed and one.closed  # the second one back finds the pool full
