"""Progress for one running command: the latest state of each step, shown as edits of ONE
chat message at most once per interval.

The edits go out from a background task, so a slow or rate-limited chat API never slows the
command down, and a burst of steps becomes one edit. ``close`` lets an edit already on the wire
finish first, so it cannot land after (and overwrite) the final result.
"""

from __future__ import annotations

import asyncio
import logging

from bot.chat.invocation import Reply
from commands.results import Step

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # at most one edit of the progress message per second


class ProgressThrottle:
    """The ``Progress`` sink given to a command: keeps the latest state of each step and edits
    the progress message at most once per ``interval``, from a background task, so a slow or
    rate-limited chat API never slows the command down and bursts of steps become one edit."""

    def __init__(self, reply: Reply, command: str, target: str, interval: float) -> None:
        self._reply = reply
        self._command = command
        self._target = target
        self._interval = interval
        self._steps: list[Step] = []
        self._dirty = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._sending: asyncio.Task[None] | None = None

    async def __call__(self, step: Step) -> None:
        for i, s in enumerate(self._steps):
            if s.name == step.name:
                self._steps[i] = step
                break
        else:
            self._steps.append(step)
        self._dirty.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            steps = tuple(self._steps)
            self._sending = asyncio.ensure_future(
                self._reply.progress(self._command, self._target, steps)
            )
            try:
                await asyncio.shield(self._sending)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("progress update failed: %s", type(e).__name__)
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        """Stop editing; an edit already on the wire finishes first, so it cannot land after
        (and overwrite) the final result."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        if self._sending is not None and not self._sending.done():
            await asyncio.gather(self._sending, return_exceptions=True)
