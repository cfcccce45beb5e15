"""The neutral alert: one incident, described once, rendered per platform.

Argo CD notification webhooks, the Application watch and the Kubernetes Warning-event watch all
produce an ``Alert``. Correlation keys it by ``key`` (one incident, one chat thread), delivery
stores it in the outbox (hence ``to_json``/``from_json``), and the renderers in
``render_slack``/``render_discord`` turn it into Block Kit or a Discord embed. Nothing here knows
about a chat platform.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from commands.results import Action

AlertKind = Literal["sync_failed", "degraded", "recovered", "warning_events"]
ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    RESOLVED = "resolved"
    INFO = "info"


@dataclass(frozen=True)
class ResourceProblem:
    """One managed resource that is unhealthy or failed to sync."""

    kind: str  # "Deployment"
    name: str
    namespace: str = ""
    status: str = ""  # "Degraded", "OutOfSync", "SyncFailed", "Missing"
    message: str = ""


@dataclass(frozen=True)
class CommitRef:
    sha: str
    author: str = ""
    subject: str = ""


@dataclass(frozen=True)
class EventCount:
    """Kubernetes Warning events folded by (reason, object): ``count`` is how many were seen."""

    reason: str  # "BackOff"
    object: str  # "Pod/payments-api-7d9f"
    message: str = ""
    count: int = 1


@dataclass(frozen=True, kw_only=True)
class Alert:
    key: str  # incident key, e.g. "prod-cluster/payments:degraded"
    app: str
    kind: AlertKind
    severity: Severity
    title: str  # one line: "payments: sync failed"
    summary: str  # one plain sentence
    occurred_at: datetime  # timezone-aware
    project: str = ""
    cluster: str = ""
    instance: str = ""  # the Argo CD instance
    namespace: str = ""
    revision: str = ""
    resources: tuple[ResourceProblem, ...] = ()
    commit: CommitRef | None = None
    url: str | None = None  # the Application in the Argo CD UI
    events: tuple[EventCount, ...] = ()
    actions: tuple[Action, ...] = field(default=())
    acknowledged_by: str | None = None
    recovered_after: float | None = None  # seconds from first alert to recovery

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {ALERT_KINDS}")
        if self.occurred_at.tzinfo is None:
            raise ValueError("Alert.occurred_at must be timezone-aware")
        if not isinstance(self.severity, Severity):
            object.__setattr__(self, "severity", Severity(self.severity))

    def acknowledged(self, by: str) -> Alert:
        return replace(self, acknowledged_by=by)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; ``from_json(to_json(a)) == a``."""
        return {
            "key": self.key,
            "app": self.app,
            "kind": self.kind,
            "severity": self.severity.value,
            "title": self.title,
            "summary": self.summary,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat(),
            "project": self.project,
            "cluster": self.cluster,
            "instance": self.instance,
            "namespace": self.namespace,
            "revision": self.revision,
            "resources": [
                {
                    "kind": r.kind,
                    "name": r.name,
                    "namespace": r.namespace,
                    "status": r.status,
                    "message": r.message,
                }
                for r in self.resources
            ],
            "commit": None
            if self.commit is None
            else {
                "sha": self.commit.sha,
                "author": self.commit.author,
                "subject": self.commit.subject,
            },
            "url": self.url,
            "events": [
                {"reason": e.reason, "object": e.object, "message": e.message, "count": e.count}
                for e in self.events
            ],
            "actions": [
                {"label": a.label, "command": a.command, "style": a.style, "confirm": a.confirm}
                for a in self.actions
            ],
            "acknowledged_by": self.acknowledged_by,
            "recovered_after": self.recovered_after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        commit = data.get("commit")
        return cls(
            key=data["key"],
            app=data["app"],
            kind=cast(AlertKind, data["kind"]),
            severity=Severity(data["severity"]),
            title=data["title"],
            summary=data["summary"],
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            project=data.get("project", ""),
            cluster=data.get("cluster", ""),
            instance=data.get("instance", ""),
            namespace=data.get("namespace", ""),
            revision=data.get("revision", ""),
            resources=tuple(ResourceProblem(**r) for r in data.get("resources", ())),
            commit=None if commit is None else CommitRef(**commit),
            url=data.get("url"),
            events=tuple(EventCount(**e) for e in data.get("events", ())),
            actions=tuple(Action(**a) for a in data.get("actions", ())),
            acknowledged_by=data.get("acknowledged_by"),
            recovered_after=data.get("recovered_after"),
        )
