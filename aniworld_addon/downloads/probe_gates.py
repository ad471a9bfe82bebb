"""ffprobe started while a download runs, so its start-up is over by the time the file is.

ffprobe spends almost all of its time on a finished download loading its libraries: about
60 ms of a 63 ms check on a Debian build that links over 200 of them. A warm probe is started
at a download's first bytes, with FFREPORT (ffmpeg's documented "-report" switch) naming a
FIFO as its log file. ffprobe opens its log right after loading, before it reads any input,
and opening a FIFO for writing waits until someone opens it for reading. So the process
waits, loaded, until the file is complete: then an `input` symlink is pointed at the file and
the FIFO is opened, and ffprobe reads the file the cold way, in a few milliseconds. Its output
and verdict are exactly those of a cold ffprobe on that file.

A gate is a folder of its own (`<pid>-<start time>-<random>`) under one private folder per
user. A process killed with its probes waiting leaves them blocked; the queue's start-up
sweeps the gates of processes that are gone, which lets each waiting ffprobe run into the
missing input and end.

Anything unusual (no FIFO support, an unsafe temp path, a probe that ended early) falls back
to the cold probe, and a file a warm probe rejects is checked again cold before the rejection
counts: a warm probe only ever saves time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Final

_LOGGER = logging.getLogger(__name__)

REPORT_NAME: Final = "report"
INPUT_NAME: Final = "input"
# FFREPORT is "key=value:key=value" with escapes: keep gate paths to characters it passes as is.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.-]+")
_GATE_NAME = re.compile(r"([0-9]+)-([0-9]+)-\w+", re.A)  # pid, its start time, mkdtemp's part


def probe_command(ffprobe: str, url: str) -> list[str]:
    """What ffprobe reports on a download: its streams' types and the duration."""
    command = [ffprobe, "-v", "error", "-show_entries", "stream=codec_type:format=duration"]
    return [*command, "-of", "json", url]


def spawn_probe(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """ffprobe with its stdout and stderr captured as text."""
    return subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


class WarmProbe:
    """One pre-started ffprobe, waiting at its gate. Close it in every case (close is safe
    to call twice): that stops the process if it still waits and removes the gate."""

    def __init__(self, process: subprocess.Popen[str], gate: Path) -> None:
        self.process = process
        self.gate = gate
        self._reader: int | None = None  # the FIFO's read end, from release() to close()
        self._released = False
        #: release() handed the process over: it, not a cold ffprobe, checks the file
        self.used = False

    def release(self, path: Path) -> subprocess.Popen[str] | None:
        """Let ffprobe read `path`: its process, or None when it is no longer waiting."""
        if self.process.poll() is not None or self._released:
            return None  # ended early (an ffprobe that ignores FFREPORT, a kill): go cold
        self._released = True
        try:
            os.symlink(path.absolute(), self.gate / INPUT_NAME)
            # Non-blocking: succeeds whether ffprobe waits at the FIFO yet or is still loading.
            # Kept open until ffprobe ends: its log goes into the pipe, a few hundred bytes.
            self._reader = os.open(self.gate / REPORT_NAME, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            _LOGGER.debug("warm ffprobe at %s not usable: %s", self.gate, err)
            return None
        self.used = True
        return self.process

    def close(self) -> None:
        """Stop ffprobe unless it has ended, reap it, remove the gate."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
        shutil.rmtree(self.gate, ignore_errors=True)


class ProbeGates:
    """Where this process's warm probes wait; owned by the download queue.

    `root` defaults to `aniworld-probes-<uid>` in the temp folder, shared by every instance
    of the add-on run by that user: gates carry their owner's pid, and sweep() only touches
    the gates of processes that no longer run.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.gettempdir()) / f"aniworld-probes-{os.getuid()}"

    def start(self, ffprobe: str) -> WarmProbe | None:
        """(blocking) A warm ffprobe waiting at a new gate; None where gates cannot work."""
        # Checked at every start, and again once the gate exists: a root removed meanwhile (a
        # temp cleaner) and made again by another user must never hold a gate of ours.
        before = self._own_root()
        if before is None:
            return None
        pid = os.getpid()
        try:
            gate = Path(tempfile.mkdtemp(prefix=f"{pid}-{_started(pid) or 0}-", dir=self.root))
        except OSError as err:
            _LOGGER.debug("no warm ffprobe: %s", err)
            return None
        if self._own_root() != before:
            shutil.rmtree(gate, ignore_errors=True)
            return None
        try:
            os.mkfifo(gate / REPORT_NAME, 0o600)
        except OSError as err:  # e.g. a file system without FIFOs
            _LOGGER.debug("no warm ffprobe: %s", err)
            shutil.rmtree(gate, ignore_errors=True)
            return None
        # level=-8 ("quiet"): the log holds only ffprobe's command line.
        env = dict(os.environ, FFREPORT=f"file={gate / REPORT_NAME}:level=-8")
        target = f"file:{gate / INPUT_NAME}"
        try:
            process = spawn_probe(probe_command(ffprobe, target), env)
        except OSError as err:
            _LOGGER.debug("no warm ffprobe: %s", err)
            shutil.rmtree(gate, ignore_errors=True)
            return None
        return WarmProbe(process, gate)

    def sweep(self) -> int:
        """(blocking) End the probes that processes killed before they could and remove
        their gates; returns how many gates were removed."""
        if self._own_root() is None:
            return 0
        removed = 0
        try:
            gates = list(self.root.iterdir())
        except OSError:
            return 0
        for gate in gates:
            match = _GATE_NAME.fullmatch(gate.name)
            if match is None:
                continue
            started, named = _started(int(match[1])), int(match[2])
            # Spared while its pid runs, unless both start times are known and differ (the pid
            # was reused, as it is at every start of a container).
            if started is not None and (started == named or 0 in (started, named)):
                continue
            # A reader lets a waiting ffprobe's open() return; closed at once, the FIFO makes
            # its first write fail (SIGPIPE), and its input is gone anyway: it ends.
            with contextlib.suppress(OSError):
                os.close(os.open(gate / REPORT_NAME, os.O_RDONLY | os.O_NONBLOCK))
            shutil.rmtree(gate, ignore_errors=True)
            removed += 1
        return removed

    def _own_root(self) -> tuple[int, int] | None:
        """The root folder's (st_dev, st_ino), once it exists (made if not), is a folder of
        ours alone and has a plain path; else None."""
        if not _PLAIN_PATH.fullmatch(str(self.root)):
            return None
        try:
            self.root.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass
        except OSError:
            return None
        try:
            st = os.lstat(self.root)
        except OSError:
            return None
        # Another user's folder, or a symlink planted in a shared /tmp, is not used.
        if (
            stat.S_ISDIR(st.st_mode)
            and st.st_uid == os.getuid()
            and stat.S_IMODE(st.st_mode) & 0o077 == 0
        ):
            return st.st_dev, st.st_ino
        return None


def _started(pid: int) -> int | None:
    """When a process started (clock ticks since boot), 0 when unknown, None when it is gone.

    With the pid alone a gate could never be swept in a container, where the add-on gets the
    same pid at every start.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rpartition(b")")[2].split()
        return int(fields[19])  # field 22 of proc(5); the name before ")" may hold spaces
    except FileNotFoundError:
        pass
    except (OSError, ValueError, IndexError):
        return 0
    try:  # no /proc (not Linux): the pid must do
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0
