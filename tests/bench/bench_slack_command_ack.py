"""How long one signed Slack /sync takes to be acked (Slack's limit: 3 s; target: under 1 s).

Moved here from tests/test_slack.py, where a wall-clock assertion would depend on how busy the
machine is. The bot runs in-process (``tests.chat_fixtures.slack_harness``: the real bolt app
behind our aiohttp server), Argo CD and the Slack Web API are the fakes. Each run sends one
signed /sync and waits for its final message, so acks are measured one at a time; for acks under
a burst of concurrent commands see bench_slack_ack.py.

Run: .venv/bin/python tests/bench/bench_slack_command_ack.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.chat_fixtures import OPERATOR, chat_settings, slack_harness
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.slack_api import FakeSlack

TARGET = 1.0  # seconds


async def main(runs: int) -> int:
    argo = FakeArgoCD(step_delay=0.01).start()
    argo.add_app(make_app("payments"))
    slack = FakeSlack().start()
    slack.limits.enabled = False  # measuring the ack, not Slack's pacing of the result edits
    slack.add_user(OPERATOR, "olivia")
    acks: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with slack_harness(chat_settings(Path(tmp), argo, slack), slack, argo) as h:
                for i in range(runs):
                    started = time.perf_counter()
                    status, body, _ = await h.command("/sync", "payments")
                    acks.append(time.perf_counter() - started)
                    assert status == 200 and body == "", (status, body)
                    await h.final("synced", n=i + 1)
    finally:
        slack.stop()
        argo.stop()
    acks.sort()
    p99 = acks[min(len(acks) - 1, int(len(acks) * 0.99))]
    print(f"runs {runs}: ack p50 {statistics.median(acks) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {acks[-1] * 1000:.1f} ms (target < {TARGET:.0f} s)")  # fmt: skip
    return 0 if acks[-1] < TARGET else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    sys.exit(asyncio.run(main(parser.parse_args().runs)))
