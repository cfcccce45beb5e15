"""The alert half of ``chatops serve`` with delivery on a scaled clock, for the chaos suite.

``python -m tests.chaos_server CONFIG_JSON`` composes what ``serve`` composes for alerts — the
HTTP app with /healthz, /readyz (with the delivery detail) and /metrics, the Argo CD webhook
endpoint, the alert runner with its Argo CD watch and outbox — on a real port and a real SQLite
file, but gives the delivery worker a ``ScaledClock``: "10 minutes" of backoff pass in seconds,
so a test can hold the chat fakes down that long and kill -9 the process in the middle. It
prints READY and serves until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def serve(cfg: dict[str, Any]) -> None:
    from bot.alerts import runner as alerting
    from bot.alerts import webhooks
    from bot.metrics import Registry
    from bot.server.http import HttpServer, Probes, build_app
    from bot.settings import Settings
    from bot.state.store import Store
    from commands.argocd.client import ArgoCD
    from commands.context import Services
    from notifiers.delivery import ScaledClock

    settings = Settings(**cfg["settings"])
    store = Store(settings.state_db)
    metrics = Registry()
    probes = Probes()
    app = build_app(metrics, probes)
    endpoint = webhooks.register(app, settings, metrics=metrics)
    http = HttpServer(app, "127.0.0.1", int(cfg["port"]))
    await http.start()
    assert settings.argocd_url is not None and settings.argocd_token is not None
    services = Services(
        argocd=ArgoCD(settings.argocd_url, settings.argocd_token.get_secret_value())
    )
    options = alerting.AlertOptions(clock=ScaledClock(float(cfg["scale"])), watch_events=False)
    runner = await alerting.start(settings, store, services, None, metrics, None, options=options)
    probes.add_detail("alert_delivery", runner.delivery_health)
    if endpoint is not None:
        endpoint.attach(runner)
    print("READY", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))
