"""The bot's one HTTP server: health, readiness, metrics, and the routes the chat and alert
features mount on it (``POST /slack/events``, ``POST /webhooks/argocd``).

One aiohttp application so the ingress, the Service and the probes point at one port. Probes
answer from memory, never from a dependency: ``/healthz`` says the process is serving,
``/readyz`` says it can do its job (store open, Argo CD configured) and lists what is missing.
Every request is counted and timed per route into the server's own metrics registry
(``bot.metrics``, prometheus_client with a per-server registry).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.metrics import CONTENT_TYPE, Registry

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], list[str]]  # what is missing; empty when ready
MAX_BODY = 1024 * 1024

METRICS_KEY: web.AppKey[Registry] = web.AppKey("metrics", Registry)


@dataclass
class Probes:
    """What /readyz reports: named checks, each returning a problem or None."""

    checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    # informational state shown under "detail" that does not make the bot unready (e.g. alert
    # delivery waiting out a chat outage: the platform is down, not us)
    details: dict[str, Callable[[], object]] = field(default_factory=dict)

    def add(self, name: str, check: Callable[[], str | None]) -> None:
        self.checks[name] = check

    def detail(self, name: str, describe: Callable[[], object]) -> None:
        self.details[name] = describe

    def detail_values(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, describe in self.details.items():
            try:
                out[name] = describe()
            except Exception as e:
                out[name] = f"unavailable: {type(e).__name__}"
        return out

    def problems(self) -> list[str]:
        out = []
        for name, check in self.checks.items():
            try:
                problem = check()
            except Exception as e:
                problem = f"check failed: {type(e).__name__}"
            if problem:
                out.append(f"{name}: {problem}")
        return out


def build_app(registry: Registry, probes: Probes) -> web.Application:
    requests = registry.counter(
        "chatops_http_requests_total", "HTTP requests by route and status", ("route", "status")
    )
    latency = registry.histogram(
        "chatops_http_request_seconds", "HTTP request handling time by route", ("route",)
    )

    @web.middleware
    async def measure(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            requests.inc(route=name, status=str(status))
            latency.observe(time.perf_counter() - started, route=name)

    app = web.Application(middlewares=[measure], client_max_size=MAX_BODY)
    app[METRICS_KEY] = registry

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        problems = probes.problems()
        body: dict[str, object] = {"ready": not problems, "problems": problems}
        if probes.details:
            body["detail"] = probes.detail_values()
        return web.Response(
            status=503 if problems else 200,
            text=json.dumps(body) + "\n",
            content_type="application/json",
        )

    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(text=registry.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class HttpServer:
    """Runs the application on host:port; ``stop`` closes the listener first, then lets
    requests being handled finish (up to ``grace`` seconds)."""

    def __init__(self, app: web.Application, host: str, port: int, *, grace: float = 10.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.grace = grace
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.bound: list[str] = []  # "host:port" of each listening socket, once started

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=self.grace
        )
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        # the addresses really bound: port 0 picks one, a hostname may resolve to several
        self.bound = [_address(sock.getsockname()) for sock in sockets]
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def _address(sockname: Any) -> str:
    host, port = str(sockname[0]), int(sockname[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
