"""Webhooks a follower replica accepted, waiting for the leader's incident engine.

Every replica serves ``POST /webhooks/argocd`` (the Service spreads Argo CD's requests), but only
the leader runs the incident engine: it alone holds the incidents in memory and decides what is
new. A follower therefore answers 202 once the webhook's signals are committed HERE, and the
leader drains this table into its engine.

Exactly once: the inbox row's key is the webhook's de-duplication key. A follower refuses a key
the leader has already ingested (``webhook_dedup``) or already queued; the leader ingests with the
same key (a repeat is a no-op) and deletes the row afterwards, so a crash between the two only
repeats a no-op.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

from bot.state.store import Store
from notifiers.incidents.model import Signal, signal_from_json, signal_to_json

log = logging.getLogger(__name__)

Ingest = Callable[[list[Signal], str], Awaitable[str]]
POLL = 0.5  # seconds between drains on the leader
BATCH = 200


class Inbox:
    """The follower's ``ingest`` (what the webhook endpoint calls) and the leader's ``drain``."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._waiting: list[tuple[str, str, asyncio.Future[str]]] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- follower -------------------------------------------------------------------------------
    def _put(self, items: list[tuple[str, str]]) -> list[str]:
        """One transaction (one fsync) for every webhook waiting: "accepted" or "duplicate"."""
        out = []
        now = self.clock()
        with self.store.transaction() as db:
            for key, body in items:
                seen = db.execute("SELECT 1 FROM webhook_dedup WHERE key=?", (key,)).fetchone()
                if seen is not None:
                    out.append("duplicate")
                    continue
                cur = db.execute(
                    "INSERT INTO webhook_inbox (key, signals, received_at) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (key, body, now),
                )
                out.append("accepted" if cur.rowcount == 1 else "duplicate")
        return out

    async def ingest(self, signals: Iterable[Signal], dedup_key: str | None = None) -> str:
        """Commit the signals for the leader; "accepted" or "duplicate", like the engine's.

        Concurrent requests share a commit (group commit, as the leader's writer does): the
        answer still comes only once its row is committed."""
        key = dedup_key or f"inbox-{uuid.uuid4().hex}"
        body = json.dumps([signal_to_json(s) for s in signals], separators=(",", ":"))
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, body, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="webhook-inbox-commit")
        return await fut

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            try:
                results = await asyncio.to_thread(self._put, [(k, b) for k, b, _ in batch])
            except Exception as e:  # the whole batch is refused (503): Argo CD retries
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, _, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    # -- leader ---------------------------------------------------------------------------------
    def _pending(self, limit: int) -> list[tuple[str, list[Signal]]]:
        rows = self.store.query(
            "SELECT key, signals FROM webhook_inbox ORDER BY received_at, key LIMIT ?", (limit,)
        )
        return [(str(r[0]), [signal_from_json(d) for d in json.loads(str(r[1]))]) for r in rows]

    def _done(self, key: str) -> None:
        self.store.execute("DELETE FROM webhook_inbox WHERE key=?", (key,))

    async def drain(self, ingest: Ingest, limit: int = BATCH) -> int:
        """Feed waiting webhooks to the leader's engine, oldest first; returns how many."""
        rows = await asyncio.to_thread(self._pending, limit)
        for key, signals in rows:
            await ingest(signals, key)
            await asyncio.to_thread(self._done, key)
        return len(rows)

    async def run(self, ingest: Ingest, poll: float = POLL) -> None:
        """The leader's loop (cancelled when it stops leading)."""
        await drain_forever(lambda: self.drain(ingest), poll, BATCH, "the webhook inbox")

    def waiting(self) -> int:
        return int(self.store.query("SELECT COUNT(*) FROM webhook_inbox")[0][0])


async def drain_forever(
    drain: Callable[[], Awaitable[int]], poll: float, batch: int, what: str
) -> None:
    """A leader's loop over a store queue: drain again at once while full batches come, else
    wait ``poll``; a failed drain is logged and retried (until cancelled)."""
    while True:
        try:
            n = await drain()
        except Exception:
            log.exception("draining %s failed; retrying", what)
            n = 0
        if n < batch:
            await asyncio.sleep(poll)
