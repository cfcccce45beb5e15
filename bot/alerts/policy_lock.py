"""The auto-rollback policy's hold on an app: the per-app operation lock of /sync and /rollback.

A revert by the policy and a person's ``/sync`` or ``/rollback`` of the same app must not run at
once. The policy takes the dispatcher's lock (``bot.state.locks.OperationLocks``: a row in the
store, so it holds across replicas) for the revert and the follow to Synced and Healthy, in the
name of "auto-rollback policy", so a person's command meanwhile gets the usual busy answer naming
it. When a person's command holds the lock, the policy does not act: its decision becomes
``busy`` (audited and counted like every other), and the app is left to that person.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.state.locks import Holder, OperationLocks
from commands.autorollback import REQUESTED_BY, Decision, Reason
from commands.githost.port import CommitInfo


class PolicyLock:
    def __init__(self, locks: OperationLocks, *, clock: Callable[[], float] = time.time) -> None:
        self.locks = locks
        self.clock = clock

    async def take(
        self, app: str, commit: CommitInfo, decision: Decision, held: list[str]
    ) -> Decision:
        """``decision`` with ``app`` (named as the dispatcher names it) added to ``held``; or, when
        someone else holds the app, a ``busy`` skip naming them."""
        line = f"rollback {app} {commit.short_sha}"
        busy = await self.locks.take(app, Holder(line, REQUESTED_BY, "policy", self.clock()))
        if busy is None:
            held.append(app)
            return decision
        return Decision(
            "skip",
            Reason.BUSY,
            f"{busy.user_name} ({busy.platform}) is running `{busy.line}` on {app}: the policy "
            "leaves it to them.",
        )

    async def release(self, app: str) -> None:
        await self.locks.release(app)

    async def close(self) -> None:
        """Stops the heartbeat; releases what is still held (a rollback cut short)."""
        await self.locks.close()
