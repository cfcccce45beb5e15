"""Slack ack latency under load: 200 concurrent signed /sync requests against ``chatops serve``.

Three processes, so the figures are the server's and not the load generator's or the fakes':
the fakes (Argo CD taking ~2 s per sync, the Slack Web API), the bot (``bot.server.serve.Bot`` with the
real bolt app behind our aiohttp server), and this one, which fires the requests. In the same
burst it sends as many GETs to ``/healthz``, a route that does nothing, so the ratio of the two
shows what acking a command costs on top of merely answering HTTP. Target: every /sync acked,
p99 ack < 100 ms.

Run: .venv/bin/python tests/bench/bench_slack_ack.py [--requests 200] [--sync-seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STEPS_PER_SYNC = 3  # state changes the fake controller makes for a plain successful sync
OPERATOR = "U0OPS"


def app_name(i: int) -> str:
    return f"app-{i:03d}"


# -- process 1: the fakes ------------------------------------------------------------------------
def run_fakes(n_apps: int, sync_seconds: float, out: Any, stop: Any) -> None:
    from tests.fakes.argocd_api import FakeArgoCD
    from tests.fakes.argocd_fixtures import make_app
    from tests.fakes.slack_api import FakeSlack

    argo = FakeArgoCD(step_delay=sync_seconds / STEPS_PER_SYNC).start()
    for i in range(n_apps):
        argo.add_app(make_app(app_name(i)))
    slack = FakeSlack().start()
    slack.limits.enabled = False  # measures the bot; Slack's own pacing would set the figures
    slack.add_user(OPERATOR, "olivia")
    out.put(
        {
            "argocd_url": argo.url,
            "argocd_token": argo.token,
            "slack_api_url": slack.api_url,
            "slack_bot_token": slack.token,
        }
    )
    stop.wait()
    posts = len(slack.calls_to("chat.postMessage"))
    updates = len(slack.calls_to("chat.update"))
    out.put({"posts": posts, "updates": updates})
    slack.stop()
    argo.stop()


# -- process 2: the bot --------------------------------------------------------------------------
def run_bot(values: dict[str, Any], out: Any, stop: Any, done_expected: int) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_bot(values, out, stop, done_expected))


async def _bot(values: dict[str, Any], out: Any, stop: Any, done_expected: int) -> None:
    from bot.server.serve import Bot
    from bot.settings import Settings

    bot = Bot(Settings(**values), host="127.0.0.1", port=0)
    await bot.start()
    out.put({"url": bot.url})
    await asyncio.to_thread(stop.wait)
    assert bot.store is not None
    rows = [r for r in bot.store.audit_list(limit=10_000) if r["command"] == "sync"]
    finished = [r for r in rows if r["outcome"] == "changed"]
    took = sorted(r["ended_at"] - r["started_at"] for r in finished)
    out.put({"syncs": len(rows), "changed": len(finished), "took": took})
    await bot.stop()


# -- process 3 (this one): the load ----------------------------------------------------------------
class Conn:
    """One keep-alive HTTP/1.1 connection with pre-built requests: the load generator should
    cost next to nothing, so what is measured is the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def roundtrip(self, raw: bytes) -> tuple[int, float]:
        t = time.perf_counter()
        self.writer.write(raw)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1]), time.perf_counter() - t


