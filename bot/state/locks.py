"""The per-app operation lock, in the store so that it holds across replicas.

"One operation per app at a time" must hold whichever replica a command reaches: the lock is a
row (``op_locks``, primary key = app) taken with an insert that does nothing on conflict, so two
replicas racing for one app get one winner from the database. The row names the holder (the
command line, who, from which platform, when) for the "busy" answer.

A replica that dies holding a lock must not block the app for good: each row has an expiry that
the holder's heartbeat pushes forward while the command runs; an expired row is taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bot.state.store import Store

log = logging.getLogger(__name__)

TTL = 90.0  # a lock not refreshed for this long belongs to a dead replica
HEARTBEAT = 30.0

# the table: migration 3 in bot/state/store.py (op_locks)


@dataclass(frozen=True)
class Holder:
    line: str
    user_name: str
    platform: str
    started_at: float


class OperationLocks:
    """``take``/``release`` per app; ``owner`` names this replica (its instance id)."""

    def __init__(
        self,
        store: Store,
        owner: str,
        *,
        ttl: float = TTL,
        heartbeat: float = HEARTBEAT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.owner = f"{owner}/{uuid.uuid4().hex[:8]}"  # a restarted process is a new owner
        self.ttl, self.heartbeat = ttl, heartbeat
        self.clock = clock
        self.held: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    # -- store side (worker threads) ------------------------------------------------------------
    def _take(self, app: str, holder: Holder) -> Holder | None:
        now = self.clock()
        with self.store.transaction() as db:
            db.execute("DELETE FROM op_locks WHERE app=? AND expires_at < ?", (app, now))
            cur = db.execute(
                "INSERT INTO op_locks (app, line, user_name, platform, started_at, owner,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    app,
                    holder.line,
                    holder.user_name,
                    holder.platform,
                    holder.started_at,
                    self.owner,
                    now + self.ttl,
                ),
            )
            if cur.rowcount == 1:
                return None
            row = db.execute(
                "SELECT line, user_name, platform, started_at FROM op_locks WHERE app=?", (app,)
            ).fetchone()
        if row is None:  # released between our insert and select: try once more
            return self._take(app, holder)
        return Holder(str(row[0]), str(row[1]), str(row[2]), float(row[3]))

    def _release(self, app: str) -> None:
        self.store.execute("DELETE FROM op_locks WHERE app=? AND owner=?", (app, self.owner))

    def _refresh(self, apps: list[str]) -> None:
        until = self.clock() + self.ttl
        for app in apps:
            self.store.execute(
                "UPDATE op_locks SET expires_at=? WHERE app=? AND owner=?", (until, app, self.owner)
            )

    # -- async API ------------------------------------------------------------------------------
    async def take(self, app: str, holder: Holder) -> Holder | None:
        """None when the lock is now ours; else who holds it."""
        busy = await asyncio.to_thread(self._take, app, holder)
        if busy is None:
            self.held.add(app)
            self._ensure_heartbeat()
        return busy

    async def release(self, app: str) -> None:
        """Free ``app``; shielded, so a cancelled caller still frees it. A failed write is
        logged, not raised: without its heartbeat the row expires after the TTL."""
        self.held.discard(app)
        try:
            await asyncio.shield(asyncio.to_thread(self._release, app))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("could not release the lock on %s: %s", app, type(e).__name__)

    def _ensure_heartbeat(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._beat(), name="op-lock-heartbeat")

    async def _beat(self) -> None:
        while self.held:
            await asyncio.sleep(self.heartbeat)
            try:
                await asyncio.to_thread(self._refresh, sorted(self.held))
            except Exception as e:  # the next beat tries again; the TTL leaves room for two misses
                log.warning("could not refresh operation locks: %s", type(e).__name__)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for app in sorted(self.held):
            with contextlib.suppress(Exception):
                await self.release(app)
