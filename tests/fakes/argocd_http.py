"""argocd-server's HTTP surface for the fake: routes, wire rules, error bodies.

The rules here are the ones the real server enforces before any handler runs and that clients
most often get wrong: every non-GET needs exactly ``Content-Type: application/json`` (checked
before auth, answered 415 in plain text); a Bearer token (401 with a gRPC-style body);
request bodies decoded as Go decodes them and checked against the upstream swagger (400); a
missing app answering 403 "permission denied" unless ``project`` is given (then 404). Every
request is recorded first, and injected failures answer before anything else.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes import argocd_fixtures as fx
from tests.fakes.argocd_contract import application_errors, drop_nulls, request_errors
from tests.fakes.argocd_patch import json_patch, merge_patch, parse_selector
from tests.fakes.argocd_state import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PERMISSION_DENIED,
    ApiError,
    App,
    ArgoState,
    Subscriber,
)

# gRPC code -> HTTP status, as grpc-gateway maps them (runtime.HTTPStatusFromCode).
HTTP_STATUS = {
    1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip
# HTTP status -> the gRPC code argocd-server would most plausibly have returned it for.
GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 2, 501: 12, 503: 14, 504: 4}
UNAUTHENTICATED = 16


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it. ``query`` has the first value of each parameter,
    ``query_all`` every value; ``headers`` is case-insensitive; ``json`` is None when the body
    is empty or not JSON."""

    method: str
    path: str
    query: dict[str, str]
    query_all: dict[str, list[str]]
    headers: CIMultiDict[str]
    json: Any
    body: bytes


@dataclass
class Failure:
    remaining: int
    status: int
    message: str
    code: int
    method: str | None
    path: str | None
    raw: bool

    def matches(self, request: web.Request) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method.upper() == request.method)
            and (self.path is None or self.path in request.path)
        )


HTTP_STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                    500: "Internal Server Error", 503: "Service Unavailable",
                    504: "Gateway Timeout"}  # fmt: skip
REFRESH_DEADLINE_MESSAGE = "application refresh deadline exceeded"


def stream_error(grpc_code: int, message: str) -> dict[str, Any]:
    """The frame grpc-gateway (v1, as argocd-server uses) writes when a server stream fails:
    ``{"error": {grpc_code, http_code, message, http_status, details}}`` (its
    ``runtime.StreamError``; the swagger's ``runtimeStreamError``). Mid-stream it arrives as one
    more line of the 200 response, and the stream ends."""
    http_code = HTTP_STATUS.get(grpc_code, 500)
    return {
        "error": {
            "grpc_code": grpc_code,
            "http_code": http_code,
            "message": message,
            "http_status": HTTP_STATUS_TEXT.get(http_code, "Internal Server Error"),
            "details": [],
        }
    }


def _grpc_timeout(value: str) -> float | None:
    """grpc-gateway turns a ``Grpc-Timeout`` header ("10S", "500m", "2M") into the call's
    context deadline."""
    units = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    if len(value) < 2 or value[-1] not in units or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * units[value[-1]]


def _error(code: int, message: str) -> web.Response:
    body = {"error": message, "code": code, "message": message}
    return web.json_response(body, status=HTTP_STATUS.get(code, 500))


