"""The fake Argo CD's state and its stand-in application controller.

Everything here runs on the fake server's own event loop and nowhere else, so no locks are
needed: the HTTP handlers and the public test methods (through ``ThreadedServer.call``) are the
only entry points. Every change goes through ``commit``, which bumps the global
resourceVersion, records a snapshot and fans it out to the watch streams, as the Kubernetes
API and argocd-server's broadcaster do.

A sync plays a *script*, one state change every ``step_delay`` seconds, writing the same
fields in the same order as the real controller: ``.operation`` set by the API, then
``status.operationState`` Running → Succeeded/Failed/Error, ``.operation`` cleared at the end,
``status.sync`` and ``status.health`` following, a history entry appended on success.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes import argocd_fixtures as fx
from tests.fakes import argocd_scripts

SCRIPTS = tuple(argocd_scripts.PLAYS)
REFRESH = fx.REFRESH_ANNOTATION
DEFAULT_HISTORY_LIMIT = 10

App = dict[str, Any]


class ApiError(Exception):
    """A gRPC status, as argocd-server's handlers return it; the HTTP layer maps the code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# gRPC codes used by the fake
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION = 3, 5, 7, 9
UNAVAILABLE = 14


@dataclass
class Step:
    phase: str
    message: str | None = None
    took: float | None = None  # seconds from startedAt to finishedAt, as the operation reports


@dataclass
class Subscriber:
    matches: Callable[[App], bool]
    # (type, app) events; ("ERROR", StreamError) ends the stream with grpc-gateway's error frame
    queue: asyncio.Queue[tuple[str, App] | None] = field(default_factory=asyncio.Queue)


class _Terminated(Exception):
    pass


class _Gone(Exception):
    pass


