"""The alert pipeline's metrics: signals per source, open incidents, and how delivery goes —
messages by outcome, latency from stored to accepted, the outbox backlog, channels held back by
a failing chat API (how many messages, how old the oldest) and failed calls by reason.

``observe`` is the delivery worker's outcome callback; the waiting gauges are also refreshed on
a timer by the runner, since a held-back message ages between outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.metrics import Registry
from notifiers.delivery import Deliverer, OutboxItem

# delivery outcomes that count as a failure, and the reason label they get
_FAILURE_REASONS = {
    "retry": "transient",
    "rate_limited": "rate_limited",
    "failed": "permanent",
    "expired": "expired",
}


class AlertMetrics:
    def __init__(self, reg: Registry) -> None:
        self.messages = reg.counter(
            "chatops_alert_messages_total",
            "Alert chat messages by platform, operation and result",
            ("platform", "op", "result"),
        )
        self.latency = reg.histogram(
            "chatops_alert_delivery_seconds",
            "Time from an alert being stored to the chat API accepting it",
            ("platform",),
        )
        self.pending = reg.gauge("chatops_alert_outbox_pending", "Alert messages not yet sent")
        self.waiting = reg.gauge(
            "chatops_alert_outbox_waiting",
            "Alert messages held back because their chat channel keeps failing",
            ("platform",),
        )
        self.oldest = reg.gauge(
            "chatops_alert_outbox_oldest_waiting_seconds",
            "Age of the oldest alert message held back by a failing chat channel",
            ("platform",),
        )
        self.failures = reg.counter(
            "chatops_alert_delivery_failures_total",
            "Failed chat calls and given-up messages, by platform and reason"
            " (transient, rate_limited: retried; permanent, expired: given up)",
            ("platform", "reason"),
        )
        self.signals = reg.counter(
            "chatops_alert_signals_total", "Signals from each alert source", ("source",)
        )
        self.open = reg.gauge("chatops_alert_incidents_active", "Incidents not yet closed")

    def outcome(self, item: OutboxItem, outcome: str, age: float) -> None:
        """One delivery outcome ("sent", "retry", "failed", ...) of one outbox item."""
        self.messages.inc(platform=item.platform, op=item.op, result=outcome)
        if outcome == "sent":
            self.latency.observe(age, platform=item.platform)
        reason = _FAILURE_REASONS.get(outcome)
        if reason is not None:
            self.failures.inc(platform=item.platform, reason=reason)

    def delivery(self, deliverer: Deliverer, platforms: Iterable[str]) -> None:
        """The backlog gauges, from the worker's current state."""
        self.pending.set(deliverer.pending())
        waiting = deliverer.waiting()
        for platform in platforms:
            n, oldest = waiting.get(platform, (0, 0.0))
            self.waiting.set(n, platform=platform)
            self.oldest.set(round(oldest, 1), platform=platform)
