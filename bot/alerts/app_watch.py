"""Watching Argo CD Applications: the stream of app changes turned into ``Signal``s.

Why watch when Argo CD Notifications exists: alerts then work without it, and without its
``oncePer`` blind spot (a second Degraded at the same revision sends nothing).

The stream (the project's Argo CD client, asyncio) starts with every app as ADDED, then changes.
Per app ``AppWatch`` remembers only (health, last failed operation, last successful operation),
so 5,000 apps cost little memory, and emits a signal only on a change. A failed sync counts once
the operation is over (``.operation`` is null again): while Argo CD is still retrying, nobody is
paged for an attempt that may yet succeed. It also indexes apps by destination namespace and by
qualified name (``NAMESPACE/APP``, what a tracking name reads as), and remembers each app's
destination cluster: the
Warning-event watch of a cluster (``bot.alerts.cluster_apps``) ties an event to the app deploying
there.

Each Argo CD instance has its own watch. Apps are named as chat names them (``NAMESPACE/APP``
outside Argo CD's own namespace, ``@INSTANCE`` when there are several instances), and every
signal carries the instance, so incidents, routes and the alert's title say which Argo CD it is.
Every event also goes to ``OperationMetrics`` when given (``bot.alerts.sync_metrics``: sync
durations and phases).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bot.alerts.sync_metrics import OperationMetrics
from commands import errors, targets
from commands.argocd import links
from commands.argocd.app import FAILED_PHASES, Application
from commands.argocd.client import ArgoCD
from commands.reconnect import Backoff
from notifiers.alert import ResourceProblem
from notifiers.incidents.model import Signal

log = logging.getLogger(__name__)

Emit = Callable[[list[Signal]], Awaitable[None]]
Observer = Callable[[str, Application], None]  # sees every change (the auto-rollback policy)


class _Seen:
    __slots__ = ("dest", "failed_op", "health", "namespace", "ok_op", "qualified")

    def __init__(
        self,
        health: str,
        failed_op: str,
        ok_op: str,
        namespace: str,
        qualified: str = "",
        dest: tuple[str, str] = ("", ""),
    ) -> None:
        self.health, self.failed_op, self.ok_op = health, failed_op, ok_op
        self.namespace, self.qualified, self.dest = namespace, qualified, dest


def _common(app: Application, ui_base: str, name: str, instance: str, home: str) -> dict[str, Any]:
    outside = app.app_namespace if app.app_namespace not in ("", home) else None
    return {
        "app": name,
        "source": "watch",
        "project": app.project,
        "cluster": app.dest_cluster,
        "instance": instance,
        "namespace": app.dest_namespace,
        "url": links.app_link(ui_base, app.name, outside),
    }


def _problems(items: Iterable[Any], only: tuple[str, ...] = ()) -> tuple[ResourceProblem, ...]:
    return tuple(
        ResourceProblem(p.kind, p.name, p.namespace, p.status, p.message)
        for p in items
        if not only or p.status in only
    )[:200]


class AppWatch:
    def __init__(
        self,
        argocd: ArgoCD,
        emit: Emit,
        *,
        ui_url: str = "",
        backoff: Backoff | None = None,
        operations: OperationMetrics | None = None,
        instance: str = "",
        several: bool = False,
    ) -> None:
        self.argocd = argocd
        self.operations = operations
        self.instance = instance
        self.several = several
        self.backoff = backoff or Backoff()
        self.emit = emit
        self.ui_base = links.ui_base(ui_url, argocd.base_url)
        self.seen: dict[str, _Seen] = {}
        self.by_namespace: dict[str, frozenset[str]] = {}
        self.by_qualified: dict[str, str] = {}  # NAMESPACE/APP -> the app as chat names it
        self.connects = 0
        self.connected = asyncio.Event()
        self.failing: str | None = None  # why the stream broke, until it delivers again (/readyz)
        self.observers: list[Observer] = []
        self._task: asyncio.Task[None] | None = None

    # -- what a change means (pure apart from self.seen) -----------------------------------
    def name(self, app: Application) -> str:
        """The app as chat names it."""
        qualified = app.qualified(self.argocd.namespace)
        return targets.label(qualified, self.instance, several=self.several)

    def observe(self, kind: str, app: Application) -> list[Signal]:
        if not app.name:
            return []
        if self.operations is not None:
            self.operations.saw(kind, app)
        name = self.name(app)
        prev = self.seen.get(name)
        if kind == "DELETED":
            if prev is not None:
                self._index(name, prev.namespace, None)
                if self.by_qualified.get(prev.qualified) == name:
                    del self.by_qualified[prev.qualified]
                del self.seen[name]
            return [Signal(kind="deleted", app=name, source="watch", instance=self.instance)]
        common = _common(app, self.ui_base, name, self.instance, self.argocd.namespace)
        state = app.operation_state
        op = str(state.get("startedAt") or "")
        revision = str((state.get("syncResult") or {}).get("revision") or app.revision)
        health = app.health_status
        now = _Seen(
            health,
            prev.failed_op if prev else "",
            prev.ok_op if prev else "",
            app.dest_namespace,
            app.qualified(self.argocd.namespace),
            (app.dest_name, app.dest_server),
        )
        out: list[Signal] = []
        if app.phase in FAILED_PHASES and app.operation is None and op != now.failed_op:
            now.failed_op = op
            out.append(
                Signal(
                    kind="sync_failed",
                    operation=op,
                    message=app.operation_message or f"Sync {app.phase}.",
                    revision=revision,
                    resources=_problems(app.sync_problems()),
                    **common,
                )
            )
        elif app.phase == "Succeeded" and op and op != now.ok_op:
            now.ok_op = op
            out.append(Signal(kind="sync_ok", operation=op, revision=revision, **common))
        if prev is None or health != prev.health:
            if health == "Degraded":
                res = _problems(app.unhealthy_resources(), ("Degraded", "Missing"))
                message = app.health_message or (
                    f"{len(res)} resource(s) Degraded or Missing." if res else "Degraded."
                )
                out.append(
                    Signal(
                        kind="degraded",
                        message=message,
                        revision=app.revision,
                        resources=res,
                        **common,
                    )
                )
            elif health == "Healthy":
                out.append(Signal(kind="healthy", **common))
        if prev is None or prev.namespace != now.namespace:
            self._index(name, prev.namespace if prev else None, now.namespace)
        if prev is None or prev.qualified != now.qualified:
            self.by_qualified[now.qualified] = name
        self.seen[name] = now
        return out

    def _index(self, name: str, old: str | None, new: str | None) -> None:
        if old is not None:
            rest = self.by_namespace.get(old, frozenset()) - {name}
            if rest:
                self.by_namespace[old] = rest
            else:
                self.by_namespace.pop(old, None)
        if new:
            self.by_namespace[new] = self.by_namespace.get(new, frozenset()) | {name}

    def apps_in(self, namespace: str) -> frozenset[str]:
        return self.by_namespace.get(namespace, frozenset())

    def knows(self, name: str) -> bool:
        return name in self.seen

    def named(self, qualified: str) -> str | None:
        """The app ``NAMESPACE/APP`` (or ``APP``) as chat names it (``@INSTANCE`` added)."""
        return self.by_qualified.get(qualified)

    def destination(self, name: str) -> tuple[str, str] | None:
        """Where app ``name`` deploys: (Argo CD cluster name, server URL); None if unknown."""
        seen = self.seen.get(name)
        return seen.dest if seen is not None else None

    # -- the loop -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="argocd-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def run(self) -> None:
        backoff = self.backoff
        while True:
            try:
                self.connects += 1
                batch: list[Signal] = []
                async for kind, app in self.argocd.watch():
                    self.connected.set()
                    self.failing = None
                    backoff.reset()
                    batch += self.observe(kind, app)
                    for observer in self.observers:
                        observer(kind, app)
                    if batch:
                        await self.emit(batch)
                        batch = []
                log.info("Argo CD application stream ended; reconnecting")
            except asyncio.CancelledError:
                raise
            except errors.CommandError as e:
                log.warning("Argo CD application stream: %s", e.user_message)
                self.failing = e.user_message
            except Exception as e:
                log.exception("Argo CD application stream failed")
                self.failing = type(e).__name__
            self.connected.clear()
            await asyncio.sleep(backoff.delay())
