"""A local fake Kubernetes API server for tests that drive the OFFICIAL ``kubernetes`` client.

No real API server can run on the test machines, and the bot depends on behaviour simple mocks
leave out: resourceVersions, list + watch streams that resume, bookmarks, 410 Expired after
compaction, the StatefulSet ``scale`` subresource with its 422, RBAC denials as 403 Status
bodies, a StatefulSet controller that removes and recreates pods one at a time, and the
``pods/exec`` WebSocket channel protocol (``id -u``). It refuses what the real one refuses: lists
page with ``limit``/``continue`` and an expired token is 410 (``kube_list``), creating into a
missing namespace is 404, and patches follow their Content-Type (a strategic merge patch merges
lists by their merge key and is 415 on custom resources; ``kube_patch``). This fake serves all of that over real HTTP
on 127.0.0.1 (``tests.fakes.server.ThreadedServer``) so the code under test uses the same client
calls it makes in a cluster::

    fake = FakeKube().start()
    cfg = kubernetes.client.Configuration(); cfg.host = fake.url
    api = kubernetes.client.ApiClient(cfg)

State lives on the server's loop; the test-facing helpers below hop onto it and back, so tests
can call them from any thread. Every request is recorded in ``fake.requests``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes import kube_access
from tests.fakes import kube_list as kl
from tests.fakes import kube_store as ks
from tests.fakes import kube_workloads as kw
from tests.fakes.common import Served
from tests.fakes.kube_store import ApiError, Obj, Resource
from tests.fakes.server import ThreadedServer

T = TypeVar("T")
PODS = ks.resource("", "pods")
EVENTS = ks.resource("", "events")
NAMESPACES = ks.resource("", "namespaces")
STATEFULSETS = ks.resource("apps", "statefulsets")
LEASES = ks.resource("coordination.k8s.io", "leases")
APPLICATIONS = ks.resource("argoproj.io", "applications")
INSTANCE_LABEL = kw.INSTANCE_LABEL
TRACKING_ANNOTATION = kw.TRACKING_ANNOTATION
SERVICE_ACCOUNT = "system:serviceaccount:argocd-chatops:argocd-chatops"
_CUSTOM_GROUPS = ks.CUSTOM_GROUPS  # list items keep kind/apiVersion only for custom resources
_TRUE = {"true", "1", "yes"}


@dataclass(frozen=True)
class Recorded:
    """One request as the API server saw it."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: Any
    content_type: str

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def params(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]


@dataclass(frozen=True)
class ExecCall:
    namespace: str
    pod: str
    container: str
    command: tuple[str, ...]
    protocol: str | None


def api_client(fake: FakeKube) -> Any:
    """An official-client ApiClient pointed at the fake (what tests hand to the code)."""
    import kubernetes

    cfg = kubernetes.client.Configuration()
    cfg.host = fake.url
    return kubernetes.client.ApiClient(cfg)


