"""How an incident reads in a channel: the ``Alert`` for its thread root, replies and buttons.

The engine (``notifiers.incidents.engine``) decides *when* a message goes out; this module decides
*what it says*. Keeping the wording apart lets the lifecycle rules be read without titles and
summaries in the way, and gives one place to change how an incident is described on both
platforms (the renderers then only lay out the ``Alert``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from commands.argocd import links
from commands.results import Action
from notifiers.alert import Alert, AlertKind, Severity
from notifiers.incidents import warning_events
from notifiers.incidents.model import Incident

Actions = Callable[[Incident], tuple[Action, ...]]

PROBLEM_WORDS = {"sync_failed": "sync failed", "degraded": "Degraded", "warning_events": ""}
SEVERITY = {
    "sync_failed": Severity.CRITICAL,
    "degraded": Severity.CRITICAL,
    "warning_events": Severity.WARNING,
}


def default_actions(inc: Incident) -> tuple[Action, ...]:
    """Buttons on an open incident: each a command string routed back to the dispatcher."""
    if inc.state in ("resolved", "closed"):
        return ()
    app = inc.app
    actions = [
        Action("Sync", f"sync {app}", style="primary"),
        Action(
            "Rollback",
            f"rollback {app}",
            style="danger",
            confirm=f"Revert the last commit of {app} in Git and sync it?",
        ),
        Action(
            "Self-heal off",
            f"selfheal off {app}",
            style="danger",
            confirm=f"Turn self-heal off for {app}? Argo CD stops undoing manual changes.",
        ),
        Action("Verify rootless", f"verify-rootless {app}"),
    ]
    if not inc.acked_by:
        actions.append(Action("Acknowledge", inc.ack_command()))
    return tuple(actions)


def incident_alert(inc: Incident, *, ui_url: str, actions: Actions) -> Alert:
    """The thread root as it should read now (``ui_url`` without a trailing slash)."""
    resolved = inc.state in ("resolved", "closed")
    kind: AlertKind = "recovered" if resolved else inc.problem
    if resolved:
        title = f"{inc.app}: recovered"
        summary = inc.resolution
    else:
        word = PROBLEM_WORDS[inc.problem] or f"{inc.events_total} Warning events"
        title = f"{inc.app}: {word}"
        summary = inc.message
        if inc.state == "recovering":
            summary = "Recovering; " + (summary or "waiting to see it stay healthy.")
    if inc.flaps:
        title += f" (flapping, {inc.flaps + 1}×)"
    return Alert(
        key=inc.key,
        app=inc.app,
        kind=kind,
        severity=Severity.RESOLVED if resolved else SEVERITY[inc.problem],
        title=title,
        summary=summary,
        occurred_at=datetime.fromtimestamp(inc.opened_at, UTC),
        project=inc.project,
        cluster=inc.cluster,
        instance=inc.instance,
        namespace=inc.namespace,
        revision=inc.revision,
        resources=inc.resources,
        commit=inc.commit,
        url=inc.url or links.app_link(ui_url, inc.app),
        events=warning_events.groups(inc),
        actions=actions(inc),
        acknowledged_by=inc.acked_by,
        recovered_after=(inc.resolved_at - inc.opened_at)
        if resolved and inc.resolved_at is not None
        else None,
    )


def note(base: Alert, now: float, title: str, summary: str = "") -> Alert:
    """A thread reply derived from the root ``base``: own title and time, no buttons or events."""
    return replace(
        base,
        title=title,
        summary=summary,
        occurred_at=datetime.fromtimestamp(now, UTC),
        events=(),
        resources=base.resources if base.kind != "recovered" else (),
        actions=(),
    )


def closing(base: Alert) -> Alert:
    """The recovery reply: the resolved root without buttons, events or resources."""
    return replace(base, actions=(), events=(), resources=())
