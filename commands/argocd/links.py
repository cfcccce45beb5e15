"""Where an app lives in the Argo CD web UI: the one rule behind every link the bot shows.

The base is the configured UI URL (``CHATOPS_ARGOCD_UI_URL``) when there is one, else the API
URL (``CHATOPS_ARGOCD_URL``): argocd-server serves the web UI on the same address as the API, so
whenever the bot can talk to Argo CD the API URL is also a working link. Only configuration
chooses the base: nothing a request carries (a webhook body's ``argocdUrl``, say) may point the
buttons people tap somewhere else.

An app outside Argo CD's own namespace ("apps in any namespace") is addressed by the UI as
``/applications/<namespace>/<name>``; without a namespace the link is ``/applications/<name>``.
"""

from __future__ import annotations

from urllib.parse import quote


def ui_base(ui_url: str | None, api_url: str | None = None) -> str:
    """The UI's base URL by the rule above, without a trailing slash ("" when neither is set)."""
    return (ui_url or api_url or "").strip().rstrip("/")


def app_link(ui_base: str, app: str, namespace: str | None = None) -> str | None:
    """The app's page in the Argo CD UI under ``ui_base``; None when there is no base or app."""
    base = ui_base.strip().rstrip("/")
    if not base or not app:
        return None
    path = quote(app, safe="")
    if namespace:
        path = f"{quote(namespace, safe='')}/{path}"
    return f"{base}/applications/{path}"
