"""Correlation: many reports about one problem become one incident, one thread, few messages.

Three sources report the same trouble in different words: Argo CD notification webhooks, the
bot's own watch of Applications and Kubernetes Warning events. They are all turned into a
``Signal`` first; the ``Engine`` keys incidents by ``"<app>:<problem>"`` (problem: sync_failed,
degraded, warning_events), so a webhook and a watch reporting the same failed operation are one
incident, and Argo CD's retries or a re-listed watch change nothing visible.

Lifecycle (``Incident.state``)::

    pending ──grace──▶ open ──healthy/synced──▶ recovering ──hold──▶ resolved ──window──▶ closed
       └─healthy─▶ (dropped, nobody paged)        ◀──problem again (a flap)──┘   │
                        ▲──────────────── problem again within the flap window ──┘

- Degraded and warning-only incidents wait ``degraded_grace`` before the first message, so a
  Degraded blip during a rollout pages nobody. A failed sync opens at once.
- Recovery edits the thread root and adds one closing reply. A problem coming back within
  ``flap_window`` reopens the SAME incident (one "again" reply the first time); from then on the
  incident is flapping: state changes only edit the root, and recovery is announced only after
  ``flapping_hold`` of continuous health. A flapping app never costs a message per flap.
- Warning events attach to the app's open sync-failed/Degraded incident if there is one, else to
  a warning incident of their own; they are folded by (reason, object) with counts, at most
  ``max_event_groups`` groups, the rest counted under "other": every event is counted.

The engine is pure and single-threaded: the caller passes ``now`` and persists what it returns
(``Changes``: incidents to save, messages to deliver). It never does I/O, so tests drive it
deterministically and the bot runs it inside its group-commit writer.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from commands.results import Action
from notifiers.alert import Alert, AlertKind, CommitRef, EventCount, ResourceProblem, Severity
from notifiers.routing import Target

Problem = Literal["sync_failed", "degraded", "warning_events"]
SignalKind = Literal["sync_failed", "degraded", "healthy", "sync_ok", "warning", "deleted", "info"]
State = Literal["pending", "open", "recovering", "resolved", "closed"]
Op = Literal["post", "update", "reply"]

OTHER_EVENTS = ("(other)", "more objects")  # where events beyond max_event_groups are counted
ACK_KEY_MAX = 80  # "ack <key>" must fit a Discord custom_id (100) after its prefix
_PROBLEM_WORDS = {"sync_failed": "sync failed", "degraded": "Degraded", "warning_events": ""}
_SEVERITY = {
    "sync_failed": Severity.CRITICAL,
    "degraded": Severity.CRITICAL,
    "warning_events": Severity.WARNING,
}


@dataclass(frozen=True)
class Signal:
    """One observation about one app, from any source."""

    kind: SignalKind
    app: str
    source: str = "watch"  # webhook | watch | events
    project: str = ""
    cluster: str = ""
    namespace: str = ""
    revision: str = ""
    url: str | None = None
    message: str = ""
    operation: str = ""  # identity of a sync operation (its startedAt)
    resources: tuple[ResourceProblem, ...] = ()
    commit: CommitRef | None = None
    event: EventCount | None = None  # warnings: count = NEW occurrences in this signal


@dataclass(frozen=True)
class Policy:
    degraded_grace: float = 60.0
    flap_window: float = 600.0
    flapping_hold: float = 300.0
    warning_quiet: float = 600.0
    reannounce_interval: float = 1800.0
    max_event_groups: int = 25


@dataclass(frozen=True)
class Effect:
    """A message to deliver: the root ``post``, an ``update`` (edit) of it, or a ``reply``."""

    incident_id: int
    targets: tuple[Target, ...]
    op: Op
    alert: Alert
    broadcast: bool = False


@dataclass
class Changes:
    effects: list[Effect] = field(default_factory=list)
    saved: dict[int, Incident] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)

    def emit(self, effect: Effect) -> None:
        """Append, folding an edit into the previous message of the same incident when that
        one is the root post or an edit: only the latest state needs to go out."""
        if effect.op == "update":
            for i in range(len(self.effects) - 1, -1, -1):
                prev = self.effects[i]
                if prev.incident_id != effect.incident_id:
                    continue
                if prev.op in ("post", "update"):
                    self.effects[i] = replace(prev, alert=effect.alert)
                    return
                break
        self.effects.append(effect)

    def merge(self, other: Changes) -> None:
        for e in other.effects:
            self.emit(e)
        for i in other.dropped:
            self.saved.pop(i, None)
        self.saved.update(other.saved)
        self.dropped |= other.dropped
        for i in other.saved:
            self.dropped.discard(i)


@dataclass
class Incident:
    id: int
    key: str
    app: str
    problem: Problem
    state: State
    opened_at: float
    targets: tuple[Target, ...] = ()
    project: str = ""
    cluster: str = ""
    namespace: str = ""
    revision: str = ""
    url: str | None = None
    message: str = ""
    operation: str = ""
    resources: tuple[ResourceProblem, ...] = ()
    commit: CommitRef | None = None
    events: dict[tuple[str, str], list[Any]] = field(default_factory=dict)  # -> [message, n]
    events_total: int = 0
    pending_until: float | None = None
    announced_at: float | None = None
    last_announce: float | None = None
    recovering_since: float | None = None
    resolved_at: float | None = None
    resolution: str = ""
    last_event_at: float | None = None
    flaps: int = 0
    repeats: int = 0
    acked_by: str | None = None
    acked_at: float | None = None

    # -- persistence ----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "targets":
                value = [[t.platform, t.channel] for t in value]
            elif f.name == "resources":
                value = [vars(r) for r in value]
            elif f.name == "commit":
                value = None if value is None else vars(value)
            elif f.name == "events":
                value = [[r, o, m, n] for (r, o), (m, n) in value.items()]
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Incident:
        d = dict(data)
        d["targets"] = tuple(Target(p, c) for p, c in d.get("targets", ()))
        d["resources"] = tuple(ResourceProblem(**r) for r in d.get("resources", ()))
        d["commit"] = None if d.get("commit") is None else CommitRef(**d["commit"])
        d["events"] = {(r, o): [m, int(n)] for r, o, m, n in d.get("events", ())}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    # -- timing ---------------------------------------------------------------------------
    def deadline(self, policy: Policy) -> float | None:
        if self.state == "pending":
            return self.pending_until
        if self.state == "recovering" and self.recovering_since is not None:
            return self.recovering_since + (policy.flapping_hold if self.flaps else 0.0)
        if self.state == "open" and self.problem == "warning_events":
            return (self.last_event_at or self.opened_at) + policy.warning_quiet
        if self.state == "resolved" and self.resolved_at is not None:
            return self.resolved_at + policy.flap_window
        return None

    @property
    def active(self) -> bool:
        return self.state in ("pending", "open", "recovering")

    def ack_command(self) -> str:
        return f"ack {self.key}" if len(self.key) <= ACK_KEY_MAX else f"ack #{self.id}"


def incident_key(app: str, problem: str) -> str:
    return f"{app}:{problem}"


Route = Callable[[str, str, str], tuple[Target, ...]]
Actions = Callable[[Incident], tuple[Action, ...]]


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


class Engine:
    def __init__(
        self,
        policy: Policy,
        route: Route,
        *,
        actions: Actions = default_actions,
        ui_url: str = "",
    ) -> None:
        self.policy = policy
        self.route = route
        self.actions = actions
        self.ui_url = ui_url.rstrip("/")
        self.incidents: dict[str, Incident] = {}  # key -> the incident that owns the key now
        self._ids = itertools.count(1)
        self._heap: list[tuple[float, int, str]] = []
        self._last_ok: dict[str, str] = {}  # app -> startedAt of its latest successful sync

    # -- state ----------------------------------------------------------------------------
    def load(self, incidents: Iterable[Incident], next_id: int) -> None:
        self.incidents = {}
        self._heap = []
        for inc in incidents:
            if inc.state != "closed":
                self.incidents[inc.key] = inc
                self._schedule(inc)
        self._ids = itertools.count(max(next_id, 1))

    def find(self, ref: str) -> Incident | None:
        """By key (``payments:degraded``) or id (``#12``/``12``)."""
        ref = ref.strip()
        if ref in self.incidents:
            return self.incidents[ref]
        if ref.lstrip("#").isdigit():
            wanted = int(ref.lstrip("#"))
            return next((i for i in self.incidents.values() if i.id == wanted), None)
        return None

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def _schedule(self, inc: Incident) -> None:
        due = inc.deadline(self.policy)
        if due is not None:
            heapq.heappush(self._heap, (due, inc.id, inc.key))

    def _save(self, ch: Changes, inc: Incident) -> None:
        ch.saved[inc.id] = inc
        ch.dropped.discard(inc.id)
        self._schedule(inc)

    # -- rendering ------------------------------------------------------------------------
    def alert(self, inc: Incident, now: float) -> Alert:
        resolved = inc.state in ("resolved", "closed")
        kind: AlertKind = "recovered" if resolved else inc.problem
        if resolved:
            title = f"{inc.app}: recovered"
            summary = inc.resolution
        else:
            word = _PROBLEM_WORDS[inc.problem] or f"{inc.events_total} Warning events"
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
            severity=Severity.RESOLVED if resolved else _SEVERITY[inc.problem],
            title=title,
            summary=summary,
            occurred_at=datetime.fromtimestamp(inc.opened_at, UTC),
            project=inc.project,
            cluster=inc.cluster,
            namespace=inc.namespace,
            revision=inc.revision,
            resources=inc.resources,
            commit=inc.commit,
            url=inc.url or (f"{self.ui_url}/applications/{inc.app}" if self.ui_url else None),
            events=self._event_counts(inc),
            actions=self.actions(inc),
            acknowledged_by=inc.acked_by,
            recovered_after=(inc.resolved_at - inc.opened_at)
            if resolved and inc.resolved_at is not None
            else None,
        )

    def _event_counts(self, inc: Incident) -> tuple[EventCount, ...]:
        groups = sorted(inc.events.items(), key=lambda kv: (-int(kv[1][1]), kv[0]))
        return tuple(EventCount(r, o, str(m), int(n)) for (r, o), (m, n) in groups)

    def _note(self, inc: Incident, now: float, title: str, summary: str = "") -> Alert:
        """A thread reply about ``inc`` (repeat, acknowledgement, recovery, re-announcement)."""
        base = self.alert(inc, now)
        return replace(
            base,
            title=title,
            summary=summary,
            occurred_at=datetime.fromtimestamp(now, UTC),
            events=(),
            resources=base.resources if base.kind != "recovered" else (),
            actions=(),
        )

    def _post(self, ch: Changes, inc: Incident, now: float) -> None:
        inc.state = "open"
        inc.pending_until = None
        inc.announced_at = inc.last_announce = now
        ch.emit(Effect(inc.id, inc.targets, "post", self.alert(inc, now)))

    def _update(self, ch: Changes, inc: Incident, now: float) -> None:
        if inc.announced_at is not None:
            ch.emit(Effect(inc.id, inc.targets, "update", self.alert(inc, now)))

    def _reply(self, ch: Changes, inc: Incident, alert: Alert, broadcast: bool = False) -> None:
        if inc.announced_at is not None:
            ch.emit(Effect(inc.id, inc.targets, "reply", alert, broadcast))

    # -- input ----------------------------------------------------------------------------
    def apply(self, sig: Signal, now: float) -> Changes:
        ch = Changes()
        handler = {
            "sync_failed": self._on_problem,
            "degraded": self._on_problem,
            "healthy": self._on_healthy,
            "sync_ok": self._on_sync_ok,
            "warning": self._on_warning,
            "deleted": self._on_deleted,
            "info": self._on_info,
        }[sig.kind]
        handler(ch, sig, now)
        return ch

    def apply_all(self, signals: Iterable[Signal], now: float) -> Changes:
        ch = Changes()
        for sig in signals:
            ch.merge(self.apply(sig, now))
        return ch

    def _new(self, sig: Signal, problem: Problem, now: float) -> Incident:
        inc = Incident(
            id=next(self._ids),
            key=incident_key(sig.app, problem),
            app=sig.app,
            problem=problem,
            state="pending",
            opened_at=now,
            targets=self.route(sig.app, sig.project or "default", sig.namespace),
        )
        self._merge(inc, sig)
        self.incidents[inc.key] = inc
        return inc

    @staticmethod
    def _merge(inc: Incident, sig: Signal) -> bool:
        """Take what the signal knows better; True when anything visible changed."""
        before = (inc.project, inc.cluster, inc.namespace, inc.revision, inc.url, inc.message)
        before_res, before_commit = inc.resources, inc.commit
        inc.project = sig.project or inc.project
        inc.cluster = sig.cluster or inc.cluster
        inc.namespace = sig.namespace or inc.namespace
        inc.revision = sig.revision or inc.revision
        inc.url = sig.url or inc.url
        if sig.kind != "warning":
            inc.message = sig.message or inc.message
        if sig.resources:
            inc.resources = sig.resources
        if sig.commit is not None and (not inc.revision or sig.commit.sha == inc.revision):
            inc.commit = sig.commit
        after = (inc.project, inc.cluster, inc.namespace, inc.revision, inc.url, inc.message)
        return after != before or inc.resources != before_res or inc.commit != before_commit

    def _on_problem(self, ch: Changes, sig: Signal, now: float) -> None:
        problem = cast(Problem, sig.kind)
        if problem == "sync_failed" and sig.operation:
            last_ok = self._last_ok.get(sig.app, "")
            if last_ok and sig.operation <= last_ok:
                return  # a late report (e.g. a webhook retry) of a failure already superseded
        inc = self.incidents.get(incident_key(sig.app, problem))
        if inc is None or inc.state == "closed":
            inc = self._new(sig, problem, now)
            inc.operation = sig.operation
            if problem == "degraded" and self.policy.degraded_grace > 0:
                inc.pending_until = now + self.policy.degraded_grace
            else:
                self._post(ch, inc, now)
            self._save(ch, inc)
            return
        changed = self._merge(inc, sig)
        if inc.state == "pending":
            self._save(ch, inc)
            return
        new_op = problem == "sync_failed" and sig.operation and sig.operation != inc.operation
        if new_op:
            inc.operation = sig.operation
        if inc.state in ("recovering", "resolved"):
            first_flap = inc.flaps == 0
            inc.flaps += 1
            inc.state = "open"
            inc.recovering_since = inc.resolved_at = None
            inc.resolution = ""
            self._update(ch, inc, now)
            if first_flap:
                word = _PROBLEM_WORDS[problem]
                self._reply(ch, inc, self._note(inc, now, f"{inc.app}: {word} again", inc.message))
        elif new_op:
            inc.repeats += 1
            self._update(ch, inc, now)
            title = f"{inc.app}: sync failed again"
            self._reply(ch, inc, self._note(inc, now, title, inc.message))
        elif changed:
            self._update(ch, inc, now)
        else:
            return
        self._save(ch, inc)

    def _recover(self, ch: Changes, inc: Incident, now: float, resolution: str) -> None:
        """Problem gone: drop it if nobody was told yet, else start (or finish) recovering."""
        if inc.state == "pending":
            del self.incidents[inc.key]
            ch.saved.pop(inc.id, None)
            ch.dropped.add(inc.id)
            return
        if inc.state != "open":
            return
        inc.state = "recovering"
        inc.recovering_since = now
        inc.resolution = resolution
        if inc.flaps:
            self._update(ch, inc, now)
            self._save(ch, inc)
        else:
            self._resolve(ch, inc, now)

    def _resolve(self, ch: Changes, inc: Incident, now: float) -> None:
        inc.state = "resolved"
        inc.resolved_at = now
        self._update(ch, inc, now)
        alert = self.alert(inc, now)
        self._reply(ch, inc, replace(alert, actions=(), events=(), resources=()))
        self._save(ch, inc)

    def _on_healthy(self, ch: Changes, sig: Signal, now: float) -> None:
        inc = self.incidents.get(incident_key(sig.app, "degraded"))
        if inc is not None:
            self._recover(ch, inc, now, sig.message or "Health is back to Healthy.")

    def _on_sync_ok(self, ch: Changes, sig: Signal, now: float) -> None:
        if sig.operation and sig.operation > self._last_ok.get(sig.app, ""):
            self._last_ok[sig.app] = sig.operation
        inc = self.incidents.get(incident_key(sig.app, "sync_failed"))
        if inc is None or (sig.operation and inc.operation and sig.operation < inc.operation):
            return
        rev = f" at {sig.revision[:7]}" if sig.revision else ""
        self._recover(ch, inc, now, sig.message or f"A later sync succeeded{rev}.")

    def _on_deleted(self, ch: Changes, sig: Signal, now: float) -> None:
        for problem in ("sync_failed", "degraded", "warning_events"):
            inc = self.incidents.get(incident_key(sig.app, problem))
            if inc is None or not inc.active:
                continue
            if inc.state == "pending":
                self._recover(ch, inc, now, "")
            else:
                inc.resolution = "The Application was deleted."
                self._resolve(ch, inc, now)
        self._last_ok.pop(sig.app, None)

    def _on_info(self, ch: Changes, sig: Signal, now: float) -> None:
        """Details found later (resource tree, commit author): update whatever is open."""
        for problem in ("sync_failed", "degraded"):
            inc = self.incidents.get(incident_key(sig.app, problem))
            # resources found later (the resource tree) describe health, not the sync result
            found = sig if problem == "degraded" else replace(sig, resources=())
            if inc is not None and inc.active and self._merge(inc, found):
                self._update(ch, inc, now)
                self._save(ch, inc)

    def _on_warning(self, ch: Changes, sig: Signal, now: float) -> None:
        if sig.event is None or sig.event.count <= 0:
            return
        target = None
        for problem in ("degraded", "sync_failed"):
            inc = self.incidents.get(incident_key(sig.app, problem))
            if inc is not None and inc.active:
                target = inc
                break
        if target is None:
            target = self.incidents.get(incident_key(sig.app, "warning_events"))
            if target is None or target.state == "closed":
                target = self._new(sig, "warning_events", now)
                target.pending_until = now + self.policy.degraded_grace
                target.message = "Kubernetes reports Warning events for this app's resources."
            elif target.state == "resolved":
                target.flaps += 1
                target.state = "open"
                target.resolved_at = None
                target.resolution = ""
        self._count(target, sig.event)
        target.last_event_at = now
        if target.state == "pending" and target.pending_until is not None:
            if target.pending_until <= now:
                self._post(ch, target, now)
        else:
            self._update(ch, target, now)
        self._save(ch, target)

    def _count(self, inc: Incident, ev: EventCount) -> None:
        key = (ev.reason, ev.object)
        group = inc.events.get(key)
        if group is None and len(inc.events) >= self.policy.max_event_groups:
            key = OTHER_EVENTS
            group = inc.events.get(key)
            if group is None:
                group = inc.events[key] = ["", 0]
        elif group is None:
            group = inc.events[key] = [ev.message, 0]
        if ev.message and key != OTHER_EVENTS:
            group[0] = ev.message
        group[1] = int(group[1]) + ev.count
        inc.events_total += ev.count

    # -- time -----------------------------------------------------------------------------
    def tick(self, now: float) -> Changes:
        ch = Changes()
        while self._heap and self._heap[0][0] <= now:
            _, inc_id, key = heapq.heappop(self._heap)
            inc = self.incidents.get(key)
            if inc is None or inc.id != inc_id:
                continue
            due = inc.deadline(self.policy)
            if due is None or due > now:
                continue  # moved since it was scheduled; its new deadline is in the heap
            if inc.state == "pending":
                self._post(ch, inc, now)
                self._save(ch, inc)
            elif inc.state == "recovering":
                self._resolve(ch, inc, now)
            elif inc.state == "open":  # a warning incident gone quiet
                minutes = round(self.policy.warning_quiet / 60)
                inc.resolution = f"No new Warning events for {minutes} min."
                self._resolve(ch, inc, now)
            elif inc.state == "resolved":
                inc.state = "closed"
                del self.incidents[key]
                ch.saved[inc.id] = inc
        return ch

    def reannounce(self, now: float) -> Changes:
        """Unacknowledged open incidents get a reminder in their thread, shown in the channel."""
        ch = Changes()
        every = self.policy.reannounce_interval
        for inc in list(self.incidents.values()):
            if inc.state != "open" or inc.acked_by or inc.announced_at is None:
                continue
            if now - (inc.last_announce or inc.announced_at) < every:
                continue
            inc.last_announce = now
            minutes = round((now - inc.opened_at) / 60)
            title = self.alert(inc, now).title
            note = self._note(
                inc, now, f"Still unacknowledged: {title}", f"Open for {minutes} min."
            )
            self._reply(ch, inc, note, broadcast=True)
            self._save(ch, inc)
        return ch

    def acknowledge(self, ref: str, by: str, now: float) -> tuple[Incident | None, bool, Changes]:
        """(incident, newly acknowledged?, changes)."""
        ch = Changes()
        inc = self.find(ref)
        if inc is None or inc.acked_by:
            return inc, False, ch
        inc.acked_by = by
        inc.acked_at = now
        self._update(ch, inc, now)
        self._reply(ch, inc, self._note(inc, now, f"Acknowledged by {by}"))
        self._save(ch, inc)
        return inc, True, ch
