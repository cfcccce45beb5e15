"""The object store behind the fake Kubernetes API server (tests/fakes/kube_api.py).

It keeps the semantics the bot relies on and that simpler in-memory fakes drop: one global
integer resourceVersion bumped on every write, a bounded change history that watches replay from
a given resourceVersion, compaction (a watch from before it is answered with 410 Expired),
label and field selectors evaluated like the API server (an object that stops matching a watch's
selector is reported as DELETED), the three patch formats (``kube_patch``), and Status error
bodies.

Everything here runs on the fake server's event loop; nothing is thread-safe on purpose.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import kube_patch as kp

Obj = dict[str, Any]
CUSTOM_GROUPS = {"argoproj.io"}  # served from CRDs: no strategic merge patch


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = True
    field_labels: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return self.version if not self.group else f"{self.group}/{self.version}"

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: ``statefulsets.apps``."""
        return self.plural if not self.group else f"{self.plural}.{self.group}"


_META_FIELDS = ("metadata.name", "metadata.namespace")
RESOURCES: dict[tuple[str, str], Resource] = {
    (r.group, r.plural): r
    for r in (
        Resource(
            "",
            "v1",
            "pods",
            "Pod",
            field_labels=(
                "status.phase",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.podIP",
            ),
        ),
        Resource(
            "",
            "v1",
            "events",
            "Event",
            status_subresource=False,
            field_labels=(
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ),
        ),
        Resource(
            "", "v1", "namespaces", "Namespace", namespaced=False, field_labels=("status.phase",)
        ),
        Resource("apps", "v1", "statefulsets", "StatefulSet"),
        Resource("coordination.k8s.io", "v1", "leases", "Lease", status_subresource=False),
        # Argo CD's Application CRD declares `subresources: {}`: status is written with the object.
        Resource(
            "argoproj.io", "v1alpha1", "applications", "Application", status_subresource=False
        ),
    )
}


def resource(group: str, plural: str) -> Resource:
    return RESOURCES[(group, plural)]


