"""Delivery: the outbox worker that gets every stored alert message to chat, and no more.

An alert message is already in the SQLite outbox (written before the webhook was answered) when
it reaches the ``Deliverer``; it leaves the outbox only as sent, merged or failed, so a crash
loses nothing: pending rows are loaded again at start. What this module adds:

- order per thread: the root ``post`` of an incident goes first; edits and replies of the same
  incident in the same channel follow in order, since they need the root's message reference;
- coalescing: an edit queued behind an unsent post or edit REPLACES it (only the latest state
  matters), and edits of one root are spaced ``update_interval`` apart, so a storm of 10,000
  events becomes a handful of messages;
- per-channel rate limits (token buckets; Slack allows about one message per second per channel,
  Discord buckets of five), and a 429's Retry-After blocks the whole channel that long;
- bounded retries: 5xx and network errors back off exponentially with jitter, up to
  ``max_tries``; a permanent error (channel not found, invalid blocks, bad token) fails at once.
  A failed message is logged and counted (``observe``); it is never retried silently forever.

Sinks (bot/sinks.py) speak to Slack or Discord and translate their failures into the three
exceptions below. Nothing here imports a chat SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from notifiers.alert import Alert

log = logging.getLogger(__name__)

ThreadKey = tuple[int, str, str]  # (incident id, platform, channel)
MAX_THREADS = 20_000  # message refs kept in memory; far more than incidents open at once


def _bound(d: dict[ThreadKey, Any], limit: int) -> None:
    """Forget the oldest entries (insertion order): long-closed incidents' threads."""
    while len(d) > limit:
        del d[next(iter(d))]


class DeliveryError(Exception):
    """What a sink raises; ``str(e)`` is a short reason without secrets."""


class RateLimited(DeliveryError):
    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(f"{message} (retry after {retry_after:g}s)")
        self.retry_after = max(0.0, float(retry_after))


class Transient(DeliveryError):
    """5xx, timeouts, connection errors: worth trying again later."""


class Permanent(DeliveryError):
    """The request itself is wrong (unknown channel, invalid blocks, bad token)."""


class ChatSink(Protocol):
    """One chat platform. ``post``/``reply`` return the new message's reference (Slack ``ts``,
    Discord message id); all three raise RateLimited / Transient / Permanent."""

    platform: str

    async def post(self, channel: str, alert: Alert) -> str: ...

    async def update(self, channel: str, ref: str, alert: Alert) -> None: ...

    async def reply(
        self, channel: str, ref: str, alert: Alert, *, broadcast: bool = False
    ) -> str: ...


@dataclass
class OutboxItem:
    id: int
    incident_id: int
    platform: str
    channel: str
    op: str  # post | update | reply
    alert: Alert
    broadcast: bool = False
    tries: int = 0
    not_before: float = 0.0
    created_at: float = field(default_factory=time.time)
    limited: int = 0  # 429s seen (not persisted: Retry-After is the server's to decide)

    @property
    def thread(self) -> ThreadKey:
        return (self.incident_id, self.platform, self.channel)


class OutboxPort(Protocol):
    """Durable bookkeeping of the outbox (bot/alert_store.py)."""

    async def sent(self, item: OutboxItem, ref: str | None) -> None: ...

    async def retry(self, item: OutboxItem, error: str) -> None: ...

    async def failed(self, item: OutboxItem, error: str) -> None: ...

    async def merged(self, superseded: OutboxItem, into: OutboxItem) -> None: ...


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
    max_tries: int = 6
    max_rate_limited: int = 50
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    update_interval: float = 5.0
    concurrency: int = 32


Observe = Callable[[OutboxItem, str, float], None]  # (item, sent|retry|rate_limited|failed, age)


class _Bucket:
    def __init__(self, rate: ChannelRate) -> None:
        self.rate = rate
        self.tokens = float(rate.burst)
        self.stamp = time.monotonic()
        self.blocked_until = 0.0
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                if self.blocked_until > now:
                    await asyncio.sleep(self.blocked_until - now)
                    continue
                self.tokens = min(
                    float(self.rate.burst), self.tokens + (now - self.stamp) * self.rate.per_second
                )
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate.per_second)

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)


