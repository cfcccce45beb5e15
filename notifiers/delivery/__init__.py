"""Delivery: getting every stored alert message to chat, once, through outages of any length.

The outbox row is written before the webhook is answered; from there:

- ``worker``   the ``Deliverer``: a task per incident thread, root first, replies in order;
- ``threads``  coalescing while a thread waits: one root operation (latest state wins),
               many replies summarized as one ("+37 more events");
- ``gates``    when a channel may be called: rate buckets (429 Retry-After) and outage gates
               (capped, jittered backoff for up to the retry horizon, one probe at a time,
               woken early when the platform answers again);
- ``errors``   the three failures a sink reports (RateLimited, Transient, Permanent);
- ``model``    the outbox item, the ChatSink and OutboxPort ports, the policy;
- ``clock``    injectable time (tests run hours of backoff in seconds).

Sinks (bot/alerts/sinks.py) speak to Slack or Discord; the OutboxPort is the SQLite outbox
(bot/state/alerts.py). Nothing here imports a chat SDK or reads the environment.
"""

from notifiers.delivery.clock import Clock, RealClock, ScaledClock
from notifiers.delivery.errors import DeliveryError, Permanent, RateLimited, Transient
from notifiers.delivery.model import (
    DEFAULT_HORIZON,
    ChannelRate,
    ChatSink,
    DeliveryPolicy,
    Observe,
    OutboxItem,
    OutboxPort,
    ThreadKey,
    ThreadRoot,
)
from notifiers.delivery.worker import Deliverer

__all__ = [
    "DEFAULT_HORIZON",
    "ChannelRate",
    "ChatSink",
    "Clock",
    "Deliverer",
    "DeliveryError",
    "DeliveryPolicy",
    "Observe",
    "OutboxItem",
    "OutboxPort",
    "Permanent",
    "RateLimited",
    "RealClock",
    "ScaledClock",
    "ThreadKey",
    "ThreadRoot",
    "Transient",
]
