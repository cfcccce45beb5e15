"""Replay protection: each request identity is acted on at most once.

What identifies a request, and for how long it can come back:

- ``signature``: a signed Slack request (timestamp + ``X-Slack-Signature``). Slack's timestamp
  window is ±5 minutes, so the same bytes can only be replayed for ~10 minutes.
- ``trigger_id``: every slash command and interaction Slack sends carries a fresh one.
- ``event_id``: an Events API delivery; Slack retries it (``X-Slack-Retry-Num``) for about an
  hour, re-signed each time, so only the id tells a retry from a new event.
- ``interaction``: a Discord interaction id (its token lives 15 minutes).

The identities are remembered in the state store (``Store.claim_once``: one atomic upsert per
identity, so two replicas sharing a PostgreSQL store agree on who was first) and survive
restarts. Writes are grouped: every check waiting while one batch commits goes into the next
batch, one transaction and one fsync for all of them, so a burst of commands costs a few
commits, not one each. A repeat is counted in ``chatops_replays_total{platform,kind}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.metrics import Registry

log = logging.getLogger(__name__)

# how long an identity is remembered, per kind (seconds)
TTL: dict[str, float] = {
    "signature": 11 * 60.0,  # the ±5 min timestamp window, plus a minute of clock skew
    "trigger_id": 30 * 60.0,
    "event_id": 2 * 3600.0,  # Slack retries an event for about an hour
    "interaction": 30 * 60.0,  # Discord interaction tokens live 15 minutes
}

Identity = tuple[str, str]  # (kind, raw key)


class ReplayStore(Protocol):
    """What the guard needs from a store (SQLite today, PostgreSQL for several replicas)."""

    def claim_once(
        self, batch: Sequence[Sequence[tuple[str, str, float]]], now: float
    ) -> list[str | None]: ...


class ReplayGuard:
    def __init__(
        self,
        store: ReplayStore,
        *,
        metrics: Registry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock
        self._pending: list[tuple[list[tuple[str, str, float]], asyncio.Future[str | None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._replays = (
            metrics.counter(
                "chatops_replays_total",
                "Repeated requests answered and ignored, by platform and identity kind",
                ("platform", "kind"),
            )
            if metrics is not None
            else None
        )

    async def seen(
        self, platform: str, identities: Sequence[Identity], *, retry: bool = False
    ) -> str | None:
        """Remember ``identities``; the kind of the first one seen before (a replay: counted;
        ``"retry"`` when the request said it is one of Slack's retries), else None."""
        if not identities:
            return None
        now = self.clock()
        rows = [(kind, _digest(key), now + TTL.get(kind, 3600.0)) for kind, key in identities]
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="replay-guard")
        kind = await fut
        if kind is not None:
            kind = "retry" if retry else kind
            self.repeated(platform, kind)
        return kind

    def repeated(self, platform: str, kind: str) -> None:
        """Count (and log, in one line) a repeat that is being ignored."""
        if self._replays is not None:
            self._replays.inc(platform=platform, kind=kind)
        log.info("%s: a repeated request (%s) was acknowledged and ignored", platform, kind)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await asyncio.to_thread(
                        self.store.claim_once, [rows for rows, _ in batch], self.clock()
                    )
                except Exception as e:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(ReplayCheckFailed(type(e).__name__))
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self._flusher = None


class ReplayCheckFailed(Exception):
    """The store could not record the request: it is not run (nothing twice beats once)."""


def _digest(key: str) -> str:
    """Keys are client-controlled strings: stored as a fixed-size digest."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
