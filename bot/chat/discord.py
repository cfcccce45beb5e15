"""The Discord face of the bot: slash commands and buttons routed into the neutral dispatcher.

Discord wants an answer to every interaction within 3 s, so each command defers at once (the
"thinking…" message) and then edits that one message as the dispatcher reports steps; the final
edit carries the Result with its buttons. The interaction token that allows those edits lives
15 minutes: after ~14 the reply moves to a plain channel message posted with the bot token.

Authorization uses the role IDs Discord puts in the interaction payload (``member.roles``), never
the guild cache: a bot that has not cached the guild (or a role) must not deny a member who has
the role. Errors and confirmations are ephemeral; because the first follow-up after a public
defer would inherit its visibility, the "thinking…" placeholder is deleted first.

Slash commands are synced once at start (guild sync when ``discord_guild_id`` is set: instant;
global otherwise: slow to propagate), never on reconnects.

An interaction id is acted on at most once (``bot.state.replay``): a repeated one (a gateway
replay, a second process seeing the same event) gets no answer and runs nothing. Whether the
gateway is up is kept from discord.py's ready/resumed/disconnect events for /readyz;
``bot.chat.discord_supervisor`` retries a failed start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import discord
import yarl
from discord import app_commands

from bot.chat import discord_views as views
from bot.chat.discord_commands import build_commands
from bot.chat.dispatch import Dispatcher
from bot.chat.invocation import Invocation
from bot.settings import ConfigError, Settings
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
        self.client: ChatOpsClient | None = None
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


class ChatOpsClient(discord.Client):
    """A gateway client that carries its ``DiscordApp`` (buttons find it as ``client.chatops``)."""

    def __init__(self, chatops: DiscordApp) -> None:
        super().__init__(intents=discord.Intents(guilds=True))
        self.chatops = chatops
        self.gateway_up = False  # READY or RESUMED seen, and no disconnect since
        self.tree = app_commands.CommandTree(self)
        build_commands(self.tree, chatops)
        self.add_dynamic_items(*views.DYNAMIC_ITEMS)

    async def on_ready(self) -> None:
        self.gateway_up = True

    async def on_resumed(self) -> None:
        self.gateway_up = True

    async def on_disconnect(self) -> None:
        self.gateway_up = False


def configure_endpoints(api_url: str | None, gateway_url: str | None) -> None:
    """Point discord.py at a proxy or a fake: process-wide, as discord.py keeps them on classes."""
    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


@dataclass
class DiscordRunner:
    client: ChatOpsClient
    app: DiscordApp
    task: asyncio.Task[None] | None = None
    alert_channel: str | None = None

    async def announce(self, text: str) -> bool:
        """Say ``text`` in the alert channel (e.g. "self-heal is back on"); False if none."""
        if not self.alert_channel:
            return False
        try:
            channel = self.client.get_partial_messageable(int(self.alert_channel))
            await channel.send(text[:2000], allowed_mentions=discord.AllowedMentions.none())
        except (discord.HTTPException, ValueError) as e:
            log.warning("Discord announcement not sent: %s", type(e).__name__)
            return False
        return True

    def problem(self) -> str | None:
        """Why the gateway is not serving, or None (for /readyz)."""
        task = self.task
        if task is None:
            return None  # logged in without a gateway (tests, one-shot use)
        if task.done():
            error = None if task.cancelled() else task.exception()
            return f"the gateway stopped ({type(error).__name__ if error else 'closed'})"
        if not self.client.gateway_up:
            return "the gateway is not connected"
        return None

    async def close(self) -> None:
        await self.client.close()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def sync_commands(client: ChatOpsClient, guild_id: str | None) -> int:
    """Bulk-overwrite the slash commands: to one guild (instant) or globally (slow)."""
    try:
        if guild_id:
            guild = discord.Object(id=int(guild_id))
            client.tree.copy_global_to(guild=guild)
            synced = await client.tree.sync(guild=guild)
        else:
            synced = await client.tree.sync()
    except discord.HTTPException as e:
        log.warning("Discord slash commands were not synced (%s %s): does the bot have the "
                    "applications.commands scope in that guild?", e.status, e.text[:200])  # fmt: skip
        return 0
    log.info("Discord: %d slash commands synced %s", len(synced),
             f"to guild {guild_id}" if guild_id else "globally")  # fmt: skip
    return len(synced)


async def start_discord(
    settings: Settings,
    dispatcher: Dispatcher,
    *,
    api_url: str | None = None,
    gateway_url: str | None = None,
    connect: bool = True,
    sync: bool = True,
    app_names: AppNames | None = None,
    replays: ReplayGuard | None = None,
) -> DiscordRunner:
    """Log in, sync the slash commands once, and (``connect``) run the gateway in a task.

    ``app_names`` feeds autocomplete; by default the Argo CD client behind the dispatcher."""
    if settings.discord_token is None:
        raise ConfigError(["CHATOPS_DISCORD_TOKEN is not set (the Discord client needs it)."])
    configure_endpoints(api_url or settings.discord_api_url,
                        gateway_url or settings.discord_gateway_url)  # fmt: skip
    if app_names is None:
        services = getattr(dispatcher, "services", None)
        if services is not None:  # every instance's apps, as they are addressed
            from commands.context import app_labels

            app_names = functools.partial(app_labels, services)
    app = DiscordApp(settings, dispatcher, app_names, replays)
    client = ChatOpsClient(app)
    app.client = client
    try:
        await client.login(settings.discord_token.get_secret_value())
        if sync:
            await sync_commands(client, settings.discord_guild_id)
    except BaseException:
        await client.close()
        raise
    runner = DiscordRunner(client, app, alert_channel=settings.discord_alert_channel)
    if connect:
        runner.task = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
        runner.task.add_done_callback(_gateway_ended)
    return runner


def _gateway_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("Discord gateway stopped: %s", task.exception())
