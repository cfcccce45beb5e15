"""Reconnecting after a dropped watch: how long to wait, and how to say why in one line.

Both watches (``bot.alerts.app_watch`` over asyncio, ``bot.alerts.event_watch`` in a thread) lose their
stream for the same reasons: a restart of Argo CD or the API server, a load balancer's idle
timeout, a network blip. Both must come back without hammering a server that is struggling, and
without a thundering herd when several replicas lose it at once: capped exponential backoff with
jitter, reset once the stream delivers again. Shared here so the two loops behave alike.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first, self.cap, self.next = first, cap, first

    def reset(self) -> None:
        self.next = self.first

    def delay(self) -> float:
        d = self.next
        self.next = min(self.cap, self.next * 2)
        return float(d * random.uniform(0.8, 1.2))


def describe(e: Exception) -> str:
    """The exception's type and HTTP status for a one-line log: not its text, which for the
    Kubernetes client's ``ApiException`` carries the response headers and body."""
    status = getattr(e, "status", None)
    return f"{type(e).__name__}" + (f" (HTTP {status})" if status else "")
