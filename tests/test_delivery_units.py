"""Delivery's decisions without I/O: which failures are retried (classification), what a waiting
thread coalesces into (latest root state, summarized replies with exact counts), and the outage
gate's backoff, probes, wake-ups and horizon under a hand-driven clock."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime

import pytest

from bot.alerts.sinks import discord_failure, slack_failure
from notifiers.alert import Alert, Severity
from notifiers.delivery import DeliveryPolicy, OutboxItem, Permanent, RateLimited, Transient
from notifiers.delivery.gates import Outages, Verdict
from notifiers.delivery.threads import ThreadQueue

# -- classification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (503, "", Transient),
        (500, "fatal_error", Transient),
        (502, "", Transient),
        (200, "internal_error", Transient),
        (200, "service_unavailable", Transient),
        (200, "request_timeout", Transient),
        (429, "ratelimited", RateLimited),
        (200, "ratelimited", RateLimited),
        (200, "channel_not_found", Permanent),
        (200, "not_in_channel", Permanent),
        (200, "is_archived", Permanent),
        (200, "invalid_blocks", Permanent),
        (200, "invalid_auth", Permanent),
        (200, "token_revoked", Permanent),
        (200, "msg_too_long", Permanent),
        (200, "some_error_slack_adds_later", Permanent),  # unknown: never stall a channel
    ],
)
def test_slack_failures_are_classified(status, error, kind):
    failure = slack_failure("slack chat.postMessage", status, error, {"Retry-After": "7"})
    assert type(failure) is kind
    if kind is RateLimited:
        assert failure.retry_after == 7
    else:
        assert (error or f"HTTP {status}") in str(failure)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (500, {}, Transient),
        (502, {}, Transient),
        (503, {"message": "upstream connect error"}, Transient),
        (429, {"retry_after": 2.5, "global": False}, RateLimited),
        (400, {"code": 50035, "message": "Invalid Form Body"}, Permanent),
        (401, {"code": 0, "message": "401: Unauthorized"}, Permanent),
        (403, {"code": 50001, "message": "Missing Access"}, Permanent),
        (404, {"code": 10003, "message": "Unknown Channel"}, Permanent),
        (200, {"id": "1"}, type(None)),
    ],
)
def test_discord_failures_are_classified(status, body, kind):
    failure = discord_failure("discord POST /channels/1/messages", status, body, {})
    assert type(failure) is kind
    if isinstance(failure, RateLimited):
        assert failure.retry_after == 2.5
    if isinstance(failure, Permanent):
        assert str(body["code"]) in str(failure)


# -- coalescing ------------------------------------------------------------------------------
def alert(title: str, summary: str = "", kind: str = "sync_failed") -> Alert:
    return Alert(
        key="payments:sync_failed",
        app="payments",
        kind=kind,  # type: ignore[arg-type]
        severity=Severity.RESOLVED if kind == "recovered" else Severity.CRITICAL,
        title=title,
        summary=summary,
        occurred_at=datetime(2024, 5, 1, tzinfo=UTC),
    )


_ids = iter(range(1, 10_000))


def item(op: str, title: str = "payments: sync failed", **kw: object) -> OutboxItem:
    return OutboxItem(next(_ids), 1, "slack", "C1", op, alert(title, **kw))  # type: ignore[arg-type]


def test_a_waiting_post_absorbs_later_edits_and_goes_out_with_the_latest_state():
    q = ThreadQueue()
    post = item("post", "v1")
    assert q.add(post) is None
    edits = [item("update", f"v{n}") for n in range(2, 6)]
    superseded = [q.add(e) for e in edits]
    assert superseded == [post, *edits[:-1]]
    batch = q.take(3)
    assert batch is not None and batch.item is edits[-1]
    assert batch.item.op == "post" and batch.alert.title == "v5"
    assert q.take(3) is None


def test_the_root_goes_before_replies_whatever_the_arrival_order():
    q = ThreadQueue()
    first_reply = item("reply", "again 1")
    q.add(first_reply)
    q.add(item("update", "root v2"))
    q.add(item("reply", "again 2"))
    q.add(item("update", "root v3"))
    sent = []
    while (batch := q.take(3)) is not None:
        sent.append((batch.item.op, batch.alert.title))
    assert sent == [("update", "root v3"), ("reply", "again 1"), ("reply", "again 2")]


def test_many_waiting_replies_become_one_summary_with_exact_counts():
    q = ThreadQueue()
    replies = [item("reply", "payments: sync failed again") for _ in range(25)]
    replies += [item("reply", "Acknowledged by alice")]
    replies += [item("reply", "payments: sync failed again") for _ in range(11)]
    closing = item("reply", "payments: recovered", kind="recovered", summary="A sync succeeded.")
    replies.append(closing)
    for r in replies:
        q.add(r)
    batch = q.take(3)
    assert batch is not None and batch.item is closing and len(batch.folded) == 37
    assert batch.alert.summary == (
        "A sync succeeded.\n+37 more events: 36× payments: sync failed again, "
        "1× Acknowledged by alice"
    )
    assert q.take(3) is None


def test_a_few_replies_go_out_one_by_one():
    q = ThreadQueue()
    replies = [item("reply", f"r{n}") for n in range(3)]
    for r in replies:
        q.add(r)
    assert [q.take(3).item for _ in range(3)] == replies  # type: ignore[union-attr]


def test_put_back_keeps_order_and_lets_a_newer_root_win():
    q = ThreadQueue()
    q.add(item("post", "v1"))
    taken = q.take(3)
    assert taken is not None
    newer = item("update", "v2")  # arrived while the post was failing
    q.add(newer)
    assert q.put_back(taken) is taken.item
    assert q.root is newer and newer.op == "post"  # the root never went out: still a post
    q.take(3)
    replies = [item("reply", f"r{n}") for n in range(5)]
    for r in replies[:4]:
        q.add(r)
    summary = q.take(3)
    assert summary is not None and len(summary.folded) == 3
    q.add(replies[4])
    q.put_back(summary)
    assert list(q.replies) == replies


# -- the outage gate -------------------------------------------------------------------------
class HandClock:
    """Time moves only when a waiter times out (a single waiter at a time in these tests)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        if event.is_set():
            return True
        if timeout is None:
            await event.wait()
            return True
        self.now += timeout
        return False


