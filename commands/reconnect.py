"""How long to wait before reconnecting a dropped stream: one capped, jittered backoff.

Every long-lived stream the project holds - the Kubernetes watches (``commands.kube.watch``,
for the command-side waits and the bot's Event watch) and the Argo CD application stream
(``bot.alerts.app_watch``) - loses its connection for the same reasons: a restart of Argo CD or
the API server, a load balancer's idle timeout, a network blip. All must come back without
hammering a server that is struggling, and without a thundering herd when several replicas lose
it at once: capped exponential backoff with jitter, reset once the stream delivers again.
"""

from __future__ import annotations

import random


class Backoff:
    """``delay()`` grows from ``first`` by doubling up to ``cap`` (each +-20 % jitter);
    ``reset()`` once the stream delivers again."""

    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first, self.cap, self.next = first, cap, first

    def reset(self) -> None:
        self.next = self.first

    def delay(self) -> float:
        d = self.next
        self.next = min(self.cap, self.next * 2)
        return float(d * random.uniform(0.8, 1.2))
