"""Delivery's values and ports: an outbox row, the chat sink and outbox bookkeeping interfaces,
and the policy (rates, backoff, horizon, coalescing)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from notifiers.alert import Alert

ThreadKey = tuple[int, str, str]  # (incident id, platform, channel)
DEFAULT_HORIZON = 86400.0  # keep trying a failing channel for a day


@dataclass
class OutboxItem:
    """One stored chat message (a row of the outbox). Mutable: the worker rewrites ``op`` when
    an edit is merged into an unsent post, and keeps the retry state here."""

    id: int
    incident_id: int
    platform: str
    channel: str
    op: str  # post | update | reply
    alert: Alert
    broadcast: bool = False
    tries: int = 0  # attempts that reached (or tried to reach) the platform
    not_before: float = 0.0  # next try, epoch seconds
    created_at: float = field(default_factory=time.time)
    first_failed_at: float | None = None  # start of the outage that holds this message back

    @property
    def thread(self) -> ThreadKey:
        return (self.incident_id, self.platform, self.channel)


class ChatSink(Protocol):
    """One chat platform. ``post``/``reply`` return the new message's reference (Slack ``ts``,
    Discord message id); all three raise RateLimited / Transient / Permanent."""

    platform: str

    async def post(self, channel: str, alert: Alert) -> str: ...

    async def update(self, channel: str, ref: str, alert: Alert) -> None: ...

    async def reply(
        self, channel: str, ref: str, alert: Alert, *, broadcast: bool = False
    ) -> str: ...


@dataclass(frozen=True)
class ThreadRoot:
    """What the store knows of a thread whose root message the worker does not have in memory:
    its chat reference if it was ever delivered, and the root as it should read now."""

    ref: str | None
    alert: Alert | None


class OutboxPort(Protocol):
    """Durable bookkeeping of the outbox (bot/state/alerts.py). ``sent`` records the message,
    the rows folded into it and the thread reference in one transaction: that is what makes a
    crash re-send at most the one message whose call was in flight."""

    async def sent(
        self, item: OutboxItem, ref: str | None, folded: Sequence[OutboxItem] = ()
    ) -> None: ...

    async def retry(self, item: OutboxItem, error: str) -> None: ...

    async def failed(self, item: OutboxItem, error: str) -> None: ...

    async def merged(self, superseded: OutboxItem, into: OutboxItem) -> None: ...

    async def root(self, thread: ThreadKey) -> ThreadRoot: ...


@dataclass(frozen=True)
class ChannelRate:
    per_second: float
    burst: int


@dataclass(frozen=True)
class DeliveryPolicy:
    rates: Mapping[str, ChannelRate] = field(
        default_factory=lambda: {
            "slack": ChannelRate(1.0, 2),  # "about one message per second per channel"
            "discord": ChannelRate(1.0, 5),  # message bucket: 5 per 5 s per channel
        }
    )
    backoff_base: float = 1.0  # first wait after a transient failure
    backoff_cap: float = 300.0  # never more than this between two tries of a channel
    probe_interval: float = 60.0  # a failing platform is tried at least this often
    horizon: float | None = None  # how long a failing channel is retried; None: the default
    update_interval: float = 5.0  # edits of one message at most this often
    reply_burst: int = 3  # more replies than this waiting in a thread become one summary
    concurrency: int = 32

    @property
    def retry_horizon(self) -> float:
        return DEFAULT_HORIZON if self.horizon is None else self.horizon


# (item, sent|retry|rate_limited|failed|merged, seconds since the item was stored)
Observe = Callable[[OutboxItem, str, float], None]
