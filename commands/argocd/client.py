"""Async client for the argocd-server REST API (grpc-gateway).

The wire rules are strict and easy to get wrong, so they live here and nowhere else:
every non-GET sends exactly ``Content-Type: application/json`` (a charset suffix gets 415),
a merge patch travels as a JSON *string*, a ``?refresh=`` GET blocks until the controller has
reconciled (long timeout), and every HTTP failure is mapped once, in ``check_response``, to a
``commands.errors`` kind a person can read.

Apps are named as the argocd CLI names them: ``NAMESPACE/APP`` for an app outside Argo CD's own
namespace ("apps in any namespace"), which travels as ``appNamespace`` on every call that takes
it (the query of a GET or DELETE, the body of a sync or patch); a bare ``APP`` sends none, and
Argo CD looks in its own namespace.

Connections come from two pools, each with a gate in front so httpx never queues: calls
(``max_calls`` in flight; the rest wait their turn here, up to the timeout) and application
streams (``max_streams`` open, one per running sync or rollback wait plus the bot's watch). A
queue inside httpcore's pool is scanned connection by connection whenever any request starts or
ends: with 200 syncs waiting, that scan took a fifth of the bot's CPU. And a stream holds its
connection for as long as it runs: in a shared pool, streams would starve the short calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, Literal

import httpx

from commands import errors, http_errors
from commands.argocd.app import Application

JSON = "application/json"
REFRESH_TIMEOUT = 120.0
REQUEST_ID_INFO = "chatops-request-id"  # a refresh blocks until the controller has reconciled
MAX_CALLS = 20  # calls in flight to one argocd-server (the controller refreshes 20 apps at once)
MAX_STREAMS = 512  # open application streams to one argocd-server
STREAM_KEEPALIVE = 8  # idle stream connections kept for the next stream


class ArgoCD:
    """One argocd-server over real HTTP (TLS verified by default, ``verify`` may name a CA
    bundle). ``client`` replaces both pools (tests that must not open sockets). ``namespace``
    is Argo CD's own namespace: its apps are named without one. ``timeout`` bounds each call,
    and separately the wait for its turn when ``max_calls`` are in flight."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
        namespace: str = "argocd",
        max_calls: int = MAX_CALLS,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        if max_calls < 1 or max_streams < 1:
            raise ValueError("max_calls and max_streams must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.max_calls = max_calls
        self._token = token
        self._wait = timeout
        self._calls = asyncio.Semaphore(max_calls)
        self._streams = asyncio.Semaphore(max_streams)

        def pool(connections: int, keepalive: int) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=self.base_url,
                verify=verify,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=connections, max_keepalive_connections=keepalive
                ),
            )

        self._client = client or pool(max_calls, max_calls)
        self._stream_client = client or pool(max_streams, min(max_streams, STREAM_KEEPALIVE))
        self._own_client = client is None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
            await self._stream_client.aclose()

    async def __aenter__(self) -> ArgoCD:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- calls ---------------------------------------------------------------------------
    async def get(
        self,
        name: str,
        *,
        refresh: Literal["normal", "hard"] | None = None,
        project: str | None = None,
    ) -> Application:
        app, params = _name_params(name)
        if refresh:
            params["refresh"] = refresh
        if project:
            params["project"] = project
        timeout = REFRESH_TIMEOUT if refresh else None
        data = await self._request(
            "GET", f"/api/v1/applications/{app}", params=params, app=name, timeout=timeout
        )
        return Application(data)

    async def list_apps(
        self,
        *,
        selector: str | None = None,
        projects: tuple[str, ...] = (),
        name: str | None = None,
    ) -> list[Application]:
        """Apps of every namespace Argo CD serves; ``name`` (qualified or not) narrows it to
        apps of that name (in that namespace)."""
        params: list[tuple[str, str]] = []
        if name:
            bare, namespace = _split(name)
            params.append(("name", bare))
            if namespace:
                params.append(("appNamespace", namespace))
        if selector:
            params.append(("selector", selector))
        for p in projects:
            params.append(("projects", p))
        data = await self._request("GET", "/api/v1/applications", params=params)
        return [Application(item) for item in (data.get("items") or [])]

    async def names(self) -> list[str]:
        """Every app as it is addressed: ``NAMESPACE/APP`` outside Argo CD's own namespace."""
        return [a.qualified(self.namespace) for a in await self.list_apps()]

    async def sync(
        self,
        name: str,
        *,
        prune: bool = True,
        retry_limit: int = 3,
        backoff: str = "5s",
        requested_by: str | None = None,
        request_id: str | None = None,
        revision: str | None = None,
        dry_run: bool = False,
    ) -> Application:
        """Start a sync. ``request_id`` travels in the operation's ``info`` so the caller can
        tell its own operation from an earlier one (``startedAt`` has one-second resolution)."""
        app, namespace = _split(name)
        body: dict[str, Any] = {
            "name": app,
            "prune": prune,
            "dryRun": dry_run,
            "strategy": {"hook": {"force": False}},
        }
        if retry_limit > 0:
            body["retryStrategy"] = {
                "limit": retry_limit,
                "backoff": {"duration": backoff, "factor": 2, "maxDuration": "3m"},
            }
        if revision:
            body["revision"] = revision
        infos = []
        if requested_by:
            infos.append({"name": "requested-by", "value": requested_by})
        if request_id:
            infos.append({"name": REQUEST_ID_INFO, "value": request_id})
        if infos:
            body["infos"] = infos
        if namespace:
            body["appNamespace"] = namespace
        data = await self._request(
            "POST", f"/api/v1/applications/{app}/sync", json_body=body, app=name
        )
        return Application(data)

    async def patch(self, name: str, patch: Mapping[str, Any]) -> Application:
        app, namespace = _split(name)
        body = {"name": app, "patchType": "merge", "patch": json.dumps(patch)}
        if namespace:
            body["appNamespace"] = namespace
        data = await self._request("PATCH", f"/api/v1/applications/{app}", json_body=body, app=name)
        return Application(data)

    async def resource_tree(self, name: str) -> list[dict[str, Any]]:
        app, params = _name_params(name)
        data = await self._request(
            "GET", f"/api/v1/applications/{app}/resource-tree", params=params, app=name
        )
        return list(data.get("nodes") or [])

    async def watch(
        self, *, name: str | None = None, selector: str | None = None
    ) -> AsyncGenerator[tuple[str, Application], None]:
        """Yield ``(type, app)`` from the application stream until the server closes it. A
        failed stream ends with grpc-gateway's ``{"error": {...}}`` frame: raised as the
        ``CommandError`` its code maps to (``stream_error``)."""
        params: dict[str, str] = {}
        if name:
            params["name"], namespace = _split(name)
            if namespace:
                params["appNamespace"] = namespace
        if selector:
            params["selector"] = selector
        try:
            async with (
                self._streams,
                self._stream_client.stream(
                    "GET",
                    "/api/v1/stream/applications",
                    params=params,
                    headers=self._headers(),
                    timeout=httpx.Timeout(None, connect=10.0),
                ) as resp,
            ):
                if resp.status_code >= 400:
                    await resp.aread()
                    await check_response(resp, app=name, client=self)
                async for line in resp.aiter_lines():
                    line = line.strip()
                    if not line or line.startswith(":"):
                        continue
                    if line.startswith("data:"):
                        line = line[5:].strip()
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(msg, dict) and "error" in msg:
                        raise stream_error(msg["error"])
                    result = msg.get("result") if isinstance(msg, dict) else None
                    if not isinstance(result, dict) or "application" not in result:
                        continue
                    yield str(result.get("type", "MODIFIED")), Application(result["application"])
        except httpx.TransportError as e:
            raise _transport_error(self.base_url, e) from e

    # -- plumbing ------------------------------------------------------------------------
    def _headers(self, *, body: bool = False) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self._token}", "Accept": JSON}
        if body:
            h["Content-Type"] = JSON
        return h

    @contextlib.asynccontextmanager
    async def _turn(self, method: str, path: str) -> AsyncIterator[None]:
        """One of the ``max_calls`` places, waited for up to the client's timeout."""
        try:
            async with asyncio.timeout(self._wait):
                await self._calls.acquire()
        except TimeoutError as e:
            raise errors.Timeout(
                f"Argo CD is busy: {method} {path} waited {self._wait:g} s behind the "
                f"bot's {self.max_calls} calls in flight.",
                hint="Argo CD answers slowly (a refresh waits for the controller); try again.",
            ) from e
        try:
            yield
        finally:
            self._calls.release()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        app: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        content = json.dumps(json_body).encode() if json_body is not None else None
        if content is None and method != "GET":
            content = b""
        try:
            async with self._turn(method, path):
                resp = await self._client.request(
                    method,
                    path,
                    params=params,
                    content=content,
                    headers=self._headers(body=method != "GET"),
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
        except httpx.TimeoutException as e:
            raise errors.Timeout(
                f"Argo CD did not answer {method} {path} in time.",
                hint="A refresh waits for the controller; check argocd-application-controller.",
            ) from e
        except httpx.TransportError as e:
            raise _transport_error(self.base_url, e) from e
        await check_response(resp, app=app, client=self)
        if not resp.content:
            return {}
        try:
            data = resp.json()
        except ValueError as e:
            raise errors.Unavailable(
                f"Argo CD answered {method} {path} with something that is not JSON.",
                hint="Is CHATOPS_ARGOCD_URL pointing at argocd-server (not the UI behind a proxy)?",
            ) from e
        return data if isinstance(data, dict) else {"items": data}


def _split(name: str) -> tuple[str, str]:
    """``NAMESPACE/APP`` -> ``(APP, NAMESPACE)``; ``APP`` -> ``(APP, "")``."""
    namespace, _, app = name.rpartition("/")
    return app, namespace


def _name_params(name: str) -> tuple[str, dict[str, str]]:
    app, namespace = _split(name)
    return app, ({"appNamespace": namespace} if namespace else {})


ARGOCD = http_errors.Service(
    "Argo CD",
    who="the bot",
    credential="the bot's token",
    credential_hint="Check CHATOPS_ARGOCD_TOKEN: it may be expired or revoked.",
    address_hint="Check CHATOPS_ARGOCD_URL and that argocd-server is running.",
    permission_hint="Grant the bot's account the needed RBAC in argocd-rbac-cm.",
    unavailable_hint="argocd-server or the repo server may be restarting; try again shortly.",
)


def stream_error(error: Any) -> errors.CommandError:
    """grpc-gateway's stream failure ``{"grpc_code", "http_code", "message", "http_status"}``
    as an error a person can read: denied and unauthenticated are said so, anything else is a
    disconnect (``Unavailable``) that watchers reconnect after."""
    err = error if isinstance(error, dict) else {"message": str(error)}
    message = str(err.get("message") or err.get("http_status") or "no reason given")[:300]
    code = err.get("http_code")
    if code == 401 or err.get("grpc_code") == 16:
        return errors.Unauthorized(
            f"Argo CD ended the application stream: {message}.",
            hint="Check the bot's Argo CD token (CHATOPS_ARGOCD_TOKEN).",
        )
    if code == 403 or err.get("grpc_code") == 7:
        return errors.Denied(
            f"Argo CD ended the application stream: {message}.",
            hint="The bot's Argo CD account needs 'get' on these applications.",
        )
    return errors.Unavailable(
        f"Argo CD's application stream failed: {message}.",
        hint="The bot reconnects by itself; if this repeats, check argocd-server's logs.",
    )


def _transport_error(base_url: str, e: Exception) -> errors.Unavailable:
    return http_errors.unreachable(ARGOCD, base_url, e)


async def check_response(
    resp: httpx.Response, *, app: str | None = None, client: ArgoCD | None = None
) -> None:
    """Map an argocd-server failure to a readable ``CommandError``: the shared table of
    ``commands.http_errors`` plus what only Argo CD says. The one place it happens."""
    if resp.status_code < 400:
        return
    answer = http_errors.read(resp, secrets=(client._token,) if client is not None else ())
    status, low = answer.status, answer.low
    if status == 404 or (status == 403 and app and "permission denied" in low):
        if status == 404 or client is None or app is None:
            raise await _not_found(app, client)
        # A missing app also answers 403 unless ?project= is given: tell the two apart.
        raise await _not_found(app, client, maybe_denied=True)
    what = f"application '{app}'" if app else "Argo CD"
    raise http_errors.error_for(
        answer, ARGOCD, what=what, specific=lambda a: _argocd_specific(a, what)
    )


def _argocd_specific(answer: http_errors.Answer, what: str) -> errors.CommandError | None:
    """The answers only argocd-server gives (its messages, its use of 400 and 504)."""
    low, status, msg = answer.low, answer.status, answer.message
    if "another operation is already in progress" in low:
        return errors.Conflict(
            f"An operation is already running on {what}.",
            hint="Wait for it to finish, or check /status.",
        )
    if "blocked by sync window" in low:
        return errors.Denied(
            f"Syncing {what} is blocked by a sync window right now.",
            hint="Wait for the window to open, or ask an Argo CD admin for a manual-sync window.",
        )
    if "auto-sync is enabled" in low:
        return errors.Conflict(
            f"Argo CD refuses a history rollback of {what} while auto-sync is on.",
            hint="Use /rollback, which reverts the commit in Git instead.",
        )
    if "refresh deadline exceeded" in low or status == 504:
        return errors.Timeout(
            f"Argo CD could not finish refreshing {what} in time.",
            hint="The repo server may be slow; try again in a minute.",
        )
    if status == 403:
        return errors.Denied(
            f"Argo CD denied the bot access to {what}: {msg or 'permission denied'}.",
            hint=ARGOCD.permission_hint,
        )
    if status == 415:
        return errors.BadInput(f"Argo CD refused the request's content type: {msg}.")
    if status in (400, 409, 422):  # InvalidArgument / FailedPrecondition: the app's state
        return errors.Conflict(f"Argo CD refused the request for {what}: {msg}.")
    return None


async def _not_found(
    app: str | None, client: ArgoCD | None, *, maybe_denied: bool = False
) -> errors.CommandError:
    """No such app, with close matches from the app list. With ``maybe_denied`` (a 403, which
    Argo CD also answers for a missing app) an app that IS in the list means a real denial."""
    if not app:
        return errors.NotFound("Argo CD could not find that resource.")
    names: list[str] = []
    if client is not None:
        try:
            names = await client.names()
        except errors.CommandError:
            names = []
    if maybe_denied and app in names:
        return errors.Denied(
            f"Argo CD denied the bot access to application '{app}'.",
            hint=ARGOCD.permission_hint,
        )
    suggestions = tuple(difflib.get_close_matches(app, names, n=3))
    hint = f"Did you mean '{suggestions[0]}'?" if suggestions else "Check the name with /status."
    return errors.NotFound(f"No application '{app}'.", hint=hint, suggestions=suggestions)
