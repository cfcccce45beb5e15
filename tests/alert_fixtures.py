"""Shared pieces of the alert tests: webhook bodies rendered from OUR notification templates,
settings pointing at the chat fakes, and a harness running the webhook endpoint and the alert
runner on a real HTTP port.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from bot.alerts import runner as alerting
from bot.alerts import webhooks
from bot.metrics import Registry
from bot.settings import Settings
from bot.state.store import Store
from notifiers.delivery import ChannelRate, DeliveryPolicy
from notifiers.incidents.model import Policy
from tests.gotemplate import render

TOKEN = "test-webhook-token-0123456789"
UI = "https://argocd.example"
CM = Path(__file__).resolve().parents[1] / "deploy" / "argocd" / "argocd-notifications-cm.yaml"
TRIGGERS = ("sync-failed", "health-degraded", "sync-succeeded", "deployed")
FAST = DeliveryPolicy(
    rates={"slack": ChannelRate(1000.0, 1000), "discord": ChannelRate(1000.0, 1000)},
    update_interval=0.05,
    backoff_base=0.05,
    backoff_cap=0.2,
    probe_interval=0.2,
)


@cache
def notifications_cm() -> dict[str, Any]:
    return dict(yaml.safe_load(CM.read_text())["data"])


def template(trigger: str) -> str:
    spec = yaml.safe_load(notifications_cm()[f"template.chatops-{trigger}"])
    return str(spec["webhook"]["chatops"]["body"])


def body_for(trigger: str, app: dict[str, Any], argocd_url: str = UI) -> bytes:
    """What Argo CD would POST for ``app`` (rendered by tests/gotemplate.py)."""
    text = render(template(trigger), {"app": app, "context": {"argocdUrl": argocd_url}})
    return text.encode()


def failed_app(app: dict[str, Any], *, message: str = "one or more objects failed to apply",
               started: str = "2024-05-01T10:00:00Z", job: str = "migrate") -> dict[str, Any]:  # fmt: skip
    """``app`` after a sync whose retries ran out: phase Failed, .operation cleared."""
    out = copy.deepcopy(app)
    state = out["status"].setdefault("operationState", {})
    state.update(
        {
            "phase": "Failed",
            "message": f"{message} (retried 3 times).",
            "startedAt": started,
            "finishedAt": started.replace(":00Z", ":30Z"),
            "retryCount": 3,
        }
    )
    result = state.setdefault("syncResult", {"revision": out["status"]["sync"].get("revision", "")})
    result["resources"] = [
        {"group": "batch", "version": "v1", "kind": "Job", "namespace": "prod", "name": job,
         "status": "SyncFailed", "message": "Job has reached the specified backoff limit",
         "hookType": "PreSync", "hookPhase": "Failed", "syncPhase": "PreSync"},
        {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "prod",
         "name": out["metadata"]["name"], "status": "Synced", "message": "unchanged"},
    ]  # fmt: skip
    out.pop("operation", None)
    return out


def degraded_app(app: dict[str, Any], message: str = "Back-off pulling image") -> dict[str, Any]:
    out = copy.deepcopy(app)
    out["status"]["health"] = {"status": "Degraded", "message": ""}
    for r in out["status"].get("resources", []):
        if r.get("kind") in ("Deployment", "StatefulSet"):
            r["health"] = {"status": "Degraded", "message": message}
    return out


def settings(tmp_path: Path, *, slack: Any = None, discord: Any = None, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_token": TOKEN,
        "state_db": str(tmp_path / "state.db"),
        "argocd_ui_url": UI,
        "degraded_grace": 0,
    }
    if slack is not None:
        values |= {
            "slack_bot_token": slack.token,
            "slack_api_url": slack.api_url,
            "slack_alert_channel": "C0ALERTS",
        }
    if discord is not None:
        values |= {
            "discord_token": discord.token,
            "discord_api_url": discord.api_url,
            "discord_alert_channel": discord_channel(),
        }
    values |= kw
    return Settings(**values)


def discord_channel() -> str:
    from tests.fakes import discord_payloads as dp

    return str(dp.CHANNEL_ID)


class Harness:
    """The webhook endpoint and the alert runner on 127.0.0.1, as ``chatops serve`` composes
    them (route registered before the runner starts, the runner handed to it once started)."""

    def __init__(
        self,
        settings: Settings,
        *,
        policy: Policy | None = None,
        delivery: DeliveryPolicy = FAST,
        services: Any = None,
        watch: bool = False,
        kube_client: Any = None,
        dispatcher: Any = None,
        reannounce_every: float | None = None,
    ) -> None:
        self.settings = settings
        self.options = alerting.AlertOptions(
            policy=policy or Policy(degraded_grace=settings.degraded_grace),
            delivery=delivery,
            watch_argocd=watch,
            watch_events=watch,
            kube_client=kube_client,
            reannounce_every=reannounce_every,
        )
        self.services = services
        self.dispatcher = dispatcher
        self.metrics = Registry()
        self.store: Store | None = None
        self.runner: alerting.AlertRunner | None = None
        self._site_runner: web.AppRunner | None = None
        self.url = ""
        self.http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Harness:
        self.store = Store(self.settings.state_db)
        app = web.Application()
        self.endpoint = webhooks.register(app, self.settings, metrics=self.metrics)
        self._site_runner = web.AppRunner(app, access_log=None)
        await self._site_runner.setup()
        site = web.TCPSite(self._site_runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.runner = await alerting.start(
            self.settings,
            self.store,
            self.services,
            None,
            self.metrics,
            self.dispatcher,
            options=self.options,
        )
        if self.endpoint is not None:
            self.endpoint.attach(self.runner)
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.runner is not None:
            await self.runner.close()
        if self._site_runner is not None:
            await self._site_runner.cleanup()
        if self.store is not None:
            self.store.close()

    async def post(
        self,
        body: bytes | dict[str, Any],
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        assert self.http is not None
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return await self.http.post(webhooks.PATH, content=raw, headers=h)

    async def idle(self, timeout: float = 5.0) -> None:
        assert self.runner is not None and self.runner.deliverer is not None
        assert await self.runner.deliverer.wait_idle(timeout), "delivery did not finish"
