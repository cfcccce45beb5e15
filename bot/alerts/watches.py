"""The runner's two watch sources, started from the settings: the Argo CD Application watch
(sync and health transitions) and the Kubernetes Warning-event watch, whose correlator asks the
Application watch which app owns a namespace or a resource. Both end in the runner's signal
queue; the event watch runs on a thread, so its signals hop onto the event loop first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bot.alerts.sync_metrics import OperationMetrics
from bot.settings import Settings
from commands.context import Services
from notifiers.incidents.model import Signal


def start(
    settings: Settings,
    services: Services | None,
    signal: Callable[[list[Signal]], Awaitable[None]],
    put_nowait: Callable[[list[Signal]], None],
    *,
    watch_argocd: bool,
    watch_events: bool,
    kube_client: Any,
    operations: Callable[[str], OperationMetrics] | None = None,
) -> tuple[list[Any], Any, Any]:
    """Start what is configured; returns ``(app_watches, app_watch, event_watch)``: one
    Application watch per Argo CD instance, the default instance's (it correlates Warning
    events; None without Argo CD) and the event watch (None without Kubernetes).
    ``kube_client`` None means the one behind ``services.kube``; ``operations(instance)`` gives
    each instance's watch its sync-duration metrics."""
    from bot.alerts import app_watch as aw
    from bot.alerts import event_watch as ew

    app_watches: list[Any] = []
    app_watch: Any = None
    event_watch: Any = None
    if watch_argocd and services is not None:
        for s in services.everywhere():
            watch = aw.AppWatch(
                s.argocd,
                signal,
                ui_url=s.ui_url,
                operations=operations(s.instance) if operations is not None else None,
                instance=s.instance,
                several=s.several,
            )
            app_watches.append(watch)
            if s.instance == services.instance:
                app_watch = watch
        for watch in app_watches:
            watch.start()
    if kube_client is None and services is not None and services.kube is not None:
        kube_client = getattr(services.kube, "api_client", None)
    if watch_events and kube_client is not None:
        loop = asyncio.get_running_loop()
        correlator = ew.Correlator(
            kube_client,
            apps_in=app_watch.apps_in if app_watch is not None else None,
            knows=app_watch.knows if app_watch is not None else None,
        )

        def emit(signals: list[Signal]) -> None:
            loop.call_soon_threadsafe(put_nowait, signals)

        event_watch = ew.EventWatch(
            kube_client, correlator, emit, namespaces=settings.namespaces_watched
        )
        event_watch.start()
    return app_watches, app_watch, event_watch


def describe(app_watches: list[Any], event_watch: Any) -> str:
    """What is watched, for the start-up log line."""
    watching = []
    if app_watches:
        several = len(app_watches) > 1
        watching.append(
            "Argo CD applications"
            + (f" of {', '.join(w.instance for w in app_watches)}" if several else "")
        )
    if event_watch is not None:
        namespaces = event_watch.namespaces
        watching.append(
            "Kubernetes Warning events in "
            + (f"namespace(s) {', '.join(namespaces)}" if namespaces else "all namespaces")
        )
    return " and ".join(watching) or "nothing (webhooks only)"
