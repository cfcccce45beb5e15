"""The state store: one SQLite file (default ./chatops.db) with versioned migrations.

SQLite in WAL mode with ``synchronous=FULL``: a row is on disk when ``commit`` returns, which is
what "an accepted alert survives a crash" needs. One connection guarded by a lock; callers on the
event loop use the ``a*`` coroutine wrappers, which run the statement in a worker thread.
Later features add tables by appending to ``MIGRATIONS``; a database newer than the code is
refused rather than guessed at.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE timers (
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            due_at REAL NOT NULL,
            payload TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (kind, key)
        );
        CREATE INDEX timers_due ON timers (due_at);
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL,
            channel TEXT NOT NULL,
            command TEXT NOT NULL,
            args TEXT NOT NULL,
            app TEXT,
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT,
            detail TEXT
        );
        CREATE INDEX audit_app ON audit (app, started_at);
        CREATE INDEX audit_started ON audit (started_at);
        """,
    ),
    (
        2,
        # alerts (bot/alert_store.py): incidents, the delivery outbox, the chat message of each
        # incident thread per channel, and the keys of webhook bodies already accepted
        """
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            app TEXT NOT NULL,
            state TEXT NOT NULL,
            data TEXT NOT NULL,
            opened_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX incidents_active ON incidents (state, key);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            incident_id INTEGER NOT NULL,
            platform TEXT NOT NULL,
            channel TEXT NOT NULL,
            op TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            tries INTEGER NOT NULL DEFAULT 0,
            not_before REAL NOT NULL,
            created_at REAL NOT NULL,
            done_at REAL,
            error TEXT
        );
        CREATE INDEX outbox_status ON outbox (status, id);
        CREATE TABLE alert_threads (
            incident_id INTEGER NOT NULL,
            platform TEXT NOT NULL,
            channel TEXT NOT NULL,
            ref TEXT NOT NULL,
            PRIMARY KEY (incident_id, platform, channel)
        );
        CREATE TABLE webhook_dedup (
            key TEXT PRIMARY KEY,
            received_at REAL NOT NULL
        );
        CREATE INDEX webhook_dedup_received ON webhook_dedup (received_at);
        """,
    ),
    (
        3,
        # request identities already acted on (bot/state/replay.py): a signed Slack request, a
        # trigger_id, a Discord interaction id; each row lives until expires_at, then is pruned
        """
        CREATE TABLE replay_seen (
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (kind, key)
        );
        CREATE INDEX replay_seen_expires ON replay_seen (expires_at);
        """,
    ),
]

REPLAY_PRUNE_EVERY = 60.0  # seconds between deletions of expired replay rows


class StoreError(Exception):
    pass


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"Cannot open the state database {self.path}: {e}") from e
        self._lock = threading.RLock()
        self._replay_pruned = 0.0
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    # -- schema ---------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        latest = max(v for v, _ in MIGRATIONS)
        with self._lock:
            current = self.version
            if current > latest:
                raise StoreError(
                    f"The state database {self.path} has schema version {current}, newer than "
                    f"this program knows ({latest}). Upgrade argocd-chatops or use another file."
                )
            for version, sql in sorted(MIGRATIONS):
                if version <= current:
                    continue
                with self.transaction() as db:
                    for statement in sql.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {int(version)}")

    # -- plumbing -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- timers ---------------------------------------------------------------------------
    def schedule_timer(
        self, kind: str, key: str, due_at: float, payload: dict[str, Any], created_by: str
    ) -> None:
        self.execute(
            "INSERT INTO timers (kind, key, due_at, payload, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, key) DO UPDATE SET due_at=excluded.due_at,"
            " payload=excluded.payload, created_by=excluded.created_by,"
            " created_at=excluded.created_at",
            (kind, key, due_at, json.dumps(payload), created_by, time.time()),
        )

    def cancel_timer(self, kind: str, key: str) -> bool:
        return self.execute("DELETE FROM timers WHERE kind=? AND key=?", (kind, key)).rowcount > 0

    def timer_due(self, kind: str, key: str) -> float | None:
        rows = self.query("SELECT due_at FROM timers WHERE kind=? AND key=?", (kind, key))
        return float(rows[0]["due_at"]) if rows else None

    def timers(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM timers" + (" WHERE kind=?" if kind else "") + " ORDER BY due_at"  # noqa: S608 (fixed text, bound values)
        return [
            {**dict(r), "payload": json.loads(r["payload"])}
            for r in self.query(sql, (kind,) if kind else ())
        ]

    # -- audit ----------------------------------------------------------------------------
    def audit_start(
        self,
        *,
        platform: str,
        user_id: str,
        user_name: str,
        channel: str,
        command: str,
        args: str,
        app: str | None,
    ) -> int:
        cur = self.execute(
            "INSERT INTO audit (platform, user_id, user_name, channel, command, args, app,"
            " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (platform, user_id, user_name, channel, command, args, app, time.time()),
        )
        return int(cur.lastrowid or 0)

    def audit_end(self, audit_id: int, outcome: str, detail: str = "") -> None:
        self.execute(
            "UPDATE audit SET ended_at=?, outcome=?, detail=? WHERE id=?",
            (time.time(), outcome, detail[:1000], audit_id),
        )

    def audit_list(
        self, *, app: str | None = None, since: float | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        if app:
            where.append("app=?")
            params.append(app)
        if since is not None:
            where.append("started_at>=?")
            params.append(since)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        return [dict(r) for r in self.query(sql, (*params, limit))]

    # -- replay protection ----------------------------------------------------------------
    def claim_once(
        self, batch: Sequence[Sequence[tuple[str, str, float]]], now: float
    ) -> list[str | None]:
        """Record request identities; per request (a list of ``(kind, key, expires_at)``), the
        kind of the first identity already recorded and not yet expired, else None.

        One transaction (one fsync) for the whole batch; the upsert only refreshes a row that
        has expired, so ``rowcount`` 0 means "seen". Expired rows are pruned once a minute."""
        out: list[str | None] = []
        with self.transaction() as db:
            for keys in batch:
                seen: str | None = None
                for kind, key, expires_at in keys:
                    cur = db.execute(
                        "INSERT INTO replay_seen (kind, key, expires_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (kind, key) DO UPDATE SET expires_at=excluded.expires_at"
                        " WHERE replay_seen.expires_at <= ?",
                        (kind, key, expires_at, now),
                    )
                    if cur.rowcount == 0 and seen is None:
                        seen = kind
                out.append(seen)
            if now - self._replay_pruned >= REPLAY_PRUNE_EVERY:
                db.execute("DELETE FROM replay_seen WHERE expires_at <= ?", (now,))
                self._replay_pruned = now
        return out

    def replay_rows(self) -> int:
        return int(self.query("SELECT COUNT(*) AS n FROM replay_seen")[0]["n"])


class StoreTimers:
    """The ``commands.ports.Timers`` port on top of the SQLite store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def schedule(
        self, kind: str, key: str, due_at: float, payload: dict[str, Any], created_by: str
    ) -> None:
        await self.store.run(self.store.schedule_timer, kind, key, due_at, payload, created_by)

    async def cancel(self, kind: str, key: str) -> bool:
        return await self.store.run(self.store.cancel_timer, kind, key)

    async def pending(self, kind: str, key: str) -> float | None:
        return await self.store.run(self.store.timer_due, kind, key)