class FakeKube(Served):
    def __init__(
        self,
        *,
        pod_delay: float = 0.02,
        bookmark_interval: float = 1.0,
        exec_protocols: tuple[str, ...] = ("v4.channel.k8s.io",),
        default_watch_timeout: float = 1800.0,
        max_page: int | None = None,
    ) -> None:
        self.pod_delay = pod_delay
        self.pager = kl.Pager()
        self.pager.max_page = max_page
        self.bookmark_interval = bookmark_interval
        self.exec_protocols = exec_protocols
        self.default_watch_timeout = default_watch_timeout
        self.store = ks.Store()
        self.requests: list[Recorded] = []
        self.execs: list[ExecCall] = []
        self.default_image_uid = 0  # what `id -u` prints when nothing says otherwise (root)
        self._forbidden: set[tuple[str, str, str | None]] = set()
        # who may do what (tests.fakes.kube_access): asked for every request and access review
        self.allowed: kube_access.Allowed = kube_access.allow_all
        self._exec_uids: dict[str, int] = {}
        self._exec_failures: dict[str, tuple[int, str]] = {}
        self.controller = kw.StatefulSetController(self.store, pod_delay)
        self._sockets: set[web.WebSocketResponse] = set()
        self._background: set[asyncio.Task[None]] = set()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_shutdown.append(self._on_shutdown)
        self.server = ThreadedServer(app)

    # -- lifecycle: start() and url come from Served -----------------------------------------

    def stop(self) -> None:
        if self.server._thread.is_alive():
            self.server.call(self._stop_controllers())
        self.server.stop()

    async def _stop_controllers(self) -> None:
        await self.controller.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _on_shutdown(self, app: web.Application) -> None:
        for w in self.store.watchers:
            w.queue.put_nowait(None)
        for ws in list(self._sockets):
            await ws.close()

    def _on_loop(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self.server.call(run())

    # -- test knobs ------------------------------------------------------------------------------

    def forbid(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """RBAC denial: ``forbid("create", "pods/exec")`` -> 403 Forbidden on that verb."""
        self._forbidden.add((verb, resource, namespace))

    def allow(self, verb: str, resource: str, namespace: str | None = None) -> None:
        self._forbidden.discard((verb, resource, namespace))

    def compact(self) -> None:
        """Drop the watch history: watches from an older resourceVersion get 410 Expired."""
        self._on_loop(self.store.compact)

    def add_namespace(self, name: str) -> None:
        """A namespace exists (test helpers that create objects make theirs on the way)."""
        self._on_loop(lambda: self._ensure_namespace(name))

    def expire_continue_tokens(self, n: int = 1) -> None:
        """The next ``n`` list requests carrying a continue token get 410 Expired, as when
        etcd compacts between two pages (``kube_list``)."""

        def run() -> None:
            self.pager.expire_next += n

        self._on_loop(run)

    def never_ready(self, sts: str) -> None:
        """Pods of this StatefulSet run but their readiness probe keeps failing."""
        self.controller.never_ready.add(sts)
        self._on_loop(self.controller.kick_all)

    def make_ready(self, sts: str) -> None:
        self.controller.never_ready.discard(sts)
        self._on_loop(self.controller.kick_all)

    def add_statefulset(
        self,
        namespace: str,
        name: str,
        *,
        app: str | None = None,
        replicas: int = 1,
        tracking: str = "label",
        containers: list[Obj] | None = None,
        pod_security_context: Obj | None = None,
        template_labels: dict[str, str] | None = None,
        template_annotations: dict[str, str] | None = None,
        settle: bool = True,
    ) -> Obj:
        """Create ``kube_workloads.statefulset(...)``. With ``settle`` its pods already exist,
        Running and Ready (unless ``never_ready``), as for a workload up for a while."""
        sts = kw.statefulset(
            namespace,
            name,
            app=app,
            replicas=replicas,
            tracking=tracking,
            containers=containers,
            pod_security_context=pod_security_context,
            template_labels=template_labels,
            template_annotations=template_annotations,
        )

        async def create() -> Obj:
            self._ensure_namespace(namespace)
            self.store.create(STATEFULSETS, namespace, sts)
            if settle:
                await self.controller.reconcile(namespace, name, 0.0)
            else:
                self.controller.kick(namespace, name)
            return self.store.get(STATEFULSETS, namespace, name)

        return self.server.call(create())

    def report_uid(self, pod_or_sts: str, container: str, uid: int) -> None:
        """The kubelet reports ``status.containerStatuses[].user.linux.uid`` for this container."""
        self.controller.status_uids[(pod_or_sts, container)] = uid
        self._on_loop(self.controller.kick_all)

    def exec_uid(self, container: str, uid: int) -> None:
        """What ``id -u`` prints in containers with this name."""
        self._exec_uids[container] = uid

    def exec_fails(
        self,
        container: str,
        *,
        exit_code: int = 126,
        stderr: str = "OCI runtime exec failed: exec failed: unable to start container process: "
        'exec: "id": executable file not found in $PATH: unknown',
    ) -> None:
        """Commands in containers with this name fail (a distroless image has no ``id``)."""
        self._exec_failures[container] = (exit_code, stderr)

    def exec_works(self, container: str) -> None:
        """Undo ``exec_fails``."""
        self._exec_failures.pop(container, None)

    def add_pod(self, namespace: str, pod: Obj, *, ready: bool = True) -> Obj:
        """A pod not managed by a StatefulSet (a Deployment's, a Job's), Running."""

        def create() -> Obj:
            self._ensure_namespace(namespace)
            created = self.store.create(PODS, namespace, pod)
            name = created["metadata"]["name"]
            return self.store.update(
                PODS, namespace, name, lambda p: p.update(status=self.controller.running(p, ready))
            )

        return self._on_loop(create)

    def add_event(
        self,
        namespace: str,
        *,
        involved: Obj,
        reason: str,
        message: str,
        type: str = "Warning",
        count: int = 1,
        name: str | None = None,
        component: str = "kubelet",
    ) -> Obj:
        """A core/v1 Event about ``involved`` ({kind, name[, namespace, uid, apiVersion]})."""
        obj = dict(involved)
        obj.setdefault("namespace", namespace)
        stamp = ks.now()
        event: Obj = {
            "metadata": {"name": name or f"{obj['name']}.{uuid.uuid4().hex[:16]}"},
            "involvedObject": obj,
            "reason": reason,
            "message": message,
            "type": type,
            "count": count,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": "fake-node-1",
        }

        def create() -> Obj:
            self._ensure_namespace(namespace)
            return self.store.create(EVENTS, namespace, event)

        return self._on_loop(create)

    def repeat_event(self, namespace: str, name: str, *, message: str | None = None) -> Obj:
        """The same problem again: ``count`` goes up, ``lastTimestamp`` moves."""

        def bump(ev: Obj) -> None:
            ev["count"] = int(ev.get("count", 1)) + 1
            ev["lastTimestamp"] = ks.now()
            if message is not None:
                ev["message"] = message

        return self._on_loop(lambda: self.store.update(EVENTS, namespace, name, bump))

    def create(self, group: str, plural: str, namespace: str, obj: Obj) -> Obj:
        """Create any stored kind (Applications, Leases, ...) as a client would."""

        def run() -> Obj:
            self._ensure_namespace(namespace)
            return self.store.create(ks.resource(group, plural), namespace, obj)

        return self._on_loop(run)

    def update(
        self, group: str, plural: str, namespace: str, name: str, mutate: Callable[[Obj], None]
    ) -> Obj:
        """Change a stored object in place (a controller or another user did it)."""
        res = ks.resource(group, plural)

        def run() -> Obj:
            obj = self.store.update(res, namespace, name, mutate)
            if res == STATEFULSETS:
                self.controller.kick(namespace, name)
            return obj

        return self._on_loop(run)

    def get(self, group: str, plural: str, namespace: str, name: str) -> Obj | None:
        return self._on_loop(lambda: self.store.find(ks.resource(group, plural), namespace, name))

    def list(self, group: str, plural: str, namespace: str | None = None) -> list[Obj]:
        return self._on_loop(lambda: self.store.list(ks.resource(group, plural), namespace))

    def pod_names(self, namespace: str) -> list[str]:
        return [p["metadata"]["name"] for p in self.list("", "pods", namespace)]

    def requests_to(self, method: str, path_part: str) -> list[Recorded]:
        return [r for r in list(self.requests) if r.method == method and path_part in r.path]

    @property
    def resource_version(self) -> int:
        return self._on_loop(lambda: self.store.rv)

    # -- HTTP dispatch ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read() if request.can_read_body else b""
        ctype = request.headers.get("Content-Type", "")
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        query = tuple(parse_qsl(request.query_string, keep_blank_values=True))
        self.requests.append(Recorded(request.method, request.path, query, body, ctype))
        try:
            return await self._route(request, body, ctype)
        except ApiError as e:
            return web.json_response(e.status(), status=e.code)

    async def _route(self, request: web.Request, body: Any, ctype: str) -> web.StreamResponse:
        segs = [s for s in request.path.split("/") if s]
        if segs == ["version"]:
            return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake"})
        if len(segs) >= 2 and segs[0] == "api":
            group, rest = "", segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group, rest = segs[1], segs[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if group == "authorization.k8s.io" and rest == ["selfsubjectaccessreviews"]:
            return self._access_review(body)
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        res = ks.RESOURCES.get((group, rest[0])) if rest else None
        if res is None or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        method = request.method
        watching = request.query.get("watch", "").lower() in _TRUE
        verb = {
            "GET": "get" if name else ("watch" if watching else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method)
        if sub == "exec":
            verb = "create"  # websocket exec needs create on pods/exec (Kubernetes >= 1.30)
        if verb is None:
            raise ApiError(
                405, "MethodNotAllowed", f"the server does not allow this method on {res.plural}"
            )
        self._authorize(verb, res, sub, namespace, name)
        ns = namespace or ""
        if name is None:
            if method == "GET":
                if watching:
                    return await self._watch(request, res, namespace)
                return self._list(request, res, namespace)
            if method == "POST" and (namespace or not res.namespaced):
                self._namespace_exists(res, ns)
                return self._created(res, ns, body)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        if sub == "exec" and res == PODS:
            return await self._exec(request, ns, name)
        if sub == "scale" and res == STATEFULSETS:
            return web.json_response(self._scale(method, ns, name, body, ctype))
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            return web.json_response(self.store.get(res, ns, name))
        if method == "PUT":
            self._validate(res, name, body if isinstance(body, dict) else {})
            obj = self.store.replace(res, ns, name, body, status=sub == "status")
        elif method == "PATCH":
            obj = self.store.patch(res, ns, name, body, ctype, status=sub == "status")
            self._validate(res, name, obj)
        elif method == "DELETE":
            return web.json_response(self._delete(res, ns, name))
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        if res == STATEFULSETS:
            self.controller.kick(ns, name)
        return web.json_response(obj)

    def _authorize(
        self, verb: str, res: Resource, sub: str | None, ns: str | None, name: str | None
    ) -> None:
        what = f"{res.plural}/{sub}" if sub else res.plural
        if not self._denied(verb, what, ns) and self.allowed(
            verb, res.group, res.plural, sub or "", ns
        ):
            return
        where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
        subject = f'{res.qualified} "{name}"' if name else res.qualified
        raise ApiError(
            403,
            "Forbidden",
            f'{subject} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource '
            f'"{what}" in API group "{res.group}" {where}',
            {"name": name or "", "group": res.group, "kind": res.plural},
        )

    def _denied(self, verb: str, what: str, ns: str | None) -> bool:
        return any((v, what, n) in self._forbidden for v in (verb, "*") for n in (None, ns))

    def _access_review(self, body: Any) -> web.Response:
        def allowed(verb: str, group: str, resource: str, sub: str, ns: str | None) -> bool:
            what = f"{resource}/{sub}" if sub else resource
            return not self._denied(verb, what, ns) and self.allowed(verb, group, resource, sub, ns)

        return web.json_response(kube_access.review(body, allowed), status=201)

    def _list(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        labels = ks.label_selector(request.query.get("labelSelector"))
        fields = ks.field_selector(res, request.query.get("fieldSelector"))
        items, rv, extra = self.pager.page(
            dict(request.query),
            f"{res.qualified}/{namespace or ''}",
            lambda: self.store.list(res, namespace, labels, fields),
            self.store.rv,
            self.store.compacted,
        )
        if res.group not in _CUSTOM_GROUPS:
            for item in items:  # the API server leaves these out of built-in list items
                item.pop("kind", None)
                item.pop("apiVersion", None)
        return web.json_response(
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(rv), **extra},
                "items": items,
            }
        )

    def _created(self, res: Resource, ns: str, body: Any) -> web.Response:
        if not isinstance(body, dict):
            raise ks.bad_request("the body of the request must be a JSON object")
        name = (body.get("metadata") or {}).get("name", "")
        self._validate(res, name, body)
        obj = self.store.create(res, ns, body)
        if res == STATEFULSETS:
            self.controller.kick(ns, obj["metadata"]["name"])
        return web.json_response(obj, status=201)

    def _validate(self, res: Resource, name: str, obj: Obj) -> None:
        if res != STATEFULSETS:
            return
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            raise ks.invalid(
                "StatefulSet",
                "apps",
                name,
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )

    def _delete(self, res: Resource, ns: str, name: str) -> Obj:
        if res == PODS:  # graceful: terminating now, gone a moment later, owner notices
            pod = self.store.update(
                PODS, ns, name, lambda p: p["metadata"].setdefault("deletionTimestamp", ks.now())
            )
            task = asyncio.get_running_loop().create_task(self._remove_pod(ns, name))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return pod
        obj = self.store.delete(res, ns, name)
        if res == STATEFULSETS:
            self.controller.kick(ns, name)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": res.group,
                "kind": res.plural,
                "uid": obj["metadata"]["uid"],
            },
        }

    async def _remove_pod(self, ns: str, name: str) -> None:
        await asyncio.sleep(self.pod_delay)
        pod = self.store.find(PODS, ns, name)
        if pod is None:
            return
        self.store.delete(PODS, ns, name)
        for owner in pod["metadata"].get("ownerReferences", []):
            if owner.get("kind") == "StatefulSet":
                self.controller.kick(ns, owner["name"])

    def _namespace_exists(self, res: Resource, ns: str) -> None:
        """Creating into a namespace that does not exist is 404 (the NamespaceLifecycle
        admission plugin, on by default: "objects cannot be created in non-existent
        namespaces"); the Status names the namespace, not the object."""
        if res.namespaced and self.store.find(NAMESPACES, "", ns) is None:
            raise ks.not_found(NAMESPACES, ns)

    def _ensure_namespace(self, ns: str) -> None:
        if ns and self.store.find(NAMESPACES, "", ns) is None:
            self.store.create(
                NAMESPACES,
                "",
                {
                    "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                },
            )

    # -- watch -----------------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, res: Resource, namespace: str | None
    ) -> web.StreamResponse:
        q = request.query
        labels = ks.label_selector(q.get("labelSelector"))
        fields = ks.field_selector(res, q.get("fieldSelector"))
        raw_rv = q.get("resourceVersion", "")
        try:
            from_rv = int(raw_rv) if raw_rv not in ("", "0") else None
        except ValueError:
            raise ks.bad_request(f'resourceVersion: Invalid value: "{raw_rv}"') from None
        timeout = float(q.get("timeoutSeconds") or self.default_watch_timeout)
        bookmarks = q.get("allowWatchBookmarks", "").lower() in _TRUE
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def send(event: Obj) -> None:
            await resp.write(json.dumps(event).encode() + b"\n")

        if from_rv is not None and from_rv < self.store.compacted:
            status = ApiError(
                410, "Expired", f"too old resource version: {from_rv} ({self.store.compacted})"
            ).status()
            await send({"type": "ERROR", "object": status})
            return resp
        watcher = self.store.watch(res, namespace, labels, fields, from_rv)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while (left := deadline - loop.time()) > 0:
                wait = min(left, self.bookmark_interval) if bookmarks else left
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and watcher.queue.empty() and deadline > loop.time():
                        meta = {"resourceVersion": str(self.store.rv)}
                        obj = {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}
                        await send({"type": "BOOKMARK", "object": obj})
                    continue
                if event is None:  # server shutting down
                    break
                await send(event)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away (Watch.stop())
        finally:
            self.store.unwatch(watcher)
        return resp

    # -- scale subresource -----------------------------------------------------------------------

    def _scale_of(self, sts: Obj) -> Obj:
        meta = sts["metadata"]
        selector = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": sts["spec"].get("replicas", 1)},
            "status": {
                "replicas": (sts.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            },
        }

    def _scale(self, method: str, ns: str, name: str, body: Any, ctype: str) -> Obj:
        sts = self.store.get(STATEFULSETS, ns, name)
        scale = self._scale_of(sts)
        if method == "GET":
            return scale
        if method == "PUT":
            wanted = body if isinstance(body, dict) else {}
            sent_rv = (wanted.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != sts["metadata"]["resourceVersion"]:
                raise ks.conflict(STATEFULSETS, name)
        elif method == "PATCH":
            wanted = ks.apply_patch(scale, body, ctype, STATEFULSETS)
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        replicas = (wanted.get("spec") or {}).get("replicas", 0)
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise ks.bad_request(
                "json: cannot unmarshal into Go struct field ScaleSpec.spec.replicas of type int32"
            )
        if replicas < 0:
            raise ks.invalid(
                "Scale",
                "autoscaling",
                name,
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )
        updated = self.store.update(
            STATEFULSETS, ns, name, lambda o: o["spec"].__setitem__("replicas", replicas)
        )
        self.controller.kick(ns, name)
        return self._scale_of(updated)

    # -- pods/exec -------------------------------------------------------------------------------

    async def _exec(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        pod = self.store.get(PODS, ns, name)
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        container = request.query.get("container") or (
            containers[0] if len(containers) == 1 else ""
        )
        if not container:
            raise ks.bad_request(
                f"a container name must be specified for pod {name}, choose one of: {containers}"
            )
        if container not in containers:
            raise ks.bad_request(f"container {container} is not valid for pod {name}")
        if (pod.get("status") or {}).get("phase") != "Running":
            raise ks.bad_request(f"unable to upgrade connection: pod {name} is not running")
        ws = web.WebSocketResponse(protocols=self.exec_protocols)
        if not ws.can_prepare(request).ok:
            raise ks.bad_request("Upgrade request required")
        await ws.prepare(request)
        self._sockets.add(ws)
        command = tuple(request.query.getall("command", []))
        self.execs.append(ExecCall(ns, name, container, command, ws.ws_protocol))
        try:
            stdout, stderr, code = self._run(pod, container, command)
            if stdout and request.query.get("stdout", "").lower() in _TRUE:
                await ws.send_bytes(b"\x01" + stdout.encode())
            if stderr and request.query.get("stderr", "").lower() in _TRUE:
                await ws.send_bytes(b"\x02" + stderr.encode())
            await ws.send_bytes(b"\x03" + json.dumps(_exit_status(command, code)).encode())
            await ws.close()  # waits for the client's close frame
        finally:
            self._sockets.discard(ws)
        return ws

    def _run(self, pod: Obj, container: str, command: tuple[str, ...]) -> tuple[str, str, int]:
        if container in self._exec_failures:
            code, err = self._exec_failures[container]
            return "", err + "\n", code
        if command[:1] != ("id",):
            return "", f'exec: "{command[0] if command else ""}": not supported by the fake\n', 127
        uid = self._effective_uid(pod, container)
        if command[1:] == ("-u",):
            return f"{uid}\n", "", 0
        if command[1:] == ("-g",):
            return f"{uid}\n", "", 0
        return f"uid={uid} gid={uid}\n", "", 0

    def _effective_uid(self, pod: Obj, container: str) -> int:
        if container in self._exec_uids:
            return self._exec_uids[container]
        for cs in (pod.get("status") or {}).get("containerStatuses", []):
            uid = ((cs.get("user") or {}).get("linux") or {}).get("uid")
            if cs.get("name") == container and uid is not None:
                return int(uid)
        spec = pod["spec"]
        c = next(c for c in spec.get("containers", []) if c["name"] == container)
        for ctx in (c.get("securityContext") or {}, spec.get("securityContext") or {}):
            if ctx.get("runAsUser") is not None:
                return int(ctx["runAsUser"])
        return self.default_image_uid


def _exit_status(command: tuple[str, ...], code: int) -> Obj:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }
