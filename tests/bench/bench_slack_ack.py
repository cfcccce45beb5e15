"""Slack ack latency under load: 200 concurrent signed /sync requests against ``chatops serve``.

Separate processes, so the figures are the server's and not the load generator's or the fakes':
the fakes (Argo CD taking ~2 s per sync, the Slack Web API), the bot (``bot.server.serve.Bot``
with the real bolt app behind our aiohttp server), a no-op aiohttp server, a flood generator, and
this one, which fires the requests.

1. The burst: 200 signed /sync at once (and as many GET /healthz). The same request bytes then go
   to the no-op aiohttp server (answers 200, reads nothing), measured in the same run: the signed
   ack p99 should stay within 1.3x of it (signature checked before parsing, replay check after
   the ack).
2. The flood: 500 connections that send half their headers and stall, and unsigned 0.8 MB
   bodies sent over and over on 200 connections, while a signed command is sent every 50 ms
   on a fresh connection: its ack p99 should stay under 1 s. The bot's peak RSS is reported.

Run: .venv/bin/python tests/bench/bench_slack_ack.py [--requests 200] [--sync-seconds 2]
         [--flood-seconds 8] [--flood-connections 200] [--half-open 500]
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
def pin(cpu: int) -> None:
    """The bot and the no-op server share one CPU, the load generator and fakes the other, so
    the two servers are compared on equal terms (where the OS allows pinning)."""
    import os

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def run_fakes(n_apps: int, sync_seconds: float, out: Any, stop: Any) -> None:
    pin(1)
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
def run_bot(values: dict[str, Any], out: Any, stop: Any, done_expected: int, profile: str) -> None:
    pin(0)
    import logging

    logging.basicConfig(level=logging.WARNING)
    if not profile:
        asyncio.run(_bot(values, out, stop, done_expected))
        return
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    try:
        asyncio.run(_bot(values, out, stop, done_expected))
    finally:
        prof.disable()
        prof.dump_stats(profile)


def profile_report(path: str) -> None:
    """Where the bot's CPU went: the total, httpcore's connection pool (its scans of every
    connection for every queued request), and the costliest functions by own time."""
    import pstats

    stats = pstats.Stats(path)
    raw = stats.stats  # type: ignore[attr-defined]
    idle = sum(tt for (_, _, fn), (_, _, tt, _, _) in raw.items() if "epoll" in fn)
    busy = stats.total_tt - idle  # type: ignore[attr-defined]
    pool = sum(
        ct for (file, _, fn), (_, _, _, ct, _) in raw.items()
        if file.endswith("httpcore/_async/connection_pool.py") and fn == "_assign_requests_to_connections"
    )  # fmt: skip
    scans = sum(nc for (file, _, fn), (_, nc, _, _, _) in raw.items() if fn == "can_handle_request")
    print(f"profile ({path}): bot busy {busy:.1f} s (idle in epoll {idle:.1f} s); httpcore pool "
          f"assignment {pool:.1f} s ({100 * pool / busy:.0f}% of busy), can_handle_request called "
          f"{scans:,} times")  # fmt: skip
    stats.sort_stats("tottime").print_stats(12)


async def _bot(values: dict[str, Any], out: Any, stop: Any, done_expected: int) -> None:
    import gc

    from bot.server.serve import Bot
    from bot.settings import Settings

    pauses: list[tuple[int, float]] = []
    started: list[float] = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(timed)
    bot = Bot(Settings(**values), host="127.0.0.1", port=0)
    await bot.start()
    out.put({"url": bot.url})
    await asyncio.to_thread(stop.wait)
    assert bot.store is not None
    rows = [r for r in bot.store.audit_list(limit=10_000) if r["command"] == "sync"]
    finished = [r for r in rows if r["outcome"] == "changed"]
    took = sorted(r["ended_at"] - r["started_at"] for r in finished)
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gen2 = [p for g, p in pauses if g == 2]
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[str(r["outcome"])] = outcomes.get(str(r["outcome"]), 0) + 1
    out.put({"syncs": len(rows), "changed": len(finished), "took": took, "rss_mb": rss,
             "gen2": len(gen2), "gen2_max": max(gen2, default=0.0), "outcomes": outcomes,
             "errors": sorted({str(r["detail"] or "")[:160] for r in rows
                               if r["outcome"] != "changed"})[:8]})  # fmt: skip
    await bot.stop()


# -- process 3: a no-op aiohttp server, the baseline -----------------------------------------------
def run_noop(out: Any, stop: Any) -> None:
    pin(0)
    asyncio.run(_noop(out, stop))


async def _noop(out: Any, stop: Any) -> None:
    from aiohttp import web

    async def ok(_request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_post("/slack/events", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    out.put({"url": f"http://127.0.0.1:{port}"})
    await asyncio.to_thread(stop.wait)
    await runner.cleanup()


# -- process 4: the flood ------------------------------------------------------------------------
def run_flood(url: str, seconds: float, conns: int, half_open: int, size: int, out: Any) -> None:
    pin(1)
    out.put(asyncio.run(_flood(url, seconds, conns, half_open, size)))


async def _flood(url: str, seconds: float, conns: int, half_open: int, size: int) -> dict[str, Any]:
    hostport = url.removeprefix("http://")
    host, port = hostport.split(":")
    stalled = []
    opened = time.monotonic()
    for _ in range(half_open):
        try:
            r, w = await asyncio.open_connection(host, int(port))
        except OSError:
            break
        w.write(f"POST /slack/events HTTP/1.1\r\nHost: {hostport}\r\nX-Slack-".encode())
        stalled.append((r, w))
    body = b'{"type": "block_actions", "x": "' + b"a" * (size - 40) + b'"}'
    raw = http_request(
        "POST", "/slack/events", hostport, body, **{"Content-Type": "application/json"}
    )
    deadline = time.monotonic() + seconds
    sent, statuses, took = 0, {}, []

    async def one() -> None:
        nonlocal sent
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                r, w = await asyncio.open_connection(host, int(port))
                w.write(raw)
                line = await r.readline()
                status = line.split()[1].decode() if line else "closed"
                w.close()
            except (OSError, IndexError):
                status = "error"
            sent += 1
            statuses[status] = statuses.get(status, 0) + 1
            took.append(time.perf_counter() - t)

    await asyncio.gather(*(one() for _ in range(conns)))
    # the server's header timeout (10 s by default) should have closed every stalled one by now
    await asyncio.sleep(max(0.0, opened + 12.0 - time.monotonic()))

    async def is_closed(r: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(r.read(1), 0.5) == b""
        except (TimeoutError, OSError):
            return False

    closed = sum(await asyncio.gather(*(is_closed(r) for r, _ in stalled)))
    for _, w in stalled:
        w.close()
    return {"sent": sent, "statuses": statuses, "took": took, "stalled": len(stalled),
            "stalled_closed": closed}  # fmt: skip


# -- process 5 (this one): the load ----------------------------------------------------------------
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


def signed_syncs(url: str, n: int, secret: str) -> list[bytes]:
    from tests.chat_fixtures import signed_headers, slash_command_body

    hostport = url.removeprefix("http://")
    out = []
    for i in range(n):
        body = slash_command_body("/sync", app_name(i), user_id=OPERATOR, response_url="")
        hdrs = signed_headers(body, secret=secret)
        out.append(http_request("POST", "/slack/events", hostport, body, **hdrs))
    return out


def wait_idle(url: str, commands: int, timeout: float = 120.0) -> None:
    """Until the bot has finished ``commands`` commands (its /metrics), then a second more."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/metrics") as resp:  # noqa: S310 - our own bot
            text = resp.read().decode()
        done = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("chatops_commands_total{")
        )
        if done >= commands:
            break
        time.sleep(0.5)
    time.sleep(1.0)


