"""The bot's one HTTP server: health, readiness, metrics, and the routes the chat and alert
features mount on it (``POST /slack/events``, ``POST /webhooks/argocd``).

One aiohttp application so the ingress, the Service and the probes point at one port. Probes
answer from memory, never from a dependency: ``/healthz`` says the process is serving (liveness
only), ``/readyz`` says it can do its job and, per integration, what is down (503 then).
Every request is counted and timed per route into the server's own metrics registry
(``bot.metrics``, prometheus_client with a per-server registry).

The server is exposed to the internet (Slack must reach it), so the connection itself is
bounded (``bot.http_limits.HttpLimits``): a client has ``header_timeout`` to send its request
headers (slowloris), a route reading a body gives it ``body_timeout``; idle keep-alive
connections close after ``keepalive_timeout``; beyond ``max_connections`` a new connection is
answered 503 and closed. A body a handler did not read (a request refused on its headers) is
not drained: the connection is closed instead. Malformed HTTP is answered 400 by aiohttp and
logged in one line, without a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.http_limits import LIMITS_KEY, MAX_BODY, HttpLimits
from bot.metrics import CONTENT_TYPE, Registry

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], list[str]]  # what is missing; empty when ready
__all__ = ["MAX_BODY", "HttpLimits", "HttpServer", "Probes", "build_app"]

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

    def add_detail(self, name: str, describe: Callable[[], object]) -> None:
        self.details[name] = describe

    def detail_values(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, describe in self.details.items():
            try:
                out[name] = describe()
            except Exception as e:
                out[name] = f"unavailable: {type(e).__name__}"
        return out

    def detail(self) -> dict[str, str]:
        """Every check by name: "ok" or what is wrong."""
        out = {}
        for name, check in self.checks.items():
            try:
                problem = check()
            except Exception as e:
                problem = f"check failed: {type(e).__name__}"
            out[name] = problem or "ok"
        return out

    def problems(self) -> list[str]:
        return [f"{name}: {state}" for name, state in self.detail().items() if state != "ok"]


def build_app(
    registry: Registry, probes: Probes, limits: HttpLimits | None = None
) -> web.Application:
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

    limits = limits or HttpLimits()
    app = web.Application(middlewares=[measure], client_max_size=limits.max_body)
    app[METRICS_KEY] = registry
    app[LIMITS_KEY] = limits

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        detail = probes.detail()
        problems = [f"{name}: {state}" for name, state in detail.items() if state != "ok"]
        body: dict[str, object] = {"ready": not problems, "problems": problems, "checks": detail}
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


class GuardedHandler(web.RequestHandler):
    """aiohttp's connection handler plus a deadline for request headers.

    aiohttp closes a connection that sends nothing for ``keepalive_timeout``, counted from the
    connection or the last response; a long keep-alive (longer than the ingress's, so the
    ingress always closes first) would let half-sent headers hold a connection that long. Here
    a connection must complete its request headers within ``header_timeout`` of connecting or
    of the first byte of a later request. aiohttp keeps the count of parsed requests in
    ``_request_count`` and whether a handler runs in ``_request_in_progress`` (not public API;
    aiohttp is pinned below 4)."""

    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout: float,
        on_lost: Callable[[], None] = lambda: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm()  # a request's headers are complete
        elif data and self._header_timer is None and not self._request_in_progress:
            self._arm()  # the first bytes of the next request

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        on_lost, self._on_lost = self._on_lost, lambda: None  # once
        on_lost()
        super().connection_lost(exc)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(
            self._header_timeout, self._expire, self._request_count
        )

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self, parsed: int) -> None:
        self._header_timer = None
        if self._request_count == parsed and not self._request_in_progress:
            log.debug("closing a connection that did not send its request headers in time")
            self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):  # malformed HTTP: the client's problem
            message = " ".join(str(exc.message).split())[:200]
            log.debug("bad HTTP request from %s: %s %s", _peer(self), exc.code, message)
            return
        super().log_exception(*args, **kw)


def _peer(handler: web.RequestHandler) -> str:
    peer = handler.peername
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "?")


class _Refuse(asyncio.Protocol):
    """A connection over the cap: one 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 22\r\n\r\ntoo many connections\r\n"
        )
        transport.close()


class _CappedSite(web.BaseSite):
    """A TCP listener whose protocol factory counts connections and guards each one."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, limits: HttpLimits, refused: Any
    ) -> None:
        super().__init__(runner, backlog=1024)
        self._host, self._port = host, port
        self._limits = limits
        self._refused = refused
        self.open = 0  # connections being served

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        limits = self._limits
        if self.open >= limits.max_connections:
            self._refused.inc()
            return _Refuse()
        self.open += 1
        return GuardedHandler(
            server,
            loop=asyncio.get_running_loop(),
            header_timeout=limits.header_timeout,
            on_lost=self._lost,
            keepalive_timeout=limits.keepalive_timeout,
            max_line_size=limits.max_line_size,
            max_field_size=limits.max_field_size,
            max_headers=limits.max_headers,
            lingering_time=0,  # do not drain bodies nobody reads: close instead
            auto_decompress=False,  # no decompression before authentication
            access_log=None,
        )

    def _lost(self) -> None:
        self.open -= 1

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )

    @property
    def port(self) -> int:
        server = self._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self._port


class HttpServer:
    """Runs the application on host:port; ``stop`` closes the listener first, then lets
    requests being handled finish (up to ``grace`` seconds)."""

    def __init__(self, app: web.Application, host: str, port: int, *, grace: float = 10.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.grace = grace
        self.limits = app.get(LIMITS_KEY) or HttpLimits()
        self._runner: web.AppRunner | None = None
        self._site: _CappedSite | None = None
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
        refused = self.app[METRICS_KEY].counter(
            "chatops_http_connections_refused_total",
            "Connections answered 503 because max_connections were open",
        )
        self._site = _CappedSite(self._runner, self.host, self.port, self.limits, refused)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        # the addresses really bound: port 0 picks one, a hostname may resolve to several
        self.bound = [_address(sock.getsockname()) for sock in sockets]
        if self.port == 0:
            self.port = self._site.port

    @property
    def connections(self) -> int:
        """Connections open now (for tests and the connection cap)."""
        return self._site.open if self._site is not None else 0

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def _address(sockname: Any) -> str:
    host, port = str(sockname[0]), int(sockname[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
