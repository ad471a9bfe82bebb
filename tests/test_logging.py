"""The log files: what reaches them, and that a flood of one message cannot rotate them away."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from aniworld_addon.logging_setup import FileLogging, RepeatThrottle


@pytest.fixture
def file_logging(tmp_path: Path) -> Iterator[FileLogging]:
    logs = FileLogging(tmp_path, "info")
    logs.start()
    yield logs
    logs.stop()


def test_an_asyncio_error_flood_leaves_one_line_and_other_errors(
    file_logging: FileLogging,
) -> None:
    # Out of file descriptors, asyncio logs this on every loop turn: 300,000 lines rotated every
    # log file away in an adversarial run.
    flood = logging.getLogger("asyncio")
    for _ in range(5000):
        flood.error("socket.accept() out of system resource\nsocket: %s", "<socket>")
    flood.error("Task exception was never retrieved")
    logging.getLogger("aniworld_addon.test").error("an error of our own")
    file_logging.stop()
    errors = (file_logging.log_dir / "error.log").read_text().splitlines()
    assert sum("out of system resource" in line for line in errors) == 1
    assert any("Task exception was never retrieved" in line for line in errors)
    assert any("an error of our own" in line for line in errors)


def test_a_held_back_message_says_how_many_it_held() -> None:
    now = [0.0]
    throttle = RepeatThrottle(60.0, clock=lambda: now[0])

    def record() -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "boom %s", ("x",), None)

    assert throttle.filter(record())
    assert not any(throttle.filter(record()) for _ in range(9))
    now[0] = 61.0
    later = record()
    assert throttle.filter(later)
    assert later.getMessage() == "boom x (9 more like it in the last 60 s)"
