"""The auto-rollback policy's durable memory (tables of migration 7 in ``bot.state.store``).

- ``autorollback_marks``: per opted-in app and revision, whether the app settled Healthy or
  Degraded there (rule 2: "was the app Synced and Healthy at the revision before R?"), so the
  answer survives a restart.
- ``autorollback_decisions``: one row per (app, R), inserted before anything is done about R;
  the primary key makes "at most once per (app, R)" hold across restarts and replicas. Rows
  with a ``revert_sha`` are the policy's own reverts (never reverted in turn), and the rows of
  the last hour are the rate limits.
- ``autorollback_pauses``: ``/autorollback off``.

``PolicyLedger`` is synchronous SQL on the store's connection (the policy glue runs it in a worker
thread); ``StoreLedger`` is the ``commands.autorollback_cmd.Ledger`` port over it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.state.store import Store
from commands.autorollback_cmd import DecisionRecord

HOUR = 3600.0
KEEP = 90 * 86400.0  # marks and decisions older than this are dropped


@dataclass(frozen=True)
class Claim:
    app: str
    revision: str
    trigger: str
    action: str
    reason: str
    detail: str
    commit: str
    decided_at: float


def _record(r: Any) -> DecisionRecord:
    return DecisionRecord(
        app=str(r["app"]),
        revision=str(r["revision"]),
        trigger=str(r["trigger_kind"]),
        action=str(r["action"]),
        reason=str(r["reason"]),
        detail=str(r["detail"]),
        commit=str(r["commit_sha"]),
        revert=str(r["revert_sha"]),
        decided_at=float(r["decided_at"]),
    )


class PolicyLedger:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- health at each revision ----------------------------------------------------------------
    def mark(self, app: str, revision: str, healthy: bool, now: float) -> None:
        self.store.execute(
            "INSERT INTO autorollback_marks (app, revision, healthy, seen_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (app, revision) DO UPDATE SET healthy=excluded.healthy,"
            " seen_at=excluded.seen_at",
            (app, revision, 1 if healthy else 0, now),
        )

    def marks(self, app: str) -> dict[str, bool]:
        rows = self.store.query(
            "SELECT revision, healthy FROM autorollback_marks WHERE app=?", (app,)
        )
        return {str(r["revision"]): bool(r["healthy"]) for r in rows}

    # -- decisions ----------------------------------------------------------------------------
    def decided(self, app: str, revision: str) -> bool:
        rows = self.store.query(
            "SELECT 1 FROM autorollback_decisions WHERE app=? AND revision=?", (app, revision)
        )
        return bool(rows)

    def claim(self, c: Claim) -> bool:
        """Record the decision about (app, R); False if one exists already (nothing changed)."""
        cur = self.store.execute(
            "INSERT INTO autorollback_decisions (app, revision, trigger_kind, action, reason,"
            " detail, commit_sha, revert_sha, outcome, decided_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, '', '', ?) ON CONFLICT (app, revision) DO NOTHING",
            (c.app, c.revision, c.trigger, c.action, c.reason, c.detail[:1000], c.commit,
             c.decided_at),
        )  # fmt: skip
        return bool(cur.rowcount > 0)

    def set_revert(self, app: str, revision: str, revert_sha: str) -> None:
        self.store.execute(
            "UPDATE autorollback_decisions SET revert_sha=? WHERE app=? AND revision=?",
            (revert_sha, app, revision),
        )

    def set_outcome(self, app: str, revision: str, outcome: str) -> None:
        self.store.execute(
            "UPDATE autorollback_decisions SET outcome=? WHERE app=? AND revision=?",
            (outcome, app, revision),
        )

    def acted_since(self, since: float, app: str | None = None) -> int:
        """Reverts (and dry-run reverts: a dry run should be limited as the real one would)."""
        sql = (
            "SELECT COUNT(*) AS n FROM autorollback_decisions"
            " WHERE reason IN ('acted', 'dry_run') AND decided_at >= ?"
        )
        params: tuple[Any, ...] = (since,)
        if app is not None:
            sql += " AND app=?"
            params += (app,)
        return int(self.store.query(sql, params)[0]["n"])

    def policy_reverts(self) -> frozenset[str]:
        rows = self.store.query(
            "SELECT revert_sha FROM autorollback_decisions WHERE revert_sha != ''"
        )
        return frozenset(str(r["revert_sha"]) for r in rows)

    def recent_sync(self, app: str | None, limit: int) -> list[DecisionRecord]:
        sql = "SELECT * FROM autorollback_decisions"
        params: tuple[Any, ...] = ()
        if app is not None:
            sql += " WHERE app=?"
            params = (app,)
        sql += " ORDER BY decided_at DESC LIMIT ?"
        return [_record(r) for r in self.store.query(sql, (*params, limit))]

    def purge(self, now: float) -> None:
        cutoff = now - KEEP
        self.store.execute("DELETE FROM autorollback_marks WHERE seen_at < ?", (cutoff,))
        self.store.execute("DELETE FROM autorollback_decisions WHERE decided_at < ?", (cutoff,))
        self.store.execute("DELETE FROM autorollback_pauses WHERE paused_until < ?", (now,))

    # -- pauses ---------------------------------------------------------------------------------
    def pause_sync(self, app: str, until: float, by: str, now: float) -> None:
        self.store.execute(
            "INSERT INTO autorollback_pauses (app, paused_until, paused_by, paused_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (app) DO UPDATE SET"
            " paused_until=excluded.paused_until, paused_by=excluded.paused_by,"
            " paused_at=excluded.paused_at",
            (app, until, by, now),
        )

    def resume_sync(self, app: str, now: float) -> bool:
        active = (self.paused_until_sync(app) or 0.0) > now
        self.store.execute("DELETE FROM autorollback_pauses WHERE app=?", (app,))
        return active

    def paused_until_sync(self, app: str) -> float | None:
        rows = self.store.query("SELECT paused_until FROM autorollback_pauses WHERE app=?", (app,))
        return float(rows[0]["paused_until"]) if rows else None


class StoreLedger:
    """The ``commands.autorollback_cmd.Ledger`` port on the store (the chat command, the CLI)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.ledger = PolicyLedger(store)
        self.store = store
        self.clock = clock

    async def pause(self, app: str, until: float, by: str) -> None:
        await self.store.run(self.ledger.pause_sync, app, until, by, self.clock())

    async def resume(self, app: str) -> bool:
        return await self.store.run(self.ledger.resume_sync, app, self.clock())

    async def paused_until(self, app: str) -> float | None:
        return await self.store.run(self.ledger.paused_until_sync, app)

    async def recent(self, app: str | None, limit: int) -> list[DecisionRecord]:
        return await self.store.run(self.ledger.recent_sync, app, limit)
