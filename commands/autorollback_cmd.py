"""``autorollback off|on|status [APP] [DURATION]``: pause, resume and inspect the policy.

A pause is durable (the ``Ledger`` port: the bot's store) and is what the policy reads before
acting (``commands.autorollback``, rule 3): ``off APP`` pauses until ``on APP``, ``off APP 2h``
until then. ``status`` says, per app, whether and how the app is opted in (annotation or
configuration), whether it is paused, whether self-heal is on (the policy waits while it is off),
and the policy's latest decisions.

An app is named as everywhere else (``APP``, ``NAMESPACE/APP``, ``APP@INSTANCE``); the pause is
kept under the name the policy and its buttons use (``APP@INSTANCE`` with several instances).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol

from commands import errors, validation
from commands.argocd.app import Application, short
from commands.autorollback import PolicyConfig, mode_for
from commands.context import Caller, Services, resolve
from commands.results import Action, Fact, Link, Result, Status

MIN_PAUSE, MAX_PAUSE = 60.0, 30 * 86400.0
FOREVER = 253402300799.0  # 9999-12-31 23:59:59 UTC: paused until turned back on
MAX_APPS_LISTED = 25
RECENT = 5


@dataclass(frozen=True)
class DecisionRecord:
    app: str
    revision: str
    trigger: str
    action: str  # act | propose | skip
    reason: str
    detail: str
    commit: str  # the commit the policy reverted (or would have)
    revert: str  # the policy's revert commit, once made
    decided_at: float


class Ledger(Protocol):
    """The policy's durable memory, as far as the command needs it."""

    async def pause(self, app: str, until: float, by: str) -> None: ...

    async def resume(self, app: str) -> bool:
        """False when the app was not paused."""
        ...

    async def paused_until(self, app: str) -> float | None: ...

    async def recent(self, app: str | None, limit: int) -> list[DecisionRecord]: ...


def until_text(until: float) -> str:
    if until >= FOREVER:
        return "until turned back on"
    return "until " + dt.datetime.fromtimestamp(until, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%m-%d %H:%M")


def record_line(r: DecisionRecord) -> str:
    what = {"act": "rolled back", "propose": "proposed"}.get(r.action, f"skipped ({r.reason})")
    return f"{_when(r.decided_at)} {r.app} {short(r.revision)} {r.trigger}: {what}"


async def autorollback(
    svc: Services,
    ledger: Ledger,
    config: PolicyConfig,
    action: Literal["off", "on", "status"],
    app_name: str | None,
    *,
    duration: float | None = None,
    caller: Caller = Caller(),
) -> Result:
    if action == "status":
        if app_name is None:
            return await _overview(svc, ledger, config)
        return await _status(svc, ledger, config, app_name)
    if app_name is None:
        raise errors.BadInput("Say which app.", hint=f"e.g. autorollback {action} payments")
    if duration is not None:
        if action == "on":
            raise errors.BadInput("A duration only makes sense with 'off'.")
        validation.within(
            duration, minimum=MIN_PAUSE, maximum=MAX_PAUSE, what="auto-rollback pause"
        )
    svc, qualified = await resolve(svc, app_name)
    app = await svc.argocd.get(qualified)  # NotFound for a typo, before anything is written
    app_name = svc.label(qualified)
    mode, source = mode_for(app, config)
    facts = [Fact("mode", f"{mode} ({source})")]
    link = Link("Argo CD", svc.app_link(qualified))
    if action == "on":
        if not await ledger.resume(app_name):
            return Result(
                "autorollback",
                app_name,
                Status.NOOP,
                f"Auto-rollback was not paused for {app_name}.",
                facts=tuple(facts),
                links=(link,),
            )
        return Result(
            "autorollback",
            app_name,
            Status.CHANGED,
            f"Auto-rollback is back on for {app_name}.",
            facts=tuple(facts),
            links=(link,),
            actions=(Action("Pause auto-rollback", f"autorollback off {app_name}"),),
        )
    until = FOREVER if duration is None else svc.now() + duration
    await ledger.pause(app_name, until, caller.label())
    if mode == "off":
        facts.append(Fact("note", "the app is not opted in; the pause applies if it is later"))
    return Result(
        "autorollback",
        app_name,
        Status.CHANGED,
        f"Auto-rollback is paused for {app_name} {until_text(until)}.",
        facts=tuple(facts),
        links=(link,),
        actions=(Action("Resume auto-rollback", f"autorollback on {app_name}", style="primary"),),
    )


async def _status(svc: Services, ledger: Ledger, config: PolicyConfig, ref: str) -> Result:
    svc, qualified = await resolve(svc, ref)
    app = await svc.argocd.get(qualified)
    app_name = svc.label(qualified)
    mode, source = mode_for(app, config)
    paused = await ledger.paused_until(app_name)
    paused_now = paused is not None and paused > svc.now()
    facts = [
        Fact("mode", f"{mode} ({source})"),
        Fact("paused", until_text(paused) if paused_now and paused else "no"),
        Fact("self-heal", "on" if app.self_heal else "off (the policy waits while it is off)"),
        Fact(
            "limits",
            f"{config.per_app_per_hour} per app, {config.global_per_hour} in all per hour"
            + (", dry run" if config.dry_run else ""),
        ),
    ]
    facts += [Fact("decision", record_line(r)) for r in await ledger.recent(app_name, RECENT)]
    if mode == "off":
        summary = f"Auto-rollback is off for {app_name} ({source})."
    elif paused_now:
        summary = f"Auto-rollback ({mode}) is paused for {app_name}."
    else:
        summary = f"Auto-rollback is {mode} for {app_name}."
    toggle = (
        Action("Resume auto-rollback", f"autorollback on {app_name}", style="primary")
        if paused_now
        else Action("Pause auto-rollback", f"autorollback off {app_name}")
    )
    return Result(
        "autorollback",
        app_name,
        Status.NOOP,
        summary,
        facts=tuple(facts),
        links=(Link("Argo CD", svc.app_link(qualified)),),
        actions=(toggle,) if mode != "off" else (),
    )


async def _overview(svc: Services, ledger: Ledger, config: PolicyConfig) -> Result:
    apps: list[tuple[str, Application]] = []  # every instance's, as chat names them
    for s in svc.everywhere():
        apps += [(s.label(s.qualified(a)), a) for a in await s.argocd.list_apps()]
    facts: list[Fact] = []
    opted = 0
    for name, app in sorted(apps, key=lambda pair: pair[0]):
        mode, source = mode_for(app, config)
        if mode == "off":
            continue
        opted += 1
        if len(facts) < MAX_APPS_LISTED:
            paused = await ledger.paused_until(name)
            state = f"{mode} ({source})"
            if paused is not None and paused > svc.now():
                state += f", paused {until_text(paused)}"
            facts.append(Fact(name, state))
    if opted > MAX_APPS_LISTED:
        facts.append(Fact("more", f"{opted - MAX_APPS_LISTED} more app(s)"))
    facts += [Fact("decision", record_line(r)) for r in await ledger.recent(None, RECENT)]
    word = "app is" if opted == 1 else "apps are"
    dry = " (dry run)" if config.dry_run else ""
    return Result(
        "autorollback",
        "all apps",
        Status.NOOP,
        f"{opted} {word} opted in to auto-rollback{dry}.",
        facts=tuple(facts),
    )
