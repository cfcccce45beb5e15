"""The platform-neutral command dispatcher: one path from a chat command to the command core.

Slack and Discord adapters turn what the platform sent into an ``Invocation`` (a command string
plus who/where) and a ``Reply`` (how to show progress, a result, a confirmation or an error), then
call ``Dispatcher.handle``. Everything that must be the same on both platforms lives here, in this
order: parse (a mistake gets the usage line), audit the attempt, authorize (a denial names the
role needed), ask for confirmation of destructive actions, take the per-app lock (a second
operation on a busy app is told who started what and when), run the core with throttled progress,
show the Result with its next-action buttons, close the audit row.

Buttons carry plain command strings (``Action.command``) and come back through the same path, so
nothing but the message itself holds state, and buttons keep working after a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bot.authz import Authorizer, GroupResolver
from bot.metrics import Registry
from bot.settings import Settings
from bot.store import Store
from commands import errors, validation
from commands.context import Caller, Services
from commands.results import Fact, Progress, Result, Status, Step
from commands.sync import SyncOptions, failed_result

log = logging.getLogger(__name__)

Handler = Callable[["Invocation", list[str]], Awaitable[Result]]
Runner = Callable[[Progress], Awaitable[Result]]

PROGRESS_INTERVAL = 1.0  # at most one edit of the progress message per second
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class Invocation:
    platform: Literal["slack", "discord", "cli"]
    user_id: str
    user_name: str
    channel_id: str
    text: str  # "sync payments", "selfheal off payments 30m", "help", "ack <key>"
    team_id: str | None = None  # Slack team/enterprise of the user (Slack Connect check)
    guild_id: str | None = None
    roles: tuple[str, ...] = ()  # Discord role IDs from the interaction's member.roles
    confirmed: bool = False  # True when it comes from a confirmed button/dialog
    source: Literal["command", "button"] = "command"


class Reply(Protocol):
    async def progress(self, command: str, target: str, steps: Sequence[Step]) -> None:
        """Create-or-edit the ONE progress message (the dispatcher throttles the calls)."""

    async def result(self, result: Result) -> None:
        """The final edit of that message (or a new message if there was no progress)."""

    async def ask_confirm(self, prompt: str, command: str) -> None:
        """Show Confirm/Cancel; Confirm re-enters ``handle`` with ``confirmed=True``."""

    async def error(self, text: str) -> None:
        """A short message, ideally only visible to the caller."""


@dataclass(frozen=True)
class Command:
    name: str
    usage: str  # arguments only: "APP [prune]"
    about: str
    mutating: bool
    destructive: bool = False
    handler: Handler | None = None  # registered extras; built-ins are parsed below
    app_arg: int | None = None  # which argument of an extra names the app (lock, scope)


@dataclass(frozen=True)
class Parsed:
    """One command ready to run: what to lock, what to ask, what to call."""

    command: Command
    line: str  # the normalized command string (confirm buttons carry it back)
    app: str | None
    run: Runner
    destructive: bool = False
    prompt: str = ""


@dataclass(frozen=True)
class InFlight:
    line: str
    user_name: str
    platform: str
    started_at: float


BUILTINS: tuple[Command, ...] = (
    Command(
        "sync",
        "APP [prune]",
        "refresh, run the hooks, sync and wait for Synced and Healthy; "
        "`prune` also deletes what Git no longer has (asks first)",
        mutating=True,
    ),
    Command(
        "rollback",
        "APP [COMMIT]",
        "revert the app's last (or the given) commit in Git, then sync (asks first)",
        mutating=True,
        destructive=True,
    ),
    Command(
        "selfheal",
        "off|on APP [DURATION]",
        "pause or resume Argo CD self-heal; `off APP 30m` turns it back on by itself",
        mutating=True,
    ),
    Command(
        "verify-rootless",
        "APP",
        "check the app's StatefulSets are Ready and run as non-root",
        mutating=False,
    ),
    Command("status", "APP", "sync, health, operation and what is unhealthy", mutating=False),
    Command("help", "[COMMAND]", "this list", mutating=False),
)
ALIASES = {"verify": "verify-rootless", "self-heal": "selfheal"}


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
    ) -> None:
        self.settings = settings
        self.services = services
        self.store = store
        self.authz = Authorizer(settings.authorization, slack_groups=slack_groups)
        self.clock = clock
        self.progress_interval = PROGRESS_INTERVAL
        self._commands: dict[str, Command] = {c.name: c for c in BUILTINS}
        self._inflight: dict[str, InFlight] = {}
        self._running: dict[asyncio.Task[Any], int] = {}
        self._interrupted: set[int] = set()
        self._accepting = True
        reg = metrics or Registry()
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
        if name in self._commands and self._commands[name].handler is None:
            raise ValueError(f"{name} is a built-in command")
        self._commands[name] = Command(
            name, usage, about, mutating, destructive, handler=handler, app_arg=app_arg
        )

    def slash_name(self, name: str) -> str:
        """The configured name (without "/") users type for a canonical command."""
        if name in {c.name for c in BUILTINS}:
            return self.settings.command_name(name)
        return self.settings.command_prefix + name

    def canonical(self, typed: str) -> str | None:
        """``/argo-sync`` or ``sync`` -> ``sync``; None if no command has that name."""
        word = typed.lstrip("/").lower()
        for name in self._commands:
            if word in (name, self.slash_name(name)):
                return name
        return ALIASES.get(word)

    def commands(self) -> list[str]:
        return list(self._commands)

    def usage(self, name: str | None = None) -> str:
        if name is not None:
            cmd = self._commands[name]
            line = f"Usage: /{self.slash_name(name)} {cmd.usage}".rstrip()
            return f"{line} — {cmd.about}" if cmd.about else line
        lines = ["Commands:"]
        for cmd in self._commands.values():
            if cmd.usage or cmd.about or cmd.handler is None:
                lines.append(
                    f"/{self.slash_name(cmd.name)} {cmd.usage}".rstrip() + f" — {cmd.about}"
                )
        return "\n".join(lines)

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
            parsed = self._parse(inv, name, tokens[1:])
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
                app=parsed.app,
                project=self._project_lookup(parsed.app),
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
            holder = self._inflight.get(parsed.app)
            if holder is not None:
                text = self._busy_text(parsed.app, holder)
                await self._end(audit_id, "busy", text)
                await _safe(reply.error(text))
                return None, "busy"
            self._inflight[parsed.app] = InFlight(
                parsed.line, inv.user_name, inv.platform, self.clock()
            )
        self._m_busy.inc()
        try:
            result, outcome = await self._execute(parsed, reply)
            await _safe(reply.result(result))
        finally:
            self._m_busy.dec()
            if parsed.app is not None:
                self._inflight.pop(parsed.app, None)
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
                return (await services.argocd.get(app)).project
            except errors.CommandError:
                return None

        return project

    # -- parsing: command string -> Parsed ---------------------------------------------------
    def _parse(self, inv: Invocation, name: str, args: list[str]) -> Parsed:
        cmd = self._commands[name]
        if cmd.handler is not None:
            return self._parse_extra(inv, cmd, args)
        caller = Caller(inv.user_name, inv.platform)
        if name == "help":
            return self._parse_help(cmd, args)
        if name == "selfheal":
            return self._parse_selfheal(cmd, args, caller)
        app = _one_app(args)
        if name == "sync":
            return self._parse_sync(cmd, app, args[1:], caller)
        if name == "rollback":
            return self._parse_rollback(cmd, app, args[1:], caller)
        _no_more(args[1:])
        if name == "status":
            from commands.status import status

            return Parsed(cmd, f"status {app}", app, lambda _p: status(self._svc(), app))
        from commands.verify import verify

        return Parsed(cmd, f"verify-rootless {app}", app, lambda _p: verify(self._svc(), app))

    def _parse_help(self, cmd: Command, args: list[str]) -> Parsed:
        which = self.canonical(args[0]) if args else None
        if args and which is None:
            raise errors.BadInput(f"There is no command '{args[0][:40]}'.")

        async def run(_p: Progress) -> Result:
            names = [which] if which else list(self._commands)
            facts = tuple(
                Fact(f"/{self.slash_name(n)} {self._commands[n].usage}".rstrip(), c.about)
                for n in names
                if (c := self._commands[n]).about or c.handler is None
            )
            summary = "How to use it." if which else "Commands you can run."
            return Result("help", which or "commands", Status.NOOP, summary, facts=facts)

        return Parsed(cmd, "help" + (f" {which}" if which else ""), None, run)

    def _parse_sync(self, cmd: Command, app: str, rest: list[str], caller: Caller) -> Parsed:
        prune = False
        for word in rest:
            if word.lower() in ("prune", "--prune"):
                prune = True
            else:
                raise errors.BadInput(f"Unexpected '{word[:40]}'.")
        opts = self._sync_options(prune)
        from commands.sync import sync

        return Parsed(
            cmd,
            f"sync {app}" + (" prune" if prune else ""),
            app,
            lambda p: sync(self._svc(), app, opts, caller=caller, progress=p),
            destructive=prune,
            prompt=f"Sync {app} with prune? Resources that are no longer in Git will be "
            "deleted from the cluster.",
        )

    def _parse_rollback(self, cmd: Command, app: str, rest: list[str], caller: Caller) -> Parsed:
        commit: str | None = None
        if rest:
            commit = rest[0].lower()
            if not _COMMIT.match(commit):
                raise errors.BadInput(f"'{rest[0][:40]}' is not a commit SHA.")
            _no_more(rest[1:])
        line = f"rollback {app}" + (f" {commit}" if commit else "")
        rollback_chat = _rollback_chat()
        if rollback_chat is None:

            async def not_configured(_p: Progress) -> Result:
                return Result(
                    "rollback",
                    app,
                    Status.FAILED,
                    "Rollback is not configured yet.",
                    facts=(Fact("hint", "Use Argo CD or Git directly for now."),),
                )

            return Parsed(cmd, line, app, not_configured)
        kwargs: dict[str, Any] = {}
        if "opts" in inspect.signature(rollback_chat).parameters:
            kwargs["opts"] = self._sync_options(True)

        async def run(p: Progress) -> Result:
            result: Result = await rollback_chat(
                self._svc(), app, commit=commit, caller=caller, progress=p, **kwargs
            )
            return result

        # Without the full SHA the core only shows the commit and a confirm button (the
        # button pins the SHA), so only the call that writes needs the confirmation.
        writes = commit is not None and len(commit) == 40
        return Parsed(
            cmd,
            line,
            app,
            run,
            destructive=writes,
            prompt=f"Revert commit {(commit or '')[:7]} of {app} in Git and sync?",
        )

    def _parse_selfheal(self, cmd: Command, args: list[str], caller: Caller) -> Parsed:
        from commands.selfheal import MAX_PAUSE, MIN_PAUSE, selfheal

        if not args:
            raise errors.BadInput("Missing off|on and APP.")
        mode = args[0].lower()
        if mode not in ("on", "off"):
            raise errors.BadInput(f"'{args[0][:40]}' is not on or off.")
        app = _one_app(args[1:])
        duration: float | None = None
        rest = args[2:]
        if rest:
            if mode == "on":
                raise errors.BadInput("A duration only makes sense with 'off'.")
            duration = validation.duration(
                rest[0], minimum=MIN_PAUSE, maximum=MAX_PAUSE, what="self-heal pause"
            )
            _no_more(rest[1:])
        line = f"selfheal {mode} {app}" + (f" {rest[0].lower()}" if rest else "")
        for_how_long = f" for {validation.human(duration)}" if duration else ""
        return Parsed(
            cmd,
            line,
            app,
            lambda _p: selfheal(
                self._svc(),
                "on" if mode == "on" else "off",
                app,
                duration=duration,
                caller=caller,
            ),
            destructive=mode == "off",
            prompt=f"Turn self-heal off for {app}{for_how_long}? Argo CD will stop undoing "
            "manual changes in the cluster.",
        )

    def _parse_extra(self, inv: Invocation, cmd: Command, args: list[str]) -> Parsed:
        handler = cmd.handler
        assert handler is not None
        app: str | None = None
        if cmd.app_arg is not None:
            if len(args) <= cmd.app_arg:
                raise errors.BadInput("Missing APP.")
            app = validation.app_name(args[cmd.app_arg])
        line = " ".join([cmd.name, *args])
        return Parsed(
            cmd,
            line,
            app,
            lambda _p: handler(inv, list(args)),
            destructive=cmd.destructive,
            prompt=f"Run {line}?",
        )

    def _sync_options(self, prune: bool) -> SyncOptions:
        s = self.settings
        return SyncOptions(
            prune=prune,
            timeout=s.sync_timeout,
            retry_limit=s.retry_limit,
            presync_timeout=s.presync_timeout,
            postsync_timeout=s.postsync_timeout,
        )

    def _svc(self) -> Services:
        if self.services is None:
            raise errors.Unavailable(
                "Argo CD is not configured.",
                hint="Set CHATOPS_ARGOCD_URL and CHATOPS_ARGOCD_TOKEN and restart the bot.",
            )
        return self.services

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


def _one_app(args: list[str]) -> str:
    if not args:
        raise errors.BadInput("Missing APP.")
    return validation.app_name(args[0])


def _no_more(rest: list[str]) -> None:
    if rest:
        raise errors.BadInput(f"Unexpected '{rest[0][:40]}'.")


def _rollback_chat() -> Callable[..., Awaitable[Result]] | None:
    try:
        module = importlib.import_module("commands.rollback")
    except ImportError:
        return None
    fn = getattr(module, "rollback_chat", None)
    return fn if callable(fn) else None
