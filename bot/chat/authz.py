"""Who may run which command, where: roles from the configured grants, channel allow-lists, and
the Slack Connect check.

Identity comes only from the signed request (Slack ``user_id``/``team_id``, Discord user and
member role IDs), never from display names. Slack user groups are resolved through
``usergroups.users.list`` (a Tier 2 method, ~20 calls a minute), so members are cached per group
and concurrent lookups of one group share a single call. A cached answer is fresh for
``group_cache_fresh`` seconds (5 min); while Slack errors the last answer is reused up to
``group_cache_max_age`` (1 h) and never longer, so a user removed from a group loses its role
within that bound even during an outage. Failures fail closed: a group whose members cannot be
confirmed grants nothing; when such a group is what the command needs, the denial says the
membership could not be confirmed (try again) rather than naming a role the user may well hold.
An unknown home workspace admits no Slack user.

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
from bot.config.models import ROLE_ORDER, Authorization, Grant
from commands import errors

log = logging.getLogger(__name__)

GroupResolver = Callable[[str], Awaitable[set[str]]]
ProjectLookup = Callable[[], Awaitable[str | None]]

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
GROUP_FRESH = 300.0
GROUP_MAX_AGE = 3600.0


class MembershipUnknown(Exception):
    """A user group's members could not be fetched and no recent enough answer is cached."""


def required_role(mutating: bool) -> str:
    return OPERATOR if mutating else VIEWER


def at_least(have: str, need: str) -> bool:
    return ROLE_ORDER.get(have, 0) >= ROLE_ORDER[need]


@dataclass
class _Cached:
    members: set[str]
    fetched_at: float


class GroupCache:
    """Members of Slack user groups: fresh for ``fresh`` seconds, then asked again; when asking
    fails, the last answer serves until it is ``max_age`` old, then ``MembershipUnknown``.
    One lookup per group at a time."""

    def __init__(
        self,
        resolve: GroupResolver,
        *,
        fresh: float = GROUP_FRESH,
        max_age: float = GROUP_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._fresh = fresh
        self._max_age = max(max_age, fresh)
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._pending: dict[str, asyncio.Future[set[str]]] = {}

    async def members(self, group_id: str) -> set[str]:
        """The group's members, or ``MembershipUnknown``."""
        cached = self._cache.get(group_id)
        if cached is not None and self._clock() - cached.fetched_at < self._fresh:
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
            age = None if stale is None else self._clock() - stale.fetched_at
            if stale is not None and age is not None and age < self._max_age:
                log.warning(
                    "cannot resolve Slack user group %s (%s); using its members of %.0fs ago",
                    group_id,
                    type(e).__name__,
                    age,
                )
                return stale.members
            log.warning(
                "cannot resolve Slack user group %s (%s); it grants nothing until Slack answers",
                group_id,
                type(e).__name__,
            )
            self._cache.pop(group_id, None)
            raise MembershipUnknown(group_id) from None
        self._cache[group_id] = _Cached(members, self._clock())
        return members


@dataclass(frozen=True)
class Standing:
    """The caller's role and, when a user group could not be confirmed, the best role such a
    group would have given (``unconfirmed``); "none" when nothing was left unconfirmed."""

    role: str
    unconfirmed: str = "none"


class Authorizer:
    def __init__(
        self,
        auth: Authorization,
        *,
        slack_groups: GroupResolver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.auth = auth
        self.groups = (
            GroupCache(
                slack_groups,
                fresh=auth.group_cache_fresh,
                max_age=auth.group_cache_max_age,
                clock=clock,
            )
            if slack_groups
            else None
        )
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
        need: str | None = None,
    ) -> str:
        """The caller's role for this command, or ``errors.Denied`` saying what is missing.

        ``need`` is the role the command requires when it is not the default for ``mutating``
        (operator for commands that change something, viewer for the rest)."""
        self.check_origin(inv)
        if command != "help":
            self.check_channel(inv)
        need = need or required_role(mutating)
        standing = await self.standing(inv, app=app, project=project)
        have = standing.role
        target = f"{command} {app}" if app else command
        if at_least(have, need):
            return have
        if at_least(standing.unconfirmed, need):
            raise errors.Denied(
                f"Could not confirm your group membership, so {target} is denied for now; "
                "try again in a minute.",
                hint="Your role comes from a Slack user group and Slack did not answer the "
                "bot's membership lookup.",
            )
        having = "no role" if have == "none" else f"the {have} role"
        raise errors.Denied(
            f"You need the {need} role to run {target}; you have {having}.",
            hint=f"Ask an admin to grant you {need} in the bot's authorization settings.",
        )

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
        """The highest role any grant gives this caller for ``app``; else the default role.
        A grant through a group whose members cannot be confirmed gives nothing."""
        return (await self.standing(inv, app=app, project=project)).role

    async def standing(
        self,
        inv: Invocation,
        *,
        app: str | None = None,
        project: ProjectLookup | None = None,
    ) -> Standing:
        """The role this caller holds for ``app``, and what unconfirmed groups might add."""
        if inv.platform == "cli":
            return Standing(ADMIN)
        best: str = self.auth.default_role
        unconfirmed = "none"
        project_name: str | None = None
        project_known = False
        for grant in self.auth.grants:
            if _rank(grant.role) <= _rank(best):
                continue
            try:
                holds = await self._holds(inv, grant)
            except MembershipUnknown:
                holds = None
            if holds is False or (holds is None and _rank(grant.role) <= _rank(unconfirmed)):
                continue
            if grant.projects and not project_known:
                project_name = await project() if project is not None and app else None
                project_known = True
            if not grant.covers(app, project_name):
                continue
            if holds:
                best = grant.role
            else:
                unconfirmed = grant.role
        if not _rank(unconfirmed) > _rank(best):
            unconfirmed = "none"
        return Standing(best, unconfirmed)

    async def _holds(self, inv: Invocation, grant: Grant) -> bool:
        """Whether the caller holds ``grant``; ``MembershipUnknown`` when only a group whose
        members cannot be confirmed could say."""
        if inv.platform == "slack":
            if inv.user_id in grant.slack_users:
                return True
            unknown = False
            if grant.slack_groups and self.groups is not None:
                for group in grant.slack_groups:
                    try:
                        if inv.user_id in await self.groups.members(group):
                            return True
                    except MembershipUnknown:
                        unknown = True
            if unknown:
                raise MembershipUnknown(inv.user_id)
            return False
        if inv.platform == "discord":
            if inv.user_id in grant.discord_users:
                return True
            return any(r in grant.discord_roles for r in inv.roles)
        return False


def _rank(role: str) -> int:
    return ROLE_ORDER.get(role, 0)
