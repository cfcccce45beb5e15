"""The outbox worker: one task per incident thread, sending its coalesced messages in order.

A message reaches the ``Deliverer`` already stored (the webhook was answered after the COMMIT)
and leaves the outbox only as sent, merged (folded into a newer message) or failed; a restart
loads what is still pending, including messages that were waiting out an outage, whose
channel then probes once before the rest follow. Per thread, the task:

1. waits for the root's edit spacing (``update_interval``), then for its channel's outage gate
   and rate bucket (``gates``);
2. only then takes what to send (``threads.ThreadQueue.take``): the newest root state, or the
   waiting replies (summarized when many), so whatever arrived while it waited is folded in;
3. sends it and records the outcome: sent (with the rows it folded, in one transaction),
   retry (transient: the channel's gate closes, the message goes back, retry state stored),
   rate limited (the channel's bucket blocks for Retry-After) or failed (permanent).

A thread whose root was never delivered posts the root with the incident's LATEST state before
its next edit or reply, so a message lost to an old outage does not orphan the incident.

Exactly once, with one window: a crash after the platform accepted a message and before the
outbox COMMIT recorded it re-sends that one message after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

from notifiers.alert import Alert
from notifiers.delivery import gates
from notifiers.delivery.clock import Clock, RealClock
from notifiers.delivery.errors import Permanent, RateLimited, Transient
from notifiers.delivery.model import (
    ChannelRate,
    ChatSink,
    DeliveryPolicy,
    Observe,
    OutboxItem,
    OutboxPort,
    ThreadKey,
)
from notifiers.delivery.threads import Batch, ThreadQueue

log = logging.getLogger(__name__)

MAX_THREADS = 20_000  # message refs kept in memory; far more than incidents open at once


def _bound(d: dict[ThreadKey, Any], limit: int) -> None:
    """Forget the oldest entries (insertion order): long-closed incidents' threads."""
    while len(d) > limit:
        del d[next(iter(d))]


