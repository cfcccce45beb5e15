"""What a chat sink raises, and so what the worker does about it.

    DeliveryError            a send failed; ``str(e)`` is a short reason without secrets
     ├── RateLimited         429 / Slack "ratelimited": wait ``retry_after``, then try again
     ├── Transient           5xx, timeouts, refused connections: the platform is (briefly)
     │                       unavailable; the channel waits with capped backoff, for hours
     └── Permanent           the request itself is wrong (unknown channel, invalid blocks,
                             revoked token): trying again cannot help, the message fails now

The split matters more than it looks: a Transient error holds back every message of its channel
(they would fail the same way), so a message-specific problem must never be Transient, or one
bad message would stall a channel for the whole retry horizon.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """What a sink raises; ``str(e)`` is a short reason without secrets."""

    reason = "error"  # a metrics label: low cardinality, fixed per class


class RateLimited(DeliveryError):
    reason = "rate_limited"

    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(f"{message} (retry after {retry_after:g}s)")
        self.retry_after = max(0.0, float(retry_after))


class Transient(DeliveryError):
    """5xx, timeouts, connection errors: worth trying again later."""

    reason = "transient"


class Permanent(DeliveryError):
    """The request itself is wrong (unknown channel, invalid blocks, bad token)."""

    reason = "permanent"
