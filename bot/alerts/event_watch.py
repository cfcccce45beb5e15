"""Watching Kubernetes Warning events: which app they concern, and only what is new.

The official Kubernetes client is synchronous, so ``EventWatch`` runs in a thread and hands
signals to the loop through ``emit``. It lists Warning events, then watches from the list's
resourceVersion with bookmarks; the server ends a watch at ``timeoutSeconds`` and it resumes
from the last version seen; 410 Gone (compacted) re-lists and emits only what changed meanwhile
(new events, higher counts), never what was already seen; any other disconnect reconnects with
capped exponential backoff (``bot.alerts.reconnect``). An event repeats by raising its ``count``: only
the increase is counted.

``Correlator`` ties an event to an Argo CD app by the involved object's tracking annotation or
instance label, else through its owners (Pod -> ReplicaSet -> Deployment), else by the only app
deploying to that namespace (``AppWatch.apps_in``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from bot.alerts.reconnect import Backoff, describe
from commands.argocd.app import INSTANCE_LABEL, TRACKING_ANNOTATION
from notifiers.alert import EventCount
from notifiers.incidents.engine import Signal

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


class Gone(Exception):
    """The watch's resourceVersion was compacted away (HTTP 410)."""


def _app_from_meta(meta: dict[str, Any]) -> str | None:
    tracking = (meta.get("annotations") or {}).get(TRACKING_ANNOTATION)
    if isinstance(tracking, str) and ":" in tracking:
        return tracking.split(":", 1)[0].split("_", 1)[-1] or None
    label = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return label if isinstance(label, str) and label else None


class Correlator:
    """Involved object -> Argo CD app name, cached by the object's uid (or kind/namespace/name):
    a storm of events about the same pods costs one lookup per pod."""

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
        self.apps_in = apps_in
        self.knows = knows
        self.cache: OrderedDict[str, str | None] = OrderedDict()
        self.cache_size = cache_size
        self.lookups = 0

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

    def _accept(self, name: str | None) -> str | None:
        if name and (self.knows is None or self.knows(name)):
            return name
        return None

    def app_for(self, involved: dict[str, Any]) -> str | None:
        namespace = str(involved.get("namespace") or "")
        kind, name = str(involved.get("kind") or ""), str(involved.get("name") or "")
        uid = str(involved.get("uid") or "") or f"{kind}/{namespace}/{name}"
        if uid in self.cache:
            self.cache.move_to_end(uid)
            return self.cache[uid]
        found: str | None = None
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
        if not found and self.apps_in is not None:
            candidates = self.apps_in(namespace)
            if len(candidates) == 1:
                found = next(iter(candidates))
        self.cache[uid] = found
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return found