async def burst_of(url: str, raws: list[bytes]) -> list[float]:
    """Send every request at once, each on its own keep-alive connection: the latencies."""
    hostport = url.removeprefix("http://")
    host, port = hostport.split(":")
    conns = [Conn(*await asyncio.open_connection(host, int(port))) for _ in raws]
    took = [
        t
        for _, t in await asyncio.gather(
            *(c.roundtrip(r) for c, r in zip(conns, raws, strict=True))
        )
    ]
    for c in conns:
        c.writer.close()
    return took


async def measured_under_flood(url: str, secret: str, seconds: float) -> list[float]:
    """A signed /help every 50 ms on a fresh connection, while the flood runs."""
    from tests.chat_fixtures import signed_headers, slash_command_body

    hostport = url.removeprefix("http://")
    host, port = hostport.split(":")
    took: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = slash_command_body("/help", "", user_id=OPERATOR, response_url="")
        raw = http_request(
            "POST", "/slack/events", hostport, body, **signed_headers(body, secret=secret)
        )
        t = time.perf_counter()
        conn = Conn(*await asyncio.open_connection(host, int(port)))
        status, _ = await conn.roundtrip(raw)
        took.append(time.perf_counter() - t if status == 200 else float("inf"))
        conn.writer.close()
        await asyncio.sleep(0.05)
    return took


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
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--flood-seconds", type=float, default=8.0)
    parser.add_argument("--flood-connections", type=int, default=200)
    parser.add_argument("--half-open", type=int, default=500)
    parser.add_argument("--flood-body", type=int, default=800_000)
    parser.add_argument("--profile", default="", help="cProfile the bot into this file")
    args = parser.parse_args()
    pin(1)
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
    bot = ctx.Process(target=run_bot, args=(values, bot_out, bot_stop, n, args.profile))
    bot.start()
    url = bot_out.get(timeout=60)["url"]
    noop_out, noop_stop = ctx.Queue(), ctx.Event()
    noop = ctx.Process(target=run_noop, args=(noop_out, noop_stop))
    noop.start()
    noop_url = noop_out.get(timeout=60)["url"]
    try:
        res = asyncio.run(fire(url, n, secret))
        burst = res["burst"][0]
        # rounds of: n fresh signed /sync to the bot alone, then the same bytes to the no-op
        # server; the syncs of a round run to the end (~sync-seconds) before the next
        # the no-op first, then the bot, both while the bot is idle (its earlier syncs done)
        pairs = []
        sent = n + 5  # the first burst's /sync and the warm-up /help
        for _ in range(args.rounds):
            wait_idle(url, sent)
            raws = signed_syncs(url, n, secret)
            noop_took = asyncio.run(burst_of(noop_url, raws))
            pairs.append((asyncio.run(burst_of(url, raws)), noop_took))
            sent += n
        wait_idle(url, sent)
        flood_out = ctx.Queue()
        flood = ctx.Process(
            target=run_flood,
            args=(url, args.flood_seconds, args.flood_connections, args.half_open,
                  args.flood_body, flood_out),
        )  # fmt: skip
        flood.start()
        time.sleep(1.0)  # the half-open connections are in place, the flood is running
        under_flood = asyncio.run(measured_under_flood(url, secret, args.flood_seconds - 2))
        flood_res = flood_out.get(timeout=120)
        flood.join(60)
    finally:
        noop_stop.set()
        noop.join(30)
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
    print(f"  sync outcomes: {summary['outcomes']} {summary['errors']}")
    print(f"  Slack Web API saw {chat['posts']} chat.postMessage and {chat['updates']} chat.update")
    print(f"{n} signed /sync alone vs the same bytes to a no-op aiohttp server, per round:")
    ratios = []
    for bot_took, noop_took in pairs:
        ratios.append(pct(bot_took, 99) / pct(noop_took, 99))
        print(
            f"  bot p50 {pct(bot_took, 50):6.1f} p99 {pct(bot_took, 99):6.1f} ms | "
            f"no-op p50 {pct(noop_took, 50):6.1f} p99 {pct(noop_took, 99):6.1f} ms | "
            f"p99 ratio {ratios[-1]:.2f}x"
        )
    ratio = statistics.median(ratios)
    print(f"  median p99 ratio {ratio:.2f}x (target <= 1.3x)")
    f99 = pct(under_flood, 99)
    print(
        f"flood: {flood_res['stalled']} half-open connections "
        f"({flood_res['stalled_closed']} closed by the server within 12 s), "
        f"{flood_res['sent']} unsigned {args.flood_body / 1e6:.1f} MB bodies on "
        f"{args.flood_connections} connections over {args.flood_seconds:.0f} s: {flood_res['statuses']}"
    )
    print(
        f"  unsigned answered: p50 {pct(flood_res['took'], 50):6.1f} ms   p99 {pct(flood_res['took'], 99):6.1f} ms"
    )
    print(
        f"  signed ack alongside ({len(under_flood)} requests, fresh connections): "
        f"p50 {pct(under_flood, 50):6.1f} ms   p99 {f99:6.1f} ms (target < 1000 ms)"
    )
    print(f"  bot peak RSS: {summary['rss_mb']:.0f} MB")
    print(f"  bot full GC pauses: {summary['gen2']}, longest {summary['gen2_max'] * 1000:.1f} ms")
    if args.profile:
        profile_report(args.profile)
    ok = acked == n and ratio <= 1.3 and f99 < 1000
    print(f"  targets -> {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
