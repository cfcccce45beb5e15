"""The values the chat front-end passes around: an ``Invocation`` (a command string plus who and
where) and the ``Reply`` port (how to show progress, a result, a confirmation or an error).

They live below the dispatcher so that the adapters (``slack.py``, ``discord.py``), the
dispatcher and what it uses (``authz``, ``catalog``, ``progress``) all import them from here and
none of those has to import another to learn a type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from commands.results import Result, Step

__all__ = ["Invocation", "Reply"]


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
