"""The command table: the built-in commands as users see them (name, arguments, what it does,
whether it changes anything), their aliases, and ``Parsed``, a command ready to run.

``bot.chat.catalog`` parses command strings into ``Parsed`` values against this table (and the
commands other features register); the dispatcher authorizes, confirms, locks and runs them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.chat.invocation import Invocation
from commands.results import Progress, Result

Handler = Callable[[Invocation, list[str]], Awaitable[Result]]
Runner = Callable[[Progress], Awaitable[Result]]
Scope = Callable[[list[str]], str | None]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str  # arguments only: "APP [prune]"
    about: str
    mutating: bool
    destructive: bool = False
    handler: Handler | None = None  # registered extras; built-ins are parsed below
    app_arg: int | None = None  # which argument of an extra names the app (lock, scope)
    role: str | None = None  # the role it needs; None: operator if mutating, else viewer
    # the app an extra's arguments concern, for authorization only (no lock); raises BadInput
    scope: Scope | None = None


@dataclass(frozen=True)
class Parsed:
    """One command ready to run: what to lock, what to ask, what to call."""

    command: Command
    line: str  # the normalized command string (confirm buttons carry it back)
    app: str | None
    run: Runner
    destructive: bool = False
    prompt: str = ""
    role: str | None = None  # the role it needs; None: the default for ``command.mutating``
    scope_app: str | None = None  # the app it is authorized on when that is not ``app``

    @property
    def scope(self) -> str | None:
        """The app authorization is scoped to."""
        return self.scope_app if self.scope_app is not None else self.app


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
    Command(
        "status",
        "[APP]",
        "sync, health, operation and what is unhealthy; without APP, the apps that need attention",
        mutating=False,
    ),
    Command(
        "autorollback",
        "off|on|status [APP] [DURATION]",
        "pause (`off APP 2h`), resume or show the auto-rollback policy",
        mutating=True,
    ),
    Command("help", "[COMMAND]", "this list", mutating=False),
)
ALIASES = {"verify": "verify-rootless", "self-heal": "selfheal", "auto-rollback": "autorollback"}
