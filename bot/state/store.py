"""The state store: one SQLite file (default ./chatops.db), or a PostgreSQL database shared by
several replicas, with versioned migrations.

SQLite in WAL mode with ``synchronous=FULL`` (PostgreSQL with its default ``synchronous_commit``):
a row is on disk when ``commit`` returns, which is what "an accepted alert survives a crash"
needs. One connection guarded by a lock; callers on the
event loop use the ``a*`` coroutine wrappers, which run the statement in a worker thread.
Later features add tables by appending to ``MIGRATIONS``; a database newer than the code is
refused rather than guessed at.

Over 400 lines on purpose: about 150 of them are ``MIGRATIONS``, the schema as SQL text, one
ordered list that features append to and that must stay in one place; the code is under 300.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.settings import Settings
from bot.state import db

T = TypeVar("T")

_OP_LOCKS = """
CREATE TABLE op_locks (
    app TEXT PRIMARY KEY,
    line TEXT NOT NULL,
    user_name TEXT NOT NULL,
    platform TEXT NOT NULL,
    started_at REAL NOT NULL,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
)
"""

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
        # alerts (bot/state/alerts.py): incidents, the delivery outbox, the chat message of each
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
        # delivery that outlives outages (notifiers/delivery): a message waiting out a chat
        # outage stays pending with its retry state (tries, not_before = next try, and when
        # its channel started failing); messages that versions before 3 gave up on after ~30 s
        # of outage, in the last day, are pending again and get delivered after all
        """
        ALTER TABLE outbox ADD COLUMN first_failed_at REAL;
        -- sqlite-only (PostgreSQL stores start at this version: nothing to fix)
        UPDATE outbox SET status = 'pending', done_at = NULL, first_failed_at = created_at
            WHERE status = 'failed' AND created_at > CAST(strftime('%s', 'now') AS REAL) - 86400
            AND (error LIKE 'gave up after %' OR error LIKE 'the incident''s first message %')
        """,
    ),
    (4, "-- op_locks: see bot/state/locks.py\n" + _OP_LOCKS),
    (
        5,
        # webhooks a follower accepted, for the leader's engine (bot/state/inbox.py)
        """
        CREATE TABLE webhook_inbox (
            key TEXT PRIMARY KEY,
            signals TEXT NOT NULL,
            received_at REAL NOT NULL
        );
        CREATE INDEX webhook_inbox_received ON webhook_inbox (received_at)
        """,
    ),
    (
        6,
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
    (
        7,
        # the auto-rollback policy (bot/state/autorollback.py): how each opted-in app looked at
        # each revision it settled at, one decision per (app, revision), and pauses
        """
        CREATE TABLE autorollback_marks (
            app TEXT NOT NULL,
            revision TEXT NOT NULL,
            healthy INTEGER NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (app, revision)
        );
        CREATE TABLE autorollback_decisions (
            app TEXT NOT NULL,
            revision TEXT NOT NULL,
            trigger_kind TEXT NOT NULL,
            action TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            commit_sha TEXT NOT NULL,
            revert_sha TEXT NOT NULL,
            outcome TEXT NOT NULL,
            decided_at REAL NOT NULL,
            PRIMARY KEY (app, revision)
        );
        CREATE INDEX autorollback_decisions_time ON autorollback_decisions (decided_at);
        CREATE TABLE autorollback_pauses (
            app TEXT PRIMARY KEY,
            paused_until REAL NOT NULL,
            paused_by TEXT NOT NULL,
            paused_at REAL NOT NULL
        );
        """,
    ),
    (
        8,
        # acks a follower replica took, for the leader's incident engine (bot/state/acks.py);
        # done_at, outcome and summary are the leader's answer, which the follower reads back
        """
        CREATE TABLE ack_requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ref TEXT NOT NULL,
            by_name TEXT NOT NULL,
            requested_at REAL NOT NULL,
            done_at REAL,
            outcome TEXT NOT NULL DEFAULT '',
            target TEXT NOT NULL DEFAULT '',
            summary TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX ack_requests_pending ON ack_requests (done_at, id);
        """,
    ),
]

REPLAY_PRUNE_EVERY = 60.0  # seconds between deletions of expired replay rows


class StoreError(Exception):
    pass


@dataclass(frozen=True)
class Executed:
    """What ``Store.execute`` ran: its row count and every row it returned, already read."""

    rowcount: int
    rows: list[Any]

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return list(self.rows)


_MIGRATION_LOCK = 0x63686174  # "chat": the advisory lock id replicas take to migrate


SQLITE_ONLY = "-- sqlite-only"


def _for_postgres(sql: str) -> str:
    """A migration without its statements marked ``-- sqlite-only`` (data fixes for SQLite files
    written by versions that predate the PostgreSQL store)."""
    return ";".join(st for st in sql.split(";") if SQLITE_ONLY not in st)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


class Store:
    """The state store on SQLite (a path or ``sqlite:///path``) or PostgreSQL (``postgresql://``).

    One connection guarded by a lock, the same SQL on both engines (``bot.state.db``); the schema
    version lives in SQLite's ``user_version`` or in PostgreSQL's ``chatops_schema`` table.
    """

    def __init__(self, target: str | Path, *, password: str | None = None) -> None:
        target = str(target)
        self.postgres = db.is_postgres(target)
        self._db: Any
        try:
            if self.postgres:
                self.path = db.redact(target)
                self._db = db.PgConnection(db.with_password(target, password))
            else:
                self.path = db.sqlite_path(target)
                self._db = db.open_sqlite(self.path)
        except db.errors() as e:
            raise StoreError(f"Cannot open the state database {self.path}: {_one_line(e)}") from e
        self._lock = threading.RLock()
        self._replay_pruned = 0.0
        self.migrate()

    # -- schema ---------------------------------------------------------------------------
    @property
    def version(self) -> int:
        if self.postgres:
            self._db.execute("CREATE TABLE IF NOT EXISTS chatops_schema (version BIGINT NOT NULL)")
            row = self._db.execute("SELECT MAX(version) FROM chatops_schema").fetchone()
            return int(row[0] or 0)
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        latest = max(v for v, _ in MIGRATIONS)
        with self._lock:
            if self.postgres:  # replicas starting together: one migrates, the others wait
                self._db.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
            try:
                self._migrate(latest)
            finally:
                if self.postgres:
                    self._db.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))

    def _migrate(self, latest: int) -> None:
        current = self.version
        if current > latest:
            raise StoreError(
                f"The state database {self.path} has schema version {current}, newer than "
                f"this program knows ({latest}). Upgrade argocd-chatops or use another database."
            )
        for version, sql in sorted(MIGRATIONS):
            if version <= current:
                continue
            with self.transaction() as conn:
                if self.postgres:
                    conn.executescript_ddl(_for_postgres(sql))
                    conn.execute("INSERT INTO chatops_schema (version) VALUES (?)", (version,))
                else:
                    for statement in sql.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {int(version)}")

    # -- plumbing -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except BaseException:  # a failed COMMIT leaves the transaction open: every
                if self._db.in_transaction:  # later BEGIN on the connection would fail
                    self._db.execute("ROLLBACK")
                raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Executed:
        """Run one statement and read its rows to the end under the lock: a statement left
        half-read (an ``INSERT ... RETURNING``) keeps SQLite's implicit transaction open on the
        shared connection, and another thread's BEGIN or COMMIT then fails."""
        with self._lock:
            cur = self._db.execute(sql, tuple(params))
            rows = list(cur.fetchall())
            return Executed(int(cur.rowcount), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return list(self._db.execute(sql, tuple(params)).fetchall())

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
        cur = self.execute("DELETE FROM timers WHERE kind=? AND key=?", (kind, key))
        return bool(cur.rowcount > 0)

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
            " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (platform, user_id, user_name, channel, command, args, app, time.time()),
        )
        return int(cur.fetchone()[0])

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


def open_store(settings: Settings) -> Store:
    """The store ``CHATOPS_STATE_DB`` names; ``CHATOPS_STATE_DB_PASSWORD`` fills in a PostgreSQL
    password the URL leaves out (so the URL itself need not be a secret)."""
    pw = settings.state_db_password
    return Store(settings.state_db, password=pw.get_secret_value() if pw is not None else None)
