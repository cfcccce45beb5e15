"""``status APP``: sync, health, operation, revision, and what is not healthy and why."""

from __future__ import annotations

import asyncio
import datetime as dt

from commands import errors
from commands.argocd.app import Application, short
from commands.context import Services, resolve
from commands.results import Action, Fact, Link, Result, Status
from commands.selfheal import TIMER_KIND
from commands.sync import degraded_problems, problem_facts


async def status(svc: Services, app_name: str) -> Result:
    svc, qualified = await resolve(svc, app_name)
    app_name = svc.label(qualified)
    app = await svc.argocd.get(qualified)
    facts: list[Fact] = [
        Fact("sync", f"{app.sync_status} at {short(app.revision)}"),
        Fact(
            "health", app.health_status + (f": {app.health_message}" if app.health_message else "")
        ),
    ]
    if app.phase:
        op = app.phase
        if app.operation_running:
            op += f", started by {app.initiated_by}"
        if app.operation_message:
            op += f": {app.operation_message[:200]}"
        facts.append(Fact("operation", op))
    facts.append(Fact("auto-sync", _policy(app)))
    if svc.timers is not None:
        due = await svc.timers.pending(TIMER_KIND, app_name)
        if due is not None:
            when = dt.datetime.fromtimestamp(due, dt.UTC).strftime("%H:%M UTC")
            facts.append(Fact("self-heal back on", when))
    facts.append(Fact("destination", f"{app.dest_cluster}/{app.dest_namespace}"))
    if svc.several:
        facts.append(Fact("argo cd", svc.instance))
    problems = []
    if app.health_status not in ("Healthy",):
        problems = await degraded_problems(svc, app)
        if app.phase in ("Failed", "Error"):
            problems += app.sync_problems()
    facts += problem_facts(problems)
    for c in app.conditions[:3]:
        if c.get("type", "").endswith("Error"):
            facts.append(Fact(str(c.get("type")), str(c.get("message", ""))[:300]))

    last_failed = app.phase in ("Failed", "Error") and not app.operation_running
    if last_failed and not problems:
        facts += problem_facts(app.sync_problems())
    healthy = app.sync_status == "Synced" and app.health_status == "Healthy" and not last_failed
    summary = f"{app_name} is {app.sync_status} and {app.health_status} at {short(app.revision)}."
    if problems:
        summary = f"{app_name} is {app.health_status}: {problems[0].line()}"[:300]
    elif last_failed:
        summary = (
            f"{app_name} is {app.sync_status} and {app.health_status}, but its last sync "
            f"failed: {app.operation_message or app.phase}"
        )[:300]
    actions: list[Action] = []
    if not healthy and not app.operation_running:
        actions.append(Action("Sync", f"sync {app_name}", style="primary"))
        actions.append(
            Action(
                "Rollback",
                f"rollback {app_name}",
                style="danger",
                confirm=f"Revert the last commit of {app_name} in Git and sync?",
            )
        )
    actions.append(Action("Verify rootless", f"verify-rootless {app_name}"))
    return Result(
        "status",
        app_name,
        Status.NOOP if healthy else Status.FAILED,
        summary,
        facts=tuple(facts),
        links=(Link("Argo CD", svc.app_link(qualified)),),
        actions=tuple(actions),
    )


def _policy(app: Application) -> str:
    if not app.auto_sync:
        return "off"
    a = app.automated or {}
    parts = ["on", "self-heal " + ("on" if a.get("selfHeal") else "off")]
    parts.append("prune " + ("on" if a.get("prune") else "off"))
    return ", ".join(parts)


MAX_LISTED = 15
_RANK = {"Degraded": 0, "Missing": 1, "Unknown": 2, "Progressing": 3, "Suspended": 4}


async def overview(svc: Services) -> Result:
    """``status`` without an app: which apps need attention, worst first — what on-call asks
    first from a phone."""
    each = svc.everywhere()
    listed = await asyncio.gather(*(s.argocd.list_apps() for s in each), return_exceptions=True)
    apps: list[tuple[str, Application]] = []
    unreachable: list[Fact] = []
    for s, some in zip(each, listed, strict=True):
        if isinstance(some, errors.CommandError) and len(each) > 1:
            unreachable.append(Fact(f"Argo CD {s.instance}", some.user_message[:200]))
        elif isinstance(some, BaseException):
            raise some
        else:
            apps += [(s.label(s.qualified(a)), a) for a in some]
    attention: list[tuple[int, str, str]] = []
    for name, app in apps:
        failed = app.phase in ("Failed", "Error") and not app.operation_running
        if app.sync_status == "Synced" and app.health_status == "Healthy" and not failed:
            continue
        state = f"{app.sync_status}/{app.health_status}"
        if app.operation_running:
            state += f", {app.phase or 'operation'} running"
        elif failed:
            state += ", last sync failed"
        rank = (
            0 if failed else _RANK.get(app.health_status, 5 if app.sync_status == "Synced" else 6)
        )
        attention.append((rank, name, state))
    attention.sort(key=lambda t: (t[0], t[1]))
    if not attention and not unreachable:
        return Result(
            "status",
            "all apps",
            Status.NOOP,
            f"All {len(apps)} applications are Synced and Healthy.",
        )
    facts = unreachable + [Fact(name, state) for _, name, state in attention[:MAX_LISTED]]
    if len(attention) > MAX_LISTED:
        facts.append(Fact("more", f"{len(attention) - MAX_LISTED} more apps need attention"))
    return Result(
        "status",
        "all apps",
        Status.FAILED,
        f"{len(attention)} of {len(apps)} applications need attention.",
        facts=tuple(facts),
        actions=tuple(Action(f"Status {name}", f"status {name}") for _, name, _ in attention[:5]),
    )
