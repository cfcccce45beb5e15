"""Two Argo CD instances behind one running bot: a webhook path and a watch each, alerts routed
by instance and naming it, and a namespaced app driven from a signed Slack command."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.config.models import Route
from tests.alert_fixtures import body_for, degraded_app
from tests.chat_fixtures import (
    ALERTS,
    SlackHarness,
    chat_settings,
    slack,  # noqa: F401 - fixture
    slack_harness,
)
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.slack_api import FakeSlack

AKULA_ALERTS = "C0AKULA"
HOOK_TOKEN = "hook-token"


@pytest.fixture
def argos() -> Iterator[tuple[FakeArgoCD, FakeArgoCD]]:
    a = FakeArgoCD(step_delay=0.02).start()
    b = FakeArgoCD(step_delay=0.02).start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
async def h(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
    argos: tuple[FakeArgoCD, FakeArgoCD],
) -> AsyncIterator[SlackHarness]:
    homelab, akula = argos
    slack.add_channel(AKULA_ALERTS, "akula-alerts")
    settings = chat_settings(
        tmp_path,
        None,
        slack,
        instances=[
            {"name": "homelab", "url": homelab.url, "token": homelab.token},
            {"name": "akula-prime", "url": akula.url, "token": akula.token},
        ],
        webhook_token=HOOK_TOKEN,
        routes=[Route(instances=["akula-prime"], slack_channel=AKULA_ALERTS)],
        degraded_grace=0,
    )
    async with slack_harness(settings, slack, homelab) as harness:
        yield harness


async def hook(h: SlackHarness, path: str, body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {HOOK_TOKEN}"}
        async with s.post(h.bot.url + path, data=body, headers=headers) as resp:
            return resp.status, await resp.text()


async def test_alerts_of_each_instance_route_by_instance_and_name_it(
    h: SlackHarness, argos: tuple[FakeArgoCD, FakeArgoCD]
) -> None:
    web = degraded_app(make_app("web"))
    assert (await hook(h, "/webhooks/argocd/homelab", body_for("health-degraded", web)))[0] == 202
    assert (await hook(h, "/webhooks/argocd/akula-prime", body_for("health-degraded", web)))[
        0
    ] == 202
    status, text = await hook(h, "/webhooks/argocd/nope", body_for("health-degraded", web))
    assert status == 404 and "/webhooks/argocd/homelab" in text

    home = await h.channel_message(lambda m: "web@homelab" in m["text"], ALERTS)
    akula = await h.channel_message(lambda m: "web@akula-prime" in m["text"], AKULA_ALERTS)
    assert "degraded" in home["text"].lower() and "degraded" in akula["text"].lower()
    assert not [m for m in h.slack.messages_in(ALERTS) if "akula-prime" in m["text"]]

    assert h.bot.alerts is not None
    incidents = h.bot.alerts.engine.incidents
    assert {k: i.instance for k, i in incidents.items()} == {
        "web@homelab:degraded": "homelab",
        "web@akula-prime:degraded": "akula-prime",
    }
    # each instance is watched too: a Degraded app on akula-prime alerts from its stream
    _, akula_argo = argos
    akula_argo.add_app(degraded_app(make_app("db", namespace="data")))
    await h.channel_message(lambda m: "db@akula-prime" in m["text"], AKULA_ALERTS)


async def test_a_namespaced_app_from_slack_and_its_buttons(
    h: SlackHarness, argos: tuple[FakeArgoCD, FakeArgoCD]
) -> None:
    _, akula = argos
    shop = copy.deepcopy(make_app("shop", health="Degraded"))
    shop["metadata"]["namespace"] = "team-a"
    akula.add_app(shop)

    status, _body, _url = await h.command("/status", "team-a/shop")
    assert status == 200
    msg = await h.final("team-a/shop@akula-prime")
    assert "Degraded" in msg["text"]
    gets = [r for r in akula.requests if r.path == "/api/v1/applications/shop"]
    assert gets and all(r.query.get("appNamespace") == "team-a" for r in gets)
    store = h.bot.store
    assert store is not None
    rows = store.audit_list(app=None, since=None, limit=5)
    assert rows[0]["app"] == "team-a/shop@akula-prime"  # the audit log names the instance
