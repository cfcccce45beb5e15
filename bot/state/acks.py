"""Acks a follower replica took, waiting for the leader's incident engine, and its answers.

``ack`` may reach any replica (Slack HTTP mode spreads clicks over the Service), but only the
leader holds the incidents in memory. A follower therefore writes the request here and waits,
polling its row, for the leader to apply it; the leader's drain applies pending requests in order
and writes the answer (``AckOutcome``) into the same row, which the follower reads back and
deletes. A request nobody answers in time stays pending: the next leader applies it.

Applied at least once, with the same effect: a leader that dies between applying a request and
recording its answer leaves it pending, and the next leader's engine finds the incident already
acknowledged (an answer of "noop"). Answers nobody read are deleted after ``KEEP_DONE``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot.state.inbox import drain_forever
from bot.state.store import Store

Outcome = Literal["changed", "noop", "not_found"]
OUTCOMES: dict[str, Outcome] = {"changed": "changed", "noop": "noop", "not_found": "not_found"}
POLL = 0.25  # seconds between the leader's looks at pending requests
BATCH = 100
KEEP_DONE = 3600.0  # an answer the follower gave up waiting for is kept this long
PURGE_EVERY = 600.0

# the table: migration 8 in bot/state/store.py (ack_requests)


@dataclass(frozen=True)
class AckOutcome:
    """What the leader's engine made of one request: the text the user gets either way."""

    outcome: Outcome
    target: str  # the incident key ("payments:degraded"), or the ref as typed if none
    summary: str


@dataclass(frozen=True)
class AckRequest:
    id: int
    ref: str
    by: str


Apply = Callable[[str, str], Awaitable[AckOutcome]]


class AckQueue:
    """The follower's ``submit``/``answer`` and the leader's ``drain``/``run``."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._purged = 0.0

    # -- follower ---------------------------------------------------------------------------
    def _submit(self, ref: str, by: str) -> int:
        cur = self.store.execute(
            "INSERT INTO ack_requests (ref, by_name, requested_at) VALUES (?, ?, ?) RETURNING id",
            (ref, by, self.clock()),
        )
        return int(cur.fetchone()[0])

    def _answer(self, request_id: int) -> AckOutcome | None:
        rows = self.store.query(
            "SELECT outcome, target, summary FROM ack_requests WHERE id=? AND done_at IS NOT NULL",
            (request_id,),
        )
        if not rows:
            return None
        self.store.execute("DELETE FROM ack_requests WHERE id=?", (request_id,))
        row = rows[0]
        return AckOutcome(OUTCOMES.get(str(row[0]), "noop"), str(row[1]), str(row[2]))

    async def submit(self, ref: str, by: str) -> int:
        """Commit the request for the leader; returns its id."""
        return await asyncio.to_thread(self._submit, ref, by)

    async def answer(self, request_id: int, wait: float, poll: float = 0.1) -> AckOutcome | None:
        """The leader's answer, once it has applied the request; None if not within ``wait``
        seconds (the request stays queued)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            found = await asyncio.to_thread(self._answer, request_id)
            if found is not None:
                return found
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(poll, left))

    # -- leader -----------------------------------------------------------------------------
    def _pending(self, limit: int) -> list[AckRequest]:
        rows = self.store.query(
            "SELECT id, ref, by_name FROM ack_requests WHERE done_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        )
        return [AckRequest(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def _done(self, request_id: int, answer: AckOutcome) -> None:
        self.store.execute(
            "UPDATE ack_requests SET done_at=?, outcome=?, target=?, summary=?"
            " WHERE id=? AND done_at IS NULL",
            (self.clock(), answer.outcome, answer.target, answer.summary, request_id),
        )

    def _purge(self) -> None:
        now = self.clock()
        if now - self._purged < PURGE_EVERY:
            return
        self._purged = now
        self.store.execute(
            "DELETE FROM ack_requests WHERE done_at IS NOT NULL AND done_at < ?",
            (now - KEEP_DONE,),
        )

    async def drain(self, apply: Apply, limit: int = BATCH) -> int:
        """Apply waiting requests to the leader's engine, oldest first; returns how many."""
        requests = await asyncio.to_thread(self._pending, limit)
        for req in requests:
            answer = await apply(req.ref, req.by)
            await asyncio.to_thread(self._done, req.id, answer)
        await asyncio.to_thread(self._purge)
        return len(requests)

    async def run(self, apply: Apply, poll: float = POLL) -> None:
        """The leader's loop (cancelled when it stops leading)."""
        await drain_forever(lambda: self.drain(apply), poll, BATCH, "queued acks")

    def waiting(self) -> int:
        return int(
            self.store.query("SELECT COUNT(*) FROM ack_requests WHERE done_at IS NULL")[0][0]
        )