class Deliverer:
    def __init__(
        self,
        sinks: Mapping[str, ChatSink],
        port: OutboxPort,
        policy: DeliveryPolicy | None = None,
        *,
        refs: Mapping[ThreadKey, str] | None = None,
        observe: Observe | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.sinks = dict(sinks)
        self.port = port
        self.policy = policy or DeliveryPolicy()
        self.clock: Clock = clock or RealClock()
        self.refs: dict[ThreadKey, str] = dict(refs or {})
        self.observe = observe
        self.outages = gates.Outages(self.policy, self.clock)
        self._queues: dict[ThreadKey, ThreadQueue] = {}
        self._tasks: dict[ThreadKey, asyncio.Task[None]] = {}
        self._last_edit: dict[ThreadKey, float] = {}
        self._roots: dict[ThreadKey, Alert] = {}  # the newest root state seen per thread
        self._buckets: dict[tuple[str, str], gates.Bucket] = {}
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
            key = item.thread
            if item.first_failed_at is not None:  # it was waiting out an outage before
                gate = self.outages.gate(item.platform, item.channel)
                self.outages.restore(gate, item.tries, item.first_failed_at)
            if item.op != "reply":
                self._roots[key] = item.alert
                _bound(self._roots, MAX_THREADS)
            q = self._queues.setdefault(key, ThreadQueue())
            superseded = q.add(item)
            if superseded is not None:
                self._note(superseded, "merged")
                self._spawn(self.port.merged(superseded, item))
            self._idle.clear()
            if key not in self._tasks:
                self._tasks[key] = asyncio.get_running_loop().create_task(
                    self._run_thread(key), name=f"deliver-{key}"
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

    # -- status -----------------------------------------------------------------------------
    def waiting(self) -> dict[str, tuple[int, float]]:
        """Per platform: (messages held back by a failing channel, seconds the oldest has)."""
        now = self.clock.time()
        out: dict[str, tuple[int, float]] = {}
        if not self.outages.failing():
            return out
        for key, q in self._queues.items():
            gate = self.outages.gates.get((key[1], key[2]))
            if gate is None or not gate.failing or not len(q):
                continue
            n, age = out.get(key[1], (0, 0.0))
            oldest = max(now - i.created_at for i in ([q.root] if q.root else []) + [*q.replies])
            out[key[1]] = (n + len(q), max(age, oldest))
        return out

    def health(self) -> dict[str, Any]:
        """For /readyz detail: "ok", or "waiting" with the channels a platform keeps failing
        (the bot is fine: it is the chat platform that is down)."""
        now = self.clock.time()
        channels = []
        for gate in sorted(self.outages.failing(), key=lambda g: g.first_failure or now)[:20]:
            held = sum(
                len(q)
                for k, q in self._queues.items()
                if (k[1], k[2]) == (gate.platform, gate.channel)
            )
            channels.append(
                {
                    "platform": gate.platform,
                    "channel": gate.channel,
                    "waiting": held,
                    "failing_for_s": round(now - (gate.first_failure or now), 1),
                    "failed_tries": gate.failures,
                    "next_try_in_s": round(max(0.0, gate.until - now), 1),
                    "last_error": gate.last_error[:200],
                }
            )
        waiting = self.waiting()
        return {
            "state": "waiting" if channels else "ok",
            "queued": self.pending(),
            "waiting": sum(n for n, _ in waiting.values()),
            "failing_channels": channels,
        }

    # -- plumbing -------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("outbox bookkeeping failed")

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _bucket(self, platform: str, channel: str) -> gates.Bucket:
        key = (platform, channel)
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self.policy.rates.get(platform, ChannelRate(1.0, 1))
            bucket = self._buckets[key] = gates.Bucket(rate, self.clock)
        return bucket

    def _note(self, item: OutboxItem, outcome: str) -> None:
        if self.observe is not None:
            self.observe(item, outcome, max(0.0, self.clock.time() - item.created_at))

    def _spacing(self, key: ThreadKey, q: ThreadQueue) -> float:
        """Seconds until the waiting root edit may go (edits of one message are spaced)."""
        if q.root is None or q.root.op != "update":
            return 0.0
        due = self._last_edit.get(key, 0.0) + self.policy.update_interval
        return due - self.clock.time()

    async def _run_thread(self, key: ThreadKey) -> None:
        q = self._queues[key]
        gate = self.outages.gate(key[1], key[2])
        try:
            while len(q):
                wait = self._spacing(key, q)
                if wait > 0:
                    await self.clock.sleep(wait)
                    continue  # the root may have been replaced by a newer edit meanwhile
                record = None
                async with gate.lock:  # one call at a time per channel
                    if not len(q):  # expired by another thread while this one queued
                        continue
                    verdict = await self.outages.enter(gate)
                    if verdict is gates.Verdict.EXPIRED:
                        await self._expire(gate)
                        continue
                    probe = verdict is gates.Verdict.PROBE
                    await self._bucket(key[1], key[2]).acquire()
                    batch = q.take(self.policy.reply_burst)
                    if batch is None:  # expired by another thread meanwhile
                        self.outages.release(gate, probe)
                        continue
                    record = await self._send(key, q, gate, batch, probe)
                if record is not None:  # the bookkeeping need not hold the channel
                    await record
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
            if not len(q):
                self._queues.pop(key, None)
            if not self._tasks:
                self._idle.set()

    async def _root_ref(self, key: ThreadKey) -> str | None:
        ref = self.refs.get(key)
        if ref is None:
            known = await self.port.root(key)
            if known.ref is not None:
                ref = self.refs[key] = known.ref
            elif known.alert is not None and key not in self._roots:
                self._roots[key] = known.alert
        return ref

    async def _send(
        self, key: ThreadKey, q: ThreadQueue, gate: gates.Gate, batch: Batch, probe: bool
    ) -> Awaitable[None] | None:
        """Make the call; returns the outbox bookkeeping still to await, if any."""
        item = batch.item
        sink = self.sinks.get(item.platform)
        if sink is None:
            self.outages.release(gate, probe)
            await self._fail(batch, f"no {item.platform} connection is configured")
            return None
        ref = None if item.op == "post" else await self._root_ref(key)
        if ref is None and item.op == "update":
            item.op = "post"  # the root never went out: post it, with the latest state
        elif ref is None and item.op == "reply":
            # a reply needs its root: post the incident as it reads now, then the reply
            q.put_back(batch)
            if q.root is None:  # (unless a newer root arrived meanwhile: that one goes)
                q.root = self._stand_in_root(key, item)
            self.outages.release(gate, probe)
            return None
        try:
            async with self._sem:
                if item.op == "post":
                    ref = await sink.post(item.channel, batch.alert)
                elif item.op == "update":
                    assert ref is not None
                    await sink.update(item.channel, ref, batch.alert)
                else:
                    assert ref is not None
                    await sink.reply(item.channel, ref, batch.alert, broadcast=item.broadcast)
        except RateLimited as e:
            self.outages.up(gate, probe)
            self._bucket(item.platform, item.channel).block(e.retry_after)
            item.not_before = self.clock.time() + e.retry_after
            self._put_back(q, batch)
            self._note(item, "rate_limited")
            log.info("%s %s rate limited for %.1fs", item.platform, item.channel, e.retry_after)
            return None
        except Transient as e:
            self.outages.down(gate, probe, str(e))
            item.tries += 1
            item.first_failed_at = gate.first_failure
            item.not_before = gate.until
            self._put_back(q, batch)
            self._note(item, "retry")
            log.info(
                "%s channel %s unavailable (%s); next try in %.0fs",
                item.platform,
                item.channel,
                e,
                max(0.0, gate.until - self.clock.time()),
            )
            return self.port.retry(item, str(e)[:500])
        except Permanent as e:
            self.outages.up(gate, probe)
            await self._fail(batch, str(e))
            if item.op == "post":  # its replies have no thread to go to
                for reply in q.drain_replies():
                    await self._fail(
                        Batch(reply, reply.alert), f"the incident's first message failed: {e}"
                    )
            return None
        except Exception as e:  # a bug (say, in a renderer), not an outage: this message fails
            log.exception("unexpected error delivering outbox item %s", item.id)
            self.outages.up(gate, probe)
            await self._fail(batch, f"internal error: {type(e).__name__}")
            return None
        self.outages.up(gate, probe)
        if item.op == "post":
            assert ref is not None
            self.refs[key] = ref
            _bound(self.refs, MAX_THREADS)
        if item.op in ("post", "update"):
            self._last_edit[key] = self.clock.time()
            _bound(self._last_edit, MAX_THREADS)
        self._note(item, "sent")
        for folded in batch.folded:
            self._note(folded, "merged")
        return self.port.sent(item, ref if item.op == "post" else None, batch.folded)

    def _stand_in_root(self, key: ThreadKey, reply: OutboxItem) -> OutboxItem:
        """A root post for a thread that has none (id 0: no outbox row of its own; the store
        records its message reference like any root's)."""
        return OutboxItem(
            id=0,
            incident_id=reply.incident_id,
            platform=reply.platform,
            channel=reply.channel,
            op="post",
            alert=self._roots.get(key, reply.alert),
            created_at=reply.created_at,
            tries=reply.tries,
            first_failed_at=reply.first_failed_at,
        )

    def _put_back(self, q: ThreadQueue, batch: Batch) -> None:
        superseded = q.put_back(batch)
        if superseded is not None and q.root is not None:
            self._note(superseded, "merged")
            self._spawn(self.port.merged(superseded, q.root))

    async def _expire(self, gate: gates.Gate) -> None:
        """The channel failed for longer than the horizon: its waiting messages fail."""
        hours = self.policy.retry_horizon / 3600
        reason = f"gave up: the channel failed for more than {hours:g} h ({gate.last_error})"
        for key, q in list(self._queues.items()):
            if (key[1], key[2]) != (gate.platform, gate.channel):
                continue
            for item in q.drain():
                await self._fail(Batch(item, item.alert), reason, outcome="expired")
        self.outages.renew(gate)

    async def _fail(self, batch: Batch, error: str, *, outcome: str = "failed") -> None:
        for item in (*batch.folded, batch.item):
            log.error(
                "alert message failed for good: incident %s %s to %s channel %s: %s",
                item.incident_id,
                item.op,
                item.platform,
                item.channel,
                error,
            )
            self._note(item, outcome)
            await self.port.failed(item, error[:500])
