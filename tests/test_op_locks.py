"""The per-app operation lock across replicas: two OperationLocks (two replicas) on one store,
on both engines."""

from __future__ import annotations

import asyncio

from bot.state.locks import Holder, OperationLocks
from bot.state.store import Store


def holder(who: str, at: float = 1000.0) -> Holder:
    return Holder(f"sync payments ({who})", who, "slack", at)


async def test_the_second_replica_is_told_who_holds_the_app(state_target: str) -> None:
    a_store, b_store = Store(state_target), Store(state_target)
    a, b = OperationLocks(a_store, "pod-a"), OperationLocks(b_store, "pod-b")
    try:
        assert await a.take("payments", holder("alice")) is None
        assert await b.take("payments", holder("bob")) == holder("alice")
        assert await b.take("billing", holder("bob")) is None  # other apps run side by side
        await b.release("payments")  # not b's lock: nothing happens
        assert await b.take("payments", holder("bob")) == holder("alice")
        await a.release("payments")
        assert await b.take("payments", holder("bob")) is None
    finally:
        await a.close()
        await b.close()
        a_store.close()
        b_store.close()


async def test_a_dead_replicas_lock_expires_and_a_live_ones_is_kept_fresh(
    state_target: str,
) -> None:
    now = [1000.0]
    a_store, b_store = Store(state_target), Store(state_target)
    dead = OperationLocks(a_store, "pod-a", ttl=90, clock=lambda: now[0])
    live = OperationLocks(b_store, "pod-b", ttl=90, heartbeat=0.05, clock=lambda: now[0])
    try:
        assert await dead.take("payments", holder("alice")) is None
        assert dead._task is not None
        dead._task.cancel()  # the replica is gone: no more heartbeats
        now[0] += 89
        assert await live.take("payments", holder("bob")) == holder("alice")
        now[0] += 2  # past the expiry: taken over
        assert await live.take("payments", holder("bob", at=now[0])) is None
        # the live holder's heartbeat pushes its expiry forward while the clock runs
        row_before = b_store.query("SELECT expires_at FROM op_locks WHERE app='payments'")[0][0]
        now[0] += 60
        for _ in range(200):
            row = b_store.query("SELECT expires_at FROM op_locks WHERE app='payments'")[0][0]
            if row > row_before:
                break
            await asyncio.sleep(0.01)
        assert row == now[0] + 90
        now[0] += 60  # 120 s after taking it, still ours thanks to the heartbeat
        assert await dead.take("payments", holder("carol")) == holder("bob", at=1091.0)
    finally:
        await dead.close()
        await live.close()
        a_store.close()
        b_store.close()


async def test_racing_replicas_get_one_winner(state_target: str) -> None:
    stores = [Store(state_target) for _ in range(4)]
    locks = [OperationLocks(s, f"pod-{i}") for i, s in enumerate(stores)]
    try:
        results = await asyncio.gather(
            *(lk.take("payments", holder(f"user{i}")) for i, lk in enumerate(locks))
        )
        winners = [i for i, r in enumerate(results) if r is None]
        assert len(winners) == 1
        expected = holder(f"user{winners[0]}")
        assert all(r == expected for r in results if r is not None)
    finally:
        for lk in locks:
            await lk.close()
        for s in stores:
            s.close()
