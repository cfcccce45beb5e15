"""Discord buttons that survive a restart: the state lives in the ``custom_id``, not in memory.

Every clickable button the bot ever posts is one of three ``discord.ui.DynamicItem`` classes,
registered with ``client.add_dynamic_items`` at start-up, so a click on a message posted by a
previous process (or another replica) still reaches the command core:

- ``CommandButton``  ``chatops:cmd:<command>``      re-runs ``<command>`` (result and alert buttons)
- ``ConfirmButton``  ``chatops:confirm:<command>``  runs a destructive ``<command>`` confirmed
- ``CancelButton``   ``chatops:cancel``              drops a pending confirmation

The buttons only decode the ``custom_id``; what a click does is the job of the ``ButtonHandler``
the client carries (``DiscordApp`` in bot.chat.discord), so this module knows nothing about the dispatcher.
Views are built with ``timeout=None``: a timed-out view would unregister the dynamic templates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol, cast

import discord

from notifiers.render import common as rc

log = logging.getLogger(__name__)

CMD_PREFIX = rc.DISCORD_CUSTOM_ID_PREFIX  # "chatops:cmd:"
CONFIRM_PREFIX = "chatops:confirm:"
CANCEL_ID = "chatops:cancel"
CUSTOM_ID_MAX = rc.DISCORD_CUSTOM_ID  # 100

_LINK_STYLE = 5


class ButtonHandler(Protocol):
    """What a click does; implemented by ``bot.chat.discord.DiscordApp``."""

    async def on_command_button(self, interaction: discord.Interaction, command: str) -> None: ...

    async def on_confirm(self, interaction: discord.Interaction, command: str) -> None: ...

    async def on_cancel(self, interaction: discord.Interaction) -> None: ...


def _handler(interaction: discord.Interaction) -> ButtonHandler | None:
    handler = getattr(interaction.client, "chatops", None)
    if handler is None:
        log.warning("button %s pressed on a client without a chatops handler", interaction.id)
    return cast(ButtonHandler | None, handler)


def fits(prefix: str, command: str) -> bool:
    return len((prefix + command).encode("utf-16-le")) // 2 <= CUSTOM_ID_MAX


class CommandButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"chatops:cmd:(?P<cmd>.+)",
):
    def __init__(
        self,
        command: str,
        *,
        label: str | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        row: int | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Button(label=label or command, style=style, custom_id=CMD_PREFIX + command),
            row=row,
        )
        self.command = command

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> CommandButton:
        button = cast(discord.ui.Button[discord.ui.View], item)
        return cls(match["cmd"], label=button.label, style=button.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        handler = _handler(interaction)
        if handler is not None:
            await handler.on_command_button(interaction, self.command)


class ConfirmButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"chatops:confirm:(?P<cmd>.+)",
):
    def __init__(self, command: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Confirm",
                style=discord.ButtonStyle.danger,
                custom_id=CONFIRM_PREFIX + command,
            )
        )
        self.command = command

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ConfirmButton:
        return cls(match["cmd"])

    async def callback(self, interaction: discord.Interaction) -> None:
        handler = _handler(interaction)
        if handler is not None:
            await handler.on_confirm(interaction, self.command)


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"chatops:cancel",
):
    def __init__(self) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel", style=discord.ButtonStyle.secondary, custom_id=CANCEL_ID
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> CancelButton:
        return cls()

    async def callback(self, interaction: discord.Interaction) -> None:
        handler = _handler(interaction)
        if handler is not None:
            await handler.on_cancel(interaction)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    CommandButton,
    ConfirmButton,
    CancelButton,
)


def confirm_view(command: str) -> discord.ui.View:
    """Confirm / Cancel for a destructive ``command`` (sent as an ephemeral message)."""
    view = discord.ui.View(timeout=None)
    view.add_item(ConfirmButton(command))
    view.add_item(CancelButton())
    return view


def view_from_components(rows: Sequence[dict[str, Any]]) -> discord.ui.View | None:
    """The rendered component rows (notifiers.render.discord) as a View of dynamic buttons and
    link buttons; None when there is nothing to show (which also clears old buttons on edit)."""
    view = discord.ui.View(timeout=None)
    for index, row in enumerate(rows):
        for comp in row.get("components", ()):
            label = str(comp.get("label") or "")
            style = int(comp.get("style", 2))
            if style == _LINK_STYLE or "url" in comp:
                view.add_item(discord.ui.Button(label=label, url=str(comp["url"]), row=index))
                continue
            custom_id = str(comp.get("custom_id", ""))
            if not custom_id.startswith(CMD_PREFIX):
                log.warning("skipping a button with an unroutable custom_id %r", custom_id[:40])
                continue
            view.add_item(
                CommandButton(
                    custom_id[len(CMD_PREFIX) :],
                    label=label,
                    style=discord.ButtonStyle(style),
                    row=index,
                )
            )
    return view if view.children else None
