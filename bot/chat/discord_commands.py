"""The Discord slash commands: names (``settings.command_name``), options and descriptions,
each handing its arguments to ``DiscordApp.run`` as one command line for the dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

import discord
from discord import app_commands

from bot.settings import Settings


class DiscordApp(Protocol):
    """What the commands need of ``bot.chat.discord.DiscordApp`` (a port, so this module does
    not import the adapter that imports it)."""

    settings: Settings

    async def run(self, interaction: discord.Interaction, text: str, **kw: Any) -> None: ...

    async def app_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]: ...


def _args(*parts: str | None) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def build_commands(tree: app_commands.CommandTree[Any], chatops: DiscordApp) -> None:
    """Register the slash commands under their configured names (``settings.command_name``)."""
    name = chatops.settings.command_name

    @app_commands.describe(
        app="Argo CD application", prune="also delete what Git no longer has (asks first)"
    )
    async def sync(interaction: discord.Interaction, app: str, prune: bool = False) -> None:
        await chatops.run(interaction, _args("sync", app, "prune" if prune else None))

    @app_commands.describe(app="Argo CD application", commit="commit to revert (default: last)")
    async def rollback(
        interaction: discord.Interaction, app: str, commit: str | None = None
    ) -> None:
        await chatops.run(interaction, _args("rollback", app, commit))

    @app_commands.describe(
        mode="off or on", app="Argo CD application", duration="re-enable after, e.g. 30m"
    )
    async def selfheal(
        interaction: discord.Interaction,
        mode: Literal["off", "on"],
        app: str,
        duration: str | None = None,
    ) -> None:
        await chatops.run(interaction, _args("selfheal", mode, app, duration))

    @app_commands.describe(app="Argo CD application")
    async def verify_rootless(interaction: discord.Interaction, app: str) -> None:
        await chatops.run(interaction, _args("verify-rootless", app))

    @app_commands.describe(app="Argo CD application (none: the apps that need attention)")
    async def status(interaction: discord.Interaction, app: str | None = None) -> None:
        await chatops.run(interaction, _args("status", app))

    @app_commands.describe(
        action="off pauses, on resumes, status shows",
        app="Argo CD application (status: none for all)",
        duration="with off: resume after, e.g. 2h",
    )
    async def autorollback(
        interaction: discord.Interaction,
        action: Literal["off", "on", "status"],
        app: str | None = None,
        duration: str | None = None,
    ) -> None:
        await chatops.run(interaction, _args("autorollback", action, app, duration))

    async def help_(interaction: discord.Interaction) -> None:
        await chatops.run(interaction, "help")

    table: list[tuple[str, Callable[..., Coroutine[Any, Any, None]], str]] = [
        ("sync", sync, "Sync an application (refresh, hooks, sync, wait, verify)"),
        ("rollback", rollback, "Revert a commit in Git and sync"),
        ("selfheal", selfheal, "Turn Argo CD self-heal off or on"),
        ("verify-rootless", verify_rootless, "Check the StatefulSets run as non-root"),
        ("status", status, "Show an application's sync and health"),
        ("autorollback", autorollback, "Pause, resume or show the auto-rollback policy"),
        ("help", help_, "What this bot can do"),
    ]
    for key, callback, description in table:
        command: app_commands.Command[Any, ..., None] = app_commands.Command(
            name=name(key), description=description, callback=callback
        )
        command.guild_only = True  # roles, channel allow-lists and audit need a guild
        if any(p.name == "app" for p in command.parameters):
            command.autocomplete("app")(chatops.app_choices)
        tree.add_command(command)