class EventWatch:
    def __init__(
        self,
        api_client: Any,
        correlator: Correlator,
        emit: Callable[[list[Signal]], None],
        *,
        reasons: frozenset[str] = ALERT_REASONS,
        timeout_seconds: int = 300,
        page_size: int = 500,
        seen_size: int = 50000,
        backoff: Backoff | None = None,
    ) -> None:
        """``emit`` is called from the watch thread (use ``loop.call_soon_threadsafe``)."""
        from kubernetes import client as k8s

        self.core: Any = k8s.CoreV1Api(api_client)
        self.correlator = correlator
        self.emit = emit
        self.reasons = reasons
        self.timeout_seconds = timeout_seconds
        self.page_size = page_size
        self.seen: OrderedDict[str, int] = OrderedDict()  # event uid -> count already counted
        self.seen_size = seen_size
        self.backoff = backoff or Backoff()
        self.resource_version = ""
        self.lists = 0
        self.watches = 0
        self.events = 0
        self.ready = threading.Event()
        self.failing: str | None = None  # why the watch broke, until it is open again (/readyz)
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._run, name="k8s-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown() if hasattr(resp, "shutdown") else resp.close()
        self._thread.join(timeout)

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

    def _signal(self, ev: dict[str, Any], delta: int) -> Signal | None:
        if delta <= 0 or ev.get("type") != "Warning" or ev.get("reason") not in self.reasons:
            return None
        involved = ev.get("involvedObject") or {}
        app = self.correlator.app_for(involved)
        if app is None:
            return None
        obj = f"{involved.get('kind', '?')}/{involved.get('name', '?')}"
        return Signal(
            kind="warning",
            app=app,
            source="events",
            namespace=str(involved.get("namespace") or ""),
            event=EventCount(str(ev.get("reason")), obj, str(ev.get("message") or "")[:500], delta),
        )

    def handle(self, kind: str, ev: dict[str, Any]) -> Signal | None:
        self.events += 1
        if kind == "DELETED":
            self.seen.pop(str((ev.get("metadata") or {}).get("uid") or ""), None)
            return None
        return self._signal(ev, self._delta(ev))

    # -- API ------------------------------------------------------------------------------
    def _pages(self) -> Iterator[tuple[list[dict[str, Any]], str]]:
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"field_selector": "type=Warning", "limit": self.page_size}
            if token:
                kw["_continue"] = token
            resp = self.core.list_event_for_all_namespaces(_preload_content=False, **kw)
            try:
                data = json.loads(resp.data)
            finally:
                resp.release_conn()
            meta = data.get("metadata") or {}
            yield list(data.get("items") or []), str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if not token:
                return

    def relist(self, *, prime: bool) -> None:
        """List Warning events; ``prime`` (first start) records them without alerting."""
        self.lists += 1
        listed: set[str] = set()
        rv = ""
        batch: list[Signal] = []
        for items, page_rv in self._pages():
            rv = page_rv or rv
            for ev in items:
                listed.add(str((ev.get("metadata") or {}).get("uid") or ""))
                delta = self._delta(ev)
                sig = None if prime else self._signal(ev, delta)
                if sig is not None:
                    batch.append(sig)
        for uid in [u for u in self.seen if u not in listed]:
            del self.seen[uid]
        if batch:
            self.emit(batch)
        self.resource_version = rv

    def _watch_once(self) -> None:
        from kubernetes.client.exceptions import ApiException

        self.watches += 1
        try:
            resp = self.core.list_event_for_all_namespaces(
                field_selector="type=Warning",
                watch=True,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.timeout_seconds,
                _preload_content=False,
                _request_timeout=(10, self.timeout_seconds + 30),
            )
        except ApiException as e:
            if e.status == 410:
                raise Gone() from None
            raise
        self._resp = resp
        self.failing = None
        try:
            for line in _lines(resp):
                if self._stop.is_set():
                    return
                msg = json.loads(line)
                kind, obj = msg.get("type"), msg.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = str(rv)
                if kind == "BOOKMARK":
                    continue
                sig = self.handle(str(kind), obj)
                if sig is not None:
                    self.emit([sig])
        finally:
            self._resp = None
            with contextlib.suppress(Exception):
                resp.release_conn()

    def _run(self) -> None:
        backoff = self.backoff
        primed = False
        while not self._stop.is_set():
            try:
                if not primed:
                    self.relist(prime=True)
                    primed = True
                    self.ready.set()
                self._watch_once()
                backoff.reset()
                continue  # the server ended the watch at timeoutSeconds: resume
            except Gone:
                log.info("Kubernetes events: resourceVersion expired (410); re-listing")
                try:
                    self.relist(prime=False)
                    continue
                except Exception as e:
                    log.warning("Kubernetes events: re-list failed: %s", type(e).__name__)
                    self.failing = f"re-list failed: {type(e).__name__}"
            except Exception as e:
                if self._stop.is_set():
                    return
                log.warning("Kubernetes events watch: %s; reconnecting", describe(e))
                self.failing = describe(e)
            self._stop.wait(backoff.delay())


def _lines(resp: Any) -> Iterator[bytes]:
    pending = b""
    for chunk in resp.stream(65536, decode_content=False):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending
