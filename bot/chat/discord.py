"""The Discord face of the bot: slash commands and buttons routed into the neutral dispatcher.

Discord wants an answer to every interaction within 3 s, so each command defers at once (the
"thinking…" message) and then edits that one message as the dispatcher reports steps; the final
edit carries the Result with its buttons. The interaction token that allows those edits lives
15 minutes: after ~14 the reply moves to a plain channel message posted with the bot token.

Authorization uses the role IDs Discord puts in the interaction payload (``member.roles``), never
the guild cache: a bot that has not cached the guild (or a role) must not deny a member who has
the role. Errors and confirmations are ephemeral; because the first follow-up after a public
defer would inherit its visibility, the "thinking…" placeholder is deleted first.

An interaction id is acted on at most once (``bot.state.replay``): a repeated one (a gateway
replay, a second process seeing the same event) gets no answer and runs nothing. The gateway
client, the slash-command sync and start-up live in ``bot.chat.discord_gateway``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import discord
from discord import app_commands

from bot.chat import discord_views as views
from bot.chat.dispatch import Dispatcher
from bot.chat.invocation import Invocation
from bot.settings import Settings
from bot.state.replay import ReplayCheckFailed, ReplayGuard
from commands.results import Result, Step
from notifiers.render import common as rc
from notifiers.render import discord as render_discord

log = logging.getLogger(__name__)
# discord.py writes interaction webhook URLs, which carry the interaction token (a capability
# for 15 minutes), into DEBUG lines: that logger stays at INFO whatever the root level is
logging.getLogger("discord.webhook.async_").setLevel(logging.INFO)

TOKEN_TTL = 14 * 60.0  # interaction tokens last 15 min; leave a margin
APPS_TTL = 60.0  # autocomplete cache of Argo CD application names
APPS_TIMEOUT = 2.0  # autocomplete must answer within 3 s
MAX_CHOICES = 25  # Discord's limit for autocomplete answers

AppNames = Callable[[], Awaitable[list[str]]]


def _payload(message: dict[str, Any]) -> dict[str, Any]:
    """Rendered REST JSON (notifiers.render.discord) -> discord.py keyword arguments."""
    return {
        "content": message.get("content") or None,
        "embeds": [discord.Embed.from_dict(e) for e in message.get("embeds", ())],
        "view": views.view_from_components(message.get("components", ())),
        "allowed_mentions": discord.AllowedMentions.none(),
    }


def member_role_ids(user: discord.User | discord.Member) -> tuple[str, ...]:
    """Role IDs exactly as the interaction payload listed them (``member.roles``).

    ``Member.roles`` would resolve them against the guild cache and silently drop unknown ones;
    ``Member._roles`` is the payload's list. Users outside a guild (DMs) have no roles."""
    raw = getattr(user, "_roles", None)
    return tuple(str(r) for r in raw) if raw is not None else ()


