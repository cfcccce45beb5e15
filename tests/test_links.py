"""One rule for an app's Argo CD link, the same in every place that shows one."""

from __future__ import annotations

from bot.alerts import app_watch, webhooks
from bot.settings import Settings
from commands.argocd import links
from commands.argocd.app import Application
from commands.argocd.client import ArgoCD
from commands.context import Services
from tests.fakes.argocd_fixtures import make_app

API = "https://argocd-server.argocd.svc"
UI = "https://argocd.example.com"


def test_the_ui_url_wins_and_the_api_url_is_the_fallback() -> None:
    assert links.ui_base(UI + "/", API) == UI
    assert links.ui_base(None, API + "/") == API
    assert links.ui_base("", None) == ""
    assert links.app_link(UI, "payments") == f"{UI}/applications/payments"
    assert links.app_link(UI, "payments", "team-a") == f"{UI}/applications/team-a/payments"
    assert links.app_link("", "payments") is None


def test_settings_services_and_the_app_watch_agree_without_a_ui_url() -> None:
    settings = Settings(argocd_url=API, argocd_token="t")  # type: ignore[arg-type]
    client = ArgoCD(API, "t")
    expected = f"{API}/applications/payments"
    assert links.app_link(settings.ui_url, "payments") == expected
    assert Services(argocd=client).app_link("payments") == expected
    watch = app_watch.AppWatch(client, _no_emit)  # no ui_url given: the API URL serves the UI
    [signal] = watch.observe("ADDED", Application(make_app("payments")))[-1:]
    assert signal.url == expected
    with_ui = Settings(argocd_url=API, argocd_token="t", argocd_ui_url=UI)  # type: ignore[arg-type]
    assert Services(argocd=client, ui_url=with_ui.ui_url).app_link("payments") == (
        f"{UI}/applications/payments"
    )


def test_a_webhook_body_cannot_choose_where_the_link_points() -> None:
    body = webhooks.Body.model_validate(
        {
            "schema": webhooks.SCHEMA,
            "trigger": "health-degraded",
            "app": {"name": "payments"},
            "argocdUrl": "https://phishing.example",
        }
    )
    [signal] = webhooks.signals(body, UI)
    assert signal.url == f"{UI}/applications/payments"


async def _no_emit(signals: object) -> None:
    return None
