"""Webhooks accepted by a follower reach the leader's engine exactly once (both engines)."""

from __future__ import annotations

from bot.state.alerts import AlertStore
from bot.state.inbox import Inbox
from bot.state.store import Store
from notifiers.alert import CommitRef, EventCount, ResourceProblem
from notifiers.incidents.engine import Engine
from notifiers.incidents.model import Policy, Signal, signal_from_json, signal_to_json
from notifiers.routing import Router

FAILED = Signal(
    "sync_failed",
    "payments",
    source="webhook",
    project="default",
    revision="8e1d0b4",
    message="one or more objects failed to apply",
    operation="2026-11-30T02:00:00Z",
    resources=(ResourceProblem("StatefulSet", "payments-db", "ai-services", "SyncFailed", "x"),),
    commit=CommitRef("8e1d0b4", "alice", "bump"),
)


def test_a_signal_survives_the_trip_through_json() -> None:
    warning = Signal("warning", "payments", event=EventCount("BackOff", "Pod/p-0", "m", 3))
    for s in (FAILED, warning):
        assert signal_from_json(signal_to_json(s)) == s


async def test_follower_accepts_leader_ingests_once(state_target: str) -> None:
    follower_store, leader_store = Store(state_target), Store(state_target)
    inbox = Inbox(follower_store)
    leader = AlertStore(
        leader_store, Engine(Policy(degraded_grace=0), Router([], {"slack": "C0ALERTS"}))
    )
    try:
        assert await inbox.ingest([FAILED], "body-1") == "accepted"
        assert await inbox.ingest([FAILED], "body-1") == "duplicate"  # Argo CD's retry
        assert inbox.waiting() == 1

        outcomes: list[str] = []
        posted: list[str] = []

        async def ingest(signals: list[Signal], key: str) -> str:
            result = await leader.ingest(signals, key)
            outcomes.append(result.status)
            posted.extend(i.op for i in result.items)
            return result.status

        assert await Inbox(leader_store).drain(ingest) == 1
        assert outcomes == ["accepted"] and posted == ["post"]
        assert inbox.waiting() == 0
        # the same body again, to the follower, after the leader took it: still a duplicate
        assert await inbox.ingest([FAILED], "body-1") == "duplicate"
        assert await Inbox(leader_store).drain(ingest) == 0
        inc = leader.engine.incidents["payments:sync_failed"]
        assert inc.resources == FAILED.resources
    finally:
        leader.close()
        follower_store.close()
        leader_store.close()


async def test_a_crash_between_ingest_and_delete_repeats_only_a_no_op(state_target: str) -> None:
    store = Store(state_target)
    inbox = Inbox(store)
    leader = AlertStore(store, Engine(Policy(degraded_grace=0), Router([], {"slack": "C0A"})))
    try:
        assert await inbox.ingest([FAILED], "body-1") == "accepted"
        # the leader ingested it, then died before deleting the inbox row
        first = await leader.ingest([FAILED], "body-1")
        assert first.status == "accepted"
        statuses: list[str] = []

        async def ingest(signals: list[Signal], key: str) -> str:
            result = await leader.ingest(signals, key)
            statuses.append(result.status)
            assert result.items == []
            return result.status

        assert await inbox.drain(ingest) == 1  # the next leader drains it...
        assert statuses == ["duplicate"]  # ...and nothing is posted twice
        assert inbox.waiting() == 0
    finally:
        leader.close()
        store.close()
