"""Run every benchmark in bench/ and print one table (`make bench`).

Each script prints its own rows: figure | value | baseline | ratio | target | ok. This collects
the rows of every script into one markdown table, names the machine, and writes it to
bench/results.md so the README can link the latest run.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("startup.py", "scan.py", "provider.py", "download.py", "queue_status.py", "soak.py")
_ROW = re.compile(r"^\s*\|?(.+\|.+)\|?\s*$")


def _rows(output: str) -> list[list[str]]:
    rows = []
    for line in output.splitlines():
        if "|" not in line or set(line.strip()) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 6 or cells[0].lower() == "figure":
            continue
        rows.append(cells[:6])
    return rows


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> int:
    table = [["script", "figure", "value", "baseline", "ratio", "target", "ok"]]
    failures = []
    for name in SCRIPTS:
        script = HERE / name
        if not script.exists():
            continue
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=False
        )
        rows = _rows(result.stdout)
        if result.returncode != 0 or not rows:
            failures.append(f"{name}: exit {result.returncode}: {result.stderr.strip()[-300:]}")
        table += [[name, *row] for row in rows]
        print(f"  {name}: {len(rows)} rows in {time.monotonic() - started:.0f} s", file=sys.stderr)
    lines = [f"Machine: {_machine()}; run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    lines.append("| " + " | ".join(table[0]) + " |")
    lines.append("|" + "---|" * len(table[0]))
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    if failures:
        lines += ["", "Failed scripts:", *[f"- {f}" for f in failures]]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results.md").write_text("# Latest benchmark run\n\n" + text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
