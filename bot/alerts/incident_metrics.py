"""Incidents as Prometheus metrics: how many open, and how long until they recover.

The incident engine (``notifiers.incidents``) is pure: it is handed ``now`` and returns what
changed, and stays free of metrics. ``MeasuredEngine`` is the engine the alert runner builds:
the same engine, whose two entry points that move incidents along (``apply``, for signals,
and ``tick``, for deadlines) also read the ``Changes`` they return:

- ``chatops_incidents_opened_total{problem}``: an incident announced in chat (its root post).
  One that clears within its grace period pages nobody and is not counted.
- ``chatops_incident_recovery_seconds{problem}``: at each recovery, ``resolved_at - opened_at``
  in the engine's time, the same figure the "recovered after" line of the thread shows. An
  incident that comes back within the flap window and recovers again is observed again, from
  when it first opened. An incident closed because its Application was deleted did not
  recover and is not observed.

Both are recorded when the engine decides, on the alert writer's thread, inside the batch
that stores the decision (prometheus_client is thread-safe).
"""

from __future__ import annotations

from bot.metrics import Registry
from notifiers.incidents.alerts import Actions, default_actions
from notifiers.incidents.engine import Engine, Route
from notifiers.incidents.model import Changes, Policy, Signal

PROBLEM = ("problem",)
# an incident lasts from a minute (a failed sync fixed by the next one) to days
RECOVERY_BUCKETS: tuple[float, ...] = (
    60,
    300,
    600,
    1800,
    3600,
    7200,
    14400,
    43200,
    86400,
    259200,
)


class IncidentMetrics:
    def __init__(self, registry: Registry) -> None:
        self.opened = registry.counter(
            "chatops_incidents_opened_total",
            "Incidents announced in chat, by problem (sync_failed, degraded, warning_events)",
            PROBLEM,
        )
        self.recovery = registry.histogram(
            "chatops_incident_recovery_seconds",
            "Time from an incident opening to its recovery, by problem",
            PROBLEM,
            buckets=RECOVERY_BUCKETS,
        )

    def record(self, ch: Changes, now: float, *, recovered: bool = True) -> None:
        """What ``ch`` (computed at ``now``) opened and, if ``recovered``, resolved."""
        for effect in ch.effects:
            inc = ch.saved.get(effect.incident_id)
            if effect.op == "post" and inc is not None:
                self.opened.inc(problem=inc.problem)
        if not recovered:
            return
        for inc in ch.saved.values():
            if inc.state == "resolved" and inc.resolved_at == now:
                self.recovery.observe(max(0.0, now - inc.opened_at), problem=inc.problem)


class MeasuredEngine(Engine):
    """An ``Engine`` that reports what it opened and resolved to ``IncidentMetrics``."""

    def __init__(
        self,
        policy: Policy,
        route: Route,
        *,
        metrics: IncidentMetrics,
        actions: Actions = default_actions,
        ui_url: str = "",
    ) -> None:
        super().__init__(policy, route, actions=actions, ui_url=ui_url)
        self.metrics = metrics

    def apply(self, sig: Signal, now: float) -> Changes:
        ch = super().apply(sig, now)
        self.metrics.record(ch, now, recovered=sig.kind != "deleted")
        return ch

    def tick(self, now: float) -> Changes:
        ch = super().tick(now)
        self.metrics.record(ch, now)
        return ch
