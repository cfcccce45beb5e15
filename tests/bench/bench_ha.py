"""Webhook ingest with the shared PostgreSQL store beside SQLite and beside a no-op server, in
one run, on one machine: what running two replicas costs the webhook path.

Each server is ``bench_alerts.py --serve`` (its own process: the real ``bot.alerts.webhooks``
endpoint and alert runner on aiohttp) with:

- noop        ``POST /noop``: reads the body, answers 202, stores nothing (the baseline);
- sqlite      the embedded store (synchronous=FULL, group commit: one fsync per batch);
- postgresql  the leader's path on PostgreSQL (the same group commit, one COMMIT per batch);
- inbox       a follower's path on PostgreSQL: each webhook committed to the shared inbox
              (one transaction per request) for the leader to drain.

The PostgreSQL server is a throw-away one (tests/pg.py) on the same disk, switched back to
``fsync=on`` and ``synchronous_commit=on`` so a 202 means the same thing as with SQLite.
20,000 requests (a realistic mix: 500 apps, the four triggers, 10% Argo CD retries) at
concurrency 64 per server. Target: PostgreSQL (leader and follower) >= 1,000 webhooks/s.

Run: .venv/bin/python tests/bench/bench_ha.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench.bench_alerts import Server, base_cfg, bodies, fire  # noqa: E402


def durable(srv: Any) -> None:
    """Restart the throw-away server as a production one runs: fsync and synchronous commit on
    (tests/pg.py turns them off on its command line, which outranks any configuration)."""
    import psycopg

    from tests import pg

    ctl = pg._binary("pg_ctl") or "pg_ctl"
    srv._run(ctl, "-D", str(srv.data), "-m", "fast", "stop")
    opts = f"-p {srv.port} -k {srv.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    srv._run(
        ctl, "-D", str(srv.data), "-o", opts, "-l", str(srv.root / "server.log"), "-w", "start"
    )
    with psycopg.connect(srv.url(), autocommit=True) as conn:
        on = [conn.execute(f"SHOW {s}").fetchone()[0] for s in ("fsync", "synchronous_commit")]  # type: ignore[index]
    assert on == ["on", "on"], on


def measure(cfg: dict[str, Any], payloads: list[bytes], path: str) -> dict[str, Any]:
    server = Server(cfg)
    try:
        asyncio.run(fire(server.url + path, payloads[:500], 64))  # warm up (and first incidents)
        seconds, statuses = asyncio.run(fire(server.url + path, payloads, 64))
    finally:
        server.stop()
    return {"per_s": round(len(payloads) / seconds), "statuses": statuses}


def main() -> int:
    from tests import pg
    from tests.fakes.slack_api import FakeSlack

    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    payloads = bodies(args.requests)
    slack = FakeSlack().start()
    slack.limits.enabled = False
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ha-") as tmp, pg.server() as srv:
            durable(srv)
            results["noop"] = measure(base_cfg(tmp, slack), payloads, "/noop")
            results["sqlite"] = measure(base_cfg(tmp, slack), payloads, "/webhooks/argocd")
            results["postgresql"] = measure(
                base_cfg(tmp, slack, db=srv.create_database()), payloads, "/webhooks/argocd"
            )
            results["inbox"] = measure(
                base_cfg(tmp, slack, db=srv.create_database(), inbox=True),
                payloads,
                "/webhooks/argocd",
            )
    finally:
        slack.stop()
    noop = results["noop"]["per_s"]
    for name, r in results.items():
        r["ratio_to_noop"] = round(r["per_s"] / noop, 2)
        print(name, json.dumps(r), flush=True)
    ok = all(
        results[k]["per_s"] >= 1000 and set(results[k]["statuses"]) == {202}
        for k in ("postgresql", "inbox")
    )
    print("ALL TARGETS MET" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