class ApiError(Exception):
    """An API failure answered as a ``Status`` object with the matching HTTP code."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{res.qualified} "{name}" not found',
        {"name": name, "group": res.group, "kind": res.plural},
    )


def conflict(res: Resource, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": res.group, "kind": res.plural},
    )


def invalid(kind: str, group: str, name: str, field_path: str, value: Any, why: str) -> ApiError:
    qualified = kind if not group else f"{kind}.{group}"
    cause = f"Invalid value: {json.dumps(value)}: {why}"
    return ApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {field_path}: {cause}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": field_path}],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- selectors ---------------------------------------------------------------------------------

Predicate = Callable[[Obj], bool]
_SET_REQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP_REQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS_REQ = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def label_selector(text: str | None) -> Predicate:
    """``a=b,c!=d,e in (x,y),f notin (z),g,!h`` evaluated on ``metadata.labels``."""
    if not text:
        return lambda obj: True
    checks: list[Callable[[dict[str, str]], bool]] = []
    for req in _split_top_level(text):
        if m := _SET_REQ.match(req):
            key, op, raw = m.group(1), m.group(2), m.group(3)
            values = {v.strip() for v in raw.split(",") if v.strip()}
            if op == "in":
                checks.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                checks.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif m := _CMP_REQ.match(req):
            key, op, value = m.group(1), m.group(2), m.group(3)
            if op == "!=":
                checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                checks.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif m := _EXISTS_REQ.match(req):
            neg, key = m.group(1), m.group(2)
            if neg:
                checks.append(lambda lb, k=key: k not in lb)
            else:
                checks.append(lambda lb, k=key: k in lb)
        else:
            raise bad_request(f"unable to parse requirement: {req.strip()!r}")

    def match(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(c(labels) for c in checks)

    return match


def _field(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, dict):  # events: source -> source.component
        return str(cur.get("component", ""))
    return str(cur)


def field_selector(res: Resource, text: str | None) -> Predicate:
    if not text:
        return lambda obj: True
    checks: list[Predicate] = []
    for req in _split_top_level(text):
        m = _CMP_REQ.match(req)
        if not m:
            raise bad_request(f"invalid selector: {text!r}; can't understand {req.strip()!r}")
        path, op, value = m.group(1), m.group(2), m.group(3)
        if path not in _META_FIELDS and path not in res.field_labels:
            raise bad_request(f'field label not supported: "{path}"')
        if op == "!=":
            checks.append(lambda o, p=path, v=value: _field(o, p) != v)
        else:
            checks.append(lambda o, p=path, v=value: _field(o, p) == v)
    return lambda obj: all(c(obj) for c in checks)


# -- patches (tests/fakes/kube_patch.py) ------------------------------------------------------


def apply_patch(doc: Obj, body: Any, content_type: str, res: Resource) -> Obj:
    """``kube_patch.apply`` with its failures as Status errors."""
    try:
        return kp.apply(doc, body, content_type, custom=res.group in CUSTOM_GROUPS)
    except kp.PatchError as e:
        raise ApiError(e.code, e.reason, e.message) from None


# -- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    rv: int
    res: Resource
    namespace: str
    name: str
    type: str  # ADDED | MODIFIED | DELETED
    old: Obj | None
    new: Obj


@dataclass
class Watcher:
    res: Resource
    namespace: str | None
    labels: Predicate
    fields: Predicate
    queue: asyncio.Queue[Obj | None] = field(default_factory=asyncio.Queue)

    def offer(self, change: Change) -> None:
        if change.res != self.res or (self.namespace and change.namespace != self.namespace):
            return
        was = change.old is not None and self._matches(change.old)
        now_ = change.type != "DELETED" and self._matches(change.new)
        if change.type == "DELETED":
            kind = "DELETED" if was or self._matches(change.new) else None
        elif was and now_:
            kind = "MODIFIED"
        elif now_:
            kind = "ADDED"
        elif was:
            kind = "DELETED"  # left the selector: the API server reports it as deleted
        else:
            kind = None
        if kind:
            self.queue.put_nowait({"type": kind, "object": copy.deepcopy(change.new)})

    def _matches(self, obj: Obj) -> bool:
        return self.labels(obj) and self.fields(obj)


class Store:
    def __init__(self, max_history: int = 5000) -> None:
        self.rv = 0
        self.objects: dict[tuple[Resource, str, str], Obj] = {}
        self.history: deque[Change] = deque()
        self.compacted = 0
        self.max_history = max_history
        self.watchers: list[Watcher] = []

    # reads

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        obj = self.objects.get((res, namespace, name))
        if obj is None:
            raise not_found(res, name)
        return copy.deepcopy(obj)

    def find(self, res: Resource, namespace: str, name: str) -> Obj | None:
        obj = self.objects.get((res, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        res: Resource,
        namespace: str | None,
        labels: Predicate = lambda o: True,
        fields: Predicate = lambda o: True,
    ) -> list[Obj]:
        items = [
            copy.deepcopy(obj)
            for (r, ns, _), obj in sorted(self.objects.items(), key=lambda kv: kv[0][1:])
            if r == res and (not namespace or ns == namespace) and labels(obj) and fields(obj)
        ]
        return items

    # writes

    def create(self, res: Resource, namespace: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if not name:
            raise ApiError(
                422,
                "Invalid",
                f"{res.kind} in version {res.version!r} cannot be handled as a {res.kind}: "
                "metadata.name: Required value: name or generateName is required",
            )
        key = (res, namespace if res.namespaced else "", name)
        if key in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{res.qualified} "{name}" already exists',
                {"name": name, "group": res.group, "kind": res.plural},
            )
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        if res.namespaced:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if "spec" in obj:
            meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        return self._commit(res, key, "ADDED", None, obj)

    def replace(self, res: Resource, namespace: str, name: str, obj: Obj, *, status: bool) -> Obj:
        """PUT: ``status`` True for the /status subresource (only status changes)."""
        key = (res, namespace if res.namespaced else "", name)
        old = self.objects.get(key)
        if old is None:
            raise not_found(res, name)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the URL")
        if status:
            new = copy.deepcopy(old)
            new["status"] = obj.get("status", {})
        else:
            new = {k: v for k, v in obj.items() if k != "metadata"}
            new["apiVersion"], new["kind"] = res.api_version, res.kind
            if res.status_subresource:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            new["metadata"] = _keep_system_meta(old["metadata"], meta)
        return self._write(res, key, old, new)

    def patch(
        self,
        res: Resource,
        namespace: str,
        name: str,
        body: Any,
        content_type: str,
        *,
        status: bool,
    ) -> Obj:
        key = (res, namespace if res.namespaced else "", name)
        old = self.objects.get(key)
        if old is None:
            raise not_found(res, name)
        patched = apply_patch(old, body, content_type, res)
        if isinstance(body, dict):
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
        new = copy.deepcopy(old)
        if status and res.status_subresource:
            new["status"] = patched.get("status", {})
        elif res.status_subresource:
            new.update({k: v for k, v in patched.items() if k not in ("status", "metadata")})
            for k in set(new) - set(patched) - {"status", "metadata"}:
                del new[k]
            new["metadata"] = _keep_system_meta(old["metadata"], patched.get("metadata", {}))
        else:
            new = patched
            new["metadata"] = _keep_system_meta(old["metadata"], patched.get("metadata", {}))
        return self._write(res, key, old, new)

    def update(
        self, res: Resource, namespace: str, name: str, mutate: Callable[[Obj], None]
    ) -> Obj:
        """An internal write (controllers): mutate a copy, commit if anything changed."""
        key = (res, namespace if res.namespaced else "", name)
        old = self.objects.get(key)
        if old is None:
            raise not_found(res, name)
        new = copy.deepcopy(old)
        mutate(new)
        return self._write(res, key, old, new)

    def delete(self, res: Resource, namespace: str, name: str) -> Obj:
        key = (res, namespace if res.namespaced else "", name)
        old = self.objects.get(key)
        if old is None:
            raise not_found(res, name)
        self.rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        del self.objects[key]
        self._record(Change(self.rv, res, key[1], name, "DELETED", old, gone))
        return copy.deepcopy(gone)

    def _write(self, res: Resource, key: tuple[Resource, str, str], old: Obj, new: Obj) -> Obj:
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return copy.deepcopy(old)  # a no-op write does not bump the resourceVersion
        if "spec" in new and new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        return self._commit(res, key, "MODIFIED", old, new)

    def _commit(
        self, res: Resource, key: tuple[Resource, str, str], kind: str, old: Obj | None, new: Obj
    ) -> Obj:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = new
        self._record(Change(self.rv, res, key[1], key[2], kind, old, copy.deepcopy(new)))
        return copy.deepcopy(new)

    def _record(self, change: Change) -> None:
        self.history.append(change)
        while len(self.history) > self.max_history:
            self.compacted = self.history.popleft().rv
        for w in list(self.watchers):
            w.offer(change)

    # watches

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        labels: Predicate,
        fields: Predicate,
        from_rv: int | None,
    ) -> Watcher:
        """Register a watcher whose queue already holds what happened after ``from_rv``
        (or, without one, synthetic ADDED events for the current state)."""
        w = Watcher(res, namespace, labels, fields)
        if from_rv is None:
            for obj in self.list(res, namespace, labels, fields):
                w.queue.put_nowait({"type": "ADDED", "object": obj})
        else:
            for change in self.history:
                if change.rv > from_rv:
                    w.offer(change)
        self.watchers.append(w)
        return w

    def unwatch(self, w: Watcher) -> None:
        if w in self.watchers:
            self.watchers.remove(w)

    def compact(self) -> None:
        """Drop the history like etcd compaction: older resourceVersions become 410 Expired."""
        self.history.clear()
        self.compacted = self.rv


def _keep_system_meta(old: Obj, sent: Obj) -> Obj:
    meta = dict(sent)
    for k in ("uid", "creationTimestamp", "namespace", "name", "generation", "resourceVersion"):
        if k in old:
            meta[k] = old[k]
        else:
            meta.pop(k, None)
    if "deletionTimestamp" in old:
        meta["deletionTimestamp"] = old["deletionTimestamp"]
    return meta
