"""The bot's own eyes: the Argo CD application stream and Kubernetes Warning events.

Why watch when Argo CD Notifications exists: alerts then work without it, and without its
``oncePer`` blind spot (a second Degraded at the same revision sends nothing). Both watches only
turn what they see into ``Signal``s; the incident engine decides what is new, so reconnecting,
re-listing or restarting never re-alerts something already reported.

- ``AppWatch`` (asyncio, the project's Argo CD client): the stream starts with every app as
  ADDED, then changes. Per app it remembers only (health, last failed operation, last successful
  operation), so 5,000 apps cost little memory, and emits a signal only on a change. A failed sync
  counts once the operation is over (``.operation`` is null again): while Argo CD is still
  retrying, nobody is paged for an attempt that may yet succeed.
- ``EventWatch`` (a thread, the official Kubernetes client, which is synchronous): list Warning
  events, then watch from the list's resourceVersion with bookmarks; the server ends a watch at
  ``timeoutSeconds`` and it resumes from the last version seen; 410 Gone (compacted) re-lists and
  emits only what changed meanwhile (new events, higher counts), never what was already seen;
  any other disconnect reconnects with capped exponential backoff. An event repeats by raising its
  ``count``: only the increase is counted. Events are tied to an app by the involved object's
  tracking annotation or instance label, else through its owners (Pod -> ReplicaSet ->
  Deployment), else by the only app deploying to that namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from commands import errors
from commands.apps import FAILED_PHASES, INSTANCE_LABEL, TRACKING_ANNOTATION, Application
from commands.argocd import ArgoCD
from notifiers.alert import EventCount, ResourceProblem
from notifiers.incidents import Signal

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
Emit = Callable[[list[Signal]], Awaitable[None]]


class Backoff:
    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first, self.cap, self.next = first, cap, first

    def reset(self) -> None:
        self.next = self.first

    def delay(self) -> float:
        d = self.next
        self.next = min(self.cap, self.next * 2)
        return float(d * random.uniform(0.8, 1.2))


# -- Argo CD applications ---------------------------------------------------------------------


class _Seen:
    __slots__ = ("failed_op", "health", "namespace", "ok_op")

    def __init__(self, health: str, failed_op: str, ok_op: str, namespace: str) -> None:
        self.health, self.failed_op, self.ok_op = health, failed_op, ok_op
        self.namespace = namespace


def _common(app: Application, ui_url: str) -> dict[str, Any]:
    return {
        "app": app.name,
        "source": "watch",
        "project": app.project,
        "cluster": app.dest_cluster,
        "namespace": app.dest_namespace,
        "url": f"{ui_url}/applications/{app.name}" if ui_url else None,
    }


def _problems(items: Iterable[Any], only: tuple[str, ...] = ()) -> tuple[ResourceProblem, ...]:
    return tuple(
        ResourceProblem(p.kind, p.name, p.namespace, p.status, p.message)
        for p in items
        if not only or p.status in only
    )[:200]


class AppWatch:
    def __init__(
        self, argocd: ArgoCD, emit: Emit, *, ui_url: str = "", backoff: Backoff | None = None
    ) -> None:
        self.argocd = argocd
        self.backoff = backoff or Backoff()
        self.emit = emit
        self.ui_url = ui_url.rstrip("/")
        self.seen: dict[str, _Seen] = {}
        self.by_namespace: dict[str, frozenset[str]] = {}
        self.connects = 0
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what a change means (pure apart from self.seen) -----------------------------------
    def observe(self, kind: str, app: Application) -> list[Signal]:
        name = app.name
        if not name:
            return []
        prev = self.seen.get(name)
        if kind == "DELETED":
            if prev is not None:
                self._index(name, prev.namespace, None)
                del self.seen[name]
            return [Signal(kind="deleted", app=name, source="watch")]
        common = _common(app, self.ui_url)
        state = app.operation_state
        op = str(state.get("startedAt") or "")
        revision = str((state.get("syncResult") or {}).get("revision") or app.revision)
        health = app.health_status
        now = _Seen(
            health,
            prev.failed_op if prev else "",
            prev.ok_op if prev else "",
            app.dest_namespace,
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
                    backoff.reset()
                    batch += self.observe(kind, app)
                    if batch:
                        await self.emit(batch)
                        batch = []
                log.info("Argo CD application stream ended; reconnecting")
            except asyncio.CancelledError:
                raise
            except errors.CommandError as e:
                log.warning("Argo CD application stream: %s", e.user_message)
            except Exception:
                log.exception("Argo CD application stream failed")
            self.connected.clear()
            await asyncio.sleep(backoff.delay())


# -- Kubernetes Warning events ----------------------------------------------------------------


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
            except Exception as e:
                if self._stop.is_set():
                    return
                log.warning("Kubernetes events watch: %s; reconnecting", _short(e))
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


def _short(e: Exception) -> str:
    status = getattr(e, "status", None)
    return f"{type(e).__name__}" + (f" (HTTP {status})" if status else "")
