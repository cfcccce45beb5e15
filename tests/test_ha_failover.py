"""kill -9 of the leading ``chatops serve`` process of two, on one real PostgreSQL store and a
Lease on the Kubernetes fake: the other takes the Lease once it has expired, its watches pick up
what failed during the handover (alerted once), and every webhook answered 202 by either replica,
before, during or after the kill, becomes exactly one alert. Lease timings are the smallest the
settings accept (2 s / 1.5 s / 0.2 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.state.store import Store
from tests.alert_fixtures import TOKEN, body_for, failed_app
from tests.chat_fixtures import ALERTS, slack  # noqa: F401 - fixture
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.kube_api import FakeKube
from tests.fakes.recording import until
from tests.fakes.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
NS = "chatops"
LEASE = 2.0


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    fake = FakeArgoCD(step_delay=0.01).start()
    for name in ("web", "api"):
        fake.add_app(make_app(name))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    fake = FakeKube(bookmark_interval=0.2).start()
    fake.create("", "namespaces", "", {"metadata": {"name": NS}})
    try:
        yield fake
    finally:
        fake.stop()


class Replica:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(env["LOGDIR"] + f"/{name}.log", "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli.main", "serve"],
            cwd=ROOT,
            env=env | {"CHATOPS_INSTANCE_ID": name, "CHATOPS_LISTEN": f"127.0.0.1:{self.port}"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def role(self) -> str | None:
        try:
            body = httpx.get(self.url + "/readyz", timeout=1).json()
        except (httpx.HTTPError, ValueError):
            return None
        leadership = body.get("detail", {}).get("leadership", {})
        return str(leadership.get("role")) if leadership.get("leader") else None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(
    tmp_path: Path, db: str, argo: FakeArgoCD, chat: FakeSlack, kube: FakeKube
) -> dict[str, str]:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: fake, cluster: {{server: '{kube.url}'}}}}]\n"
        "users: [{name: u, user: {token: kube-token}}]\n"
        "contexts: [{name: c, context: {cluster: fake, user: u}}]\n"
        "current-context: c\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPS_")}
    return env | {
        "HOME": str(tmp_path),
        "KUBECONFIG": str(cfg),
        "LOGDIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "CHATOPS_STATE_DB": db,
        "CHATOPS_LEASE_NAMESPACE": NS,
        "CHATOPS_LEASE_DURATION": str(LEASE),
        "CHATOPS_LEASE_RENEW_DEADLINE": "1.5",
        "CHATOPS_LEASE_RETRY_PERIOD": "0.2",
        "CHATOPS_DEGRADED_GRACE": "0.2",
        "CHATOPS_WEBHOOK_TOKEN": TOKEN,
        "CHATOPS_ARGOCD_URL": argo.url,
        "CHATOPS_ARGOCD_TOKEN": argo.token,
        "CHATOPS_SLACK_BOT_TOKEN": chat.token,
        "CHATOPS_SLACK_API_URL": chat.api_url,
        "CHATOPS_SLACK_ALERT_CHANNEL": ALERTS,
    }


class Poster(threading.Thread):
    """Argo CD Notifications: one sync-failed webhook per app ``hook-N``, to either replica in
    turn, until stopped. Remembers which apps were answered 202."""

    def __init__(self, replicas: list[Replica]) -> None:
        super().__init__(daemon=True)
        self.replicas = replicas
        self.accepted: list[str] = []
        self.sent = 0
        self.done = threading.Event()
        self.gate = threading.Event()  # cleared: hold the next webhook back
        self.gate.set()
        self.parked = threading.Event()  # waiting at the gate, nothing in flight

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(timeout=5) as client:
            while not self.done.is_set():
                if not self.gate.is_set():
                    self.parked.set()
                    self.gate.wait()
                    self.parked.clear()
                app = f"hook-{self.sent}"
                target = self.replicas[self.sent % len(self.replicas)]
                self.sent += 1
                body = body_for("sync-failed", failed_app(make_app(app)))
                try:
                    r = client.post(target.url + "/webhooks/argocd", content=body, headers=headers)
                except httpx.HTTPError:
                    continue  # not acknowledged: Argo CD would retry it
                if r.status_code == 202:
                    self.accepted.append(app)
                # Slack takes about one message a second per channel (the deliverer keeps to
                # it): a few webhooks a second keep the test short
                self.done.wait(0.4)


def idle(db: str, chat: FakeSlack) -> bool:
    """No webhook waiting in the inbox, no root post in the outbox, and every root post Slack
    took noted as sent (edits may wait: one repeated after the kill changes nothing)."""
    store = Store(db)
    try:
        inbox = store.query("SELECT COUNT(*) FROM webhook_inbox")[0][0]
        pending = store.query("SELECT COUNT(*) FROM outbox WHERE status='pending' AND op='post'")[
            0
        ][0]
        sent = store.query("SELECT COUNT(*) FROM outbox WHERE op='post' AND status='sent'")[0][0]
    finally:
        store.close()
    return inbox == pending == 0 and sent == len(chat.calls_to("chat.postMessage"))


def roots(chat: FakeSlack, app: str) -> list[dict[str, Any]]:
    return [m for m in chat.messages_in(ALERTS) if m["text"].split(":")[0].split()[-1] == app]


def test_kill_9_of_the_leader_loses_and_duplicates_nothing(
    tmp_path: Path,
    pg_server: Any,
    argo: FakeArgoCD,
    slack: FakeSlack,  # noqa: F811
    kube: FakeKube,
) -> None:
    db = pg_server.create_database()
    Store(db).close()  # migrated once up front: the two start-ups only race for the Lease
    env = _env(tmp_path, db, argo, slack, kube)
    a, b = Replica("pod-a", env), Replica("pod-b", env)
    try:
        until(lambda: {a.role(), b.role()} == {"leader", "follower"}, timeout=20, interval=0.05)
        leader, survivor = (a, b) if a.role() == "leader" else (b, a)
        # the leader watches: an outage is alerted once
        argo.set_health("web", "Degraded", "Back-off pulling image web:2")
        until(lambda: roots(slack, "web"), timeout=10)

        poster = Poster([a, b])
        poster.start()
        until(lambda: len(poster.accepted) >= 4, timeout=10)
        # A chat call in flight at the kill (Slack accepted it, the leader died before it noted
        # so) would be sent again by the next leader: chat APIs take no idempotency key. So the
        # kill lands when all the leader was given is delivered and noted, and this test checks
        # what is guaranteed: nothing accepted is lost, nothing stored is sent twice.
        poster.gate.clear()
        until(poster.parked.is_set, timeout=10)
        until(lambda: idle(db, slack), timeout=10)
        leader.kill()  # no release, no step-down: the Lease has to expire
        killed = time.monotonic()
        poster.gate.set()  # webhooks keep coming to both during the handover
        argo.set_health("api", "Degraded", "OOMKilled")  # fails during the handover
        until(lambda: survivor.role() == "leader", timeout=LEASE * 4)
        took = time.monotonic() - killed
        more = len(poster.accepted) + 1
        until(lambda: len(poster.accepted) >= more, timeout=10)  # and after it
        poster.done.set()
        poster.join(10)

        # the survivor's watch found what failed meanwhile; every 202 became an alert
        until(lambda: roots(slack, "api"), timeout=10)
        for app in poster.accepted:
            until(lambda app=app: roots(slack, app), timeout=10)  # type: ignore[misc]
        # nothing left to send: what Slack has is all there will be
        until(lambda: idle(db, slack), timeout=10)
        for app in ["web", "api", *poster.accepted]:
            assert len(roots(slack, app)) == 1, app
        hooks = [m for m in slack.messages_in(ALERTS) if "hook-" in m["text"].split(":")[0]]
        assert len(hooks) == len({m["text"].split(":")[0] for m in hooks})
        # within the lease duration of the last renewal (plus a retry and our polling)
        assert took < LEASE + 2.0, took
    finally:
        for r in (a, b):
            r.stop()
