"""Alerts end to end against the fakes: watch -> alert, webhook + watch -> one alert, Warning
events grouped into the incident, recovery, and a kill -9 of `chatops serve` with an alert
pending that then arrives exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from commands.argocd.client import ArgoCD
from commands.context import Services
from notifiers.incidents.model import Policy
from tests.alert_fixtures import TOKEN, Harness, body_for, degraded_app, failed_app, settings
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.kube_api import FakeKube, api_client
from tests.fakes.recording import until, until_async

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def kube():
    fake = FakeKube(bookmark_interval=0.2).start()
    yield fake
    fake.stop()


def blocks_text(msg: dict) -> str:
    return json.dumps(msg.get("blocks", []), ensure_ascii=False)


async def test_watch_to_alert_with_grace_then_recovery(tmp_path, slack, argo):
    argo.add_app(make_app("web"))
    client = ArgoCD(argo.url, argo.token)
    s = settings(tmp_path, slack=slack, argocd_url=argo.url, argocd_token=argo.token)
    try:
        async with Harness(s, services=Services(argocd=client), watch=True,
                           policy=Policy(degraded_grace=0.3)) as h:  # fmt: skip
            assert h.runner is not None and h.runner.app_watch is not None
            await until_async(lambda: h.runner.app_watch.knows("web"))
            # a blip shorter than the grace period pages nobody
            argo.set_health("web", "Degraded", "probe failed")
            argo.set_health("web", "Healthy")
            # a real outage does, once, with the resource and why
            argo.set_health("web", "Degraded", "Back-off pulling image ghcr.io/acme/web:2")
            await until_async(lambda: slack.messages_in("C0ALERTS"), timeout=5)
            [root] = slack.messages_in("C0ALERTS")
            assert root["text"].startswith("🔴 web: Degraded")
            assert "Back-off pulling image" in blocks_text(root)
            argo.set_health("web", "Healthy")
            await until_async(lambda: slack.thread("C0ALERTS", root["ts"]))
            await h.idle()
            assert "recovered" in slack.message("C0ALERTS", root["ts"])["text"]
            [closing] = slack.thread("C0ALERTS", root["ts"])
            assert "Recovered after" in closing["text"]
            assert len(slack.calls_to("chat.postMessage")) == 2  # root + closing reply
    finally:
        await client.aclose()


async def test_webhook_and_watch_are_one_alert_and_events_join_it(tmp_path, slack, argo, kube):
    app = make_app("api", namespace="prod")
    argo.add_app(app)
    kube.add_pod("prod", {"metadata": {"name": "api-7d9f", "labels":
                 {"app.kubernetes.io/instance": "api"}}, "spec": {"containers": []}})  # fmt: skip
    client = ArgoCD(argo.url, argo.token)
    s = settings(tmp_path, slack=slack)
    try:
        async with Harness(s, services=Services(argocd=client), watch=True,
                           kube_client=api_client(kube)) as h:  # fmt: skip
            assert h.runner is not None and h.runner.event_watch is not None
            await until_async(lambda: h.runner.app_watch.knows("api"))
            assert await asyncio.to_thread(h.runner.event_watch.ready.wait, 5)
            # Argo CD Notifications and our own watch both report the Degraded app
            resp = await h.post(body_for("health-degraded", degraded_app(app)))
            assert resp.status_code == 202
            argo.set_health("api", "Degraded", "Back-off pulling image")
            await until_async(lambda: slack.messages_in("C0ALERTS"))
            # Warning events about its pod: counted into the same message
            for n in range(5):
                kube.add_event("prod", involved={"kind": "Pod", "name": "api-7d9f"},
                               reason="BackOff", message=f"Back-off restarting {n}")  # fmt: skip
            await until_async(lambda: "×5" in blocks_text(slack.messages_in("C0ALERTS")[0]))
            await h.idle()
            assert len(slack.messages_in("C0ALERTS")) == 1
            assert len(slack.calls_to("chat.postMessage")) == 1
            root = slack.messages_in("C0ALERTS")[0]
            assert "Warning events" in blocks_text(root) and "Pod/api-7d9f" in blocks_text(root)
    finally:
        await client.aclose()


async def test_alert_names_the_commit_author_and_the_degraded_pods(tmp_path, slack, argo):
    from commands.githost.github.host import GitHubHost
    from tests.fakes.github_api import FakeGitHub
    from tests.fakes.gitrepo import Workspace

    (tmp_path / "repo").mkdir()
    ws = Workspace(tmp_path / "repo")
    ws.commit("Initial layout", {"apps/web/deploy.yaml": "image: web:1\n"})
    sha = ws.commit("Bump web to 2", {"apps/web/deploy.yaml": "image: web:2\n"},
                    author="Bob Builder <bob@example.com>")  # fmt: skip
    github = FakeGitHub(ws.served).start()
    app = degraded_app(make_app("web", revision=sha))
    argo.add_app(app)
    client = ArgoCD(argo.url, argo.token)
    git = GitHubHost(github.url, "good-token", "acme/deploy", "main")
    try:
        async with Harness(settings(tmp_path, slack=slack),
                           services=Services(argocd=client, git=git)) as h:  # fmt: skip
            assert (await h.post(body_for("health-degraded", app))).status_code == 202

            def enriched() -> bool:
                msgs = slack.messages_in("C0ALERTS")
                return bool(msgs) and "Bob Builder" in blocks_text(msgs[0])

            await until_async(enriched)
            await h.idle()
            [root] = slack.messages_in("C0ALERTS")
            text = blocks_text(root)
            assert "Bump web to 2" in text and sha[:7] in text
            assert "Pod" in text and "ReplicaSet" in text  # from the resource tree
            assert len(slack.calls_to("chat.postMessage")) == 1
    finally:
        await client.aclose()
        github.stop()


# -- kill -9 ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli.main", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    def up() -> bool:
        assert proc.poll() is None, "chatops serve exited"
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    until(up, timeout=15, interval=0.05)


def test_kill_9_before_delivery_then_restart_delivers_exactly_once(tmp_path, slack):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "state.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPS_")}
    env |= {
        "CHATOPS_WEBHOOK_TOKEN": TOKEN,
        "CHATOPS_STATE_DB": str(db),
        "CHATOPS_LISTEN": f"127.0.0.1:{port}",
        "CHATOPS_SLACK_BOT_TOKEN": slack.token,
        "CHATOPS_SLACK_API_URL": slack.api_url,
        "CHATOPS_SLACK_ALERT_CHANNEL": "C0ALERTS",
        "PYTHONPATH": str(ROOT),
    }
    slack.server.pause()  # the chat API is unreachable: the alert cannot leave yet
    proc = _serve(env)
    try:
        _wait_http(url, proc)
        body = body_for("sync-failed", failed_app(make_app("payments")))
        resp = httpx.post(url + "/webhooks/argocd", content=body,
                          headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert resp.status_code == 202
        os.killpg(proc.pid, signal.SIGKILL)  # no shutdown, no flush: kill -9
        proc.wait(5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT op, status FROM outbox").fetchall() == [("post", "pending")]
    assert slack.calls_to("chat.postMessage") == []
    slack.server.resume()
    proc = _serve(env)
    try:
        _wait_http(url, proc)

        def sent() -> bool:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT status FROM outbox").fetchall() == [("sent",)]

        until(sent, timeout=10)
        # Argo CD retries the webhook it sent before the crash: still one alert
        again = httpx.post(url + "/webhooks/argocd", content=body,
                           headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert again.status_code == 202 and again.json() == {"status": "duplicate"}
        [msg] = slack.messages_in("C0ALERTS")
        assert "payments: sync failed" in msg["text"]
        assert len(slack.calls_to("chat.postMessage")) == 1
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
