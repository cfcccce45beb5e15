"""The runner's two watch sources, started from the settings: an Argo CD Application watch per
instance (sync and health transitions) and a Kubernetes Warning-event watch per cluster - the
default one, or each kubeconfig context the ``clusters`` setting maps a destination to - whose
correlator asks the Application watches which app deploying to that cluster owns a namespace or
a resource (``bot.alerts.cluster_apps``). All end in the runner's signal queue; the event
watches' owner lookups run on threads, so their signals hop onto the event loop first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.alerts import cluster_apps
from bot.alerts.sync_metrics import OperationMetrics
from bot.settings import Settings
from commands.context import Services
from notifiers.incidents.model import Signal

log = logging.getLogger(__name__)


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
) -> tuple[list[Any], Any, list[Any]]:
    """Start what is configured; returns ``(app_watches, app_watch, event_watches)``: one
    Application watch per Argo CD instance, the default instance's (None without Argo CD) and
    one Warning-event watch per watched cluster (none without Kubernetes). ``kube_client``
    None means the one behind ``services.kube`` (the default cluster's); ``operations(instance)``
    gives each instance's watch its sync-duration metrics."""
    from bot.alerts import app_watch as aw
    from bot.alerts import event_watch as ew

    app_watches: list[Any] = []
    app_watch: Any = None
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
    event_watches: list[Any] = []
    if watch_events:
        loop = asyncio.get_running_loop()

        def emit(signals: list[Signal]) -> None:
            loop.call_soon_threadsafe(put_nowait, signals)

        clusters = _clusters(services, kube_client)
        for key, client, where in clusters:
            apps = cluster_apps.ClusterApps(app_watches, key, where) if app_watches else None
            cluster_watch = ew.EventWatch(
                client,
                ew.Correlator(client, apps=apps),
                emit,
                namespaces=settings.namespaces_watched,
                cluster=_label(key) if len(clusters) > 1 or key != ("", "") else "",
            )
            cluster_watch.start()
            event_watches.append(cluster_watch)
    return app_watches, app_watch, event_watches


Key = tuple[str, str]  # (kubeconfig context, kubeconfig file); ("", "") = the default client


def _clusters(
    services: Services | None, kube_client: Any
) -> list[tuple[Key, Any, cluster_apps.Where]]:
    """Each cluster to watch: its key, API client and which destinations map to it. Without a
    ``clusters`` setting: the one default client, every app's. With it: each mapped context
    (the default client for a route to context ""); an app whose destination is not mapped
    has no Kubernetes steps, so no event watch blames it."""
    default: Key = ("", "")
    cmap = services.clusters if services is not None else None
    if cmap is None:
        if kube_client is None and services is not None and services.kube is not None:
            kube_client = getattr(services.kube, "api_client", None)
        return [] if kube_client is None else [(default, kube_client, lambda *_: default)]

    def where(name: str, server: str, instance: str) -> Key | None:
        r = cmap.route(name, server, instance)
        return None if r is None else (r.context, r.kubeconfig)

    out: list[tuple[Key, Any, cluster_apps.Where]] = []
    for key in cmap.contexts():
        client = kube_client if key == default else None
        if client is None:
            kube = cmap.client(*key)
            client = getattr(kube, "api_client", None) if kube is not None else None
        if client is None:
            log.warning(
                "Kubernetes Warning events of %s are not watched: the context cannot be loaded",
                _label(key),
            )
            continue
        out.append((key, client, where))
    return out


def _label(key: Key) -> str:
    context, kubeconfig = key
    name = context or "the current context"
    return f"{name} ({kubeconfig})" if kubeconfig else name


def describe(app_watches: list[Any], event_watches: list[Any]) -> str:
    """What is watched, for the start-up log line."""
    watching = []
    if app_watches:
        several = len(app_watches) > 1
        watching.append(
            "Argo CD applications"
            + (f" of {', '.join(w.instance for w in app_watches)}" if several else "")
        )
    if event_watches:
        namespaces = event_watches[0].namespaces
        clusters = [w.cluster for w in event_watches if w.cluster]
        watching.append(
            "Kubernetes Warning events in "
            + (f"namespace(s) {', '.join(namespaces)}" if namespaces else "all namespaces")
            + (f" of cluster(s) {', '.join(clusters)}" if clusters else "")
        )
    return " and ".join(watching) or "nothing (webhooks only)"
