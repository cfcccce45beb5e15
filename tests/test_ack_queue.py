"""Acks a follower takes reach the leader's engine and come back with its answer (both engines).

Two ``Store``s on one database play the two replicas; the leader's side is a real ``AlertStore``
with its incident engine."""

from __future__ import annotations

import asyncio

import pytest

from bot.alerts import ack
from bot.state.acks import KEEP_DONE, PURGE_EVERY, AckOutcome, AckQueue
from bot.state.alerts import AlertStore
from bot.state.store import Store
from commands import errors
from commands.results import Status
from notifiers.delivery import OutboxItem
from notifiers.incidents.engine import Engine
from notifiers.incidents.model import Policy, Signal
from notifiers.routing import Router

FAILED = Signal("sync_failed", "payments", source="webhook", revision="8e1d0b4", message="boom")


class Who:
    user_name = "alice"


async def test_the_follower_answers_in_the_leaders_words(state_target: str) -> None:
    follower_store, leader_store = Store(state_target), Store(state_target)
    engine = Engine(Policy(degraded_grace=0), Router([], {"slack": "C0ALERTS"}))
    leader = AlertStore(leader_store, engine)
    sent: list[OutboxItem] = []
    try:
        await leader.ingest([FAILED])

        async def apply(ref: str, by: str) -> AckOutcome:
            return await ack.apply(leader, sent.extend, ref, by)

        drain = asyncio.create_task(AckQueue(leader_store).run(apply, poll=0.05))
        queue = AckQueue(follower_store)
        follower = ack.AnyReplica(queue, lambda: None, lambda: "pod-a", wait=5.0, poll=0.02)
        try:
            done = await follower(Who(), ["payments:sync_failed"])
            assert (done.status, done.target, done.summary) == (
                Status.CHANGED,
                "payments:sync_failed",
                "Acknowledged payments:sync_failed; it will not be re-announced.",
            )
            again = await follower(Who(), ["#1"])
            assert again.status is Status.NOOP
            assert again.summary == "payments:sync_failed was already acknowledged by alice."
            with pytest.raises(errors.NotFound, match="There is no open incident orders:degraded"):
                await follower(Who(), ["orders:degraded"])
        finally:
            drain.cancel()
        # applied once: one "Acknowledged by" reply for the thread; the answers read are gone
        assert [i.op for i in sent].count("reply") == 1
        assert engine.incidents["payments:sync_failed"].acked_by == "alice"
        assert follower_store.query("SELECT COUNT(*) FROM ack_requests")[0][0] == 0
    finally:
        leader.close()
        follower_store.close()
        leader_store.close()


async def test_unanswered_requests_wait_and_unread_answers_are_purged(state_target: str) -> None:
    store = Store(state_target)
    now = [1000.0]
    queue = AckQueue(store, clock=lambda: now[0])
    try:
        follower = ack.AnyReplica(queue, lambda: None, lambda: None, wait=0.05, poll=0.01)
        queued = await follower(Who(), ["payments:degraded"])
        assert queued.status is Status.NOOP
        assert queued.summary.startswith(
            "Your acknowledgement of payments:degraded is queued: a leading replica has not "
        )
        assert queue.waiting() == 1
        applied: list[tuple[str, str]] = []

        async def apply(ref: str, by: str) -> AckOutcome:
            applied.append((ref, by))
            return AckOutcome("changed", ref, f"Acknowledged {ref}.")

        now[0] += PURGE_EVERY
        assert await queue.drain(apply) == 1
        assert applied == [("payments:degraded", "alice")] and queue.waiting() == 0
        # nobody reads that answer: it goes after KEEP_DONE, at the next purge
        now[0] += KEEP_DONE + PURGE_EVERY
        assert await queue.drain(apply) == 0
        assert store.query("SELECT COUNT(*) FROM ack_requests")[0][0] == 0
    finally:
        store.close()
