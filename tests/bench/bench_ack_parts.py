"""Where the signed ack's extra latency over a no-op aiohttp server comes from, part by part.

bench_slack_ack.py compares the whole bot with a no-op server. This one serves the same 200
concurrent signed /sync bursts from four servers, each in its own process pinned to the same
CPU, in alternating rounds, so each step's share of the gap shows:

- ``noop``: a plain aiohttp server whose handler answers 200 without reading the body;
- ``server``: the bot's HTTP server (``bot.server.http``: the metrics middleware, the
  header-deadline guard, the connection cap) with the same no-op handler;
- ``slack``: that server with the real ``/slack/events`` endpoint (``SlackEvents``: headers
  check, body read, HMAC, parse, ack), its routing after the ack switched off;
- the full bot is bench_slack_ack.py (the routing and the commands' work after the burst).

Run: .venv/bin/python tests/bench/bench_ack_parts.py [--requests 200] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench.bench_slack_ack import burst_of, pct, pin, signed_syncs  # noqa: E402

SECRET = "bench-signing-secret"
KINDS = ("noop", "server", "slack")


def serve(kind: str, out: Any, stop: Any) -> None:
    pin(0)
    asyncio.run(_serve(kind, out, stop))


async def _serve(kind: str, out: Any, stop: Any) -> None:
    from aiohttp import web

    async def ok(_request: web.Request) -> web.Response:
        return web.Response()

    if kind == "noop":
        app = web.Application()
        app.router.add_post("/slack/events", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        out.put(f"http://127.0.0.1:{port}")
        await asyncio.to_thread(stop.wait)
        await runner.cleanup()
        return

    from bot.chat.slack_http import SlackEvents
    from bot.metrics import Registry
    from bot.server.http import HttpServer, Probes, build_app

    app = build_app(Registry(), Probes())
    if kind == "server":
        app.router.add_post("/slack/events", ok)
    else:

        class Adapter:
            app = None

            def spawn(self, coro: Any) -> None:
                coro.close()  # the routing after the ack is not measured here

        app.router.add_post("/slack/events", SlackEvents(Adapter(), SECRET.encode()).handle)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    out.put(server.url)
    await asyncio.to_thread(stop.wait)
    await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    pin(1)
    ctx = mp.get_context("spawn")
    procs, urls, stops = [], {}, []
    for kind in KINDS:
        out, stop = ctx.Queue(), ctx.Event()
        p = ctx.Process(target=serve, args=(kind, out, stop))
        p.start()
        procs.append(p)
        stops.append(stop)
        urls[kind] = out.get(timeout=60)
    p99: dict[str, list[float]] = {k: [] for k in KINDS}
    try:
        for kind in KINDS:  # warm-up
            asyncio.run(burst_of(urls[kind], signed_syncs(urls[kind], 20, SECRET)))
        for _ in range(args.rounds):
            for kind in KINDS:
                took = asyncio.run(
                    burst_of(urls[kind], signed_syncs(urls[kind], args.requests, SECRET))
                )
                p99[kind].append(pct(took, 99))
    finally:
        for s in stops:
            s.set()
        for p in procs:
            p.join(30)
    base = statistics.median(p99["noop"])
    print(
        f"{args.requests} concurrent signed /sync, {args.rounds} alternating rounds, p99 per round (ms):"
    )
    for kind in KINDS:
        med = statistics.median(p99[kind])
        ratios = [b / a for a, b in zip(p99["noop"], p99[kind], strict=True)]
        print(
            f"  {kind:7s} median p99 {med:6.1f} ms  ({med / base:.2f}x no-op; per-round ratio "
            f"median {statistics.median(ratios):.2f}x)  rounds: "
            + " ".join(f"{v:.1f}" for v in p99[kind])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
