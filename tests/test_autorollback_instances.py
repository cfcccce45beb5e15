"""The auto-rollback policy with two Argo CD instances: it follows every instance's Application
watch and reverts through the instance that has the app, naming it ``APP@INSTANCE`` in the
incident thread, the audit log, its ledger and its buttons (the wiring of
tests/test_autorollback_e2e.py: fake Argo CDs, fake GitHub over a real repository, fake Slack)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.chat.dispatch import Dispatcher
from bot.config.models import Authorization, AutoRollback, Grant
from bot.state.autorollback import PolicyLedger
from commands.argocd.client import ArgoCD
from commands.autorollback import TRAILER
from commands.context import Instance, Services
from commands.githost.github.host import GitHubHost
from tests.alert_fixtures import Harness, settings
from tests.chat_fixtures import RecordingReply, buttons_of
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.github_api import FakeGitHub
from tests.fakes.gitrepo import Workspace
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack
from tests.test_autorollback_e2e import (  # noqa: F401 - fixtures
    OPS,
    TEAM,
    decided,
    deployed,
    fail_auto_sync,
    github,
    opted,
    reply_with,
    said_in_chat,
    settled_good,
    values,
    ws,
)

APP = "payments@akula-prime"


@pytest.fixture
def argos() -> Iterator[tuple[FakeArgoCD, FakeArgoCD]]:
    a = FakeArgoCD(step_delay=0.01).start()
    b = FakeArgoCD(step_delay=0.01).start()
    yield a, b
    a.stop()
    b.stop()


async def test_an_app_of_the_second_instance_is_reverted_through_that_instance(
    tmp_path: Path,
    slack: FakeSlack,
    argos: tuple[FakeArgoCD, FakeArgoCD],
    github: FakeGitHub,  # noqa: F811
    ws: Workspace,  # noqa: F811
) -> None:
    homelab_argo, akula_argo = argos
    good = ws.tip()
    homelab_argo.add_app(deployed(make_app("payments", revision=good)))  # a namesake, not opted in
    akula_argo.add_app(opted("payments", good))
    akula_argo.track_git("payments", ws.tip)
    homelab, akula = ArgoCD(homelab_argo.url, homelab_argo.token), ArgoCD(akula_argo.url, akula_argo.token)  # fmt: skip
    services = Services(
        argocd=homelab,
        git=GitHubHost(github.url, "good-token", "acme/deploy", "main"),
        instance="homelab",
        instances={
            "homelab": Instance("homelab", homelab),
            "akula-prime": Instance("akula-prime", akula),
        },
    )
    s = settings(
        tmp_path,
        slack=slack,
        sync_timeout=15,
        instances=[
            {"name": "homelab", "url": homelab_argo.url, "token": homelab_argo.token},
            {"name": "akula-prime", "url": akula_argo.url, "token": akula_argo.token},
        ],
        auto_rollback=AutoRollback(),
        authorization=Authorization(
            slack_team_ids=[TEAM], grants=[Grant(role="operator", slack_users=[OPS])]
        ),
    )
    try:
        async with Harness(s, services=services, watch=True) as h:
            await settled_good(h, (APP, good))  # remembered under the name chat uses
            bad = ws.commit("Bump payments to 1.1", {values("payments"): "image: payments:1.1\n"})
            deploy_revert = akula_argo.auto_sync_when_head_moves("payments", ws.tip, timeout=20)
            fail_auto_sync(akula_argo, "payments", bad)

            row = await decided(h, APP)
            deploy_revert.join(20)
            revert = ws.tip()
            assert row["outcome"] == "acted" and row["detail"].startswith("changed:"), row
            assert ws.parents(revert) == [bad] and ws.tree(revert) == ws.tree(good)
            assert TRAILER in ws.message(revert)
            # synced on akula-prime, the instance that has the app; the homelab's namesake
            # was neither synced nor touched
            assert akula_argo.app("payments")["status"]["sync"]["revision"] == revert
            asked = [r for r in akula_argo.requests if r.path == "/api/v1/applications/payments"]
            assert any(r.query.get("refresh") for r in asked), asked  # the rollback's refresh
            assert not [r for r in homelab_argo.requests if "/applications/payments" in r.path]
            assert homelab_argo.app("payments")["status"]["sync"]["revision"] == good

            said = await reply_with(slack, APP, "auto-rollback reverted")
            assert bad[:7] in json.dumps(said["blocks"])
            buttons = {b["text"]["text"]: b["value"] for b in buttons_of(said)}
            assert buttons["Undo"] == f"rollback {APP} {revert}"
            assert buttons["Pause auto-rollback"] == f"autorollback off {APP}"
            await reply_with(slack, APP, "auto-rollback done")

            # the Pause button pauses the app the policy follows
            assert h.store is not None
            dispatcher = Dispatcher(h.settings, h.services, h.store)
            reply = RecordingReply()
            pause = said_in_chat(OPS, buttons["Pause auto-rollback"], button=True)
            await dispatcher.handle(pause, reply)
            assert reply.results and reply.results[-1].target == APP, (reply.results, reply.errors)
            ledger = PolicyLedger(h.store)
            await until_async(lambda: ledger.paused_until_sync(APP) is not None)
            assert ledger.paused_until_sync("payments") is None
            await h.idle()
    finally:
        await homelab.aclose()
        await akula.aclose()