def outages(**kw: float) -> tuple[Outages, HandClock]:
    clock = HandClock()
    policy = DeliveryPolicy(backoff_base=1, backoff_cap=300, probe_interval=60, **kw)
    return Outages(policy, clock, random.Random(1)), clock


def test_backoff_doubles_is_jittered_and_never_exceeds_the_cap():
    o, _ = outages()
    for failures in range(1, 40):
        delay = o.backoff(failures)
        step = min(300, 2 ** (failures - 1))
        assert step / 2 <= delay <= step <= 300


async def test_a_failing_channel_is_probed_once_per_step_until_it_answers():
    o, clock = outages()
    gate = o.gate("slack", "C1")
    assert await o.enter(gate) is Verdict.GO
    o.down(gate, False, "slack chat.postMessage: HTTP 503")
    started = clock.now
    probes = []
    for _ in range(12):
        assert await o.enter(gate) is Verdict.PROBE
        probes.append(clock.now - started)
        o.down(gate, True, "slack chat.postMessage: HTTP 503")
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert all(0 < g <= 60 for g in gaps)  # at most a minute apart: the platform probe
    assert gate.failures == 13 and gate.first_failure == started
    o.up(gate, True)
    assert not gate.failing and await o.enter(gate) is Verdict.GO


async def test_an_answer_wakes_the_other_failing_channels_of_the_platform():
    o, clock = outages()
    a, b, other = o.gate("slack", "C1"), o.gate("slack", "C2"), o.gate("discord", "9")
    for g in (a, b, other):
        o.down(g, False, "refused")
    for _ in range(6):  # b is deep in its backoff
        clock.now = b.until
        o.down(b, True, "refused")
    assert b.until - clock.now > 10
    other_due = other.until
    o.up(a, False)
    assert b.until == clock.now and other.until == other_due  # only the same platform
    assert await o.enter(b) is Verdict.PROBE


async def test_a_channel_failing_past_the_horizon_expires_then_starts_afresh():
    o, clock = outages(horizon=3600)
    gate = o.gate("slack", "C1")
    o.down(gate, False, "HTTP 503")
    probes = 0
    while (verdict := await o.enter(gate)) is Verdict.PROBE:
        probes += 1
        o.down(gate, True, "HTTP 503")
    assert verdict is Verdict.EXPIRED
    assert 3600 < clock.now - (gate.first_failure or 0) <= 3600 + 300
    assert 60 <= probes <= 80  # about one a minute once the backoff reached the cap
    o.renew(gate)
    assert await o.enter(gate) is Verdict.PROBE


async def test_a_channel_failing_before_a_restart_probes_first():
    o, clock = outages()
    gate = o.gate("slack", "C1")
    o.restore(gate, failures=4, first_failure=clock.now - 600)
    assert gate.failing and gate.first_failure == clock.now - 600
    assert await o.enter(gate) is Verdict.PROBE
