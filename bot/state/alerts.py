"""Durable alert state in the SQLite store, written by ONE thread that commits in groups.

The webhook promise is "202 only after COMMIT" with ``synchronous=FULL``: every commit is an
fsync, a few milliseconds each, which would cap ingest at a few hundred requests per second if
each request committed alone. So every write (webhook ingest, watch signals, delivery
bookkeeping) is a small function queued to the ``GroupCommitWriter`` thread, which runs all that
is waiting inside one transaction, commits once, and only then resolves each caller's future:
the same durability per request, one fsync per batch. Each function runs under a SAVEPOINT, so
one failing request does not undo its neighbours.

The incident ``Engine`` lives on this thread too: it is only ever touched by writer functions,
so its memory and the incidents table change together, in the same order. If a COMMIT itself
fails, the engine is reloaded from the database, so it never remembers what was not stored.

Tables (migration 2 in bot.state.store): incidents, outbox, alert_threads, webhook_dedup;
migration 3 adds the outbox's retry state (``first_failed_at``, with ``tries`` and
``not_before``): a message waiting out a chat outage stays ``pending`` and reloads after a
restart, it is never ``failed`` for being early.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.state.db import errors as db_errors
from bot.state.store import Store
from notifiers.alert import Alert
from notifiers.delivery import OutboxItem, ThreadKey, ThreadRoot
from notifiers.incidents.engine import Engine
from notifiers.incidents.model import Changes, Effect, Incident, Signal

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = tuple[Callable[[Any], Any], Future[Any]]

MAX_BATCH = 2000
DEDUP_TTL = 86400.0  # Argo CD retries within seconds; a day is plenty
HISTORY_TTL = 30 * 86400.0  # closed incidents kept for a month
TEST_INCIDENT = 0  # the incident id of messages outside any incident (ids start at 1)


class GroupCommitWriter:
    def __init__(self, store: Store, *, on_rollback: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_rollback = on_rollback
        self._q: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="alert-writer", daemon=True)
        self._thread.start()
        self.batches = 0
        self.jobs = 0

    def submit_sync(self, fn: Callable[[Any], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._q.put((fn, fut))
        return fut

    async def submit(self, fn: Callable[[Any], T]) -> T:
        return await asyncio.wrap_future(self.submit_sync(fn))

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout)

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < MAX_BATCH:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            self._run(jobs)

    def _rolled_back(self) -> None:
        if self.on_rollback is not None:
            try:
                self.on_rollback()
            except Exception:
                log.exception("reloading alert state after a rollback")

    def _run(self, jobs: list[Job]) -> None:
        results: list[tuple[Future[Any], bool, Any]] = []
        db = self.store._db
        with self.store._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                for n, (fn, fut) in enumerate(jobs):
                    if not fut.set_running_or_notify_cancel():
                        continue  # the caller went away (shutdown, client disconnect)
                    db.execute(f"SAVEPOINT j{n}")
                    try:
                        value = fn(db)
                    except BaseException as e:
                        db.execute(f"ROLLBACK TO j{n}")
                        db.execute(f"RELEASE j{n}")
                        results.append((fut, False, e))
                        self._rolled_back()
                    else:
                        db.execute(f"RELEASE j{n}")
                        results.append((fut, True, value))
                db.execute("COMMIT")
            except db_errors() as e:
                log.error("state database commit failed: %s", e)
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._rolled_back()
                for _fn, fut in jobs:
                    if fut.running() or fut.set_running_or_notify_cancel():
                        fut.set_exception(e)
                return
        self.batches += 1
        self.jobs += len(jobs)
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


@dataclass
class Ingested:
    status: str  # accepted | duplicate
    items: list[OutboxItem]


def _item_from_row(row: Any) -> OutboxItem:
    payload = json.loads(row["payload"])
    return OutboxItem(
        id=int(row["id"]),
        incident_id=int(row["incident_id"]),
        platform=str(row["platform"]),
        channel=str(row["channel"]),
        op=str(row["op"]),
        alert=Alert.from_json(payload["alert"]),
        broadcast=bool(payload.get("broadcast", False)),
        tries=int(row["tries"]),
        not_before=float(row["not_before"]),
        created_at=float(row["created_at"]),
        first_failed_at=None if row["first_failed_at"] is None else float(row["first_failed_at"]),
    )


class AlertStore:
    """The engine and the outbox behind the group-commit writer; the delivery OutboxPort."""

    def __init__(
        self, store: Store, engine: Engine, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.engine = engine
        self.clock = clock  # the engine's now
        self.writer = GroupCommitWriter(store, on_rollback=self._reload_sync)
        self.writer.submit_sync(lambda db: self._reload(db)).result(30)

    def close(self) -> None:
        self.writer.close()

    # -- loading --------------------------------------------------------------------------
    def _reload_sync(self) -> None:
        self._reload(self.store._db)

    def _reload(self, db: Any) -> None:
        rows = db.execute(
            "SELECT data FROM incidents WHERE state != 'closed' ORDER BY id"
        ).fetchall()
        top = max(
            int(db.execute("SELECT COALESCE(MAX(id), 0) FROM incidents").fetchone()[0]),
            int(db.execute("SELECT COALESCE(MAX(incident_id), 0) FROM outbox").fetchone()[0]),
        )
        self.engine.load((Incident.from_json(json.loads(r[0])) for r in rows), int(top) + 1)

    def pending_items(self) -> list[OutboxItem]:
        """Every row still to send, in order, with its retry state: a message that was
        waiting out an outage before the restart still is (its channel probes first)."""
        rows = self.store.query("SELECT * FROM outbox WHERE status='pending' ORDER BY id")
        return [_item_from_row(r) for r in rows]

    def thread_refs(self) -> dict[ThreadKey, str]:
        """Root message refs of incidents not closed yet (closed ones get no more messages)."""
        rows = self.store.query(
            "SELECT t.incident_id, t.platform, t.channel, t.ref FROM alert_threads t"
            " JOIN incidents i ON i.id = t.incident_id WHERE i.state != 'closed'"
            " ORDER BY t.incident_id"
        )
        return {(int(r[0]), str(r[1]), str(r[2])): str(r[3]) for r in rows}

    # -- writer functions (run on the writer thread, inside the batch transaction) ---------
    def _write(self, db: Any, ch: Changes, now: float) -> list[OutboxItem]:
        for inc_id in ch.dropped:
            db.execute("DELETE FROM incidents WHERE id=?", (inc_id,))
        for inc in ch.saved.values():
            db.execute(
                "INSERT INTO incidents (id, key, app, state, data, opened_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET key=excluded.key,"
                " app=excluded.app, state=excluded.state, data=excluded.data,"
                " opened_at=excluded.opened_at, updated_at=excluded.updated_at",
                (
                    inc.id,
                    inc.key,
                    inc.app,
                    inc.state,
                    json.dumps(inc.to_json(), separators=(",", ":")),
                    inc.opened_at,
                    now,
                ),
            )
        items: list[OutboxItem] = []
        for eff in ch.effects:
            payload = json.dumps(
                {"alert": eff.alert.to_json(), "broadcast": eff.broadcast}, separators=(",", ":")
            )
            for t in eff.targets:
                cur = db.execute(
                    "INSERT INTO outbox (incident_id, platform, channel, op, payload, not_before,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (eff.incident_id, t.platform, t.channel, eff.op, payload, now, now),
                )
                new_id = int(cur.fetchone()[0])
                items.append(
                    OutboxItem(
                        id=new_id,
                        incident_id=eff.incident_id,
                        platform=t.platform,
                        channel=t.channel,
                        op=eff.op,
                        alert=eff.alert,
                        broadcast=eff.broadcast,
                        not_before=now,
                        created_at=now,
                    )
                )
        return items

    def _guarded(self, db: Any, step: Callable[[float], Changes]) -> list[OutboxItem]:
        # on an exception the writer rolls back to this job's savepoint and reloads the engine
        # from the database, so the engine never remembers what was not stored
        now = self.clock()
        return self._write(db, step(now), now)

    async def ingest(self, signals: Iterable[Signal], dedup_key: str | None = None) -> Ingested:
        signals = list(signals)

        def job(db: Any) -> Ingested:
            if dedup_key is not None:
                cur = db.execute(
                    "INSERT INTO webhook_dedup (key, received_at) VALUES (?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (dedup_key, time.time()),
                )
                if cur.rowcount == 0:
                    return Ingested("duplicate", [])
            items = self._guarded(db, lambda now: self.engine.apply_all(signals, now))
            return Ingested("accepted", items)

        return await self.writer.submit(job)

    async def enqueue(self, effects: Iterable[Effect]) -> list[OutboxItem]:
        """Store messages that no incident produced (``chatops alert test``) in the outbox,
        like any other, and return them for the Deliverer. Use ``TEST_INCIDENT`` as their
        incident id: no incident has it, so nothing is threaded under or reloaded for them."""
        changes = Changes(effects=list(effects))
        return await self.writer.submit(lambda db: self._write(db, changes, time.time()))

    async def tick(self) -> list[OutboxItem]:
        return await self.writer.submit(lambda db: self._guarded(db, self.engine.tick))

    async def reannounce(self) -> list[OutboxItem]:
        return await self.writer.submit(lambda db: self._guarded(db, self.engine.reannounce))

    async def acknowledge(
        self, ref: str, by: str
    ) -> tuple[Incident | None, bool, list[OutboxItem]]:
        def job(db: Any) -> tuple[Incident | None, bool, list[OutboxItem]]:
            out: list[Any] = []

            def step(now: float) -> Changes:
                inc, fresh, ch = self.engine.acknowledge(ref, by, now)
                out.extend([inc, fresh])
                return ch

            items = self._guarded(db, step)
            return out[0], out[1], items

        return await self.writer.submit(job)

    async def next_deadline(self) -> float | None:
        return await self.writer.submit(lambda db: self.engine.next_deadline())

    async def purge(self, older_than: float = DEDUP_TTL) -> None:
        cutoff = time.time() - older_than

        history = time.time() - HISTORY_TTL

        def job(db: Any) -> None:
            db.execute("DELETE FROM webhook_dedup WHERE received_at < ?", (cutoff,))
            db.execute("DELETE FROM outbox WHERE status != 'pending' AND done_at < ?", (cutoff,))
            db.execute(
                "DELETE FROM alert_threads WHERE incident_id IN (SELECT id FROM incidents"
                " WHERE state = 'closed' AND updated_at < ?)",
                (history,),
            )
            db.execute(
                "DELETE FROM incidents WHERE state = 'closed' AND updated_at < ?", (history,)
            )

        await self.writer.submit(job)

    # -- OutboxPort -----------------------------------------------------------------------
    async def sent(
        self, item: OutboxItem, ref: str | None, folded: Sequence[OutboxItem] = ()
    ) -> None:
        def job(db: Any) -> None:
            now = time.time()
            db.execute(
                "UPDATE outbox SET status='sent', op=?, done_at=?, tries=?, error=NULL WHERE id=?",
                (item.op, now, item.tries + 1, item.id),
            )
            db.executemany(
                "UPDATE outbox SET status='merged', done_at=? WHERE id=?",
                [(now, f.id) for f in folded],
            )
            if ref is not None:
                db.execute(
                    "INSERT INTO alert_threads (incident_id, platform, channel, ref)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (incident_id, platform, channel)"
                    " DO UPDATE SET ref=excluded.ref",
                    (item.incident_id, item.platform, item.channel, ref),
                )

        await self.writer.submit(job)

    async def retry(self, item: OutboxItem, error: str) -> None:
        await self.writer.submit(
            lambda db: db.execute(
                "UPDATE outbox SET tries=?, not_before=?, first_failed_at=?, error=? WHERE id=?",
                (item.tries, item.not_before, item.first_failed_at, error, item.id),
            )
        )

    async def failed(self, item: OutboxItem, error: str) -> None:
        await self.writer.submit(
            lambda db: db.execute(
                "UPDATE outbox SET status='failed', done_at=?, tries=?, error=? WHERE id=?",
                (time.time(), item.tries, error, item.id),
            )
        )

    async def merged(self, superseded: OutboxItem, into: OutboxItem) -> None:
        def job(db: Any) -> None:
            db.execute(
                "UPDATE outbox SET status='merged', done_at=? WHERE id=?",
                (time.time(), superseded.id),
            )
            db.execute("UPDATE outbox SET op=? WHERE id=?", (into.op, into.id))

        await self.writer.submit(job)

    async def root(self, thread: ThreadKey) -> ThreadRoot:
        """The thread's root message reference, if it was ever delivered, and its newest
        stored state (for a thread whose root must be posted late)."""

        def query() -> ThreadRoot:
            refs = self.store.query(
                "SELECT ref FROM alert_threads WHERE incident_id=? AND platform=? AND channel=?",
                thread,
            )
            rows = self.store.query(
                "SELECT payload FROM outbox WHERE incident_id=? AND platform=? AND channel=?"
                " AND op IN ('post', 'update') ORDER BY id DESC LIMIT 1",
                thread,
            )
            alert = Alert.from_json(json.loads(rows[0][0])["alert"]) if rows else None
            return ThreadRoot(str(refs[0][0]) if refs else None, alert)

        return await asyncio.to_thread(query)

    # -- queries (tests, metrics) ---------------------------------------------------------
    def outbox_counts(self) -> dict[str, int]:
        rows = self.store.query("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        return {str(r[0]): int(r[1]) for r in rows}
