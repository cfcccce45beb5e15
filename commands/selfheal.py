"""``selfheal off|on APP [--for DURATION]``.

Only ``spec.syncPolicy.automated.selfHeal`` is flipped. Merge-patching an ``automated`` block into
an app that has none would turn auto-sync ON (a null ``enabled`` counts as enabled), so an app
without auto-sync is left alone and the user is told why. A pause with ``--for`` is written to the
durable timers; ``chatops serve`` turns self-heal back on when it is due, even after a restart.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from commands import errors, validation
from commands.argocd.app import Application
from commands.context import Caller, Services, resolve
from commands.results import Action, Fact, Link, Result, Status

TIMER_KIND = "selfheal-on"
MIN_PAUSE, MAX_PAUSE = 60.0, 7 * 86400.0


def parent_warning(app: Application) -> str | None:
    """A parent that regenerates the app's spec will undo the change: say so."""
    if "ApplicationSet" in app.owner_kinds:
        return "an ApplicationSet generates this app and will overwrite the change"
    if app.labels.get("argocd.argoproj.io/instance") or app.raw.get("metadata", {}).get(
        "annotations", {}
    ).get("argocd.argoproj.io/tracking-id"):
        return "a parent app (app of apps) manages this app and may overwrite the change"
    return None


async def selfheal(
    svc: Services,
    mode: Literal["on", "off"],
    app_name: str,
    *,
    duration: float | None = None,
    caller: Caller = Caller(),
) -> Result:
    svc, qualified = await resolve(svc, app_name)
    app_name = svc.label(qualified)  # shown, and the timer's key (it names the instance)
    if mode not in ("on", "off"):
        raise errors.BadInput(f"'{mode}' is not on or off.", hint="Use: selfheal off|on APP")
    if duration is not None:
        if mode == "on":
            raise errors.BadInput(
                "A duration only makes sense with 'off'.",
                hint="Use: selfheal off APP 30m",
            )
        validation.within(duration, minimum=MIN_PAUSE, maximum=MAX_PAUSE, what="self-heal pause")
    app = await svc.argocd.get(qualified)
    link = Link("Argo CD", svc.app_link(qualified))
    facts: list[Fact] = []
    warning = parent_warning(app)
    if warning:
        facts.append(Fact("warning", warning))

    if not app.auto_sync:
        if mode == "off":
            if svc.timers is not None:
                await svc.timers.cancel(TIMER_KIND, app_name)
            return Result(
                "selfheal",
                app_name,
                Status.NOOP,
                f"Self-heal is already off for {app_name}: auto-sync is not enabled.",
                facts=tuple(facts),
                links=(link,),
            )
        raise errors.Conflict(
            f"{app_name} has auto-sync off, and self-heal only works with auto-sync.",
            hint="Turning self-heal on here would also turn auto-sync on; do that in Git or "
            "with `argocd app set --sync-policy automated --self-heal` if you mean it.",
        )

    want = mode == "on"
    changed = app.self_heal != want
    if changed:
        await svc.argocd.patch(
            qualified, {"spec": {"syncPolicy": {"automated": {"selfHeal": want}}}}
        )
    if svc.timers is not None:
        if mode == "on":
            if await svc.timers.cancel(TIMER_KIND, app_name):
                facts.append(Fact("timer", "the pending re-enable was cancelled"))
        elif duration is not None:
            due = svc.now() + duration
            await svc.timers.schedule(
                TIMER_KIND, app_name, due, {"app": app_name}, created_by=caller.label()
            )
            when = dt.datetime.fromtimestamp(due, dt.UTC).strftime("%H:%M UTC")
            facts.append(Fact("back on", f"in {validation.human(duration)} (at {when})"))
        else:
            await svc.timers.cancel(TIMER_KIND, app_name)
    elif duration is not None:
        raise errors.BadInput(
            "A timed pause needs the state store.",
            hint="Run it where CHATOPS_STATE_DB is available (the bot or the CLI).",
        )

    state = "on" if want else "off"
    if changed:
        summary = f"Self-heal is now {state} for {app_name}."
    else:
        summary = f"Self-heal was already {state} for {app_name}."
    actions: tuple[Action, ...] = ()
    if not want:
        actions = (Action("Self-heal on", f"selfheal on {app_name}", style="primary"),)
    return Result(
        "selfheal",
        app_name,
        Status.CHANGED if changed or (duration is not None) else Status.NOOP,
        summary,
        facts=tuple(facts),
        links=(link,),
        actions=actions,
    )