class ArgoState:
    def __init__(self, *, step_delay: float, account: str) -> None:
        self.step_delay = step_delay
        self.account = account
        self.reconcile_delay = 0.0
        self.apps: dict[str, App] = {}
        self.trees: dict[str, list[dict[str, Any]]] = {}
        self.scripts: dict[str, deque[Step]] = {}
        self.hooks: dict[str, set[str]] = {}
        self.heads: dict[str, str] = {}
        # a repo-server stand-in: when set for an app, its Git head is read from here
        self.git_sources: dict[str, Callable[[], str]] = {}
        self.blocked: set[str] = set()
        self.log: list[tuple[str, App]] = []
        self.subscribers: list[Subscriber] = []
        self.resource_version = 1000
        self.closing = False
        self.on_change: Callable[[], None] = lambda: None
        self._waiters: list[asyncio.Event] = []
        self._reconciling: set[str] = set()
        self._took: dict[str, datetime] = {}  # app -> the finishedAt its running sync reports
        self._tasks: set[asyncio.Task[None]] = set()

    # -- store --------------------------------------------------------------------------
    def commit(self, name: str, event: str = "MODIFIED") -> None:
        app = self.apps[name]
        self.resource_version += 1
        app["metadata"]["resourceVersion"] = str(self.resource_version)
        snapshot = copy.deepcopy(app)
        if event == "DELETED":
            del self.apps[name]
        self.log.append((event, snapshot))
        for sub in list(self.subscribers):
            if sub.matches(snapshot):
                sub.queue.put_nowait((event, copy.deepcopy(snapshot)))
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.set()
        if event != "DELETED" and REFRESH in (app["metadata"].get("annotations") or {}):
            self._schedule_reconcile(name)
        self.on_change()

    async def changed(self) -> None:
        """Wait for the next commit (or for the fake to close)."""
        if self.closing:
            raise ApiError(UNAVAILABLE, "server is shutting down")
        ev = asyncio.Event()
        self._waiters.append(ev)
        await ev.wait()
        if self.closing:
            raise ApiError(UNAVAILABLE, "server is shutting down")

    def close(self) -> None:
        self.closing = True
        for sub in self.subscribers:
            sub.queue.put_nowait(None)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.set()

    def cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()

    def add(self, app: App) -> None:
        app = copy.deepcopy(app)
        meta = app.setdefault("metadata", {})
        name = meta["name"]
        meta.setdefault("namespace", fx.ARGOCD_NAMESPACE)
        meta.setdefault("uid", fx.uid(f"app/{name}"))
        meta.setdefault("creationTimestamp", fx.now())
        meta.setdefault("generation", 1)
        app.setdefault("status", {})
        if app.get("operation") is None:
            app.pop("operation", None)
        replacing = name in self.apps
        self.apps[name] = app
        self.heads.setdefault(name, self.deployed_revision(app) or fx.sha(f"{name}-1"))
        self.commit(name, "MODIFIED" if replacing else "ADDED")

    def remove(self, name: str) -> None:
        self.commit(name, "DELETED")

    def tree(self, name: str) -> list[dict[str, Any]]:
        if name in self.trees:
            return copy.deepcopy(self.trees[name])
        return fx.derived_tree(self.apps[name]["status"].get("resources") or [])

    # -- revisions ----------------------------------------------------------------------
    @staticmethod
    def deployed_revision(app: App) -> str | None:
        history = app["status"].get("history") or []
        if history:
            return str(history[-1].get("revision") or "") or None
        rev = (app["status"].get("sync") or {}).get("revision")
        return str(rev) if rev else None

    def resolve(self, name: str, requested: str | None) -> str:
        """A requested revision as the repo server would resolve it to a commit."""
        if requested and len(requested) == 40 and all(c in "0123456789abcdef" for c in requested):
            return requested
        return self.head(name) or fx.sha(f"{name}-head")

    def head(self, name: str) -> str | None:
        source = self.git_sources.get(name)
        if source is not None:
            self.heads[name] = source()
        return self.heads.get(name)

    # -- refresh ------------------------------------------------------------------------
    def _schedule_reconcile(self, name: str) -> None:
        if name not in self._reconciling:
            self._reconciling.add(name)
            self._spawn(self._reconcile(name))

    async def _reconcile(self, name: str) -> None:
        try:
            await asyncio.sleep(self.reconcile_delay)
            app = self.apps.get(name)
            if app is None:
                return
            (app["metadata"].get("annotations") or {}).pop(REFRESH, None)
            sync = app["status"].setdefault("sync", {"status": "Unknown"})
            head = self.head(name)
            if head and not app.get("operation"):
                sync["revision"] = head
                sync["status"] = "Synced" if head == self.deployed_revision(app) else "OutOfSync"
            app["status"]["reconciledAt"] = fx.now()
        finally:
            self._reconciling.discard(name)
        self.commit(name)

    # -- operations ---------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def begin(self, name: str, operation: dict[str, Any]) -> App:
        app = self.apps[name]
        if app.get("operation"):
            raise ApiError(FAILED_PRECONDITION, "another operation is already in progress")
        app["operation"] = operation
        self.commit(name)
        queued = self.scripts.get(name)
        self._spawn(self._play(name, queued.popleft() if queued else Step("succeed")))
        return app

    def terminate(self, name: str) -> None:
        app = self.apps[name]
        state = app["status"].get("operationState")
        if not app.get("operation") or not state:
            raise ApiError(
                INVALID_ARGUMENT, "Unable to terminate operation. No operation is in progress"
            )
        state["phase"] = "Terminating"
        self.commit(name)

    async def step(self, name: str, *, interruptible: bool = True) -> App:
        await asyncio.sleep(self.step_delay)
        app = self.apps.get(name)
        if app is None:
            raise _Gone
        if interruptible and self.op_state(app).get("phase") == "Terminating":
            raise _Terminated
        return app

    @staticmethod
    def op_state(app: App) -> dict[str, Any]:
        return app["status"].get("operationState") or {}

    async def _play(self, name: str, step: Step) -> None:
        try:
            app = self.apps[name]
            if self.op_state(app).get("phase") == "Terminating":
                raise _Terminated
            op = app["operation"]
            begin = datetime.now(UTC).replace(microsecond=0)
            if step.took is not None:  # the sync reports it took that long, whatever it took
                self._took[name] = begin + timedelta(seconds=step.took)
            else:
                self._took.pop(name, None)
            app["status"]["operationState"] = {
                "operation": copy.deepcopy(op),
                "phase": "Running",
                "startedAt": fx.stamp(begin),
            }
            self.commit(name)
            await argocd_scripts.PLAYS[step.phase](self, name, op, step)
        except _Terminated:
            self.finish(name, "Failed", "Operation terminated")
        except _Gone:
            pass

    def running(self, name: str, message: str, results: list[dict[str, Any]] | None) -> None:
        app = self.apps[name]
        state = self.op_state(app)
        state["message"] = message
        if results is not None:
            state["syncResult"] = self.sync_result(app, results)
        self.commit(name)

    def sync_result(self, app: App, results: list[dict[str, Any]]) -> dict[str, Any]:
        op_sync = self.op_state(app)["operation"].get("sync") or {}
        return {
            "revision": op_sync.get("revision") or self.resolve(app["metadata"]["name"], None),
            "source": copy.deepcopy(app["spec"].get("source") or {}),
            "resources": copy.deepcopy(results),
        }

    def finish(
        self, name: str, phase: str, message: str, results: list[dict[str, Any]] | None = None
    ) -> None:
        app = self.apps.get(name)
        if app is None:
            return
        state = self.op_state(app)
        end = self._took.pop(name, None)
        state.update(phase=phase, message=message, finishedAt=fx.stamp(end) if end else fx.now())
        if results is not None:
            state["syncResult"] = self.sync_result(app, results)
        app.pop("operation", None)
        op = state["operation"]
        dry_run = bool((op.get("sync") or {}).get("dryRun"))
        conditions = [c for c in app["status"].get("conditions") or [] if c["type"] != "SyncError"]
        if phase == "Succeeded" and not dry_run:
            self._append_history(app, state)
        elif phase in ("Failed", "Error") and (op.get("initiatedBy") or {}).get("automated"):
            rev = (op.get("sync") or {}).get("revision", "")
            conditions.append(
                {
                    "type": "SyncError",
                    "message": f"Failed last sync attempt to [{rev}]: {message}",
                    "lastTransitionTime": fx.now(),
                }
            )
        if conditions:
            app["status"]["conditions"] = conditions
        else:
            app["status"].pop("conditions", None)
        self.commit(name)

    def _append_history(self, app: App, state: dict[str, Any]) -> None:
        history = app["status"].setdefault("history", [])
        entry = {
            "id": max((h.get("id", 0) for h in history), default=-1) + 1,
            "revision": state["syncResult"]["revision"],
            "deployStartedAt": state["startedAt"],
            "deployedAt": fx.now(),
            "source": copy.deepcopy(app["spec"].get("source") or {}),
            "initiatedBy": copy.deepcopy(state["operation"].get("initiatedBy") or {}),
        }
        history.append(entry)
        limit = app["spec"].get("revisionHistoryLimit", DEFAULT_HISTORY_LIMIT)
        del history[: max(0, len(history) - int(limit))]

    # -- resources ----------------------------------------------------------------------
    def targets(self, name: str, op: dict[str, Any]) -> list[tuple[str, str, str]]:
        app = self.apps[name]
        ns = app["spec"]["destination"].get("namespace", "")
        wanted = (op.get("sync") or {}).get("resources")
        if wanted:
            return [(r["kind"], r["name"], r.get("namespace") or ns) for r in wanted]
        resources = app["status"].get("resources") or []
        out = [(r["kind"], r["name"], r.get("namespace", ns)) for r in resources]
        return out or [("Deployment", name, ns)]

    def set_resource_health(
        self, name: str, kind: str, res_name: str, health: str, message: str | None
    ) -> None:
        app = self.apps[name]
        ns = app["spec"]["destination"].get("namespace", "")
        resources = app["status"].setdefault("resources", [])
        entry = next((r for r in resources if (r["kind"], r["name"]) == (kind, res_name)), None)
        if entry is None:
            entry = fx.resource_status(kind, res_name, ns)
            resources.append(entry)
        entry["health"] = {"status": health, **({"message": message} if message else {})}
        for node in self.trees.get(name, []):
            if (node.get("kind"), node.get("name")) == (kind, res_name):
                node["health"] = copy.deepcopy(entry["health"])

    def set_workload_health(self, name: str, health: str, message: str | None = None) -> None:
        app = self.apps[name]
        for r in app["status"].get("resources") or []:
            if r["kind"] in fx.WORKLOADS:
                msg = message or (
                    argocd_scripts.degraded_message(r["kind"], r["name"])
                    if health == "Degraded"
                    else None
                )
                self.set_resource_health(name, r["kind"], r["name"], health, msg)
        self.set_app_health(name, health)

    def set_app_health(self, name: str, health: str, message: str | None = None) -> None:
        app = self.apps[name]
        old = app["status"].get("health") or {}
        new: dict[str, Any] = {"status": health}
        if message:
            new["message"] = message
        new["lastTransitionTime"] = (
            old.get("lastTransitionTime", fx.now()) if old.get("status") == health else fx.now()
        )
        app["status"]["health"] = new
