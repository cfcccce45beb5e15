"""How long `chatops --help` takes to start (target: under 250 ms).

Run: .venv/bin/python tests/bench/bench_cli_startup.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 20


def main() -> None:
    exe = shutil.which("chatops") or str(Path(sys.executable).parent / "chatops")
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(
        f"chatops --help over {RUNS} runs: median {statistics.median(times):.0f} ms, "
        f"max {times[-1]:.0f} ms (target < 250 ms)"
    )
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import bot.cli.main, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes','slack_bolt','slack_sdk','discord','httpx','aiohttp')))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"heavy modules imported by bot.cli.main: {heavy}")


if __name__ == "__main__":
    main()
