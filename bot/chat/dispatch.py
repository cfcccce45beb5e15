"""The platform-neutral command dispatcher: one path from a chat command to the command core.

Slack and Discord adapters turn what the platform sent into an ``Invocation`` (a command string
plus who/where) and a ``Reply`` (how to show progress, a result, a confirmation or an error; both
in ``bot.chat.invocation``), then call ``Dispatcher.handle``. Everything that must be the same on both platforms lives here, in this
order: parse (a mistake gets the usage line), audit the attempt, authorize (a denial names the
role needed), ask for confirmation of destructive actions, take the per-app lock (a second
operation on a busy app is told who started what and when), run the core with throttled progress,
show the Result with its next-action buttons, close the audit row.

The per-app lock is a row in the store (``bot.state.locks.OperationLocks``, owner = this
replica's instance id), so it holds across replicas sharing a PostgreSQL store: a ``/sync`` that
reaches the other replica is refused with who started what, too.

Buttons carry plain command strings (``Action.command``) and come back through the same path, so
nothing but the message itself holds state, and buttons keep working after a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.chat.authz import Authorizer, GroupResolver
from bot.chat.catalog import Catalog
from bot.chat.command_table import Handler, Parsed
from bot.chat.invocation import Invocation, Reply
from bot.chat.progress import PROGRESS_INTERVAL, ProgressThrottle
from bot.metrics import Registry
from bot.settings import Settings
from bot.state.leader import identity
from bot.state.locks import Holder, OperationLocks
from bot.state.store import Store
from commands import errors, validation
from commands.context import Services, resolve
from commands.results import Fact, Result, Status
from commands.sync import failed_result

log = logging.getLogger(__name__)

__all__ = ["Dispatcher", "InFlight"]

InFlight = Holder  # who holds an app's lock: the line, who, from where, since when


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        services: Services | None,
        store: Store,
        *,
        slack_groups: GroupResolver | None = None,
        metrics: Registry | None = None,
        clock: Callable[[], float] = time.time,
        locks: OperationLocks | None = None,
    ) -> None:
        self.settings = settings
        self.services = services
        self.store = store
        self.authz = Authorizer(settings.authorization, slack_groups=slack_groups)
        self.clock = clock
        self.progress_interval = PROGRESS_INTERVAL
        reg = metrics or Registry()
        self.catalog = Catalog(settings, lambda: self.services, store=store, metrics=reg)
        self.locks = locks or OperationLocks(store, identity(settings.instance_id))
        self._running: dict[asyncio.Task[Any], int] = {}
        self._interrupted: set[int] = set()
        self._accepting = True
        self._m_commands = reg.counter(
            "chatops_commands_total",
            "Chat commands by platform, command and outcome",
            ("platform", "command", "outcome"),
        )
        self._m_seconds = reg.histogram(
            "chatops_command_seconds", "Time from command to final result", ("command",)
        )
        self._m_busy = reg.gauge("chatops_commands_in_flight", "Commands running now")

    # -- commands and their names ----------------------------------------------------------
    def register(
        self,
        name: str,
        handler: Handler,
        *,
        mutating: bool,
        destructive: bool = False,
        usage: str = "",
        about: str = "",
        app_arg: int | None = None,
    ) -> None:
        """An extra command (e.g. the alerts' ``ack``); ``app_arg`` is the index of the
        argument naming an app, which then gets the per-app lock and scoped authorization."""
        self.catalog.register(
            name,
            handler,
            mutating=mutating,
            destructive=destructive,
            usage=usage,
            about=about,
            app_arg=app_arg,
        )

    def slash_name(self, name: str) -> str:
        return self.catalog.slash_name(name)

    def canonical(self, typed: str) -> str | None:
        return self.catalog.canonical(typed)

    def commands(self) -> list[str]:
        return self.catalog.names()

    def usage(self, name: str | None = None) -> str:
        return self.catalog.usage(name)

    # -- the one entry point ---------------------------------------------------------------
    async def handle(self, inv: Invocation, reply: Reply) -> Result | None:
        if not self._accepting:
            await _safe(reply.error("The bot is restarting; try again in a minute."))
            return None
        tokens = inv.text.split()
        word = tokens[0] if tokens else "help"
        name = self.canonical(word)
        if name is None:
            await self._audit_once(inv, word, tokens[1:], None, "bad_input", "unknown command")
            await _safe(
                reply.error(f"There is no command '{word[:40]}'. Try /{self.slash_name('help')}.")
            )
            return None
        try:
            parsed = self.catalog.parse(inv, name, tokens[1:])
            parsed = await self.catalog.settle(inv, parsed)
        except errors.BadInput as e:
            await self._audit_once(inv, name, tokens[1:], None, "bad_input", e.user_message)
            await _safe(reply.error(f"{e}\n{self.usage(name)}"))
            return None
        task = asyncio.current_task()
        audit_id = await self._audit_start(inv, parsed)
        if task is not None:
            self._running[task] = audit_id
        started = time.monotonic()
        outcome = "error"
        try:
            result, outcome = await self._authorized(inv, reply, parsed, audit_id)
            return result
        except asyncio.CancelledError:
            outcome = "interrupted"
            await self._end(audit_id, outcome, "the bot shut down before it finished")
            await _safe(
                reply.result(
                    Result(
                        parsed.command.name,
                        parsed.app or "",
                        Status.FAILED,
                        f"The bot restarted before {parsed.line} finished.",
                        facts=(Fact("hint", "Check /status before trying again."),),
                    )
                ),
                timeout=2.0,
            )
            raise
        finally:
            if task is not None:
                self._running.pop(task, None)
            self._m_commands.inc(platform=inv.platform, command=name, outcome=outcome)
            if outcome not in ("bad_input", "denied", "confirm", "busy"):
                self._m_seconds.observe(time.monotonic() - started, command=name)

    async def _authorized(
        self, inv: Invocation, reply: Reply, parsed: Parsed, audit_id: int
    ) -> tuple[Result | None, str]:
        cmd = parsed.command
        try:
            await self.authz.check(
                inv,
                command=cmd.name,
                mutating=cmd.mutating,
                app=parsed.scope,
                project=self._project_lookup(parsed.scope),
                need=parsed.role,
            )
        except errors.Denied as e:
            await self._end(audit_id, "denied", e.user_message)
            await _safe(reply.error(str(e)))
            facts = (Fact("hint", e.hint),) if e.hint else ()
            return Result(cmd.name, parsed.app or "", Status.DENIED, e.user_message, facts), (
                "denied"
            )
        if parsed.destructive and not inv.confirmed:
            await self._end(audit_id, "confirm", "asked for confirmation")
            await _safe(reply.ask_confirm(parsed.prompt, parsed.line))
            return None, "confirm"
        if parsed.app is not None:
            holder = await self.locks.take(
                parsed.app, Holder(parsed.line, inv.user_name, inv.platform, self.clock())
            )
            if holder is not None:
                text = self._busy_text(parsed.app, holder)
                await self._end(audit_id, "busy", text)
                await _safe(reply.error(text))
                return None, "busy"
        self._m_busy.inc()
        try:
            result, outcome = await self._execute(parsed, reply)
            await _safe(reply.result(result))
        finally:
            self._m_busy.dec()
            if parsed.app is not None:
                await self.locks.release(parsed.app)
        await self._end(audit_id, outcome, result.summary)
        return result, outcome

    async def _execute(self, parsed: Parsed, reply: Reply) -> tuple[Result, str]:
        target = parsed.app or ""
        throttle = ProgressThrottle(reply, parsed.command.name, target, self.progress_interval)
        try:
            result = await parsed.run(throttle)
            return result, result.status.value
        except errors.CommandError as e:
            link = self.services.app_link(target) if self.services and parsed.app else None
            return failed_result(parsed.command.name, target, e, link=link), e.kind
        except Exception:
            ref = errors.internal_ref()
            log.exception("internal error (ref %s) running %s", ref, parsed.line)
            summary = f"Internal error (ref {ref})."
            return Result(parsed.command.name, target, Status.FAILED, summary), "error"
        finally:
            await throttle.close()

    def _busy_text(self, app: str, holder: InFlight) -> str:
        when = dt.datetime.fromtimestamp(holder.started_at, dt.UTC).strftime("%H:%M:%S UTC")
        ago = validation.human(max(0.0, self.clock() - holder.started_at))
        return (
            f"{app} is busy: {holder.user_name} ({holder.platform}) started "
            f"`{holder.line}` at {when} ({ago} ago). Try again when it has finished."
        )

    def _project_lookup(self, app: str | None) -> Callable[[], Awaitable[str | None]] | None:
        services = self.services
        if app is None or services is None:
            return None

        async def project() -> str | None:
            try:
                svc, qualified = await resolve(services, app)
                return (await svc.argocd.get(qualified)).project
            except errors.CommandError:
                return None

        return project

    # -- parsing: command string -> Parsed ---------------------------------------------------
    # -- audit ---------------------------------------------------------------------------------
    async def _audit_start(self, inv: Invocation, parsed: Parsed) -> int:
        args = parsed.line.split(" ", 1)[1] if " " in parsed.line else ""
        if inv.source == "button":
            args += " [button]"
        return await self.store.run(
            lambda: self.store.audit_start(
                platform=inv.platform,
                user_id=inv.user_id,
                user_name=inv.user_name,
                channel=inv.channel_id,
                command=parsed.command.name,
                args=args.strip(),
                app=parsed.app,
            )
        )

    async def _audit_once(
        self,
        inv: Invocation,
        command: str,
        args: list[str],
        app: str | None,
        outcome: str,
        detail: str,
    ) -> None:
        def write() -> None:
            audit_id = self.store.audit_start(
                platform=inv.platform,
                user_id=inv.user_id,
                user_name=inv.user_name,
                channel=inv.channel_id,
                command=command[:60],
                args=" ".join(args)[:500],
                app=app,
            )
            self.store.audit_end(audit_id, outcome, detail)

        self._m_commands.inc(platform=inv.platform, command="unknown", outcome=outcome)
        await self.store.run(write)

    async def _end(self, audit_id: int, outcome: str, detail: str) -> None:
        if not audit_id or audit_id in self._interrupted:
            return
        try:
            await self.store.run(self.store.audit_end, audit_id, outcome, detail)
        except Exception:
            log.exception("cannot close audit row %s", audit_id)

    # -- shutdown ------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def drain(self, timeout: float) -> None:
        """Refuse new commands, wait up to ``timeout`` for running ones, then record the rest as
        interrupted in the audit log and cancel them (they tell their channel so)."""
        self._accepting = False
        tasks = set(self._running)
        if tasks:
            log.info("waiting up to %.0fs for %d running command(s)", timeout, len(tasks))
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
        else:
            pending = set()
        for task in pending:
            audit_id = self._running.get(task)
            if audit_id:
                await self._end(audit_id, "interrupted", "the bot shut down before it finished")
                self._interrupted.add(audit_id)
            task.cancel()
        if pending:
            log.warning("%d command(s) did not finish before shutdown", len(pending))
            await asyncio.wait(pending, timeout=5.0)
        await self.locks.close()  # stops the heartbeat; releases what is still held


async def _safe(call: Awaitable[None], *, timeout: float | None = None) -> None:
    """Show something to the user; a chat API failure is logged, never raised into the core."""
    try:
        if timeout is None:
            await call
        else:
            async with asyncio.timeout(timeout):
                await call
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.warning("could not reply in chat: %s: %s", type(e).__name__, str(e)[:200])
