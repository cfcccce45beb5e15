"""POST /webhooks/argocd: our notification templates' bodies in, alerts out; every bad input
gets its own 4xx. Bodies are rendered from deploy/argocd/argocd-notifications-cm.yaml with the
tiny Go-template subset evaluator in tests/gotemplate.py (not Argo CD's renderer)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bot.alerts import webhooks
from tests.alert_fixtures import (
    TOKEN,
    TRIGGERS,
    UI,
    Harness,
    body_for,
    degraded_app,
    failed_app,
    notifications_cm,
    settings,
)
from tests.fakes.argocd_fixtures import load_examples, make_app
from tests.fakes.recording import until_async

# -- the template, rendered by our Go-template SUBSET evaluator ---------------------------------


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_template_subset_render_of_upstream_examples_validates(trigger):
    for name, app in load_examples().items():
        raw = body_for(trigger, app)
        data = json.loads(raw)  # valid JSON whatever the app lacks
        body = webhooks.Body.model_validate(data)
        assert body.trigger == trigger, name
        assert body.app.name == app["metadata"]["name"]
        assert body.app.project == app["spec"].get("project", "default")
        assert data["resources"][-1] is None and data["syncResources"][-1] is None
        assert body_for(trigger, app) == raw  # a retry of one notification is byte-identical


def test_template_subset_render_lists_only_failed_and_degraded_resources():
    app = degraded_app(failed_app(make_app("payments")))
    sync = webhooks.Body.model_validate_json(body_for("sync-failed", app))
    assert [(r.kind, r.name, r.hookPhase) for r in sync.syncResources if r] == [
        ("Job", "migrate", "Failed")
    ]
    assert sync.operation.phase == "Failed" and sync.operation.retryCount == 3
    assert sync.operation.message.endswith("(retried 3 times).")
    degraded = webhooks.Body.model_validate_json(body_for("health-degraded", app))
    assert [(r.kind, r.health.status if r.health else "") for r in degraded.resources if r] == [
        ("Deployment", "Degraded")
    ]
    assert degraded.argocdUrl == UI


def test_triggers_keep_the_catalog_conditions_and_send_their_own_template():
    cm = notifications_cm()
    catalog = {
        "sync-failed": "app.status.operationState.phase in ['Error', 'Failed']",
        "health-degraded": "app.status.health.status == 'Degraded'",
        "sync-succeeded": "app.status.operationState.phase in ['Succeeded']",
        "deployed": "app.status.health.status == 'Healthy'",
    }
    import yaml

    for trigger, condition in catalog.items():
        [spec] = yaml.safe_load(cm[f"trigger.chatops-on-{trigger}"])
        assert condition in spec["when"]
        assert spec["send"] == [f"chatops-{trigger}"]
        assert f'"trigger": "{trigger}"' in cm[f"template.chatops-{trigger}"]
    assert "Bearer $chatops-webhook-token" in cm["service.webhook.chatops"]


# -- the endpoint -----------------------------------------------------------------------------


async def test_sync_failed_webhook_is_stored_before_202_and_posted_once(tmp_path, slack):
    async with Harness(settings(tmp_path, slack=slack)) as h:
        raw = body_for("sync-failed", failed_app(make_app("payments")))
        resp = await h.post(raw, headers={})  # Argo CD sends no Content-Type by default
        assert resp.status_code == 202 and resp.json() == {"status": "accepted"}
        # durable at 202: another connection sees the incident and the outbox row
        db = sqlite3.connect(h.settings.state_db)
        assert db.execute("SELECT key, state FROM incidents").fetchall() == [
            ("payments:sync_failed", "open")
        ]
        assert db.execute("SELECT op, channel FROM outbox").fetchall() == [("post", "C0ALERTS")]
        db.close()
        # Argo CD retries the same delivery: not a second alert
        again = await h.post(raw)
        assert again.status_code == 202 and again.json() == {"status": "duplicate"}
        await h.idle()
        [msg] = slack.messages_in("C0ALERTS")
        text = json.dumps(msg["blocks"])
        assert "payments: sync failed" in msg["text"]
        assert "migrate" in text and "backoff limit" in text
        assert "https://argocd.example/applications/payments" in text
        values = [
            e["value"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]
            if "value" in e
        ]  # fmt: skip
        assert values == [
            "sync payments",
            "rollback payments",
            "selfheal off payments",
            "verify-rootless payments",
            "ack payments:sync_failed",
        ]
        assert len(slack.calls_to("chat.postMessage")) == 1


async def test_recovery_by_deployed_edits_the_root_and_replies_in_its_thread(tmp_path, slack):
    async with Harness(settings(tmp_path, slack=slack)) as h:
        app = make_app("payments")
        assert (await h.post(body_for("sync-failed", failed_app(app)))).status_code == 202
        await h.idle()
        [root] = slack.messages_in("C0ALERTS")
        ok = json.loads(body_for("deployed", app))
        ok["operation"]["startedAt"] = "2024-05-01T11:00:00Z"  # a later operation
        assert (await h.post(ok)).status_code == 202
        await h.idle()
        edited = slack.message("C0ALERTS", root["ts"])
        assert "recovered" in edited["text"]
        [reply] = slack.thread("C0ALERTS", root["ts"])
        assert "Recovered after" in reply["text"]


async def test_unknown_app_is_accepted_and_alerted_with_what_is_known(tmp_path, slack):
    async with Harness(settings(tmp_path, slack=slack)) as h:
        body = {
            "schema": "chatops.argocd/v1",
            "trigger": "health-degraded",
            "app": {"name": "never-heard-of-it"},
        }
        resp = await h.post(body)
        assert resp.status_code == 202
        await h.idle()
        [msg] = slack.messages_in("C0ALERTS")
        assert "never-heard-of-it: Degraded" in msg["text"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"trigger": "sync-failed", "app": {"name": "a"}}, "schema"),
        ({"schema": "chatops.argocd/v1", "app": {"name": "a"}}, "trigger"),
        ({"schema": "chatops.argocd/v1", "trigger": "on-created", "app": {"name": "a"}}, "trigger"),
        ({"schema": "chatops.argocd/v1", "trigger": "deployed"}, "app"),
        ({"schema": "chatops.argocd/v1", "trigger": "deployed", "app": {}}, "app.name"),
        ({"schema": "chatops.argocd/v1", "trigger": "deployed", "app": {"name": "Bad Name"}},
         "app.name"),
        ({"schema": "chatops.argocd/v1", "trigger": "deployed", "app": {"name": "a"},
          "operation": {"retryCount": "three"}}, "operation.retryCount"),
        ({"schema": "chatops.argocd/v1", "trigger": "deployed", "app": {"name": "a"},
          "resources": [{"kind": 5}]}, "resources[0].kind"),
    ],
)  # fmt: skip
async def test_bad_body_is_400_naming_the_field(tmp_path, body, field):
    async with Harness(settings(tmp_path)) as h:
        resp = await h.post(body)
        assert resp.status_code == 400
        assert resp.json()["field"] == field


async def test_bad_token_size_and_json(tmp_path):
    async with Harness(settings(tmp_path)) as h:
        ok = body_for("deployed", make_app("a"))
        assert (await h.post(ok, token=None)).status_code == 401
        resp = await h.post(ok, token=TOKEN + "x")
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        assert (
            await h.post(ok, token=None, headers={"Authorization": f"Basic {TOKEN}"})
        ).status_code == 401
        huge = b'{"pad": "' + b"x" * (webhooks.MAX_BODY + 1) + b'"}'
        assert (await h.post(huge)).status_code == 413
        resp = await h.post(b"{not json")
        assert resp.status_code == 400 and resp.json()["error"] == "body is not valid JSON"
        resp = await h.post(b"[1, 2]")
        assert resp.status_code == 400 and resp.json()["field"] == "(body)"
        assert (await h.post(ok)).status_code == 202
        text = h.metrics.render()
        assert 'chatops_webhooks_total{result="unauthorized"} 3' in text
        assert 'chatops_webhooks_total{result="too_large"} 1' in text
        assert 'chatops_webhooks_total{result="accepted"} 1' in text
        assert TOKEN not in text


async def test_chunked_oversized_body_is_413(tmp_path):
    async with Harness(settings(tmp_path)) as h:
        assert h.http is not None

        async def chunks():
            for _ in range(20):
                yield b"x" * 65536

        resp = await h.http.post(
            webhooks.PATH, content=chunks(), headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert resp.status_code == 413


async def test_endpoint_answers_503_until_the_runner_is_attached(tmp_path):
    import httpx
    from aiohttp import web

    from bot.alerts import runner as alerting
    from bot.state.store import Store

    app = web.Application()
    endpoint = webhooks.register(app, settings(tmp_path))
    assert endpoint is not None and endpoint.runner is None
    assert webhooks.register(web.Application(), settings(tmp_path, webhook_token=None)) is None
    site_runner = web.AppRunner(app, access_log=None)
    await site_runner.setup()
    site = web.TCPSite(site_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    store = Store(settings(tmp_path).state_db)
    body = body_for("sync-failed", failed_app(make_app("payments")))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    runner = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            early = await http.post(webhooks.PATH, content=body, headers=headers)
            assert early.status_code == 503
            assert early.json()["error"] == "alerts are starting"
            runner = await alerting.start(settings(tmp_path), store, None)
            endpoint.attach(runner)
            late = await http.post(webhooks.PATH, content=body, headers=headers)
            assert (late.status_code, late.json()) == (202, {"status": "accepted"})
    finally:
        if runner is not None:
            await runner.close()
        await site_runner.cleanup()
        store.close()


async def test_webhook_and_watch_reports_are_one_incident(tmp_path, slack):
    from notifiers.incidents.model import Signal

    async with Harness(settings(tmp_path, slack=slack)) as h:
        assert h.runner is not None
        app = failed_app(make_app("payments"))
        await h.post(body_for("sync-failed", app))
        # the watch sees the same failed operation (same startedAt)
        await h.runner.ingest(
            [Signal(kind="sync_failed", app="payments", operation="2024-05-01T10:00:00Z")]
        )
        await h.idle()
        await until_async(lambda: slack.calls_to("chat.postMessage"))
        assert len(slack.messages_in("C0ALERTS")) == 1
        assert len(slack.calls_to("chat.postMessage")) == 1


async def test_the_body_cannot_choose_the_open_in_argo_cd_link(tmp_path, slack):
    evil = "https://argocd.evil.example"
    async with Harness(settings(tmp_path, slack=slack)) as h:
        app = failed_app(make_app("payments"))
        resp = await h.post(body_for("sync-failed", app, argocd_url=evil))
        assert resp.status_code == 202  # the field is still accepted (our templates send it)
        await h.idle()
        [call] = slack.calls_to("chat.postMessage")  # what Slack received
        sent = json.dumps(call.params)
        assert f"{UI}/applications/payments" in sent  # CHATOPS_ARGOCD_UI_URL, configured
        assert "evil" not in sent  # before: the body's argocdUrl made every link


async def test_without_a_ui_url_the_api_url_makes_the_link_never_the_body(tmp_path, slack):
    api = "https://argocd-api.internal"
    s = settings(tmp_path, slack=slack, argocd_ui_url=None, argocd_url=api)
    async with Harness(s) as h:
        body = json.loads(body_for("health-degraded", degraded_app(make_app("payments"))))
        body["argocdUrl"] = "https://argocd.evil.example"
        assert (await h.post(body)).status_code == 202
        await h.idle()
        [call] = slack.calls_to("chat.postMessage")
        sent = json.dumps(call.params)
        assert f"{api}/applications/payments" in sent and "evil" not in sent
