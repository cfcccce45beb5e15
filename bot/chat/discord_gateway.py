"""The Discord gateway side: the ``discord.Client`` that carries the ``DiscordApp``, logging in,
syncing the slash commands once, and running the gateway in a task (``start_discord``).

Slash commands are synced once at start (guild sync when ``discord_guild_id`` is set: instant;
global otherwise: slow to propagate), never on reconnects. Whether the gateway is up is kept from
discord.py's ready/resumed/disconnect events for /readyz; ``bot.chat.discord_supervisor``
retries a failed start. What an interaction does is ``bot.chat.discord``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

import discord
import yarl
from discord import app_commands

from bot.chat import discord_views as views
from bot.chat.discord import AppNames, DiscordApp
from bot.chat.discord_commands import build_commands
from bot.chat.dispatch import Dispatcher
from bot.settings import ConfigError, Settings
from bot.state.replay import ReplayGuard

log = logging.getLogger(__name__)


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
