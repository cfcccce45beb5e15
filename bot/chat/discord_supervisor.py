"""Keeps Discord started: a failed start is retried, a dead gateway restarted, with capped backoff.

``start_discord`` logs in over REST, syncs the slash commands and runs the gateway in a task;
any of it can fail at start-up (Discord down, a network blip, a proxy restarting), and discord.py
itself gives up on some gateway errors. Without this the bot would stay without Discord until
someone restarted the pod, while /readyz said it was fine. Here the first attempt runs inline
(so start-up says what happened), later ones in the background: 1 s, 2 s, 4 s ... at most
``cap`` apart, reset after a success. ``problem()`` is what /readyz shows meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.chat.discord_gateway import DiscordRunner, start_discord

log = logging.getLogger(__name__)

Starter = Callable[[], Awaitable[DiscordRunner]]


def describe(e: BaseException) -> str:
    if isinstance(e, discord.HTTPException):
        return f"{type(e).__name__} (HTTP {e.status})"
    return type(e).__name__


class DiscordSupervisor:
    def __init__(self, start: Starter, *, first: float = 1.0, cap: float = 60.0) -> None:
        self._start = start
        self.first, self.cap = first, cap
        self.runner: DiscordRunner | None = None
        self.error: str | None = None
        self.attempts = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_settings(cls, settings: Any, dispatcher: Any, **kw: Any) -> DiscordSupervisor:
        """``kw`` goes to ``start_discord`` (``replays``, endpoints)."""
        return cls(lambda: start_discord(settings, dispatcher, **kw))

    async def start(self) -> bool:
        """One attempt now; whatever happens, keep it started in the background."""
        ok = await self._attempt()
        self._task = asyncio.create_task(self._supervise(), name="discord-supervisor")
        return ok

    async def _attempt(self) -> bool:
        self.attempts += 1
        try:
            self.runner = await self._start()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.error = f"start failed: {describe(e)}"
            log.warning("Discord did not start (%s); retrying with backoff", describe(e))
            return False
        self.error = None
        return True

    async def _supervise(self) -> None:
        delay = self.first
        while True:
            runner = self.runner
            if runner is None:
                await asyncio.sleep(delay)
                delay = min(self.cap, delay * 2)
                if await self._attempt():
                    log.info("Discord started (attempt %d)", self.attempts)
                    delay = self.first
                continue
            if runner.task is None:
                return  # no gateway to watch
            await asyncio.wait({runner.task})
            problem = runner.problem() or "the gateway stopped"
            log.warning("Discord: %s; starting again", problem)
            self.error = problem
            self.runner = None
            try:
                await runner.close()
            except Exception as e:
                log.warning("Discord: closing the stopped client failed: %s", describe(e))

    def problem(self) -> str | None:
        if self.runner is not None:
            return self.runner.problem()
        return self.error or "not started yet"

    async def announce(self, text: str) -> bool:
        return await self.runner.announce(text) if self.runner is not None else False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.runner is not None:
            await self.runner.close()
            self.runner = None
