"""Waiting for OUR Argo CD operation to finish: one judgement shared by sync and rollback.

A wait reads every state of the app from Argo CD's application stream (``app_updates``) and
asks one question of each: has the operation we care about finished, and how? ``verdict``
answers it the same way for both commands, from one ``Ours`` that says which operation is ours:

- ``sync`` started the operation itself and recognises it by the request id it put in the
  operation's ``info`` (``startedAt`` has one-second resolution, so time cannot tell);
- ``rollback`` with auto-sync waits for Argo CD's own operation and recognises it by the
  revision it deploys (the revert commit). A revert whose manifests equal what already runs
  needs no operation at all: the app is then simply Synced at that revision. Until then, a
  refresh that merely moved the app's target to the revert (OutOfSync, maybe still Degraded
  from the change being undone) is not the rollback's result.

A failed or errored phase counts only when the failed operation is ours: the failure of the very
sync a rollback is undoing must not be read as the rollback's. While any operation runs
(``.operation`` set, or a Running/Terminating phase, which includes Argo CD's retries), the
answer is "still running".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from commands import errors
from commands.argocd.app import FAILED_PHASES, Application
from commands.argocd.client import REQUEST_ID_INFO
from commands.context import Services


class Verdict(enum.Enum):
    RUNNING = "running"  # keep waiting
    DONE = "done"  # finished: Synced and Healthy
    FAILED = "failed"  # our operation ended Failed or Error
    DEGRADED = "degraded"  # our operation finished, the app is Degraded


@dataclass(frozen=True)
class Ours:
    """Which operation is ours: the one carrying ``request_id``, else the one to ``revision``."""

    request_id: str = ""
    revision: str = ""

    def operation(self, app: Application) -> bool:
        """The app's last operation is ours."""
        if self.request_id:
            return app.operation_info(REQUEST_ID_INFO) == self.request_id
        synced_to = str((app.operation_state.get("syncResult") or {}).get("revision") or "")
        return bool(self.revision) and synced_to == self.revision

    def reached(self, app: Application) -> bool:
        """The app stands where our operation takes it: our operation finished, or (waiting for
        a revision) Argo CD found the app Synced at it without needing one."""
        if self.request_id:
            return self.operation(app)
        at = bool(self.revision) and app.revision == self.revision
        return at and (self.operation(app) or app.sync_status == "Synced")


def verdict(app: Application, ours: Ours) -> Verdict:
    """From one state of the app: is our operation done, failed, or still running?"""
    if app.operation_running:
        return Verdict.RUNNING
    if app.phase in FAILED_PHASES and ours.operation(app):
        return Verdict.FAILED
    if not ours.reached(app):
        return Verdict.RUNNING
    if app.health_status == "Degraded":
        return Verdict.DEGRADED
    if app.sync_status == "Synced" and app.health_status == "Healthy":
        return Verdict.DONE
    return Verdict.RUNNING


async def app_updates(svc: Services, name: str) -> AsyncGenerator[Application, None]:
    """Every state of app ``name`` from Argo CD's stream. When the stream drops or ends, the app
    is read once (so nothing between two streams is missed) and the stream reopened."""
    while True:
        try:
            async with contextlib.aclosing(svc.argocd.watch(name=name)) as stream:
                async for _type, app in stream:
                    if svc.qualified(app) == name:
                        yield app
        except errors.Unavailable:
            pass
        yield await svc.argocd.get(name)
        await asyncio.sleep(0.5)


async def wait_for(
    svc: Services,
    name: str,
    ours: Ours,
    on_update: Callable[[Application], Awaitable[None]] | None = None,
) -> tuple[Verdict, Application]:
    """The first verdict other than RUNNING, with the app state that gave it. ``on_update``
    sees every state still running (progress reports). Bound it with ``asyncio.timeout``."""
    async with contextlib.aclosing(app_updates(svc, name)) as updates:
        async for app in updates:
            found = verdict(app, ours)
            if found is not Verdict.RUNNING:
                return found, app
            if on_update is not None:
                await on_update(app)
    raise AssertionError("app_updates never ends")  # pragma: no cover
