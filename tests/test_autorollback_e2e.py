"""The auto-rollback policy end to end, on the fakes: the fake Argo CD's scripted controller
fails an automated sync, the Application watch feeds the policy, the revert goes through the fake
GitHub (a real repository underneath), and the incident thread on the fake Slack says what
happened, with Undo and Pause buttons that go through the chat dispatcher."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.chat.dispatch import Dispatcher
from bot.chat.invocation import Invocation
from bot.config.models import Authorization, AutoRollback, Grant
from bot.state.autorollback import PolicyLedger
from bot.state.locks import Holder
from commands.argocd.app import AUTO_ROLLBACK_ANNOTATION
from commands.argocd.client import ArgoCD
from commands.autorollback import TRAILER
from commands.context import Services
from commands.githost.github.host import GitHubHost
from tests.alert_fixtures import Harness, settings
from tests.chat_fixtures import RecordingReply, buttons_of
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.github_api import FakeGitHub
from tests.fakes.gitrepo import Workspace
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack

OPS, VIEWER, TEAM = "U0OPS", "U0VIEW", "T0FAKE"
ALERTS = "C0ALERTS"


def values(app: str) -> str:
    return f"apps/{app}/values.yaml"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    (tmp_path / "repo").mkdir()
    w = Workspace(tmp_path / "repo")
    files = {values(a): f"image: {a}:1.0\n" for a in ("payments", "orders", "web", "api", "db")}
    w.commit("Initial layout", files)
    return w


@pytest.fixture
def github(ws: Workspace) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(ws.served).start()
    yield fake
    fake.stop()


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    fake = FakeArgoCD(step_delay=0.01).start()
    yield fake
    fake.stop()


def deployed(app: dict[str, Any]) -> dict[str, Any]:
    """The app as deployed an hour ago: its last operation is not in the same second (Argo CD's
    time precision) as the failure the test plays next, which the incident engine would take
    for a late report of an operation already superseded."""
    state = app["status"]["operationState"]
    state["startedAt"], state["finishedAt"] = "2024-05-01T10:00:00Z", "2024-05-01T10:00:30Z"
    return app


def opted(name: str, revision: str, mode: str = "on", **kw: Any) -> dict[str, Any]:
    annotations = {AUTO_ROLLBACK_ANNOTATION: mode}
    return deployed(make_app(name, revision=revision, annotations=annotations, **kw))


@asynccontextmanager
async def running(
    tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD, github: FakeGitHub, **policy: Any
) -> AsyncIterator[Harness]:
    client = ArgoCD(argo.url, argo.token)
    git = GitHubHost(github.url, "good-token", "acme/deploy", "main")
    s = settings(
        tmp_path,
        slack=slack,
        sync_timeout=15,
        auto_rollback=AutoRollback(**policy),
        authorization=Authorization(
            slack_team_ids=[TEAM], grants=[Grant(role="operator", slack_users=[OPS])]
        ),
    )
    try:
        async with Harness(s, services=Services(argocd=client, git=git), watch=True) as h:
            yield h
    finally:
        await client.aclose()


async def settled_good(h: Harness, *apps_at: tuple[str, str]) -> None:
    """Until the policy has durably seen each app Synced and Healthy at its revision."""
    assert h.store is not None
    ledger = PolicyLedger(h.store)
    for app, rev in apps_at:
        await until_async(lambda a=app, r=rev: ledger.marks(a).get(r) is True)


async def decided(h: Harness, app: str) -> dict[str, Any]:
    """The policy's finished audit row for ``app``."""
    assert h.store is not None
    store = h.store

    def row() -> dict[str, Any] | None:
        rows = [r for r in store.audit_list(app=app) if r["platform"] == "policy"]
        return rows[0] if rows and rows[0]["ended_at"] is not None else None

    return await until_async(row, timeout=20)


def replies_about(slack: FakeSlack, app: str) -> list[dict[str, Any]]:
    """Every reply in the threads of ``app``'s incidents."""
    roots = [m for m in slack.messages_in(ALERTS) if f" {app}: " in m["text"]]
    return [r for root in roots for r in slack.thread(ALERTS, root["ts"])]


