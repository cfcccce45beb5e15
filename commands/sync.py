"""``sync APP``: refresh -> pre-sync -> sync -> wait -> post-sync, reported step by step.

Waiting is done on Argo CD's application stream, not by polling: the first event that shows our
operation finished and the app Synced and Healthy ends the wait, and a Failed/Error phase or a
Degraded app after the operation finished ends it at once with the resources and messages that
explain why. If the stream drops, the app is read again and the stream reopened.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from commands import errors, validation, waiting
from commands.argocd.app import Application, Problem, short, tree_problems
from commands.context import Caller, Services, resolve
from commands.results import (
    Action,
    Fact,
    Link,
    Progress,
    Result,
    Status,
    StepLog,
    StepState,
    no_progress,
)

if TYPE_CHECKING:
    from commands.kube.ops import KubeOps

MAX_PROBLEMS = 8


@dataclass(frozen=True)
class SyncOptions:
    prune: bool = True
    hooks: bool = True
    timeout: float = 300.0
    retry_limit: int = 3
    presync_timeout: float = 120.0
    postsync_timeout: float = 300.0

    def validate(self) -> SyncOptions:
        validation.within(self.timeout, minimum=10, maximum=3600, what="sync timeout")
        validation.within(self.presync_timeout, minimum=5, maximum=1800, what="pre-sync timeout")
        validation.within(self.postsync_timeout, minimum=10, maximum=3600, what="post-sync timeout")
        if not 0 <= self.retry_limit <= 10:
            raise errors.BadInput(
                f"A retry limit of {self.retry_limit} is out of range.",
                hint="The accepted range is 0 to 10.",
            )
        return self


class SyncFailed(errors.CommandError):
    """The sync ran and ended badly; carries the resources that explain why."""

    kind = "sync_failed"

    def __init__(self, user_message: str, problems: list[Problem], revision: str = "") -> None:
        super().__init__(user_message)
        self.problems = problems
        self.revision = revision


def failure_actions(app: str) -> tuple[Action, ...]:
    return (
        Action("Retry", f"sync {app}", style="primary"),
        Action(
            "Rollback",
            f"rollback {app}",
            style="danger",
            confirm=f"Revert the last commit of {app} in Git and sync?",
        ),
    )


async def sync(
    svc: Services,
    app: str,
    opts: SyncOptions = SyncOptions(),
    *,
    caller: Caller = Caller(),
    progress: Progress = no_progress,
) -> Result:
    svc, app = await resolve(svc, app)
    target = svc.label(app)
    step = StepLog(progress)
    started = time.monotonic()
    link = svc.app_link(app)
    before_rev = ""
    try:
        await step("refresh", StepState.RUNNING, "asking Argo CD to compare with Git")
        current = await svc.argocd.get(app, refresh="normal")
        before_rev = current.deployed_revision
        detail = f"{current.sync_status} at {short(before_rev)}"
        if current.revision and current.revision != before_rev:
            detail += f", Git at {short(current.revision)}"
        await step("refresh", StepState.DONE, detail)
        if current.operation_running:
            raise busy(current, target)
        await run_presync(svc, current, opts, step)
        after = await sync_and_wait(svc, current, opts, caller=caller, step=step)
        await run_postsync(svc, after, opts, step)
    except SyncFailed as e:
        return Result(
            command="sync",
            target=target,
            status=Status.FAILED,
            summary=e.user_message,
            facts=(
                *problem_facts(e.problems),
                Fact("revision", short(e.revision or before_rev)),
            ),
            links=(Link("Argo CD", link),),
            actions=failure_actions(target),
            steps=tuple(step.steps),
        )
    except errors.CommandError as e:
        await fail_running(step, e)
        return failed_result("sync", target, e, step, link=link, retry=f"sync {target}")
    took = time.monotonic() - started
    changed = after.revision != before_rev
    revision = (
        f"{short(before_rev)} → {short(after.revision)}" if changed else short(after.revision)
    )
    return Result(
        command="sync",
        target=target,
        status=Status.CHANGED,
        summary=f"{target} is synced to {short(after.revision)} and healthy.",
        facts=(
            Fact("revision", revision),
            Fact("took", f"{took:.1f}s" if took < 60 else validation.human(took)),
            Fact("prune", "on" if opts.prune else "off"),
        ),
        links=(Link("Argo CD", link),),
        steps=tuple(step.steps),
    )


def busy(app: Application, name: str = "") -> errors.Conflict:
    state = app.operation_state
    since = state.get("startedAt") or "just now"
    return errors.Conflict(
        f"{name or app.name} already has an operation running: started by {app.initiated_by} at {since}"
        + (f" ({app.phase})" if app.phase else "")
        + ".",
        hint="Wait for it to finish or check /status.",
    )


async def run_presync(svc: Services, app: Application, opts: SyncOptions, step: StepLog) -> None:
    if not opts.hooks:
        await step("presync", StepState.SKIPPED, "hooks turned off")
        return
    if app.has_presync_hook:
        await step("presync", StepState.SKIPPED, "the app runs its own PreSync hook")
        return
    kube = await _kube(svc, app, "presync", step)
    if kube is None:
        return
    from commands.kube import hooks

    await hooks.presync(
        kube,
        app.dest_namespace,
        svc.tracked(app),
        timeout=opts.presync_timeout,
        step=step,
        shown=svc.shown(app),
    )


async def run_postsync(svc: Services, app: Application, opts: SyncOptions, step: StepLog) -> None:
    if not opts.hooks:
        await step("postsync", StepState.SKIPPED, "hooks turned off")
        return
    kube = await _kube(svc, app, "postsync", step)
    if kube is None:
        return
    from commands.kube import hooks

    await hooks.postsync(
        kube,
        app.dest_namespace,
        svc.tracked(app),
        timeout=opts.postsync_timeout,
        step=step,
        shown=svc.shown(app),
    )


async def _kube(svc: Services, app: Application, name: str, step: StepLog) -> KubeOps | None:
    """The client of the app's destination cluster, or None with the step marked skipped (an
    unmapped destination, no Kubernetes access); strict mode fails the step instead."""
    try:
        place = svc.placement(app)
    except errors.CommandError as e:
        await step(name, StepState.FAILED, e.user_message[:200])
        raise
    if place.kube is None:
        await step(name, StepState.SKIPPED, place.reason)
    return place.kube


async def sync_and_wait(
    svc: Services,
    current: Application,
    opts: SyncOptions,
    *,
    caller: Caller,
    step: StepLog,
) -> Application:
    app = svc.qualified(current)
    request_id = uuid.uuid4().hex
    await step("sync", StepState.RUNNING, "prune on" if opts.prune else "prune off")
    await svc.argocd.sync(
        app,
        prune=opts.prune,
        retry_limit=opts.retry_limit,
        requested_by=caller.label(),
        request_id=request_id,
    )
    await step("sync", StepState.DONE, "operation started")
    await step("wait", StepState.RUNNING, "waiting for Synced and Healthy")
    try:
        async with asyncio.timeout(opts.timeout):
            final = await wait_until_done(svc, app, request_id, step)
    except TimeoutError:
        latest = await svc.argocd.get(app)
        raise errors.Timeout(
            f"{app} was not Synced and Healthy after {validation.human(opts.timeout)}: "
            f"it is {latest.sync_status}/{latest.health_status}"
            + (f", operation {latest.phase}" if latest.phase else "")
            + ".",
            hint="Check /status; raise --timeout for slow rollouts.",
        ) from None
    await step("wait", StepState.DONE, f"Synced and Healthy at {short(final.revision)}")
    return final


async def wait_until_done(svc: Services, name: str, request_id: str, step: StepLog) -> Application:
    """Until the sync carrying ``request_id`` finished: the app, or SyncFailed."""
    last_detail = ""

    async def report(app: Application) -> None:
        nonlocal last_detail
        detail = _progress_detail(app)
        if detail != last_detail:
            last_detail = detail
            await step("wait", StepState.RUNNING, detail)

    found, app = await waiting.wait_for(svc, name, waiting.Ours(request_id=request_id), report)
    if found is waiting.Verdict.FAILED:
        raise SyncFailed(
            f"Sync of {app.name} failed: {app.operation_message or app.phase}",
            app.sync_problems(),
            revision=str(app.operation_state.get("syncResult", {}).get("revision") or ""),
        )
    if found is waiting.Verdict.DEGRADED:
        raise SyncFailed(
            f"{app.name} is Degraded after the sync"
            + (f": {app.health_message}" if app.health_message else "."),
            await degraded_problems(svc, app),
            revision=app.revision,
        )
    return app


def _progress_detail(app: Application) -> str:
    msg = app.operation_message
    if app.phase == "Running" and "Retrying attempt" in msg:
        return msg.split(". Retrying", 1)[0][:120] + " — retrying"
    return f"{app.sync_status}/{app.health_status}" + (f", {app.phase}" if app.phase else "")


async def degraded_problems(svc: Services, app: Application) -> list[Problem]:
    try:
        problems = tree_problems(await svc.argocd.resource_tree(svc.qualified(app)))
    except errors.CommandError:
        problems = []
    return problems or [p for p in app.unhealthy_resources() if p.status == "Degraded"]


def problem_facts(problems: list[Problem]) -> tuple[Fact, ...]:
    facts = [
        Fact(f"{p.kind}/{p.name}", p.status + (f": {p.message}" if p.message else ""))
        for p in problems[:MAX_PROBLEMS]
    ]
    if len(problems) > MAX_PROBLEMS:
        facts.append(Fact("more", f"{len(problems) - MAX_PROBLEMS} more resources"))
    return tuple(facts)


async def fail_running(step: StepLog, e: errors.CommandError) -> None:
    """Mark the steps still running as failed with the error's message."""
    for s in step.steps:
        if s.state is StepState.RUNNING:
            await step(s.name, StepState.FAILED, e.user_message[:200])


def failed_result(
    command: str,
    target: str,
    e: errors.CommandError,
    step: StepLog | None = None,
    *,
    link: str | None = None,
    retry: str | None = None,
) -> Result:
    facts: list[Fact] = []
    if e.hint:
        facts.append(Fact("hint", e.hint))
    if isinstance(e, errors.NotFound) and e.suggestions:
        facts.append(Fact("did you mean", ", ".join(e.suggestions)))
    actions: tuple[Action, ...] = ()
    if retry and isinstance(e, errors.Unavailable | errors.Timeout | errors.Conflict):
        actions = (Action("Retry", retry, style="primary"),)
    return Result(
        command=command,
        target=target,
        status=Status.DENIED if isinstance(e, errors.Denied) else Status.FAILED,
        summary=e.user_message,
        facts=tuple(facts),
        links=(Link("Argo CD", link),) if link else (),
        actions=actions,
        steps=tuple(step.steps) if step else (),
    )
