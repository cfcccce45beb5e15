"""Watching Kubernetes Warning events: which app they concern, and only what is new.

``EventWatch`` follows Warning events through the project's one list-then-watch loop
(``commands.kube.watch``): list, watch from the list's resourceVersion with bookmarks, resume
where it left off when the server ends a watch, on 410 Gone re-list and see only what changed
meanwhile, reconnect with capped, jittered backoff. An event repeats by raising its ``count``
(or ``series.count``): only the increase is counted, so a re-list never re-alerts, and the first
list only records what happened before the start.

With ``namespaces`` (the ``watch_namespaces`` setting) it runs one namespaced watch per
namespace - the bot then needs list/watch on events only there - else one cluster-wide watch.
A watch the API server refuses (403: the right is missing in that namespace) is said once, with
the verb, resource and namespace, and retried with backoff until the right is granted.

``Correlator`` ties an event to an Argo CD app by the involved object's tracking annotation or
instance label, else through its owners (Pod -> ReplicaSet -> Deployment), else by the only app
deploying to that namespace. Which apps count is the ``Apps`` port's answer: with several
clusters there is one watch per cluster (``cluster`` names it in logs and /readyz), and only the
apps deploying to that cluster, from any Argo CD instance, are candidates
(``bot.alerts.cluster_apps``); the signal carries the instance of the app it matched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from commands import errors
from commands.argocd.app import INSTANCE_LABEL, TRACKING_ANNOTATION
from commands.kube import watch as kube_watch
from commands.reconnect import Backoff
from notifiers.alert import EventCount
from notifiers.incidents.model import Signal

log = logging.getLogger(__name__)

ALERT_REASONS = frozenset(
    {
        "BackOff",
        "CrashLoopBackOff",
        "Failed",
        "FailedScheduling",
        "FailedMount",
        "FailedAttachVolume",
        "FailedCreate",
        "FailedCreatePodSandBox",
        "Unhealthy",
        "OOMKilling",
        "Evicted",
        "ImagePullBackOff",
        "ErrImagePull",
        "ProgressDeadlineExceeded",
    }
)


def _app_from_meta(meta: dict[str, Any]) -> str | None:
    """The app named by the object's tracking-id or instance label, as people address it.

    Argo CD tracks an app outside its own namespace as ``NAMESPACE_NAME`` (its "applications in
    any namespace" docs; ``Application.tracked_name``); neither part may contain ``_``, so the
    first one separates them: ``team-a_shop`` is the app ``team-a/shop``."""
    tracking = (meta.get("annotations") or {}).get(TRACKING_ANNOTATION)
    if isinstance(tracking, str) and ":" in tracking:
        return tracking.split(":", 1)[0].replace("_", "/", 1) or None
    label = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return label.replace("_", "/", 1) if isinstance(label, str) and label else None


@dataclass(frozen=True)
class Owner:
    """The app an event is about: as chat names it, its Argo CD instance and cluster."""

    app: str
    instance: str = ""
    cluster: str = ""


class Apps(Protocol):
    """The Argo CD apps deploying to the watched cluster (``bot.alerts.cluster_apps``)."""

    def named(self, qualified: str) -> Owner | None:
        """The app ``qualified`` (``NAMESPACE/APP`` or ``APP``, as the tracking name gives it),
        if it deploys here."""
        ...

    def in_namespace(self, namespace: str) -> frozenset[Owner]:
        """The apps deploying to ``namespace`` of this cluster."""
        ...


class _ByName:
    """``Apps`` from two plain functions (one cluster, one instance: tests and tools)."""

    def __init__(
        self,
        apps_in: Callable[[str], frozenset[str]] | None,
        knows: Callable[[str], bool] | None,
    ) -> None:
        self.apps_in, self.knows = apps_in, knows

    def named(self, qualified: str) -> Owner | None:
        return Owner(qualified) if self.knows is None or self.knows(qualified) else None

    def in_namespace(self, namespace: str) -> frozenset[Owner]:
        names = self.apps_in(namespace) if self.apps_in is not None else frozenset()
        return frozenset(Owner(n) for n in names)


class Correlator:
    """Involved object -> the Argo CD app it belongs to, cached by the object's uid (or
    kind/namespace/name): a storm of events about the same pods costs one lookup per pod.
    ``apps`` says which apps deploy to this cluster; ``apps_in``/``knows`` are the same for a
    single cluster and instance, by name."""

    READERS = {
        "Pod": ("core", "read_namespaced_pod"),
        "ReplicaSet": ("apps", "read_namespaced_replica_set"),
        "Deployment": ("apps", "read_namespaced_deployment"),
        "StatefulSet": ("apps", "read_namespaced_stateful_set"),
        "DaemonSet": ("apps", "read_namespaced_daemon_set"),
        "Job": ("batch", "read_namespaced_job"),
        "CronJob": ("batch", "read_namespaced_cron_job"),
    }

    def __init__(
        self,
        api_client: Any,
        *,
        apps: Apps | None = None,
        apps_in: Callable[[str], frozenset[str]] | None = None,
        knows: Callable[[str], bool] | None = None,
        cache_size: int = 20000,
    ) -> None:
        from kubernetes import client as k8s

        self.apis: dict[str, Any] = {
            "core": k8s.CoreV1Api(api_client),
            "apps": k8s.AppsV1Api(api_client),
            "batch": k8s.BatchV1Api(api_client),
        }
        self.apps: Apps = apps if apps is not None else _ByName(apps_in, knows)
        self.cache: OrderedDict[str, Owner | None] = OrderedDict()
        self.cache_size = cache_size
        self.lookups = 0
        self._lock = threading.Lock()  # app_for runs in worker threads, cached on the loop

    def _get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        reader = self.READERS.get(kind)
        if reader is None or not namespace or not name:
            return None
        api, method = reader
        self.lookups += 1
        try:
            resp = getattr(self.apis[api], method)(name, namespace, _preload_content=False)
            try:
                data = json.loads(resp.data)
            finally:
                resp.release_conn()
        except Exception as e:  # 403/404 and network errors: fall back, never fail the watch
            log.debug("cannot read %s %s/%s: %s", kind, namespace, name, type(e).__name__)
            return None
        return data if isinstance(data, dict) else None

    def _accept(self, qualified: str | None) -> Owner | None:
        return self.apps.named(qualified) if qualified else None

    @staticmethod
    def _key(involved: dict[str, Any]) -> str:
        namespace = str(involved.get("namespace") or "")
        kind, name = str(involved.get("kind") or ""), str(involved.get("name") or "")
        return str(involved.get("uid") or "") or f"{kind}/{namespace}/{name}"

    def cached(self, involved: dict[str, Any]) -> tuple[bool, Owner | None]:
        """(True, app) when the answer is cached: no API read needed."""
        uid = self._key(involved)
        with self._lock:
            if uid in self.cache:
                self.cache.move_to_end(uid)
                return True, self.cache[uid]
        return False, None

    def app_for(self, involved: dict[str, Any]) -> Owner | None:
        """Blocking (reads owners from the API): call it in a worker thread."""
        hit, cached = self.cached(involved)
        if hit:
            return cached
        uid = self._key(involved)
        namespace = str(involved.get("namespace") or "")
        kind, name = str(involved.get("kind") or ""), str(involved.get("name") or "")
        found: Owner | None = None
        for _ in range(4):  # Pod -> ReplicaSet -> Deployment (-> a parent) at most
            obj = self._get(kind, namespace, name)
            if obj is None:
                break
            meta = obj.get("metadata") or {}
            found = self._accept(_app_from_meta(meta))
            if found:
                break
            owners = [o for o in meta.get("ownerReferences") or [] if isinstance(o, dict)]
            owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
            if owner is None:
                break
            kind, name = str(owner.get("kind") or ""), str(owner.get("name") or "")
        if not found:
            candidates = self.apps.in_namespace(namespace)
            if len(candidates) == 1:
                found = next(iter(candidates))
        with self._lock:
            self.cache[uid] = found
            if len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return found


class EventWatch:
    """Warning events, cluster-wide or in the given namespaces (one watch each), as signals."""

    def __init__(
        self,
        api_client: Any,
        correlator: Correlator,
        emit: Callable[[list[Signal]], None],
        *,
        namespaces: tuple[str, ...] = (),
        reasons: frozenset[str] = ALERT_REASONS,
        timeout_seconds: int = 300,
        page_size: int = 500,
        seen_size: int = 50000,
        backoff: Backoff | None = None,
        cluster: str = "",
    ) -> None:
        """``emit`` is called on the event loop. Start with ``start()`` from a running loop.
        ``cluster`` names the watched cluster in logs and /readyz ("" with only one)."""
        from kubernetes import client as k8s

        self.core: Any = k8s.CoreV1Api(api_client)
        self.correlator = correlator
        self.emit = emit
        self.namespaces = tuple(namespaces)
        self.cluster = cluster
        self.reasons = reasons
        self.timeout_seconds = timeout_seconds
        self.page_size = page_size
        self.seen: OrderedDict[str, int] = OrderedDict()  # event uid -> count already counted
        self.seen_size = seen_size
        self.backoff = backoff or Backoff()
        self.events = 0
        self.stats: dict[str, kube_watch.Stats] = {}
        self.problems: dict[str, str] = {}  # namespace ("" = all) -> the failure last logged
        self.ready = threading.Event()  # every watch has listed once
        self._primed: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def lists(self) -> int:
        return sum(s.lists for s in self.stats.values())

    @property
    def watches(self) -> int:
        return sum(s.watches for s in self.stats.values())

    @property
    def failing(self) -> str | None:
        """Why a watch is broken, until it lists again (for /readyz); None when all are fine."""
        return (
            "; ".join(f"{self._where(ns)}: {why}" for ns, why in sorted(self.problems.items()))
            or None
        )

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for namespace in self.namespaces or ("",):
            self.stats[namespace] = kube_watch.Stats()
            name = f"k8s-events:{self.cluster + ':' if self.cluster else ''}{namespace or '*'}"
            self._tasks.append(loop.create_task(self._run(namespace), name=name))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # -- counting -------------------------------------------------------------------------
    def _count(self, ev: dict[str, Any]) -> int:
        series = ev.get("series") or {}
        n = series.get("count") if isinstance(series, dict) else None
        n = n if isinstance(n, int) else ev.get("count")
        return n if isinstance(n, int) and n > 0 else 1

    def _delta(self, ev: dict[str, Any]) -> int:
        uid = str((ev.get("metadata") or {}).get("uid") or "")
        count = self._count(ev)
        before = self.seen.pop(uid, 0)
        self.seen[uid] = max(before, count)
        while len(self.seen) > self.seen_size:
            self.seen.popitem(last=False)
        return max(0, count - before)

    async def handle(self, kind: str, ev: dict[str, Any], *, alert: bool = True) -> Signal | None:
        """Count one change; the signal it causes, if any. ``alert=False`` only records it
        (the first list: what happened before the start is not news)."""
        self.events += 1
        if kind == "DELETED":
            self.seen.pop(str((ev.get("metadata") or {}).get("uid") or ""), None)
            return None
        delta = self._delta(ev)
        if not alert or delta <= 0:
            return None
        if ev.get("type") != "Warning" or ev.get("reason") not in self.reasons:
            return None
        involved = ev.get("involvedObject") or {}
        hit, owner = self.correlator.cached(involved)
        if not hit:  # reads owners from the API: in a worker thread
            owner = await asyncio.to_thread(self.correlator.app_for, involved)
        if owner is None:
            return None
        obj = f"{involved.get('kind', '?')}/{involved.get('name', '?')}"
        return Signal(
            kind="warning",
            app=owner.app,
            instance=owner.instance,
            cluster=owner.cluster,
            source="events",
            namespace=str(involved.get("namespace") or ""),
            event=EventCount(str(ev.get("reason")), obj, str(ev.get("message") or "")[:500], delta),
        )

    # -- the watches ----------------------------------------------------------------------
    def _changes(self, namespace: str) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        args: tuple[str, ...] = (namespace,) if namespace else ()
        fn = (
            self.core.list_namespaced_event
            if namespace
            else self.core.list_event_for_all_namespaces
        )
        return kube_watch.list_and_watch(
            fn,
            *args,
            resource="events",
            namespace=namespace,
            max_timeout=self.timeout_seconds,
            page_size=self.page_size,
            backoff=Backoff(self.backoff.first, self.backoff.cap),
            on_error=lambda e: self._failed(namespace, e),
            stats=self.stats[namespace],
            field_selector="type=Warning",
        )

    async def _run(self, namespace: str) -> None:
        while True:
            try:
                primed = False
                async with contextlib.aclosing(self._changes(namespace)) as changes:
                    async for kind, ev in changes:
                        if kind == kube_watch.SYNCED:
                            primed = True
                            self._synced(namespace)
                            continue
                        signal = await self.handle(kind, ev, alert=primed)
                        if signal is not None:
                            self.emit([signal])
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not the cluster: keep its traceback, keep watching
                log.exception("Kubernetes events watch in %s failed", self._where(namespace))
                await asyncio.sleep(self.backoff.delay())

    def _synced(self, namespace: str) -> None:
        if self.problems.pop(namespace, None) is not None:
            log.info("Kubernetes Warning events in %s: watching again", self._where(namespace))
        self._primed.add(namespace)
        if len(self._primed) == len(self.stats):
            self.ready.set()

    def _failed(self, namespace: str, e: errors.CommandError) -> None:
        """Say once what is wrong (which right is missing, where); then retry quietly."""
        text = str(e)
        if self.problems.get(namespace) == text:
            log.debug("Kubernetes Warning events in %s: still %s", self._where(namespace), text)
            return
        self.problems[namespace] = text
        log.warning(
            "Kubernetes Warning events in %s: %s Retrying with backoff.",
            self._where(namespace),
            text,
        )

    def _where(self, namespace: str) -> str:
        where = f"namespace {namespace}" if namespace else "all namespaces"
        return f"{where} of cluster {self.cluster}" if self.cluster else where