class DiscordReply:
    """``bot.chat.invocation.Reply`` for one interaction.

    ``mode="original"``: the interaction was deferred with thinking; edit ``@original``.
    ``mode="followup"``: the interaction was answered otherwise (a Confirm click updates the
    ephemeral prompt); the progress goes to a new public follow-up message, then edits of it.
    Past ``ttl`` seconds (or when the token is refused) a channel message takes over."""

    def __init__(
        self,
        app: DiscordApp,
        interaction: discord.Interaction,
        *,
        mode: Literal["original", "followup"] = "original",
    ) -> None:
        self._app = app
        self._interaction = interaction
        self._mode = mode
        self._deadline = time.monotonic() + app.token_ttl
        self._shown = False  # the original / follow-up message has real content
        self._placeholder_gone = False  # the "thinking…" original was deleted
        self._followup: discord.WebhookMessage | None = None
        self._channel_message: discord.Message | None = None

    async def progress(self, command: str, target: str, steps: Sequence[Step]) -> None:
        await self._show(render_discord.progress_message(command, target, steps))

    async def result(self, result: Result) -> None:
        await self._show(render_discord.result_message(result))

    async def ask_confirm(self, prompt: str, command: str) -> None:
        if not views.fits(views.CONFIRM_PREFIX, command):
            await self.error(f"`{command[:60]}…` is too long to confirm with a button.")
            return
        await self._ephemeral(prompt, view=views.confirm_view(command))

    async def error(self, text: str) -> None:
        await self._ephemeral(text)

    # -- internals -------------------------------------------------------------------------
    async def _show(self, message: dict[str, Any]) -> None:
        kwargs = _payload(message)
        if self._channel_message is None and time.monotonic() < self._deadline:
            try:
                await self._edit_interaction(kwargs)
                self._shown = True
                return
            except discord.HTTPException as e:
                if e.status not in (401, 404):
                    raise
                log.info("interaction %s: token refused (%s), using a channel message",
                         self._interaction.id, e.status)  # fmt: skip
        await self._edit_channel(kwargs)

    async def _edit_interaction(self, kwargs: dict[str, Any]) -> None:
        if self._mode == "original":
            await self._interaction.edit_original_response(**kwargs)
        elif self._followup is None:
            if kwargs["view"] is None:
                kwargs = {k: v for k, v in kwargs.items() if k != "view"}
            self._followup = await self._interaction.followup.send(wait=True, **kwargs)
        else:
            await self._followup.edit(**kwargs)

    async def _edit_channel(self, kwargs: dict[str, Any]) -> None:
        if self._channel_message is not None:
            await self._channel_message.edit(**kwargs)
            return
        channel = self._app.channel(self._interaction)
        if kwargs["view"] is None:
            kwargs = {k: v for k, v in kwargs.items() if k != "view"}
        self._channel_message = await channel.send(**kwargs)

    async def _ephemeral(self, text: str, *, view: discord.ui.View | None = None) -> None:
        if self._mode == "original" and not self._shown and not self._placeholder_gone:
            # the first follow-up after a public defer would replace it, publicly
            self._placeholder_gone = True
            try:
                await self._interaction.delete_original_response()
            except discord.HTTPException as e:
                log.debug("could not delete the placeholder of %s: %s", self._interaction.id, e)
        kwargs: dict[str, Any] = {
            "ephemeral": True,
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        if view is not None:
            kwargs["view"] = view
        try:
            await self._interaction.followup.send(rc.clip(text, rc.DISCORD_CONTENT), **kwargs)
        except discord.HTTPException as e:
            log.warning("could not tell the user of interaction %s: %s", self._interaction.id, e)


class DiscordApp:
    """Turns interactions into ``Invocation``s; the ``views.ButtonHandler`` for clicks."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        app_names: AppNames | None,
        replays: ReplayGuard | None = None,
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.replays = replays
        self.client: discord.Client | None = None  # the gateway client (bot.chat.discord_gateway)
        self.token_ttl = TOKEN_TTL
        self._app_names = app_names
        self._apps: list[str] = []
        self._apps_at = float("-inf")
        self._apps_lock = asyncio.Lock()

    # -- invocations -----------------------------------------------------------------------
    def invocation(
        self,
        interaction: discord.Interaction,
        text: str,
        *,
        confirmed: bool = False,
        source: Literal["command", "button"] = "command",
    ) -> Invocation:
        user = interaction.user
        return Invocation(
            platform="discord",
            user_id=str(user.id),
            user_name=user.name,
            channel_id=str(interaction.channel_id or ""),
            text=text,
            guild_id=str(interaction.guild_id) if interaction.guild_id else None,
            roles=member_role_ids(user),
            confirmed=confirmed,
            source=source,
        )

    async def first_time(self, interaction: discord.Interaction) -> bool:
        """False when this interaction id was handled already (or cannot be checked)."""
        if self.replays is None:
            return True
        try:
            return (
                await self.replays.seen("discord", [("interaction", str(interaction.id))]) is None
            )
        except ReplayCheckFailed as e:
            log.warning("interaction %s was not run: the replay check failed (%s)",
                        interaction.id, e)  # fmt: skip
            return False

    async def run(self, interaction: discord.Interaction, text: str, **kw: Any) -> None:
        """Defer within the 3 s, then hand the command to the dispatcher."""
        if not await self.first_time(interaction):
            return
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as e:
            log.warning("interaction %s could not be acknowledged: %s", interaction.id, e)
            return
        await self._handle(
            self.invocation(interaction, text, **kw), DiscordReply(self, interaction)
        )

    async def _handle(self, inv: Invocation, reply: DiscordReply) -> None:
        try:
            await self.dispatcher.handle(inv, reply)
        except Exception:  # the dispatcher reports its own errors; this is the last guard
            log.exception("discord: %r by %s failed", inv.text, inv.user_id)
            await reply.error("Internal error: the command could not be completed.")

    async def on_command_button(self, interaction: discord.Interaction, command: str) -> None:
        await self.run(interaction, command, source="button")

    async def on_confirm(self, interaction: discord.Interaction, command: str) -> None:
        if not await self.first_time(interaction):
            return
        try:  # update the ephemeral prompt: no second click on the same confirmation
            await interaction.response.edit_message(
                content=f"Confirmed: `{command}`", view=None,
                allowed_mentions=discord.AllowedMentions.none(),
            )  # fmt: skip
        except discord.HTTPException as e:
            log.warning("confirmation %s could not be acknowledged: %s", interaction.id, e)
            return
        inv = self.invocation(interaction, command, confirmed=True, source="button")
        await self._handle(inv, DiscordReply(self, interaction, mode="followup"))

    async def on_cancel(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.edit_message(
                content="Cancelled: nothing was run.", view=None
            )
        except discord.HTTPException as e:
            log.warning("cancellation %s could not be acknowledged: %s", interaction.id, e)

    def channel(self, interaction: discord.Interaction) -> discord.abc.Messageable:
        assert self.client is not None
        if interaction.channel_id is None:
            raise RuntimeError("interaction without a channel")
        return self.client.get_partial_messageable(
            interaction.channel_id, guild_id=interaction.guild_id
        )

    # -- autocomplete ----------------------------------------------------------------------
    async def app_names(self) -> list[str]:
        """Argo CD application names, cached for ``APPS_TTL``; stale or empty on failure."""
        if self._app_names is None:
            return []
        async with self._apps_lock:
            if time.monotonic() - self._apps_at < APPS_TTL:
                return self._apps
            try:
                self._apps = sorted(await asyncio.wait_for(self._app_names(), APPS_TIMEOUT))
                self._apps_at = time.monotonic()
            except Exception as e:  # autocomplete is a convenience: never fail the prompt
                log.warning("autocomplete: cannot list Argo CD applications: %s", e)
                self._apps_at = time.monotonic() - APPS_TTL + 10.0  # retry in 10 s
            return self._apps

    async def app_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        typed = current.strip().lower()
        names = await self.app_names()
        starts = [n for n in names if n.lower().startswith(typed)]
        contains = [n for n in names if typed in n.lower() and n not in starts]
        return [app_commands.Choice(name=n, value=n) for n in (starts + contains)[:MAX_CHOICES]]