def http_request(method: str, path: str, host: str, body: bytes = b"", **headers: str) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def fire(url: str, n: int, secret: str) -> dict[str, list[float]]:
    from tests.chat_fixtures import signed_headers, slash_command_body

    hostport = url.removeprefix("http://")
    host, port = hostport.split(":")
    syncs = []
    for i in range(n):
        body = slash_command_body("/sync", app_name(i), user_id=OPERATOR, response_url="")
        hdrs = {k: v for k, v in signed_headers(body, secret=secret).items()}
        syncs.append(http_request("POST", "/slack/events", hostport, body, **hdrs))
    health = http_request("GET", "/healthz", hostport)
    conns = [Conn(*await asyncio.open_connection(host, int(port))) for _ in range(2 * n)]
    results: dict[str, list[float]] = {"sync": [], "healthz": [], "sync_status": [], "idle": []}
    # a server that has been up a while: the first signed requests pay for lazy imports
    for i in range(5):
        body = slash_command_body("/help", "", user_id=OPERATOR, response_url="")
        raw = http_request(
            "POST", "/slack/events", hostport, body, **signed_headers(body, secret=secret)
        )
        await conns[i].roundtrip(raw)
    await asyncio.sleep(1.0)
    for c in conns[:50]:  # idle baseline, one at a time
        results["idle"].append((await c.roundtrip(health))[1])

    async def one(kind: str, conn: Conn, raw: bytes) -> None:
        status, took = await conn.roundtrip(raw)
        results[kind].append(took)
        if kind == "sync":
            results["sync_status"].append(float(status))

    tasks = []
    for i in range(n):  # /sync and /healthz interleaved, all at once
        tasks.append(one("sync", conns[2 * i], syncs[i]))
        tasks.append(one("healthz", conns[2 * i + 1], health))
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    results["burst"] = [time.perf_counter() - started]
    for c in conns:
        c.writer.close()
    return results


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k] * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sync-seconds", type=float, default=2.0)
    args = parser.parse_args()
    n = args.requests
    secret = "bench-signing-secret"

    ctx = mp.get_context("spawn")
    fakes_out, fakes_stop = ctx.Queue(), ctx.Event()
    fakes = ctx.Process(target=run_fakes, args=(n, args.sync_seconds, fakes_out, fakes_stop))
    fakes.start()
    f = fakes_out.get(timeout=60)
    state_dir = Path(tempfile.mkdtemp(prefix="chatops-bench-"))
    db = state_dir / "state.db"
    values = {
        "argocd_url": f["argocd_url"],
        "argocd_token": f["argocd_token"],
        "slack_api_url": f["slack_api_url"],
        "slack_bot_token": f["slack_bot_token"],
        "slack_signing_secret": secret,
        "state_db": str(db),
        "authorization": {"grants": [{"role": "operator", "slack_users": [OPERATOR]}]},
        "kube_exec": False,
    }
    bot_out, bot_stop = ctx.Queue(), ctx.Event()
    bot = ctx.Process(target=run_bot, args=(values, bot_out, bot_stop, n))
    bot.start()
    url = bot_out.get(timeout=60)["url"]
    try:
        res = asyncio.run(fire(url, n, secret))
        burst = res["burst"][0]
        # let the syncs run to the end (each takes ~sync-seconds; they run concurrently)
        time.sleep(args.sync_seconds * 3 + 2)
    finally:
        bot_stop.set()
        summary = bot_out.get(timeout=120)
        bot.join(60)
        fakes_stop.set()
        chat = fakes_out.get(timeout=60)
        fakes.join(60)
        shutil.rmtree(state_dir, ignore_errors=True)

    acked = sum(1 for s in res["sync_status"] if s == 200)
    s50, s99 = pct(res["sync"], 50), pct(res["sync"], 99)
    h50, h99 = pct(res["healthz"], 50), pct(res["healthz"], 99)
    i50, i99 = pct(res["idle"], 50), pct(res["idle"], 99)
    took = summary["took"]
    print(
        f"{n} concurrent signed /sync + {n} GET /healthz in one burst (all answered in {burst * 1000:.0f} ms):"
    )
    print(f"  /sync acked (200):   {acked}/{n}")
    print(
        f"  /sync ack latency:   p50 {s50:6.1f} ms   p99 {s99:6.1f} ms   max {max(res['sync']) * 1000:6.1f} ms"
    )
    print(f"  /healthz same load:  p50 {h50:6.1f} ms   p99 {h99:6.1f} ms")
    print(f"  /healthz idle:       p50 {i50:6.1f} ms   p99 {i99:6.1f} ms")
    print(f"  ratio /sync:/healthz under load: p50 {s50 / h50:.2f}x   p99 {s99 / h99:.2f}x")
    if took:
        print(
            f"  syncs run to completion: {summary['changed']}/{summary['syncs']}, "
            f"each took median {statistics.median(took):.2f} s (fake Argo CD ~{args.sync_seconds:.0f} s)"
        )
    print(f"  Slack Web API saw {chat['posts']} chat.postMessage and {chat['updates']} chat.update")
    ok = acked == n and s99 < 100
    print(f"  target: every /sync acked, p99 < 100 ms -> {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
