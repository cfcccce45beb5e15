"""Authorization: roles from grants (Slack users and groups, Discord users and roles), scopes by
app pattern and Argo CD project, channel allow-lists, the Slack Connect check, group caching."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.chat.authz import Authorizer, GroupCache, MembershipUnknown
from bot.chat.invocation import Invocation
from bot.chat.slack_web import group_resolver
from bot.config.models import Authorization, Grant
from commands import errors
from tests.fakes.slack_api import FakeSlack

TEAM = "T0HOME"


def slack(user: str, *, team: str | None = TEAM, channel: str = "C1") -> Invocation:
    return Invocation("slack", user, user.lower(), channel, "status payments", team_id=team)


def discord(user: str, *roles: str, guild: str = "G1", channel: str = "D1") -> Invocation:
    return Invocation(
        "discord", user, user.lower(), channel, "status payments", guild_id=guild, roles=roles
    )


def authorizer(*grants: Grant, **auth: Any) -> Authorizer:
    a = Authorizer(Authorization(grants=list(grants), **auth), slack_groups=_groups)
    a.slack_home_team = TEAM
    return a


async def _groups(group_id: str) -> set[str]:
    return {"S_ONCALL": {"U_GINA"}}.get(group_id, set())


async def test_roles_come_from_slack_users_groups_and_discord_users_roles() -> None:
    a = authorizer(
        Grant(role="operator", slack_users=["U_OLI"], discord_users=["111"]),
        Grant(role="admin", slack_groups=["S_ONCALL"], discord_roles=["R_SRE"]),
    )
    assert await a.role(slack("U_OLI")) == "operator"
    assert await a.role(slack("U_GINA")) == "admin"
    assert await a.role(slack("U_NOBODY")) == "viewer"  # the default role
    assert await a.role(discord("111")) == "operator"
    assert await a.role(discord("222", "R_OTHER", "R_SRE")) == "admin"
    assert await a.role(discord("222", "R_OTHER")) == "viewer"
    # a Discord role ID never matches a Slack user and vice versa
    assert await a.role(slack("111")) == "viewer"


async def test_mutating_needs_operator_and_the_denial_names_the_role() -> None:
    a = authorizer(Grant(role="operator", slack_users=["U_OLI"]))
    assert await a.check(slack("U_OLI"), command="sync", mutating=True, app="payments")
    assert await a.check(slack("U_VIC"), command="status", mutating=False, app="payments")
    with pytest.raises(errors.Denied) as e:
        await a.check(slack("U_VIC"), command="sync", mutating=True, app="payments")
    assert e.value.user_message == (
        "You need the operator role to run sync payments; you have the viewer role."
    )
    assert e.value.hint is not None and "grant you operator" in e.value.hint


async def test_default_role_none_closes_even_read_only_commands() -> None:
    a = authorizer(default_role="none")
    with pytest.raises(errors.Denied, match="You need the viewer role to run status payments; "):
        await a.check(slack("U_VIC"), command="status", mutating=False, app="payments")
    with pytest.raises(errors.Denied, match="you have no role"):
        await a.check(slack("U_VIC"), command="help", mutating=False)


async def test_grants_scoped_to_app_patterns() -> None:
    a = authorizer(Grant(role="operator", slack_users=["U_OLI"], apps=["pay*", "billing"]))
    assert await a.role(slack("U_OLI"), app="payments") == "operator"
    assert await a.role(slack("U_OLI"), app="billing") == "operator"
    assert await a.role(slack("U_OLI"), app="orders") == "viewer"
    assert await a.role(slack("U_OLI")) == "viewer"  # no app: a scoped grant does not apply


async def test_grants_scoped_to_projects_look_the_project_up_only_when_needed() -> None:
    lookups: list[str] = []

    def project_of(app: str, project: str) -> Any:
        async def lookup() -> str | None:
            lookups.append(app)
            return project

        return lookup

    a = authorizer(
        Grant(role="operator", slack_users=["U_OLI"], projects=["team-a"]),
        Grant(role="viewer", slack_users=["U_OLI"]),
    )
    assert await a.role(slack("U_OLI"), app="payments", project=project_of("payments", "team-a"))
    assert (
        await a.role(slack("U_OLI"), app="orders", project=project_of("orders", "team-b"))
        == "viewer"
    )
    assert lookups == ["payments", "orders"]
    assert await a.role(slack("U_VIC"), app="x", project=project_of("x", "team-a")) == "viewer"
    assert lookups == ["payments", "orders"]  # no grant of U_VIC needs the project


async def test_slack_connect_users_from_other_teams_are_denied() -> None:
    a = authorizer(Grant(role="admin", slack_users=["U_EXT"]))
    with pytest.raises(errors.Denied, match="Slack Connect"):
        await a.check(slack("U_EXT", team="T0ELSEWHERE"), command="help", mutating=False)
    with pytest.raises(errors.Denied):
        await a.check(slack("U_EXT", team=None), command="help", mutating=False)
    # explicitly allowed partner workspaces (or an Enterprise Grid org) are accepted
    b = authorizer(slack_team_ids=["T0ELSEWHERE", "E0GRID"])
    assert await b.check(slack("U_EXT", team="E0GRID"), command="help", mutating=False)
    with pytest.raises(errors.Denied):  # the list replaces the home team
        await b.check(slack("U_IN"), command="help", mutating=False)


async def test_home_team_unknown_fails_closed() -> None:
    a = Authorizer(Authorization())
    with pytest.raises(errors.Denied):
        await a.check(slack("U_IN"), command="status", mutating=False, app="payments")


async def test_channel_allow_lists_name_the_allowed_channels_but_spare_help() -> None:
    a = authorizer(slack_channels=["C_OPS"], discord_channels=["D_OPS"], discord_guilds=["G1"])
    assert await a.check(slack("U_X", channel="C_OPS"), command="status", mutating=False)
    with pytest.raises(errors.Denied) as e:
        await a.check(slack("U_X", channel="C_RANDOM"), command="status", mutating=False)
    assert e.value.user_message == "Commands are not enabled in this channel."
    assert e.value.hint == "Use <#C_OPS>."
    assert await a.check(slack("U_X", channel="C_RANDOM"), command="help", mutating=False)
    with pytest.raises(errors.Denied):
        await a.check(discord("1", channel="D_RANDOM"), command="status", mutating=False)
    with pytest.raises(errors.Denied, match="this server"):
        await a.check(
            discord("1", guild="G_OTHER", channel="D_OPS"), command="help", mutating=False
        )


async def test_cli_is_the_local_operator() -> None:
    a = Authorizer(Authorization(default_role="none"))
    inv = Invocation("cli", "root", "root", "", "sync payments")
    assert await a.check(inv, command="sync", mutating=True, app="payments") == "admin"


async def test_group_members_are_cached_and_concurrent_lookups_share_one_call() -> None:
    calls: list[str] = []
    release = asyncio.Event()
    now = [0.0]

    async def resolve(group: str) -> set[str]:
        calls.append(group)
        await release.wait()
        return {"U1"}

    cache = GroupCache(resolve, fresh=60, clock=lambda: now[0])
    waiting = [asyncio.create_task(cache.members("S1")) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert [await w for w in waiting] == [{"U1"}] * 5
    assert calls == ["S1"]
    assert await cache.members("S1") == {"U1"} and calls == ["S1"]
    now[0] = 61.0  # expired: asked again
    assert await cache.members("S1") == {"U1"} and calls == ["S1", "S1"]


async def test_stale_members_serve_while_slack_errors_but_never_past_the_max_age() -> None:
    fail = [False]
    now = [0.0]

    async def resolve(group: str) -> set[str]:
        if fail[0]:
            raise RuntimeError("slack down")
        return {"U1"}

    cache = GroupCache(resolve, fresh=300, max_age=3600, clock=lambda: now[0])
    fail[0] = True
    with pytest.raises(MembershipUnknown):  # never known: nothing to fall back on
        await cache.members("S1")
    fail[0] = False
    assert await cache.members("S1") == {"U1"}
    fail[0], now[0] = True, 1800.0
    assert await cache.members("S1") == {"U1"}  # stale within the max age beats nothing
    now[0] = 3600.0  # an hour after the last answer: never reused again
    with pytest.raises(MembershipUnknown):
        await cache.members("S1")
    fail[0] = False  # Slack answers again: fresh members, the clock restarts
    assert await cache.members("S1") == {"U1"}


async def test_a_removed_member_loses_the_role_within_the_max_age_of_an_outage() -> None:
    members = {"S_ONCALL": {"U_GINA"}}
    fail = [False]
    now = [0.0]

    async def resolve(group: str) -> set[str]:
        if fail[0]:
            raise RuntimeError("slack down")
        return members[group]

    a = Authorizer(
        Authorization(
            grants=[Grant(role="operator", slack_groups=["S_ONCALL"])],
            group_cache_fresh=300,
            group_cache_max_age=3600,
        ),
        slack_groups=resolve,
        clock=lambda: now[0],
    )
    a.slack_home_team = TEAM
    gina = slack("U_GINA")
    assert await a.check(gina, command="sync", mutating=True, app="payments") == "operator"
    members["S_ONCALL"] = set()  # removed from the group, then Slack goes down
    fail[0], now[0] = True, 600.0
    assert await a.check(gina, command="sync", mutating=True, app="payments") == "operator"
    now[0] = 3601.0  # before: the stale members were reused for ever
    with pytest.raises(errors.Denied) as e:
        await a.check(gina, command="sync", mutating=True, app="payments")
    assert e.value.user_message == (
        "Could not confirm your group membership, so sync payments is denied for now; "
        "try again in a minute."
    )
    # read-only commands fall back to the viewer default
    assert await a.check(gina, command="status", mutating=False, app="payments") == "viewer"
    fail[0] = False  # Slack answers: the removal counts
    with pytest.raises(errors.Denied, match="You need the operator role"):
        await a.check(gina, command="sync", mutating=True, app="payments")


async def test_unconfirmed_groups_only_matter_when_they_could_grant_what_is_needed() -> None:
    async def down(group: str) -> set[str]:
        raise RuntimeError("slack down")

    a = Authorizer(
        Authorization(
            grants=[
                Grant(role="operator", slack_users=["U_OLI"]),
                Grant(role="admin", slack_groups=["S_ADMINS"], apps=["billing"]),
                Grant(role="operator", slack_groups=["S_ONCALL"], apps=["pay*"]),
            ],
            default_role="none",
        ),
        slack_groups=down,
    )
    a.slack_home_team = TEAM
    # a direct grant needs no group lookup to succeed
    assert await a.check(slack("U_OLI"), command="sync", mutating=True, app="payments")
    # a group scoped to other apps could not have helped: the plain role denial
    with pytest.raises(errors.Denied, match="You need the operator role to run sync orders"):
        await a.check(slack("U_X"), command="sync", mutating=True, app="orders")
    # with default_role none even a read-only command fails closed on an unknown group
    with pytest.raises(errors.Denied, match="Could not confirm your group membership"):
        await a.check(slack("U_X"), command="status", mutating=False, app="payments")


async def test_ack_role_is_configurable_and_names_the_role() -> None:
    a = authorizer(Grant(role="operator", slack_users=["U_OLI"], apps=["pay*"]))
    with pytest.raises(errors.Denied) as e:
        await a.check(
            slack("U_VIC"), command="ack", mutating=False, app="payments", need="operator"
        )
    assert e.value.user_message == (
        "You need the operator role to run ack payments; you have the viewer role."
    )
    assert await a.check(
        slack("U_OLI"), command="ack", mutating=False, app="payments", need="operator"
    )
    with pytest.raises(errors.Denied):  # scoped to pay*: not another app's incident
        await a.check(slack("U_OLI"), command="ack", mutating=False, app="orders", need="operator")
    assert Authorization().ack_role == "operator"
    assert Authorization(ack_role="viewer").ack_role == "viewer"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    fake.set_usergroup("S_ONCALL", ["U_GINA", "U_HAL"])
    yield fake
    fake.stop()


async def test_groups_resolve_through_usergroups_users_list(fake_slack: FakeSlack) -> None:
    client = AsyncWebClient(token=fake_slack.token, base_url=fake_slack.api_url)
    a = Authorizer(
        Authorization(grants=[Grant(role="operator", slack_groups=["S_ONCALL", "S_GONE"])]),
        slack_groups=group_resolver(client),
    )
    a.slack_home_team = TEAM
    assert await a.role(slack("U_HAL")) == "operator"
    assert await a.role(slack("U_GINA")) == "operator"
    assert await a.role(slack("U_NOPE")) == "viewer"  # S_GONE answers no_such_subteam
    calls = [c.params["usergroup"] for c in fake_slack.calls_to("usergroups.users.list")]
    assert calls == ["S_ONCALL", "S_GONE"]  # members cached; the failed group is not


async def test_mutating_fails_closed_when_slack_cannot_list_the_group(
    fake_slack: FakeSlack,
) -> None:
    client = AsyncWebClient(token=fake_slack.token, base_url=fake_slack.api_url)
    a = Authorizer(
        Authorization(grants=[Grant(role="operator", slack_groups=["S_ONCALL"])]),
        slack_groups=group_resolver(client),
    )
    a.slack_home_team = TEAM
    fake_slack.fail_next(1, status=503, only="usergroups.users.list")
    with pytest.raises(errors.Denied, match="Could not confirm your group membership"):
        await a.check(slack("U_HAL"), command="sync", mutating=True, app="payments")
    assert await a.check(slack("U_HAL"), command="sync", mutating=True, app="payments")
    statuses = [c.status for c in fake_slack.calls_to("usergroups.users.list")]
    assert statuses == [503, 200]
