"""A local argocd-server: the REST API (grpc-gateway) over real HTTP, for tests.

It keeps the wire rules the real server enforces and clients most often get wrong (exact
``Content-Type: application/json`` on every non-GET, 415 before auth; Bearer auth; a missing
app answering 403 unless ``?project=`` is given; a merge patch as a JSON *string*; request
bodies decoded as Go would, checked against the upstream swagger) and the controller's
behaviour behind them (see ``argocd_state``). It records every request it saw and can be told
to fail the next calls, to block syncs by a sync window, or to take long to reconcile.

Usage::

    with running_fake_argocd() as argo:
        argo.add_app(make_app("web"))
        argo.script("web", "fail")
        ...  # point the client at argo.url with token argo.token
        argo.wait_app("web", lambda a: a["status"]["operationState"]["phase"] == "Failed")
        assert argo.requests[-1].path == "/api/v1/applications/web/sync"
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from tests.fakes.argocd_http import GRPC_CODE, ArgoHttp, Failure, RecordedRequest, stream_error
from tests.fakes.argocd_state import SCRIPTS, ArgoState, Step
from tests.fakes.server import ThreadedServer

__all__ = ["FakeArgoCD", "RecordedRequest", "running_fake_argocd"]

T = TypeVar("T")


class FakeArgoCD:
    """A running fake argocd-server. All methods may be called from any thread."""

    def __init__(
        self,
        token: str = "test-token",  # noqa: S107 - a test token
        step_delay: float = 0.02,
        *,
        account: str = "admin",
        strict: bool = True,
    ) -> None:
        self.token = token
        self.state = ArgoState(step_delay=step_delay, account=account)
        self._http = ArgoHttp(self.state, token, strict)
        self._server = ThreadedServer(self._http.app())
        self._started = False
        self._changes = threading.Condition()
        self._version = 0
        self.state.on_change = self._notify

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> FakeArgoCD:
        self._server.start()
        self._started = True
        return self

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        if self._started:
            self._close_streams()
            self._call(self.state.cancel_tasks)
            self._server.stop()
            self._started = False

    def pause(self) -> None:
        """Become unreachable (connection refused); open watch streams end. State is kept."""
        self._close_streams()
        self._server.pause()

    def resume(self) -> None:
        self.state.closing = False
        self._server.resume()

    def _close_streams(self) -> None:
        self._call(self.state.close)
        deadline = time.monotonic() + 5
        while self._call(lambda: bool(self.state.subscribers)) and time.monotonic() < deadline:
            time.sleep(0.01)  # the stream handlers finish on the fake's loop

    def __enter__(self) -> FakeArgoCD:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[], T]) -> T:
        if not self._started:
            return fn()

        async def run() -> T:
            return fn()

        return self._server.call(run())

    def _notify(self) -> None:
        with self._changes:
            self._version += 1
            self._changes.notify_all()

    # -- state for tests ----------------------------------------------------------------
    def add_app(self, app_json: Mapping[str, Any]) -> None:
        """Create (or replace) an Application; watchers see ADDED (or MODIFIED)."""
        self._call(lambda: self.state.add(dict(app_json)))

    def remove_app(self, name: str) -> None:
        self._call(lambda: self.state.remove(name))

    def app(self, name: str) -> dict[str, Any]:
        """A deep copy of the app as the server holds it now."""
        return self._call(lambda: copy.deepcopy(self.state.apps[name]))

    def apps(self) -> dict[str, dict[str, Any]]:
        return self._call(lambda: copy.deepcopy(self.state.apps))

    def states(self, name: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every committed version (event type, snapshot), oldest first, of one app or all."""
        log = self._call(lambda: list(self.state.log))
        return [(t, a) for t, a in log if name is None or a["metadata"]["name"] == name]

    def set_health(
        self,
        name: str,
        status: str,
        message: str | None = None,
        resources: Mapping[str, str | tuple[str, str | None]] | None = None,
    ) -> None:
        """Set the app's health. ``resources`` maps "Kind/name" to a health status or
        ``(status, message)`` (an unknown resource is added); without it, every workload
        (Deployment, StatefulSet, DaemonSet) takes ``status``, as the aggregate implies."""

        def run() -> None:
            if resources is None:
                self.state.set_workload_health(name, status, message)
            else:
                for ref, value in resources.items():
                    kind, _, res_name = ref.partition("/")
                    health, msg = (value, None) if isinstance(value, str) else value
                    self.state.set_resource_health(name, kind, res_name, health, msg)
            self.state.set_app_health(name, status, message)
            self.state.commit(name)

        self._call(run)

    def set_resource_tree(self, name: str, nodes: list[dict[str, Any]] | None) -> None:
        """Serve exactly ``nodes`` (see ``argocd_fixtures.tree_node``); None: derive again."""

        def run() -> None:
            if nodes is None:
                self.state.trees.pop(name, None)
            else:
                self.state.trees[name] = copy.deepcopy(nodes)

        self._call(run)

    def script(
        self, name: str, *phases: str, message: str | None = None, took: float | None = None
    ) -> None:
        """Queue what the next syncs of ``name`` do, one phase per sync: "succeed", "fail",
        "retry_then_fail", "error", "degrade", "hang" or "hook_fail". ``message`` replaces
        the failure reason (or degraded message). ``took`` (whole seconds) is how long each
        of these syncs reports it ran: ``finishedAt`` is exactly that much after its
        ``startedAt`` (the play itself still runs at ``step_delay``). Unqueued syncs succeed."""
        unknown = [p for p in phases if p not in SCRIPTS]
        if unknown:
            raise ValueError(f"unknown script phase(s) {unknown}; known: {SCRIPTS}")
        steps = [Step(p, message, took) for p in phases]
        self._call(lambda: self.state.scripts.setdefault(name, deque()).extend(steps))

    def set_hooks(self, name: str, *hook_types: str) -> None:
        """Declare the app's hooks in Git, e.g. ``set_hooks("web", "PreSync", "PostSync")``."""
        self._call(lambda: self.state.hooks.__setitem__(name, set(hook_types)))

    def track_git(self, name: str, head: Callable[[], str]) -> None:
        """Read the app's Git head from ``head()`` at every refresh and sync, as the repo
        server reads the real repository (e.g. a fake GitHub's bare repo)."""
        self._call(lambda: self.state.git_sources.__setitem__(name, head))

    def set_git_head(self, name: str, revision: str) -> None:
        """A new commit on the tracked branch; a refresh then shows the app OutOfSync."""
        self._call(lambda: self.state.heads.__setitem__(name, revision))

    def set_sync_window_blocked(self, name: str, blocked: bool = True) -> None:
        self._call(
            lambda: (self.state.blocked.add if blocked else self.state.blocked.discard)(name)
        )

    def break_streams(self, grpc_code: int = 14, message: str = "transport is closing") -> None:
        """Open application streams fail: each gets grpc-gateway's ``{"error": {...}}`` frame
        (``argocd_http.stream_error``) and ends, as when argocd-server's watch fails."""
        frame = stream_error(grpc_code, message)

        def run() -> None:
            for sub in self.state.subscribers:
                sub.queue.put_nowait(("ERROR", frame))  # type: ignore[arg-type]

        self._call(run)

    def set_refresh_deadline(self, seconds: float | None) -> None:
        """How long a refresh may wait for the controller (``ArgoHttp.refresh_deadline``)."""
        self._http.refresh_deadline = seconds

    def set_reconcile_delay(self, seconds: float) -> None:
        self._call(lambda: setattr(self.state, "reconcile_delay", seconds))

    def start_auto_sync(self, name: str, revision: str | None = None) -> bool:
        """Have the controller start an automated sync now (False if one is running)."""

        def run() -> bool:
            app = self.state.apps[name]
            if app.get("operation"):
                return False
            policy = app["spec"].get("syncPolicy") or {}
            sync: dict[str, Any] = {"revision": self.state.resolve(name, revision)}
            if (policy.get("automated") or {}).get("prune"):
                sync["prune"] = True
            if policy.get("syncOptions"):
                sync["syncOptions"] = list(policy["syncOptions"])
            op: dict[str, Any] = {"sync": sync, "initiatedBy": {"automated": True}}
            if policy.get("retry"):
                op["retry"] = copy.deepcopy(policy["retry"])
            self.state.begin(name, op)
            return True

        return self._call(run)

    def auto_sync_when_head_moves(
        self, name: str, head: Callable[[], str], timeout: float = 10.0
    ) -> threading.Thread:
        """Play the controller's auto-sync for a branch that moves: once ``head()`` differs
        from what it is now, start an automated sync of app ``name`` to the new head. The
        returned thread gives up after ``timeout`` seconds; join it to wait for it."""
        start = head()

        def run() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                now = head()
                if now != start:
                    self.start_auto_sync(name, now)
                    return
                time.sleep(0.01)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def fail_next(
        self,
        n: int,
        status: int,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        code: int | None = None,
        raw: bool = False,
    ) -> None:
        """Answer the next ``n`` matching requests (any, or by ``method`` and a ``path``
        substring) with ``status`` and an argocd-server error body; ``raw`` sends ``message``
        as a plain body instead, as a proxy in front of the server would."""
        grpc = code if code is not None else GRPC_CODE.get(status, 2)
        failure = Failure(n, status, message, grpc, method, path, raw)
        self._call(lambda: self._http.failures.append(failure))

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._call(lambda: list(self._http.requests))

    @property
    def in_flight(self) -> dict[str, int]:
        """Requests being handled now: ``{"calls": n, "streams": m}``."""
        return self._call(lambda: dict(self._http.in_flight))

    @property
    def busiest(self) -> dict[str, int]:
        """The most requests handled at once since the start: ``{"calls": n, "streams": m}``."""
        return self._call(lambda: dict(self._http.busiest))

    def clear_requests(self) -> None:
        self._call(self._http.requests.clear)

    @property
    def sse_keepalive(self) -> float:
        return self._http.sse_keepalive

    @sse_keepalive.setter
    def sse_keepalive(self, seconds: float) -> None:
        self._http.sse_keepalive = seconds

    # -- waiting ------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
        """Block until ``predicate()`` holds, re-checking after every change of state."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changes:
                seen = self._version
            if predicate():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"fake Argo CD: timed out waiting for {what or predicate}")
            with self._changes:
                self._changes.wait_for(self._changed_since(seen), remaining)

    def _changed_since(self, version: int) -> Callable[[], bool]:
        return lambda: self._version != version

    def wait_app(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Block until ``predicate(app)`` holds for app ``name``; return that app."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            app = self._call(lambda: copy.deepcopy(self.state.apps.get(name)))
            if app is not None and predicate(app):
                found.append(app)
                return True
            return False

        self.wait_for(check, timeout, what=f"app {name!r}")
        return found[0]

    async def await_app(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """``wait_app`` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_app, name, predicate, timeout)


@contextlib.contextmanager
def running_fake_argocd(**kw: Any) -> Iterator[FakeArgoCD]:
    """Start a ``FakeArgoCD(**kw)`` and stop it afterwards (the lead wires the fixture)."""
    fake = FakeArgoCD(**kw).start()
    try:
        yield fake
    finally:
        fake.stop()
