"""Who may run which command, where: roles from the configured grants, channel allow-lists, and
the Slack Connect check.

Identity comes only from the signed request (Slack ``user_id``/``team_id``, Discord user and
member role IDs), never from display names. Slack user groups are resolved through
``usergroups.users.list`` (a Tier 2 method, ~20 calls a minute), so members are cached per group
and concurrent lookups of one group share a single call. Failures fail closed: a group that cannot
be resolved grants nothing, an unknown home workspace admits no Slack user.

Denials are ``errors.Denied`` and always name what is missing: the role, the channel, the
workspace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.chat.invocation import Invocation
from bot.settings import ROLE_ORDER, Authorization, Grant
from commands import errors

log = logging.getLogger(__name__)

GroupResolver = Callable[[str], Awaitable[set[str]]]
ProjectLookup = Callable[[], Awaitable[str | None]]

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
GROUP_TTL = 300.0


def required_role(mutating: bool) -> str:
    return OPERATOR if mutating else VIEWER


def at_least(have: str, need: str) -> bool:
    return ROLE_ORDER.get(have, 0) >= ROLE_ORDER[need]


@dataclass
class _Cached:
    members: set[str]
    fetched_at: float


class GroupCache:
    """Members of Slack user groups, cached for ``ttl`` seconds; one lookup per group at a time."""

    def __init__(
        self,
        resolve: GroupResolver,
        *,
        ttl: float = GROUP_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._pending: dict[str, asyncio.Future[set[str]]] = {}

    async def members(self, group_id: str) -> set[str]:
        cached = self._cache.get(group_id)
        if cached is not None and self._clock() - cached.fetched_at < self._ttl:
            return cached.members
        pending = self._pending.get(group_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(group_id))
            self._pending[group_id] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(group_id, None))
        return await asyncio.shield(pending)

    async def _fetch(self, group_id: str) -> set[str]:
        try:
            members = set(await self._resolve(group_id))
        except Exception as e:
            stale = self._cache.get(group_id)
            log.warning(
                "cannot resolve Slack user group %s (%s); %s",
                group_id,
                type(e).__name__,
                "using the last known members" if stale else "it grants nothing for now",
            )
            return stale.members if stale else set()
        self._cache[group_id] = _Cached(members, self._clock())
        return members


class Authorizer:
    def __init__(
        self,
        auth: Authorization,
        *,
        slack_groups: GroupResolver | None = None,
        group_ttl: float = GROUP_TTL,
    ) -> None:
        self.auth = auth
        self.groups = GroupCache(slack_groups, ttl=group_ttl) if slack_groups else None
        # the workspace of the bot token (auth.test); Slack users from elsewhere are denied
        # unless authorization.slack_team_ids lists their workspace
        self.slack_home_team: str | None = None

    # -- the checks, in the order they are made ----------------------------------------------
    async def check(
        self,
        inv: Invocation,
        *,
        command: str,
        mutating: bool,
        app: str | None = None,
        project: ProjectLookup | None = None,
    ) -> str:
        """The caller's role for this command, or ``errors.Denied`` saying what is missing."""
        self.check_origin(inv)
        if command != "help":
            self.check_channel(inv)
        need = required_role(mutating)
        have = await self.role(inv, app=app, project=project)
        if not at_least(have, need):
            target = f"{command} {app}" if app else command
            having = "no role" if have == "none" else f"the {have} role"
            raise errors.Denied(
                f"You need the {need} role to run {target}; you have {having}.",
                hint=f"Ask an admin to grant you {need} in the bot's authorization settings.",
            )
        return have

    def check_origin(self, inv: Invocation) -> None:
        if inv.platform == "slack":
            allowed = set(self.auth.slack_team_ids)
            if not allowed and self.slack_home_team:
                allowed = {self.slack_home_team}
            if not inv.team_id or inv.team_id not in allowed:
                raise errors.Denied(
                    "Commands are only accepted from members of this Slack workspace "
                    "(users from other organisations in Slack Connect channels are denied).",
                    hint="Ask someone in the workspace that runs the bot.",
                )
        elif inv.platform == "discord" and self.auth.discord_guilds:
            if inv.guild_id not in self.auth.discord_guilds:
                raise errors.Denied("The bot does not take commands from this server.")

    def check_channel(self, inv: Invocation) -> None:
        if inv.platform == "slack":
            channels = self.auth.slack_channels
        elif inv.platform == "discord":
            channels = self.auth.discord_channels
        else:
            return
        if channels and inv.channel_id not in channels:
            shown = ", ".join(f"<#{c}>" for c in channels[:5])
            raise errors.Denied(
                "Commands are not enabled in this channel.",
                hint=f"Use {shown}.",
            )

    # -- roles ---------------------------------------------------------------------------------
    async def role(
        self,
        inv: Invocation,
        *,
        app: str | None = None,
        project: ProjectLookup | None = None,
    ) -> str:
        """The highest role any grant gives this caller for ``app``; else the default role."""
        if inv.platform == "cli":
            return ADMIN
        best: str = self.auth.default_role
        project_name: str | None = None
        project_known = False
        for grant in self.auth.grants:
            if ROLE_ORDER[grant.role] <= ROLE_ORDER.get(best, 0):
                continue
            if not await self._holds(inv, grant):
                continue
            if grant.projects and not project_known:
                project_name = await project() if project is not None and app else None
                project_known = True
            if grant.covers(app, project_name):
                best = grant.role
        return best

    async def _holds(self, inv: Invocation, grant: Grant) -> bool:
        if inv.platform == "slack":
            if inv.user_id in grant.slack_users:
                return True
            if grant.slack_groups and self.groups is not None:
                for group in grant.slack_groups:
                    if inv.user_id in await self.groups.members(group):
                        return True
            return False
        if inv.platform == "discord":
            if inv.user_id in grant.discord_users:
                return True
            return any(r in grant.discord_roles for r in inv.roles)
        return False
