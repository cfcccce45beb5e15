"""Where an incident's alerts go: one chat channel per platform, chosen once when it opens.

Routes come from the settings (``bot.settings.Route``: fnmatch patterns on project, app name,
destination namespace and Argo CD instance, a Slack and/or a Discord channel). For each platform the FIRST route that
matches and names a channel on that platform wins, so a specific route listed before a catch-all
takes precedence, as in Alertmanager; without a match the platform's default alert channel is
used; a platform with neither gets nothing. The result is stored with the incident, so a later
configuration change does not split a thread that already exists across two channels.

Only a Protocol of the route is used here: notifiers/ does not import bot/.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

PLATFORMS: tuple[str, ...] = ("slack", "discord")


class RouteLike(Protocol):
    slack_channel: str | None
    discord_channel: str | None

    def matches(self, app: str, project: str, namespace: str, instance: str = "") -> bool: ...


@dataclass(frozen=True, order=True)
class Target:
    platform: str  # "slack" | "discord"
    channel: str  # Slack channel ID or name, Discord channel snowflake


def _channel_of(route: RouteLike, platform: str) -> str | None:
    value = route.slack_channel if platform == "slack" else route.discord_channel
    return value or None


def targets_for(
    routes: Iterable[RouteLike],
    defaults: Mapping[str, str | None],
    *,
    app: str,
    project: str,
    namespace: str,
    platforms: Iterable[str] = PLATFORMS,
    instance: str = "",
) -> tuple[Target, ...]:
    """The channels an alert about ``app`` goes to, at most one per enabled platform.

    ``defaults`` maps a platform to its default channel (``CHATOPS_SLACK_ALERT_CHANNEL``...);
    ``platforms`` are those with a working sink (a route to Discord without a Discord token
    would only fill the outbox with messages that can never be delivered).
    """
    routes = list(routes)
    out: list[Target] = []

    def matches(r: RouteLike) -> bool:
        if instance:  # an alert of a known Argo CD instance (routes may match it)
            return r.matches(app, project, namespace, instance)
        return r.matches(app, project, namespace)

    for platform in platforms:
        channel = next(
            (ch for r in routes if (ch := _channel_of(r, platform)) and matches(r)),
            None,
        ) or (defaults.get(platform) or None)
        if channel:
            out.append(Target(platform, channel))
    return tuple(out)


class Router:
    """``targets_for`` with the configuration bound once (what the incident engine calls)."""

    def __init__(
        self,
        routes: Iterable[RouteLike],
        defaults: Mapping[str, str | None],
        platforms: Iterable[str] = PLATFORMS,
    ) -> None:
        self.routes = list(routes)
        self.defaults = dict(defaults)
        self.platforms = tuple(platforms)

    def __call__(
        self, app: str, project: str, namespace: str, instance: str = ""
    ) -> tuple[Target, ...]:
        return targets_for(
            self.routes,
            self.defaults,
            app=app,
            project=project,
            namespace=namespace,
            platforms=self.platforms,
            instance=instance,
        )