async def reply_with(slack: FakeSlack, app: str, text: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((m for m in replies_about(slack, app) if text in m["text"]), None)

    return await until_async(found, timeout=20)


def fail_auto_sync(argo: FakeArgoCD, app: str, revision: str) -> None:
    argo.script(app, "retry_then_fail")
    assert argo.start_auto_sync(app, revision)


def said_in_chat(user: str, text: str, *, button: bool = False) -> Invocation:
    source = "button" if button else "command"
    return Invocation("slack", user, user.lower(), "C0OPS", text, team_id=TEAM,
                      confirmed=button, source=source)  # fmt: skip


def metric(h: Harness, name: str, **labels: str) -> float:
    """The value ``/metrics`` shows (label names sorted, as prometheus_client prints them)."""
    key = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "} "
    lines = [ln for ln in h.metrics.render().splitlines() if ln.startswith(key)]
    return float(lines[0].split()[-1]) if lines else 0.0


async def test_failed_auto_sync_is_reverted_once_and_undo_restores_the_tree(
    tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD, github: FakeGitHub, ws: Workspace
) -> None:
    good = ws.tip()
    argo.add_app(opted("payments", good))
    argo.track_git("payments", ws.tip)
    async with running(tmp_path, slack, argo, github) as h:
        await settled_good(h, ("payments", good))
        bad = ws.commit("Bump payments to 1.1", {values("payments"): "image: payments:1.1\n"})
        deploy_revert = argo.auto_sync_when_head_moves("payments", ws.tip, timeout=20)
        fail_auto_sync(argo, "payments", bad)

        row = await decided(h, "payments")
        deploy_revert.join(20)
        revert = ws.tip()
        # Git: exactly one commit on top of the bad one, git's revert message with the trailer
        assert ws.parents(revert) == [bad]
        assert ws.tree(revert) == ws.tree(good)
        message = ws.message(revert)
        assert message.startswith('Revert "Bump payments to 1.1"') and TRAILER in message
        assert row["outcome"] == "acted" and row["detail"].startswith("changed:")
        assert argo.app("payments")["status"]["sync"]["revision"] == revert

        # chat: the thread says why and what, with Undo (confirmed) and Pause
        said = await reply_with(slack, "payments", "auto-rollback reverted")
        text = json.dumps(said["blocks"])
        assert "retried 2 times" in text and bad[:7] in text and good[:7] in text
        assert f"/commit/{revert}" in text
        buttons = {b["text"]["text"]: b for b in buttons_of(said)}
        assert buttons["Undo"]["value"] == f"rollback payments {revert}"
        assert "confirm" in buttons["Undo"]
        assert buttons["Pause auto-rollback"]["value"] == "autorollback off payments"
        await reply_with(slack, "payments", "auto-rollback done")
        assert metric(h, "chatops_rollbacks_total", trigger="auto", outcome="changed") == 1
        assert metric(h, "chatops_autorollback_decisions_total", reason="acted") == 1

        # Undo: the button's command through the dispatcher reverts the revert
        assert h.runner is not None and h.store is not None
        dispatcher = Dispatcher(h.settings, h.services, h.store)
        deploy_undo = argo.auto_sync_when_head_moves("payments", ws.tip, timeout=20)
        reply = RecordingReply()
        await dispatcher.handle(said_in_chat(OPS, buttons["Undo"]["value"], button=True), reply)
        deploy_undo.join(20)
        assert reply.results and reply.results[-1].ok, (reply.results, reply.errors, reply.confirms)
        undo = ws.tip()
        assert ws.parents(undo) == [revert]
        assert ws.tree(undo) == ws.tree(bad)  # the tree from before the policy's revert
        await h.idle()

    # the same failure seen again, by a bot restarted on the same state: no second revert
    failed = [a for _t, a in argo.states("payments") if not a.get("operation")
              and (a["status"].get("operationState") or {}).get("phase") == "Failed"][-1]  # fmt: skip
    async with running(tmp_path, slack, argo, github) as h2:
        argo.add_app(failed)
        argo.add_app(failed)  # twice: the watch sees it twice
        await until_async(
            lambda: metric(h2, "chatops_autorollback_decisions_total", reason="duplicate") >= 1
        )
        assert h2.runner is not None
        await h2.runner.autorollback.idle()
    assert ws.tip() == undo
    assert sum(TRAILER in ws.message(c) for c in (undo, revert, bad)) == 1


async def test_guard_rails_alert_only_propose_pause_and_rate_limit(
    tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD, github: FakeGitHub, ws: Workspace
) -> None:
    good = ws.tip()
    argo.add_app(opted("orders", good))  # paused by /autorollback off
    argo.add_app(opted("web", good, "propose"))
    argo.add_app(opted("api", good, health="Degraded"))  # unhealthy before R: not the culprit
    argo.add_app(deployed(make_app("db", revision=good)))  # matched by the configuration's pattern
    async with running(tmp_path, slack, argo, github, apps=["d*"], per_app_per_hour=0) as h:
        assert h.store is not None and h.services is not None
        await settled_good(h, ("orders", good), ("web", good), ("db", good))
        assert h.store is not None
        await until_async(lambda: PolicyLedger(h.store).marks("api").get(good) is False)  # type: ignore[arg-type]

        dispatcher = Dispatcher(h.settings, h.services, h.store)
        reply = RecordingReply()
        await dispatcher.handle(said_in_chat(OPS, "autorollback off orders 2h"), reply)
        assert reply.results[-1].summary.startswith("Auto-rollback is paused for orders until ")
        viewer = RecordingReply()
        await dispatcher.handle(said_in_chat(VIEWER, "autorollback off web"), viewer)
        assert viewer.errors and "operator" in viewer.errors[0]
        await dispatcher.handle(said_in_chat(VIEWER, "autorollback status orders"), viewer)
        facts = dict((f.name, f.value) for f in viewer.results[-1].facts)
        assert facts["mode"] == "on (annotation)" and facts["paused"].startswith("until ")

        bad = {}
        for app in ("orders", "web", "api", "db"):
            bad[app] = ws.commit(f"Break {app}", {values(app): f"image: {app}:broken\n"})
        head = ws.tip()
        for app in bad:
            fail_auto_sync(argo, app, bad[app])
        outcomes = {app: (await decided(h, app))["outcome"] for app in bad}
        assert outcomes == {
            "orders": "paused",
            "web": "proposed",
            "api": "not_culprit",
            "db": "rate_limited_app",
        }
        proposal = await reply_with(slack, "web", "proposes reverting")
        [button] = [b for b in buttons_of(proposal) if b["value"].startswith("rollback")]
        assert button["value"] == f"rollback web {bad['web']}" and "confirm" in button
        said = await reply_with(slack, "api", "did not act")
        assert "is not shown to be the cause" in json.dumps(said["blocks"])
        await h.idle()
        assert ws.tip() == head  # nothing written to Git
        for reason in ("paused", "proposed", "not_culprit", "rate_limited_app"):
            assert metric(h, "chatops_autorollback_decisions_total", reason=reason) == 1


async def test_dry_run_writes_nothing_but_audits(
    tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD, github: FakeGitHub, ws: Workspace
) -> None:
    good = ws.tip()
    argo.add_app(opted("payments", good))
    async with running(tmp_path, slack, argo, github, dry_run=True) as h:
        await settled_good(h, ("payments", good))
        bad = ws.commit("Bump payments to 1.1", {values("payments"): "image: payments:1.1\n"})
        fail_auto_sync(argo, "payments", bad)
        row = await decided(h, "payments")
        assert row["outcome"] == "dry_run"
        assert (
            row["detail"]
            == f'Dry run: would revert {bad[:7]} "Bump payments to 1.1"; nothing written.'
        )
        await reply_with(slack, "payments", "did not act (dry_run)")
        await h.idle()
    assert ws.tip() == bad
    assert not [r for r in github.requests if r.method != "GET"]


async def test_degraded_for_the_grace_period_after_a_sync_is_reverted(
    tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD, github: FakeGitHub, ws: Workspace
) -> None:
    good = ws.tip()
    argo.add_app(opted("payments", good))
    argo.track_git("payments", ws.tip)
    async with running(tmp_path, slack, argo, github, degraded_grace=0.2) as h:
        await settled_good(h, ("payments", good))
        bad = ws.commit("Bump payments to 1.1", {values("payments"): "image: payments:1.1\n"})
        deploy_revert = argo.auto_sync_when_head_moves("payments", ws.tip, timeout=20)
        argo.script("payments", "degrade", message="Back-off pulling image payments:1.1")
        assert argo.start_auto_sync("payments", bad)
        row = await decided(h, "payments")
        deploy_revert.join(20)
        assert row["args"] == f"degraded {good[:7]}..{bad[:7]}"
        assert row["outcome"] == "acted" and row["detail"].startswith("changed:"), row
        assert ws.parents(ws.tip()) == [bad] and ws.tree(ws.tip()) == ws.tree(good)
        said = await reply_with(slack, "payments", "auto-rollback reverted")
        assert "Back-off pulling image payments:1.1" in json.dumps(said["blocks"])
        await h.idle()


async def test_the_policy_and_a_person_never_operate_on_one_app_at_once(
    tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD, github: FakeGitHub, ws: Workspace
) -> None:
    good = ws.tip()
    for app in ("payments", "orders"):
        argo.add_app(opted(app, good))
        argo.track_git(app, ws.tip)
    async with running(tmp_path, slack, argo, github) as h:
        assert h.store is not None
        await settled_good(h, ("payments", good), ("orders", good))
        dispatcher = Dispatcher(h.settings, h.services, h.store)
        try:
            # a person's command holds payments (the dispatcher's lock, as while /sync runs)
            line = Holder("sync payments", "ops", "slack", time.time())
            assert await dispatcher.locks.take("payments", line) is None
            bad = ws.commit("Bump payments to 1.1", {values("payments"): "image: payments:1.1\n"})
            fail_auto_sync(argo, "payments", bad)
            row = await decided(h, "payments")
            assert row["outcome"] == "busy"
            assert row["detail"] == (
                "ops (slack) is running `sync payments` on payments: the policy leaves it to them."
            )
            said = await reply_with(slack, "payments", "did not act (busy)")
            assert "ops (slack) is running `sync payments`" in json.dumps(said["blocks"])
            assert ws.tip() == bad  # nothing reverted
            assert metric(h, "chatops_autorollback_decisions_total", reason="busy") == 1
            await dispatcher.locks.release("payments")

            # the policy's rollback of orders holds orders: a person's /sync meanwhile is busy
            bad = ws.commit("Bump orders to 1.1", {values("orders"): "image: orders:1.1\n"})
            fail_auto_sync(argo, "orders", bad)
            revert = await until_async(
                lambda: ws.tip() if ws.parents(ws.tip()) == [bad] else None, timeout=20
            )
            # Argo CD has not taken the revert yet: the policy is following it to Healthy
            reply = RecordingReply()
            assert await dispatcher.handle(said_in_chat(OPS, "sync orders"), reply) is None
            assert reply.errors[0].startswith(
                f"orders is busy: auto-rollback policy (policy) started `rollback orders "
                f"{bad[:7]}` at "
            )
            assert argo.start_auto_sync("orders", revert)
            row = await decided(h, "orders")
            assert row["outcome"] == "acted" and row["detail"].startswith("changed:"), row
            await h.idle()
            assert h.store.query("SELECT COUNT(*) FROM op_locks")[0][0] == 0  # released
            done = await dispatcher.handle(said_in_chat(OPS, "sync orders"), RecordingReply())
            assert done is not None and done.ok
        finally:
            await dispatcher.locks.close()
