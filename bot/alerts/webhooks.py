"""``POST /webhooks/argocd``: Argo CD notifications in, a durably stored alert out, then 202.

The body is the JSON our own notification templates send
(deploy/argocd/argocd-notifications-cm.yaml, schema ``chatops.argocd/v1``, one template per
trigger with the trigger name written in it).
Every check a caller can fail has its own answer, and none of them is a 5xx:

- 401 without ``Authorization: Bearer <CHATOPS_WEBHOOK_TOKEN>`` (constant-time comparison);
- 413 over ``MAX_BODY`` (checked on Content-Length first, then while reading); 408 when the
  body does not arrive within the server's body timeout;
- 400 with ``{"error", "field", "message"}`` naming the first bad field (pydantic at the edge);
- 202 ``{"status": "accepted"|"duplicate"}`` only once the signal and whatever it caused
  (incident, outbox rows) are committed: the group-commit writer batches concurrent requests
  into one fsync. Argo CD retries a delivery with the same bytes, so the body's SHA-256 is the
  de-duplication key (the template includes the app's resourceVersion, so two real
  notifications never share one).

An app the bot does not know is accepted like any other: the alert carries what the body says.
Argo CD sends no Content-Type unless configured to, so none is required.

Each Argo CD instance posts to its own path, ``/webhooks/argocd/INSTANCE`` (the bare path is the
default instance); an unknown instance is 404. The instance decides how the app is named
(``NAMESPACE/APP`` outside that Argo CD's own namespace, ``@INSTANCE`` when there are several)
and which UI the alert links to, and travels with the signal to incidents and routes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.http_limits import BodyRefused, read_body
from bot.settings import Settings
from commands import targets
from commands.argocd import links
from notifiers.alert import ResourceProblem
from notifiers.incidents.model import Signal

if TYPE_CHECKING:
    from bot.metrics import Registry

log = logging.getLogger(__name__)

PATH = "/webhooks/argocd"
SCHEMA = "chatops.argocd/v1"
MAX_BODY = 1024 * 1024
MAX_RESOURCES = 200  # listed in the alert; the rest are summarised by count
APP_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"

Text = Annotated[str, Field(max_length=65536)]
Short = Annotated[str, Field(max_length=1024)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AppRef(_Model):
    name: Annotated[str, Field(pattern=APP_NAME)]
    namespace: Short = ""
    uid: Short = ""
    project: Short = "default"
    resourceVersion: Short = ""


class Destination(_Model):
    server: Short = ""
    name: Short = ""
    namespace: Short = ""


class SyncState(_Model):
    status: Short = ""
    revision: Short = ""


class Health(_Model):
    status: Short = ""
    message: Text = ""


class Operation(_Model):
    phase: Short = ""
    message: Text = ""
    startedAt: Short = ""
    finishedAt: Short = ""
    retryCount: int = 0
    revision: Short = ""


class Resource(_Model):
    group: Short = ""
    kind: Short = ""
    name: Short = ""
    namespace: Short = ""
    status: Short = ""  # sync status (resources) or sync result (syncResources)
    health: Health | None = None
    hookPhase: Short = ""
    hookType: Short = ""
    message: Text = ""


class Body(_Model):
    schema_: Literal["chatops.argocd/v1"] = Field(alias="schema")
    trigger: Literal["sync-failed", "health-degraded", "sync-succeeded", "deployed"]
    app: AppRef
    destination: Destination = Destination()
    sync: SyncState = SyncState()
    health: Health = Health()
    operation: Operation = Operation()
    resources: list[Resource | None] = []
    syncResources: list[Resource | None] = []
    argocdUrl: Short = ""  # accepted (our templates send it) and ignored: links are configured


def _problems(items: list[Resource | None], *, sync: bool) -> tuple[ResourceProblem, ...]:
    out = []
    for r in items:
        if r is None:
            continue  # the template's list terminator
        if sync:
            status = r.hookPhase if r.hookPhase in ("Failed", "Error") else r.status
            message = r.message
        else:
            status = r.health.status if r.health else r.status
            message = r.health.message if r.health else r.message
        out.append(ResourceProblem(r.kind, r.name, r.namespace, status, message))
    return tuple(out[:MAX_RESOURCES])


def signals(
    body: Body,
    ui_url: str = "",
    *,
    instance: str = "",
    home: str = targets.HOME_NAMESPACE,
    several: bool = False,
) -> list[Signal]:
    """What one notification says, in the engine's words. The "Open in Argo CD" link is built
    from the configured ``ui_url`` only: whoever holds the webhook token must not choose it."""
    outside = body.app.namespace if body.app.namespace not in ("", home) else ""
    qualified = f"{outside}/{body.app.name}" if outside else body.app.name
    common: dict[str, Any] = {
        "app": targets.label(qualified, instance, several=several),
        "source": "webhook",
        "project": body.app.project,
        "cluster": body.destination.name or body.destination.server,
        "instance": instance,
        "namespace": body.destination.namespace,
        # configuration, never the body
        "url": links.app_link(ui_url, body.app.name, outside or None),
    }
    op = body.operation
    revision = op.revision or body.sync.revision
    if body.trigger == "sync-failed":
        return [
            Signal(
                kind="sync_failed",
                operation=op.startedAt,
                message=op.message or f"Sync {op.phase or 'failed'}.",
                revision=revision,
                resources=_problems(body.syncResources, sync=True),
                **common,
            )
        ]
    if body.trigger == "health-degraded":
        res = _problems(body.resources, sync=False)
        message = body.health.message or (
            f"{len(res)} resource(s) Degraded or Missing." if res else "The app is Degraded."
        )
        return [
            Signal(
                kind="degraded",
                message=message,
                revision=body.sync.revision,
                resources=res,
                **common,
            )
        ]
    ok = Signal(kind="sync_ok", operation=op.startedAt, revision=revision, **common)
    if body.trigger == "sync-succeeded":
        return [ok]
    return [ok, Signal(kind="healthy", revision=revision, **common)]


class Ingest(Protocol):
    """Where an accepted notification goes (``bot.alerts.runner.AlertRunner``): stores what the
    signals cause and answers "accepted" or "duplicate" once it is committed."""

    async def ingest(self, signals: Iterable[Signal], dedup_key: str | None = None) -> str: ...


def _error(status: int, error: str, field: str | None = None, message: str = "") -> web.Response:
    body = {"error": error, "field": field, "message": message}
    return web.json_response(body, status=status)


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + ("schema" if p == "schema_" else str(p)))
    return "".join(parts) or "(body)"


class WebhookEndpoint:
    """The route's handler. It may be mounted before the alert runner exists: until the server
    wiring calls ``attach(runner)`` it answers 503, which Argo CD retries."""

    def __init__(
        self,
        settings: Settings,
        runner: Ingest | None = None,
        *,
        metrics: Registry | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        token = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
        self._token = token.encode()
        self.runner = runner
        self.ui_url = settings.ui_url
        # instance -> (UI base, Argo CD's own namespace); the bare path is the default one
        self.instances = {
            i.name: (links.ui_base(i.ui_url, i.url), i.namespace) for i in settings.argo_instances
        }
        self.default = settings.default_instance
        self.several = len(self.instances) > 1
        self.max_body = max_body
        self._requests = None
        self._latency = None
        if metrics is not None:
            self._requests = metrics.counter(
                "chatops_webhooks_total", "Argo CD webhook requests by result", ("result",)
            )
            self._latency = metrics.histogram(
                "chatops_webhook_seconds", "Time to answer an Argo CD webhook", ()
            )

    def attach(self, runner: Ingest) -> None:
        self.runner = runner

    def _count(self, result: str, started: float) -> None:
        if self._requests is not None and self._latency is not None:
            self._requests.inc(result=result)
            self._latency.observe(time.perf_counter() - started)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not self._token:
            return False
        # any bytes may come in a header (aiohttp keeps invalid UTF-8 as surrogates)
        return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self._token)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        if not self._authorized(request):
            self._count("unauthorized", started)
            return web.json_response(
                {"error": "unauthorized", "field": None, "message": "bad or missing bearer token"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        instance = request.match_info.get("instance", self.default)
        if instance not in self.instances and (self.instances or instance != self.default):
            self._count("bad_request", started)
            known = ", ".join(f"{PATH}/{n}" for n in self.instances) or PATH
            return _error(404, "unknown Argo CD instance", None, f"configured: {known}"[:300])
        ui_url, home = self.instances.get(instance, (self.ui_url, targets.HOME_NAMESPACE))
        try:
            raw = await read_body(request, max_body=self.max_body)
        except BodyRefused as e:
            too_large = e.status == 413
            self._count("too_large" if too_large else "bad_request", started)
            if too_large:
                return _error(413, "body too large", None, f"the limit is {self.max_body} bytes")
            return _error(e.status, "body not received", None, e.message)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:
            self._count("bad_request", started)
            return _error(400, "body is not valid JSON", None, str(e)[:200])
        if not isinstance(data, dict):
            self._count("bad_request", started)
            return _error(400, "body must be a JSON object", "(body)")
        try:
            body = Body.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            self._count("bad_request", started)
            return _error(400, "invalid field", _field_name(first["loc"]), first["msg"][:300])
        except RecursionError:
            self._count("bad_request", started)
            return _error(400, "body is nested too deeply", "(body)")
        runner = self.runner
        if runner is None:
            self._count("unavailable", started)
            return _error(503, "alerts are starting", None, "retry in a few seconds")
        key = hashlib.sha256(raw).hexdigest()
        try:
            found = signals(body, ui_url, instance=instance, home=home, several=self.several)
            # the same bytes sent by two instances are two notifications
            key = key if instance == self.default else f"{instance}:{key}"
            result = await runner.ingest(found, dedup_key=key)
        except Exception:
            log.exception("storing a webhook alert failed")
            self._count("error", started)
            return _error(503, "could not store the alert", None, "retry later")
        self._count(result, started)
        return web.json_response({"status": result}, status=202)


def register(
    app: web.Application,
    settings: Settings,
    runner: Ingest | None = None,
    *,
    metrics: Registry | None = None,
) -> WebhookEndpoint | None:
    """Add ``POST /webhooks/argocd`` to ``app`` (before it starts) and return its endpoint.

    The HTTP server starts before the alert runner, so the caller (``bot.server.serve``) keeps
    the endpoint and hands it the runner with ``attach`` once alerts have started. Without
    ``CHATOPS_WEBHOOK_TOKEN`` the route is not added, None is returned and the log says so.
    """
    if settings.webhook_token is None or not settings.webhook_token.get_secret_value():
        log.warning("webhooks: CHATOPS_WEBHOOK_TOKEN is not set, POST %s is disabled", PATH)
        return None
    endpoint = WebhookEndpoint(settings, runner, metrics=metrics)
    app.router.add_post(PATH, endpoint.handle)
    app.router.add_post(PATH + "/{instance}", endpoint.handle)  # one path per Argo CD instance
    return endpoint
