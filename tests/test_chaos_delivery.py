"""Chaos: Slack and Discord down for "10 minutes" while alerts keep coming, a kill -9 in the
middle, then recovery — and every alert arrives exactly once, in order, coalesced.

The server is ``tests/chaos_server.py`` (the alert half of ``chatops serve``, delivery on a clock
running 120× fast) in a subprocess, against the Slack, Discord and Argo CD fakes over real HTTP:

1. both chat APIs answer 503 for ~5 virtual minutes while webhooks (two apps failing to sync
   again and again) and the Argo CD watch (a third app going Degraded) raise incidents;
2. kill -9; the chat APIs now refuse connections; a new server starts on the same database
   and waits out ~5 more virtual minutes while more webhooks and watch events arrive (the
   apps recover); /readyz stays 200 and says the delivery is waiting, /metrics counts it;
3. the chat APIs come back: each incident is ONE root message showing its latest state,
   its replies follow in order (many as one "+N more events" summary, counted exactly), no
   message twice, nothing left pending.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alert_fixtures import TOKEN, body_for, discord_channel, failed_app
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.recording import until
from tests.test_alerts_e2e import _free_port

ROOT = Path(__file__).resolve().parents[1]
SCALE = 120.0  # delivery's clock: 5 virtual minutes take 2.5 s
PHASE = 300.0  # virtual seconds each phase of the outage lasts


@pytest.fixture
def discord():
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


class Server:
    def __init__(self, cfg: dict[str, Any], log: Path) -> None:
        self.url = f"http://127.0.0.1:{cfg['port']}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPS_")}
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos_server", json.dumps(cfg)],
                cwd=ROOT,
                env=env | {"PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        until(self._up, timeout=20, interval=0.05)

    def _up(self) -> bool:
        assert self.proc.poll() is None, "the chaos server exited"
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill_9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def webhook(self, body: bytes) -> None:
        resp = httpx.post(self.url + "/webhooks/argocd", content=body,
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)  # fmt: skip
        assert resp.status_code == 202, resp.text

    def delivery(self) -> dict[str, Any]:
        resp = httpx.get(self.url + "/readyz", timeout=5)
        assert resp.status_code == 200  # the chat platform is down, not the bot
        return dict(resp.json()["detail"]["alert_delivery"])

    def waiting_for(self, seconds: float) -> bool:
        """Both platforms' channels have been failing for ``seconds`` of delivery time."""
        channels = self.delivery()["failing_channels"]
        return len(channels) == 2 and all(c["failing_for_s"] >= seconds for c in channels)


def failed_sync(app: str, n: int) -> bytes:
    started = f"2024-05-01T10:{n:02d}:00Z"
    return body_for("sync-failed", failed_app(make_app(app), started=started,
                                              message=f"{app} attempt {n} failed"))  # fmt: skip


def sync_ok(app: str, n: int) -> bytes:
    body = json.loads(failed_sync(app, n))
    body["trigger"] = "sync-succeeded"
    body["operation"]["phase"] = "Succeeded"
    return json.dumps(body).encode()


def discord_text(message: dict[str, Any]) -> str:
    descriptions = [str(e.get("description", "")) for e in message.get("embeds", [])]
    return "\n".join([message["content"], *descriptions])


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def threads_of(messages: list[dict[str, Any]], root_of: Any) -> dict[str, list[str]]:
    """Root text -> its replies' texts, in the order the platform received them."""
    roots = {m["id"]: m for m in messages if root_of(m) is None}
    out: dict[str, list[str]] = {r["text"]: [] for r in roots.values()}
    for m in messages:
        parent = root_of(m)
        if parent is not None:
            out[roots[parent]["text"]].append(m["text"])
    return out