@dataclass
class ArgoHttp:
    """The aiohttp side. Handlers run on the fake's loop, so they touch ``state`` directly."""

    state: ArgoState
    token: str
    strict: bool
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    sse_keepalive: float = 15.0
    # How long a GET ?refresh= waits for the controller before argocd-server gives up with
    # "application refresh deadline exceeded" (server/application/application.go, Get: the
    # request context ends). That context ends with the client's Grpc-Timeout, or when the
    # proxy in front of argocd-server stops waiting (nginx ingress proxy-read-timeout: 60 s).
    refresh_deadline: float | None = 60.0
    # Requests being handled right now and the most at once, calls and streams apart: how
    # many connections a client really keeps busy, as the server sees it.
    in_flight: dict[str, int] = field(default_factory=lambda: {"calls": 0, "streams": 0})
    busiest: dict[str, int] = field(default_factory=lambda: {"calls": 0, "streams": 0})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/api/v1/applications", self.list_apps)
        r.add_get("/api/v1/applications/{name}", self.get_app)
        r.add_patch("/api/v1/applications/{name}", self.patch_app)
        r.add_post("/api/v1/applications/{name}/sync", self.sync)
        r.add_post("/api/v1/applications/{name}/rollback", self.rollback)
        r.add_delete("/api/v1/applications/{name}/operation", self.terminate)
        r.add_get("/api/v1/applications/{applicationName}/resource-tree", self.resource_tree)
        r.add_get("/api/v1/stream/applications", self.stream)
        return app

    # -- cross-cutting: record, injected failures, content type, auth ----------------------
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        kind = "streams" if request.path.startswith("/api/v1/stream/") else "calls"
        self.in_flight[kind] += 1
        self.busiest[kind] = max(self.busiest[kind], self.in_flight[kind])
        try:
            return await self._handle(request, handler)
        finally:
            self.in_flight[kind] -= 1

    async def _handle(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        query_all: dict[str, list[str]] = {}
        for k, v in request.query.items():
            query_all.setdefault(k, []).append(v)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query={k: v[0] for k, v in query_all.items()},
                query_all=query_all,
                headers=CIMultiDict(request.headers),
                json=parsed,
                body=body,
            )
        )
        failure = next((f for f in self.failures if f.matches(request)), None)
        if failure is not None:
            failure.remaining -= 1
            if failure.raw:
                return web.Response(status=failure.status, text=failure.message)
            return _error(failure.code, failure.message)
        if request.method != "GET":
            # argocd-server's enforceContentTypes: exact match (case-insensitive), no params.
            if request.headers.get("Content-Type", "").lower() != "application/json":
                return web.Response(
                    status=415,
                    text="Invalid content type\n",
                    headers={"X-Content-Type-Options": "nosniff"},
                )
        denied = self._auth(request)
        if denied is not None:
            return denied
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except ApiError as e:
            return _error(e.code, e.message)
        except web.HTTPNotFound:
            return _error(NOT_FOUND, "Not Found")
        except web.HTTPMethodNotAllowed:
            return _error(12, "Method Not Allowed")

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else None
        if token is None:
            token = request.cookies.get("argocd.token")
        if not token:
            return _error(UNAUTHENTICATED, "no session information")
        if token != self.token:
            return _error(UNAUTHENTICATED, "invalid session: token signature is invalid")
        return None

    # -- helpers ------------------------------------------------------------------------
    def _decode(self, request: web.Request, body: bytes, definition: str) -> dict[str, Any]:
        if not body.strip():
            return {}  # grpc-gateway ignores io.EOF: an empty body is all defaults
        try:
            data = json.loads(body)
        except json.JSONDecodeError as e:
            raise ApiError(INVALID_ARGUMENT, f"invalid character in JSON body: {e.msg}") from e
        errors = request_errors(definition, data, strict=self.strict)
        if errors:
            raise ApiError(INVALID_ARGUMENT, errors[0])
        decoded: dict[str, Any] = drop_nulls(data)
        return decoded

    def _lookup(self, name: str, project: str | None, app_namespace: str | None = None) -> App:
        """argocd-server's getApplicationEnforceRBAC: don't leak whether an app exists.

        Without ``appNamespace`` the app is looked up in Argo CD's own namespace
        (server/application/application.go: ``appNamespaceOrDefault``), so an app elsewhere
        ("apps in any namespace") is found only when the caller names its namespace."""
        app = self.state.apps.get(name)
        wanted = app_namespace or fx.ARGOCD_NAMESPACE
        if app is not None and app["metadata"].get("namespace") != wanted:
            app = None
        not_found = ApiError(NOT_FOUND, f'applications.argoproj.io "{name}" not found')
        if app is None:
            if project:
                raise not_found
            raise ApiError(PERMISSION_DENIED, "permission denied")
        if project and app["spec"].get("project") != project:
            raise not_found
        return app

    @staticmethod
    def _json(data: Any) -> web.Response:
        return web.json_response(data)

    # -- handlers -----------------------------------------------------------------------
    async def list_apps(self, request: web.Request) -> web.Response:
        q = request.query
        matches = _filter(q.get("name"), q.get("selector"), _projects(request), q.get("repo"))
        app_ns = q.get("appNamespace")  # List reads only that namespace when it is given
        items = [
            copy.deepcopy(a)
            for _, a in sorted(self.state.apps.items())
            if matches(a) and (not app_ns or a["metadata"].get("namespace") == app_ns)
        ]
        rv = str(self.state.resource_version)
        return self._json({"metadata": {"resourceVersion": rv}, "items": items})

    async def get_app(self, request: web.Request) -> web.Response:
        name, q = request.match_info["name"], request.query
        app = self._lookup(name, q.get("project"), q.get("appNamespace"))
        refresh = q.get("refresh")
        if not refresh:
            return self._json(app)
        annotations = app["metadata"].setdefault("annotations", {})
        annotations[fx.REFRESH_ANNOTATION] = "hard" if refresh == "hard" else "normal"
        self.state.commit(name)
        since = self.state.resource_version
        deadline = _grpc_timeout(request.headers.get("Grpc-Timeout", "")) or self.refresh_deadline
        try:
            async with asyncio.timeout(deadline):
                while True:  # blocks until the controller has reconciled, as the real one does
                    await self.state.changed()
                    app = self._lookup(name, q.get("project"), q.get("appNamespace"))
                    rv = int(app["metadata"]["resourceVersion"])
                    annotations = app["metadata"].get("annotations", {})
                    if rv > since and fx.REFRESH_ANNOTATION not in annotations:
                        return self._json(app)
        except TimeoutError:  # a plain Go error: gRPC Unknown (2), HTTP 500
            return _error(2, REFRESH_DEADLINE_MESSAGE)

    async def sync(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        req = self._decode(request, await request.read(), "applicationApplicationSyncRequest")
        app = self._lookup(name, req.get("project"), req.get("appNamespace"))
        if name in self.state.blocked:
            raise ApiError(PERMISSION_DENIED, "cannot sync: blocked by sync window")
        policy = app["spec"].get("syncPolicy") or {}
        sync: dict[str, Any] = {"revision": self.state.resolve(name, req.get("revision"))}
        for key in ("prune", "dryRun"):
            if req.get(key):
                sync[key] = True
        # The request's syncOptions and retryStrategy replace the spec's; they do not merge.
        if "syncOptions" in req:
            options = req["syncOptions"].get("items") or []
        else:
            options = policy.get("syncOptions") or []
        if options:
            sync["syncOptions"] = list(options)
        if req.get("strategy"):
            sync["syncStrategy"] = req["strategy"]
        if req.get("resources"):
            sync["resources"] = req["resources"]
        if req.get("manifests"):
            sync["manifests"] = req["manifests"]
        operation: dict[str, Any] = {"sync": sync, "initiatedBy": {"username": self.state.account}}
        infos = [i for i in req.get("infos") or [] if i.get("name")]
        if infos:
            operation["info"] = [{"name": i["name"], "value": i.get("value", "")} for i in infos]
        retry = req.get("retryStrategy") or policy.get("retry")
        if retry:
            operation["retry"] = _int64s(retry)
        return self._json(self.state.begin(name, operation))

    async def rollback(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        req = self._decode(request, await request.read(), "applicationApplicationRollbackRequest")
        app = self._lookup(name, req.get("project"), req.get("appNamespace"))
        automated = (app["spec"].get("syncPolicy") or {}).get("automated")
        if automated is not None and automated.get("enabled", True) is not False:
            raise ApiError(
                FAILED_PRECONDITION, "rollback cannot be initiated when auto-sync is enabled"
            )
        wanted = int(req.get("id", 0))
        entry = next((h for h in app["status"].get("history") or [] if h["id"] == wanted), None)
        if entry is None:
            raise ApiError(
                INVALID_ARGUMENT, f"application {name} does not have deployment with id {wanted}"
            )
        sync: dict[str, Any] = {"revision": entry["revision"], "source": entry.get("source", {})}
        for key in ("prune", "dryRun"):
            if req.get(key):
                sync[key] = True
        operation = {"sync": sync, "initiatedBy": {"username": self.state.account}}
        return self._json(self.state.begin(name, operation))

    async def patch_app(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        req = self._decode(request, await request.read(), "applicationApplicationPatchRequest")
        app = self._lookup(name, req.get("project"), req.get("appNamespace"))
        patch_type, patch = req.get("patchType", ""), req.get("patch", "")
        try:
            document = json.loads(patch)
        except json.JSONDecodeError as e:
            raise ApiError(INVALID_ARGUMENT, f"error decoding patch: {e.msg}") from e
        if patch_type == "merge":
            patched = merge_patch(copy.deepcopy(app), document)
        elif patch_type in ("json", ""):
            patched = json_patch(copy.deepcopy(app), document)
        else:
            raise ApiError(INVALID_ARGUMENT, f"Patch type '{patch_type}' is not supported")
        if not isinstance(patched, dict):
            raise ApiError(INVALID_ARGUMENT, "error unmarshaling patched app: not an object")
        shape = {k: patched.get(k) for k in ("apiVersion", "kind", "metadata", "spec")}
        problems = application_errors(shape)
        if problems:
            raise ApiError(INVALID_ARGUMENT, f"error validating patched app: {problems[0]}")
        # updateApp: only spec, labels, annotations and finalizers are taken from the patch.
        if patched["spec"] != app["spec"]:
            app["metadata"]["generation"] = int(app["metadata"].get("generation", 1)) + 1
        app["spec"] = patched["spec"]
        for key in ("labels", "annotations", "finalizers"):
            value = patched["metadata"].get(key)
            if value:
                app["metadata"][key] = value
            else:
                app["metadata"].pop(key, None)
        self.state.commit(name)
        return self._json(app)

    async def terminate(self, request: web.Request) -> web.Response:
        name, q = request.match_info["name"], request.query
        self._lookup(name, q.get("project"), q.get("appNamespace"))
        self.state.terminate(name)
        return self._json({})

    async def resource_tree(self, request: web.Request) -> web.Response:
        name, q = request.match_info["applicationName"], request.query
        self._lookup(name, q.get("project"), q.get("appNamespace"))
        return self._json({"nodes": self.state.tree(name)})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        sse = "text/event-stream" in request.headers.get("Accept", "")
        sub = Subscriber(
            _filter(q.get("name"), q.get("selector"), _projects(request), q.get("repo"))
        )
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream" if sse else "application/json"}
        )
        resp.enable_chunked_encoding()
        self.state.subscribers.append(sub)  # before the ADDED burst, so no change is missed
        try:
            await resp.prepare(request)
            for _, app in sorted(self.state.apps.items()):
                if sub.matches(app):
                    await self._event(resp, sse, "ADDED", app)
            while True:
                try:
                    timeout = self.sse_keepalive if sse else None
                    item = await asyncio.wait_for(sub.queue.get(), timeout)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                if item[0] == "ERROR":
                    line = json.dumps(item[1], separators=(",", ":"))
                    await resp.write(f"data: {line}\n\n".encode() if sse else f"{line}\n".encode())
                    break
                await self._event(resp, sse, *item)
            await resp.write_eof()
            return resp
        except ConnectionResetError:
            return resp  # the client went away: nothing to answer
        finally:
            self.state.subscribers.remove(sub)

    @staticmethod
    async def _event(resp: web.StreamResponse, sse: bool, kind: str, app: App) -> None:
        line = json.dumps({"result": {"type": kind, "application": app}}, separators=(",", ":"))
        await resp.write(f"data: {line}\n\n".encode() if sse else f"{line}\n".encode())


def _projects(request: web.Request) -> list[str]:
    out: list[str] = []
    for key in ("projects", "project"):
        for value in request.query.getall(key, []):
            out += [p for p in value.split(",") if p]
    return out


def _filter(
    name: str | None, selector: str | None, projects: list[str], repo: str | None
) -> Callable[[App], bool]:
    try:
        labels_match = parse_selector(selector or "")
    except ValueError as e:
        raise ApiError(2, f"error parsing the selector: {e}") from e

    def matches(app: App) -> bool:
        meta, spec = app["metadata"], app.get("spec") or {}
        if name and meta.get("name") != name:
            return False
        if projects and spec.get("project") not in projects:
            return False
        if repo and (spec.get("source") or {}).get("repoURL", "").rstrip("/") != repo.rstrip("/"):
            return False
        return labels_match(meta.get("labels") or {})

    return matches


def _int64s(value: Any) -> Any:
    """Store int64 fields as numbers, as the controller writes them back."""
    if isinstance(value, dict):
        return {
            k: int(v) if k in ("limit", "factor") and isinstance(v, str) else _int64s(v)
            for k, v in value.items()
        }
    return value
