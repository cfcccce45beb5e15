"""The delivery worker's notion of time, injectable so that hours of outage run in seconds.

Everything in the worker that waits (rate-limit buckets, Retry-After, backoff between probes,
spacing of edits, the retry horizon) asks a ``Clock``: ``RealClock`` in production, a
``ScaledClock`` in tests and the chaos suite, where "10 minutes" of backoff pass in a few
seconds of wall time while the chat fakes still answer over real HTTP. Times are epoch seconds,
as stored in the outbox (``not_before``, ``first_failed_at``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Now, in epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of this clock's time pass."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        """Until ``event`` is set (True) or ``timeout`` of this clock's seconds passed (False)."""
        ...


class RealClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        if timeout is not None and timeout <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True


class ScaledClock(RealClock):
    """Time running ``scale`` times faster than the wall clock, starting from now."""

    def __init__(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError("a clock scale must be positive")
        self.scale = float(scale)
        self._origin = time.time()
        self._mono = time.monotonic()

    def time(self) -> float:
        return self._origin + (time.monotonic() - self._mono) * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        return await super().wait(event, None if timeout is None else timeout / self.scale)