class Deliverer:
    def __init__(
        self,
        sinks: Mapping[str, ChatSink],
        port: OutboxPort,
        policy: DeliveryPolicy | None = None,
        *,
        refs: Mapping[ThreadKey, str] | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.sinks = dict(sinks)
        self.port = port
        self.policy = policy or DeliveryPolicy()
        self.refs: dict[ThreadKey, str] = dict(refs or {})
        self.observe = observe
        self._queues: dict[ThreadKey, deque[OutboxItem]] = {}
        self._tasks: dict[ThreadKey, asyncio.Task[None]] = {}
        self._last_edit: dict[ThreadKey, float] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._sem = asyncio.Semaphore(self.policy.concurrency)
        self._idle = asyncio.Event()
        self._idle.set()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- input ----------------------------------------------------------------------------
    def enqueue(self, items: Iterable[OutboxItem]) -> None:
        """Take stored outbox rows (in id order). Call on the event loop."""
        for item in items:
            if self._closed:
                return
            q = self._queues.setdefault(item.thread, deque())
            tail = q[-1] if q else None
            if item.op == "update" and tail is not None and tail.op in ("post", "update"):
                item.op = tail.op  # the pending root post goes out with the newest content
                item.tries = tail.tries
                q[-1] = item
                self._spawn(self.port.merged(tail, item))
            else:
                q.append(item)
            self._idle.clear()
            if item.thread not in self._tasks:
                self._tasks[item.thread] = asyncio.get_running_loop().create_task(
                    self._run_thread(item.thread), name=f"deliver-{item.thread}"
                )

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or being sent (tests, graceful shutdown)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._closed = True
        tasks = [*self._tasks.values(), *self._background]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- plumbing -------------------------------------------------------------------------
    def _spawn(self, coro: object) -> None:
        async def run() -> None:
            try:
                await coro  # type: ignore[misc]
            except Exception:
                log.exception("outbox bookkeeping failed")

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _bucket(self, platform: str, channel: str) -> _Bucket:
        key = (platform, channel)
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self.policy.rates.get(platform, ChannelRate(1.0, 1))
            bucket = self._buckets[key] = _Bucket(rate)
        return bucket

    def _due(self, item: OutboxItem) -> float:
        due = item.not_before
        if item.op == "update":
            due = max(due, self._last_edit.get(item.thread, 0.0) + self.policy.update_interval)
        return due

    def _backoff(self, tries: int) -> float:
        delay = min(self.policy.backoff_cap, self.policy.backoff_base * 2 ** max(0, tries - 1))
        return float(delay * random.uniform(0.8, 1.2))

    def _note(self, item: OutboxItem, outcome: str) -> None:
        if self.observe is not None:
            self.observe(item, outcome, max(0.0, time.time() - item.created_at))

    async def _run_thread(self, key: ThreadKey) -> None:
        q = self._queues[key]
        try:
            while q:
                item = q[0]
                wait = self._due(item) - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # the head may have been replaced by a newer edit meanwhile
                q.popleft()
                requeue = await self._deliver(item)
                if requeue:
                    q.appendleft(item)
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
            if not q:
                self._queues.pop(key, None)
            if not self._tasks:
                self._idle.set()

    async def _deliver(self, item: OutboxItem) -> bool:
        """Send one message; True when it should be tried again (already rescheduled)."""
        sink = self.sinks.get(item.platform)
        if sink is None:
            await self._fail(item, f"no {item.platform} connection is configured")
            return False
        ref = self.refs.get(item.thread)
        if item.op != "post" and ref is None:
            await self._fail(item, "the incident's first message was never delivered")
            return False
        await self._bucket(item.platform, item.channel).acquire()
        try:
            async with self._sem:
                if item.op == "post":
                    ref = await sink.post(item.channel, item.alert)
                elif item.op == "update":
                    assert ref is not None
                    await sink.update(item.channel, ref, item.alert)
                else:
                    assert ref is not None
                    await sink.reply(item.channel, ref, item.alert, broadcast=item.broadcast)
        except RateLimited as e:
            self._bucket(item.platform, item.channel).block(e.retry_after)
            item.limited += 1
            if item.limited > self.policy.max_rate_limited:
                await self._fail(item, f"still rate limited after {item.limited} tries")
                return False
            item.not_before = time.time() + e.retry_after
            self._note(item, "rate_limited")
            log.info("%s %s rate limited for %.1fs", item.platform, item.channel, e.retry_after)
            return True
        except Permanent as e:
            await self._fail(item, str(e))
            return False
        except Exception as e:  # Transient, and anything unexpected from a sink: bounded retry
            if not isinstance(e, Transient):
                log.exception("unexpected error delivering outbox item %s", item.id)
            item.tries += 1
            if item.tries >= self.policy.max_tries:
                await self._fail(item, f"gave up after {item.tries} tries: {e}")
                return False
            item.not_before = time.time() + self._backoff(item.tries)
            self._note(item, "retry")
            await self.port.retry(item, str(e)[:500])
            return True
        if item.op == "post":
            assert ref is not None
            self.refs[item.thread] = ref
            _bound(self.refs, MAX_THREADS)
        if item.op in ("post", "update"):
            self._last_edit[item.thread] = time.time()
            _bound(self._last_edit, MAX_THREADS)
        self._note(item, "sent")
        await self.port.sent(item, ref if item.op == "post" else None)
        return False

    async def _fail(self, item: OutboxItem, error: str) -> None:
        log.error(
            "alert message failed for good: incident %s %s to %s channel %s: %s",
            item.incident_id,
            item.op,
            item.platform,
            item.channel,
            error,
        )
        self._note(item, "failed")
        await self.port.failed(item, error[:500])
