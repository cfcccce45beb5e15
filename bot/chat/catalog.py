"""What users can type: the command catalog, the usage lines, and parsing a command string
into something the dispatcher can authorize, confirm, lock and run.

Parsing is pure (no I/O): every mistake is an ``errors.BadInput`` raised before anything is
audited as started or sent to Argo CD, so the dispatcher can answer it with the usage line.
Built-ins are parsed here; other features add commands with ``Catalog.register`` (the alert
runner's ``ack``). Names are configurable (``settings.command_names``/``command_prefix``),
since slash commands are workspace-wide; the canonical name is what buttons carry.

An app is named ``APP``, ``NAMESPACE/APP`` or ``APP@INSTANCE`` (``commands.targets``);
``settle`` then rewrites the command with the app's canonical name (the instance that has it,
Argo CD's own namespace left out), so the per-app lock, the authorization scope, the audit log
and the buttons all name one app one way.

``autorollback off|on|status`` pauses, resumes and shows the auto-rollback policy; it is
authorized on its app (operator for off/on, viewer for status) but takes no per-app lock, so a
policy's rollback in progress can be paused. ``ack`` silences an incident's re-announcements, so it is authorized on the incident's app with
``authorization.ack_role`` (operator by default), whoever registers it; it takes no per-app lock
(acknowledging while a sync of the app runs is fine).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.chat.command_table import ALIASES, BUILTINS, Command, Handler, Parsed, Scope
from bot.chat.invocation import Invocation
from bot.metrics import Registry, rollbacks
from bot.settings import Settings
from bot.state.autorollback import StoreLedger
from bot.state.store import Store
from commands import errors, targets, validation
from commands.context import Caller, Services, resolve
from commands.results import Fact, Progress, Result, Status
from commands.sync import SyncOptions

_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


class Catalog:
    """The commands this bot knows, under their configured names."""

    def __init__(
        self,
        settings: Settings,
        services: Callable[[], Services | None],
        *,
        store: Store | None = None,
        metrics: Registry | None = None,
    ) -> None:
        self.settings = settings
        self._services = services
        self._store = store
        self._commands: dict[str, Command] = {c.name: c for c in BUILTINS}
        self._m_rollbacks = rollbacks(metrics or Registry())

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
        role: str | None = None,
        scope: Scope | None = None,
    ) -> None:
        if name in self._commands and self._commands[name].handler is None:
            raise ValueError(f"{name} is a built-in command")
        if name == "ack":
            role = role or self.settings.authorization.ack_role
            scope = scope or incident_app
        self._commands[name] = Command(
            name,
            usage,
            about,
            mutating,
            destructive,
            handler=handler,
            app_arg=app_arg,
            role=role,
            scope=scope,
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

    def names(self) -> list[str]:
        return list(self._commands)

    def get(self, name: str) -> Command:
        return self._commands[name]

    def usage(self, name: str | None = None) -> str:
        if name is not None and name in self._commands:
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

    # -- parsing: command string -> Parsed ----------------------------------------------------
    def parse(self, inv: Invocation, name: str, args: list[str]) -> Parsed:
        """``name`` is canonical; raises ``errors.BadInput`` on any mistake."""
        cmd = self._commands[name]
        if cmd.handler is not None:
            return self._parse_extra(inv, cmd, args)
        caller = Caller(inv.user_name, inv.platform)
        if name == "help":
            return self._parse_help(cmd, args)
        if name == "selfheal":
            return self._parse_selfheal(cmd, args, caller)
        if name == "autorollback":
            return self._parse_autorollback(cmd, args, caller)
        if name == "status" and not args:
            from commands.status import overview

            return Parsed(cmd, "status", None, lambda _p: overview(self._svc()))
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

    async def settle(self, inv: Invocation, parsed: Parsed) -> Parsed:
        """``parsed`` naming its app canonically (``web`` -> ``web@homelab`` when only the
        homelab instance has it). ``BadInput`` when the name is ambiguous; any other failure
        to find the app is left for the command to report (with its close matches)."""
        services = self._services()
        if parsed.app is None or parsed.command.handler is not None or services is None:
            return parsed
        try:
            svc, qualified = await resolve(services, parsed.app)
        except errors.BadInput:
            raise
        except errors.CommandError:
            return parsed
        canonical = svc.label(qualified)
        if canonical == parsed.app:
            return parsed
        words = parsed.line.split()
        words[2 if parsed.command.name == "selfheal" else 1] = canonical  # where parse put it
        return self.parse(inv, parsed.command.name, words[1:])

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
        opts = self._sync_options(True)
        from commands.rollback import rollback_chat

        async def run(p: Progress) -> Result:
            result = await rollback_chat(
                self._svc(), app, commit=commit, caller=caller, progress=p, opts=opts
            )
            if writes:
                self._m_rollbacks.inc(trigger="manual", outcome=result.status.value)
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

    def _parse_autorollback(self, cmd: Command, args: list[str], caller: Caller) -> Parsed:
        from commands.autorollback_cmd import MAX_PAUSE, MIN_PAUSE, autorollback

        if not args:
            raise errors.BadInput("Missing off|on|status.")
        action = args[0].lower()
        if action not in ("on", "off", "status"):
            raise errors.BadInput(f"'{args[0][:40]}' is not off, on or status.")
        app = _one_app(args[1:]) if action != "status" or args[1:] else None
        duration: float | None = None
        rest = args[2:]
        if rest:
            if action != "off":
                raise errors.BadInput("A duration only makes sense with 'off'.")
            duration = validation.duration(
                rest[0], minimum=MIN_PAUSE, maximum=MAX_PAUSE, what="auto-rollback pause"
            )
            _no_more(rest[1:])
        line = " ".join(["autorollback", action, *([app] if app else []), *rest[:1]]).lower()

        async def run(_p: Progress) -> Result:
            return await autorollback(
                self._svc(),
                self._ledger(),
                self.settings.auto_rollback_policy(),
                "on" if action == "on" else "off" if action == "off" else "status",
                app,
                duration=duration,
                caller=caller,
            )

        return Parsed(
            cmd,
            line,
            None,  # no per-app lock: pausing must work while a rollback of the app runs
            run,
            role="viewer" if action == "status" else None,
            scope_app=app,
        )

    def _ledger(self) -> StoreLedger:
        if self._store is None:
            raise errors.Unavailable("Auto-rollback needs the state store, which is not open.")
        return StoreLedger(self._store)

    def _parse_extra(self, inv: Invocation, cmd: Command, args: list[str]) -> Parsed:
        handler = cmd.handler
        assert handler is not None
        app: str | None = None
        if cmd.app_arg is not None:
            if len(args) <= cmd.app_arg:
                raise errors.BadInput("Missing APP.")
            app = validation.app_name(args[cmd.app_arg])
        scope_app = cmd.scope(list(args)) if cmd.scope is not None else None
        line = " ".join([cmd.name, *args])
        return Parsed(
            cmd,
            line,
            app,
            lambda _p: handler(inv, list(args)),
            destructive=cmd.destructive,
            prompt=f"Run {line}?",
            role=cmd.role,
            scope_app=scope_app,
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
        services = self._services()
        if services is None:
            raise errors.Unavailable(
                "Argo CD is not configured.",
                hint="Set CHATOPS_ARGOCD_URL and CHATOPS_ARGOCD_TOKEN and restart the bot.",
            )
        return services


def _one_app(args: list[str]) -> str:
    if not args:
        raise errors.BadInput("Missing APP.")
    return str(targets.parse(args[0]))


def incident_app(args: list[str]) -> str | None:
    """The app of the incident ``ack`` names: keys are ``APP:PROBLEM`` (an app name has no
    ``:``); a ``#ID`` names no app here, so only grants for every app can acknowledge it."""
    if not args:
        raise errors.BadInput("Say which incident to acknowledge.", hint="e.g. payments:degraded")
    _no_more(args[1:])
    ref = validation.incident_ref(args[0])
    app, sep, _problem = ref.rpartition(":")
    return app if sep and app else None


def _no_more(rest: list[str]) -> None:
    if rest:
        raise errors.BadInput(f"Unexpected '{rest[0][:40]}'.")
