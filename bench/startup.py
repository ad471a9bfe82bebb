"""Start-to-/health time and idle RSS of the service next to a bare aiohttp hello-world.

Targets (issue 2): start <= 1.5x the bare app; idle RSS <= 60 MiB.

Both run from bench/.runtime-venv: a clean venv with `pip install .` (the service's runtime
dependencies only, not editable), which is what the container and a user's install hold. The
development venv also holds the test tooling (schemathesis brings rich and click, which httpx
then imports) and an editable-install finder, which a user never pays for. Without pip access
it falls back to this interpreter and says so. RUNS pairs, alternated; medians.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RUNS = 9
IDLE_S = 1.0
ROOT = Path(__file__).resolve().parents[1]
RUNTIME_VENV = ROOT / "bench" / ".runtime-venv"


def runtime_python() -> str:
    """The interpreter of a clean runtime-only install of this checkout (built or refreshed)."""
    python = RUNTIME_VENV / "bin" / "python"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(RUNTIME_VENV)], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet", str(ROOT)]
            subprocess.run(pip, check=True)
        # The checkout may have changed since: reinstall the package itself, not its deps.
        quiet = ["--quiet", "--no-deps", "--force-reinstall", str(ROOT)]
        subprocess.run([str(python), "-m", "pip", "install", *quiet], check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"note: no runtime venv ({err}); measuring with {sys.executable}", file=sys.stderr)
        return sys.executable
    return str(python)


BARE_APP = """
import sys
from aiohttp import web
async def health(request):
    return web.json_response({"status": "healthy"})
app = web.Application()
app.router.add_get("/health", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _measure(argv: list[str], port: int, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    elapsed = time.perf_counter() - start
                    break
            except OSError:
                time.sleep(0.005)
        time.sleep(IDLE_S)  # idle means: started and left alone for a moment
        return elapsed, _rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANIWORLD_")}
    python = runtime_python()
    print(f"interpreter: {python}")
    service, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(RUNS):
            # Alternate the two so machine noise hits both alike.
            port = _free_port()
            bare.append(_measure([python, "-c", BARE_APP, str(port)], port, Path(tmp), env))
            port = _free_port()
            data = Path(tmp) / f"run{run}"
            service.append(
                _measure(
                    [
                        python,
                        "-m",
                        "aniworld_addon",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--data-path",
                        str(data / "data"),
                        "--library-path",
                        str(data / "library"),
                    ],
                    port,
                    Path(tmp),
                    env,
                )
            )
    start_s = statistics.median(s for s, _ in service)
    bare_s = statistics.median(s for s, _ in bare)
    rss = statistics.median(r for _, r in service)
    bare_rss = statistics.median(r for _, r in bare)
    rows = [
        (
            "startup: start to /health (s, median)",
            start_s,
            bare_s,
            start_s / bare_s,
            "<= 1.5x",
            start_s / bare_s <= 1.5,
        ),
        ("startup: idle RSS (MiB, median)", rss, bare_rss, rss / bare_rss, "<= 60 MiB", rss <= 60),
    ]
    print("| figure | value | baseline | ratio | target | ok |")
    print("|---|---|---|---|---|---|")
    for name, value, base, ratio, target, ok in rows:
        print(
            f"| {name} | {value:.3f} | {base:.3f} | {ratio:.2f}x | {target} | "
            f"{'yes' if ok else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