def test_chat_outage_with_a_kill_9_then_every_alert_exactly_once(tmp_path, slack, discord, argo):
    argo.add_app(make_app("web"))
    db = tmp_path / "state.db"
    cfg = {
        "port": _free_port(),
        "scale": SCALE,
        "settings": {
            "webhook_token": TOKEN,
            "state_db": str(db),
            "argocd_url": argo.url,
            "argocd_token": argo.token,
            "argocd_ui_url": "https://argocd.example",
            "degraded_grace": 0,
            "slack_bot_token": slack.token,
            "slack_api_url": slack.api_url,
            "slack_alert_channel": "C0ALERTS",
            "discord_token": discord.token,
            "discord_api_url": discord.api_url,
            "discord_alert_channel": discord_channel(),
        },
    }
    log = tmp_path / "server.log"
    slack.fail_next(1_000_000, status=503)
    discord.fail_next(1_000_000, status=503)

    # 1. the chat APIs answer 503; webhooks and the watch keep raising alerts
    server = Server(cfg, log)
    for n in range(1, 5):
        server.webhook(failed_sync("pay", n))
    server.webhook(failed_sync("api", 1))
    server.webhook(failed_sync("api", 2))
    argo.set_health("web", "Degraded", "Back-off pulling image ghcr.io/acme/web:2")
    until(lambda: rows(db, "SELECT COUNT(*) FROM incidents")[0][0] == 3, timeout=10)
    until(lambda: server.waiting_for(PHASE), timeout=30)
    probes = len(slack.calls) + len(discord.calls)
    assert probes > 0
    server.kill_9()
    # nothing went out, nothing was given up: edits of a waiting root were merged into it
    assert rows(db, "SELECT DISTINCT status FROM outbox ORDER BY 1") == [("merged",), ("pending",)]

    # 2. now they refuse connections; a new server picks up the outbox and more alerts come
    slack.server.pause()
    discord.server.pause()
    slack.clear_failures()
    discord.clear_failures()
    server = Server(cfg, log)
    for n in range(5, 8):
        server.webhook(failed_sync("pay", n))
    server.webhook(sync_ok("pay", 8))
    server.webhook(failed_sync("api", 3))
    server.webhook(sync_ok("api", 4))
    argo.set_health("web", "Healthy")
    until(lambda: rows(db, "SELECT COUNT(*) FROM incidents WHERE state != 'open'")[0][0] == 3,
          timeout=10)  # fmt: skip
    until(lambda: server.waiting_for(PHASE), timeout=30)
    detail = server.delivery()
    assert detail["state"] == "waiting" and detail["waiting"] > 0
    metrics = httpx.get(server.url + "/metrics", timeout=5).text
    waiting = re.search(r'chatops_alert_outbox_waiting\{platform="slack"\} (\d+)', metrics)
    assert waiting is not None and int(waiting.group(1)) > 0
    assert 'chatops_alert_delivery_failures_total{platform="discord",reason="transient"}' in metrics
    stored = rows(db, "SELECT incident_id, platform, op FROM outbox ORDER BY id")

    # 3. back: everything goes out, once
    slack.server.resume()
    discord.server.resume()
    try:
        until(lambda: not rows(db, "SELECT 1 FROM outbox WHERE status = 'pending'"), timeout=30)
        until(lambda: server.delivery()["state"] == "ok", timeout=10)
    finally:
        server.kill_9()
    assert rows(db, "SELECT DISTINCT status FROM outbox ORDER BY 1") == [("merged",), ("sent",)]
    # (no new outbox rows appeared: the incidents were all recovered before the recovery)
    assert rows(db, "SELECT incident_id, platform, op FROM outbox ORDER BY id") == stored

    slack_threads = threads_of(
        [
            {"id": m["ts"], "text": m["text"], "thread_ts": m.get("thread_ts")}
            for m in slack.messages_in("C0ALERTS")
            for m in [m, *slack.thread("C0ALERTS", m["ts"])]
        ],
        lambda m: m["thread_ts"] if m["thread_ts"] != m["id"] else None,
    )
    discord_threads = threads_of(
        [
            {"id": m["id"], "text": discord_text(m), "ref": m.get("message_reference")}
            for m in discord.messages_in(discord_channel())
        ],
        lambda m: (m["ref"] or {}).get("message_id"),
    )
    for platform, threads in (("slack", slack_threads), ("discord", discord_threads)):
        # one root per incident, posted once with the incident's latest state
        assert sorted(threads) == sorted(
            t for t in threads if re.match(r"^\S+ (pay|api|web): recovered", t.splitlines()[0])
        ), (platform, threads)
        assert len(threads) == 3, (platform, threads)
        pay, api, web = (next(v for k, v in threads.items() if f" {a}: " in k)
                         for a in ("pay", "api", "web"))  # fmt: skip
        # pay: 6 "sync failed again" and the recovery waited: one reply counts them all
        [summary] = pay
        assert (
            "recovered" in summary.lower()
            and "+6 more events: 6× pay: sync failed again" in summary
        )
        # api: 3 replies waited, few enough to go one by one, in order
        assert len(api) == 3, (platform, api)
        assert "attempt 2 failed" in api[0] and "attempt 3 failed" in api[1]
        assert "recovered" in api[2].lower()
        [closing] = web
        assert "recovered" in closing.lower()
    # exactly once: every message the platforms accepted is one outbox row sent, no more
    for platform, fake_calls in (
        ("slack", [c for c in slack.calls if c.status == 200]),
        ("discord", [c for c in discord.calls if c.status == 200]),
    ):
        sent = rows(
            db, "SELECT COUNT(*) FROM outbox WHERE status='sent' AND platform=?", (platform,)
        )
        assert len(fake_calls) == sent[0][0] == 3 + 5, platform  # 3 roots, 5 replies
