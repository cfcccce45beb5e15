"""What an incident is: the values the engine reads, keeps and hands back.

Kept apart from the engine (``notifiers.incidents.engine``) because these are shared by more than the
state machine: the bot persists ``Incident`` as JSON and delivers ``Effect``s, the webhook and
watch adapters build ``Signal``s, and tests assert on ``Changes``. None of them needs the
lifecycle rules to do that, and the rules read more plainly without the persistence and timing
plumbing around them.

An ``Incident`` is mutable on purpose: the engine is its only writer and updates it in place,
then reports it in ``Changes.saved`` for the caller to persist.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from notifiers.alert import Alert, CommitRef, EventCount, ResourceProblem
from notifiers.routing import Target

Problem = Literal["sync_failed", "degraded", "warning_events"]
SignalKind = Literal["sync_failed", "degraded", "healthy", "sync_ok", "warning", "deleted", "info"]
State = Literal["pending", "open", "recovering", "resolved", "closed"]
Op = Literal["post", "update", "reply"]

ACK_KEY_MAX = 80  # "ack <key>" must fit a Discord custom_id (100) after its prefix


@dataclass(frozen=True)
class Signal:
    """One observation about one app, from any source."""

    kind: SignalKind
    app: str
    source: str = "watch"  # webhook | watch | events
    project: str = ""
    cluster: str = ""
    instance: str = ""  # the Argo CD instance that reported it
    namespace: str = ""
    revision: str = ""
    url: str | None = None
    message: str = ""
    operation: str = ""  # identity of a sync operation (its startedAt)
    resources: tuple[ResourceProblem, ...] = ()
    commit: CommitRef | None = None
    event: EventCount | None = None  # warnings: count = NEW occurrences in this signal


def signal_to_json(s: Signal) -> dict[str, Any]:
    """A Signal as JSON (a follower replica hands webhooks to the leader through the store)."""
    out = {f.name: getattr(s, f.name) for f in fields(s)}
    out["resources"] = [vars(r) for r in s.resources]
    out["commit"] = None if s.commit is None else vars(s.commit)
    out["event"] = None if s.event is None else vars(s.event)
    return out


def signal_from_json(data: dict[str, Any]) -> Signal:
    d = {k: v for k, v in data.items() if k in {f.name for f in fields(Signal)}}
    d["resources"] = tuple(ResourceProblem(**r) for r in d.get("resources", ()))
    d["commit"] = None if d.get("commit") is None else CommitRef(**d["commit"])
    d["event"] = None if d.get("event") is None else EventCount(**d["event"])
    return Signal(**d)


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
    instance: str = ""
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


def absorb(inc: Incident, sig: Signal) -> bool:
    """Take what the signal knows better; True when anything visible changed."""
    before = (inc.project, inc.cluster, inc.namespace, inc.revision, inc.url, inc.message)
    before_res, before_commit = inc.resources, inc.commit
    inc.project = sig.project or inc.project
    inc.cluster = sig.cluster or inc.cluster
    inc.instance = sig.instance or inc.instance
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
