"""Turns self-heal back on when a timed pause is over, also across restarts.

``/selfheal off APP 30m`` writes a durable timer (``commands.selfheal`` through the ``Timers``
port, a row in the store). The store is the truth; apscheduler is only the alarm clock: at start
every pending timer becomes a job, a timer written or cancelled through ``timers()`` re-reads the
store at once, and a periodic rescan picks up timers written by another process (the CLI's
``chatops selfheal off --for``). When a job fires it re-reads its timer, so a cancelled or moved
timer never acts. A pause that ran out while the bot was down fires right after start.

Due times are wall-clock seconds from ``clock`` (the same clock ``Services.now`` uses), turned into
a delay for apscheduler, so tests run a "30 minute" pause with an injected clock instead of
waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.state.store import Store, StoreTimers
from commands import errors
from commands.context import Caller, Services
from commands.selfheal import TIMER_KIND, selfheal

log = logging.getLogger(__name__)

Announce = Callable[[str], Awaitable[None]]
RESCAN_INTERVAL = 60.0
RETRY_INTERVAL = 60.0
_RESCAN_JOB = "rescan"


class NotifyingTimers:
    """The ``commands.ports.Timers`` port: the store's timers, and the scheduler told at once."""

    def __init__(self, store: Store, on_change: Callable[[], Awaitable[None]]) -> None:
        self._inner = StoreTimers(store)
        self._on_change = on_change

    async def schedule(
        self, kind: str, key: str, due_at: float, payload: dict[str, Any], created_by: str
    ) -> None:
        await self._inner.schedule(kind, key, due_at, payload, created_by)
        await self._on_change()

    async def cancel(self, kind: str, key: str) -> bool:
        cancelled = await self._inner.cancel(kind, key)
        if cancelled:
            await self._on_change()
        return cancelled

    async def pending(self, kind: str, key: str) -> float | None:
        return await self._inner.pending(kind, key)


class SelfHealScheduler:
    def __init__(
        self,
        store: Store,
        services: Services,
        *,
        announce: Announce,
        clock: Callable[[], float] = time.time,
        rescan_interval: float = RESCAN_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self.store = store
        self.services = services
        self.announce = announce
        self.clock = clock
        self.rescan_interval = rescan_interval
        self.retry_interval = retry_interval
        self._scheduler: AsyncIOScheduler | None = None
        self._jobs: dict[str, float] = {}  # app -> due_at of its scheduled job
        self._reload_lock = asyncio.Lock()
        self._firing: set[asyncio.Task[Any]] = set()

    def timers(self) -> NotifyingTimers:
        """The port to put in ``Services.timers`` so new timers are scheduled at once."""
        return NotifyingTimers(self.store, self.reload)

    @property
    def running(self) -> bool:
        return self._scheduler is not None

    async def start(self) -> int:
        """Start the alarm clock and load every pending timer; returns how many are pending."""
        scheduler = AsyncIOScheduler(timezone=dt.UTC)
        scheduler.start()
        self._scheduler = scheduler
        scheduler.add_job(
            self.reload,
            IntervalTrigger(seconds=self.rescan_interval, timezone=dt.UTC),
            id=_RESCAN_JOB,
            max_instances=1,
            coalesce=True,
        )
        await self.reload()
        return len(self._jobs)

    async def close(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        if self._firing:
            await asyncio.wait(self._firing, timeout=10.0)
        self._jobs.clear()

    async def reload(self) -> None:
        """Make the jobs match the timers in the store."""
        if self._scheduler is None:
            return
        async with self._reload_lock:
            rows = await self.store.run(self.store.timers, TIMER_KIND)
            scheduler = self._scheduler
            if scheduler is None:
                return
            wanted = {str(r["key"]): float(r["due_at"]) for r in rows}
            for app in list(self._jobs):
                if app not in wanted:
                    self._remove_job(scheduler, app)
            for app, due in wanted.items():
                if self._jobs.get(app) == due:
                    continue
                delay = max(0.0, due - self.clock())
                run_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
                scheduler.add_job(
                    self._fire,
                    DateTrigger(run_date=run_at, timezone=dt.UTC),
                    args=[app],
                    id=_job_id(app),
                    replace_existing=True,
                    misfire_grace_time=None,
                    coalesce=True,
                )
                self._jobs[app] = due
                log.info("self-heal for %s goes back on in %.0fs", app, delay)

    def _remove_job(self, scheduler: AsyncIOScheduler, app: str) -> None:
        self._jobs.pop(app, None)
        if scheduler.get_job(_job_id(app)) is not None:
            scheduler.remove_job(_job_id(app))

    async def _fire(self, app: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._firing.add(task)
        try:
            await self._turn_on(app)
        except Exception:
            log.exception("self-heal timer for %s failed", app)
        finally:
            if task is not None:
                self._firing.discard(task)

    async def _turn_on(self, app: str) -> None:
        self._jobs.pop(app, None)
        rows = [r for r in await self.store.run(self.store.timers, TIMER_KIND) if r["key"] == app]
        if not rows:
            return  # cancelled meanwhile (/selfheal on, or the CLI)
        timer = rows[0]
        if float(timer["due_at"]) - self.clock() > 1.0:
            await self.reload()  # moved later meanwhile
            return
        who = str(timer["created_by"])
        audit_id = await self.store.run(
            lambda: self.store.audit_start(
                platform="scheduler",
                user_id="scheduler",
                user_name="scheduler",
                channel="",
                command="selfheal",
                args=f"on {app} (timer set by {who})",
                app=app,
            )
        )
        try:
            result = await selfheal(self.services, "on", app, caller=Caller("timer", "scheduler"))
        except (errors.Unavailable, errors.Timeout) as e:
            retry_at = self.clock() + self.retry_interval
            await self.store.run(
                self.store.schedule_timer, TIMER_KIND, app, retry_at, timer["payload"], who
            )
            await self.store.run(self.store.audit_end, audit_id, e.kind, e.user_message)
            log.warning(
                "cannot turn self-heal back on for %s yet (%s); retrying in %.0fs",
                app,
                e.user_message,
                self.retry_interval,
            )
            await self.reload()
            return
        except errors.CommandError as e:
            await self.store.run(self.store.cancel_timer, TIMER_KIND, app)
            await self.store.run(self.store.audit_end, audit_id, e.kind, e.user_message)
            await self._say(
                f"Could not turn self-heal back on for {app} after the pause set by {who}: "
                f"{e.user_message}"
            )
            return
        await self.store.run(self.store.cancel_timer, TIMER_KIND, app)
        await self.store.run(self.store.audit_end, audit_id, result.status.value, result.summary)
        await self._say(f"Self-heal is back on for {app}: the pause set by {who} is over.")

    async def _say(self, text: str) -> None:
        try:
            await self.announce(text)
        except Exception as e:
            log.warning("could not announce in chat: %s", type(e).__name__)


def _job_id(app: str) -> str:
    return f"{TIMER_KIND}:{app}"
