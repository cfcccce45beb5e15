"""The Slack and Discord fakes work with the REAL SDKs (slack-sdk, slack-bolt, discord.py).

Adapter tests written later rely on these fakes, so this file pins what they must do: answer
the calls the SDKs make, keep messages so edits can be read back, enforce the limits and
one-shot rules of the real services, and inject 429s/5xx the SDKs know how to handle.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import discord
import httpx
import pytest
from discord import app_commands
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from commands.results import Action, Fact, Link, Result, Status, Step, StepState
from notifiers.render import discord as render_discord
from notifiers.render import slack as render_slack
from tests.fakes import discord_payloads as dp
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.recording import until_async
from tests.fakes.slack_api import RESPONSE_URL_USES, FakeSlack

RESULT = Result(
    command="sync",
    target="payments",
    status=Status.FAILED,
    summary="post-sync check failed",
    facts=(Fact("revision", "a1b2c3d"),),
    links=(Link("Open in Argo CD", "https://argocd.example.com/applications/argocd/payments"),),
    actions=(
        Action("Retry", "sync payments", style="primary"),
        Action("Rollback", "rollback payments", style="danger", confirm="Revert a1b2c3d?"),
    ),
)
STEPS = (Step("refresh", StepState.DONE), Step("sync", StepState.RUNNING, "3 resources"))


# --- Slack ------------------------------------------------------------------------------------


@pytest.fixture
async def web(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
    yield client
    if client.session is not None:
        await client.session.close()


async def test_slack_post_then_update_keeps_the_final_message(
    slack: FakeSlack, web: AsyncWebClient
) -> None:
    progress = render_slack.progress_blocks("sync", "payments", STEPS)
    posted = await web.chat_postMessage(channel="#ops", **progress)
    assert posted["channel"] == "C0OPS" and posted["message"]["text"] == progress["text"]
    ts = posted["ts"]

    final = render_slack.result_blocks(RESULT)
    updated = await web.chat_update(channel="C0OPS", ts=ts, **final)
    assert updated["ts"] == ts

    message = slack.message("C0OPS", ts)
    assert message["text"] == "❌ sync payments: post-sync check failed"
    assert message["blocks"] == final["blocks"]
    assert [h["text"] for h in message["history"]] == [progress["text"]]
    assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.update"]
    assert slack.calls[1].params["blocks"] == final["blocks"]  # what Slack saw, as JSON


async def test_slack_threads_and_errors_like_slack(slack: FakeSlack, web: AsyncWebClient) -> None:
    parent = await web.chat_postMessage(channel="C0ALERTS", text="🔴 payments: Degraded")
    await web.chat_postMessage(channel="C0ALERTS", text="still failing", thread_ts=parent["ts"])
    assert [m["text"] for m in slack.thread("C0ALERTS", parent["ts"])] == ["still failing"]
    assert slack.message("C0ALERTS", parent["ts"])["reply_count"] == 1
    assert len(slack.messages_in("C0ALERTS")) == 1

    for call, error in [
        (web.chat_postMessage(channel="C0NOPE", text="x"), "channel_not_found"),
        (web.chat_postMessage(channel="C0OPS", text="x", thread_ts="1.2"), "thread_not_found"),
        (web.chat_update(channel="C0OPS", ts="1.2", text="x"), "message_not_found"),
        (
            web.chat_postMessage(channel="C0OPS", blocks=[{"type": "divider"}] * 51, text="x"),
            "invalid_blocks",
        ),
    ]:
        with pytest.raises(SlackApiError) as info:
            await call
        assert info.value.response["error"] == error

    bad = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
    with pytest.raises(SlackApiError) as info:
        await bad.auth_test()
    assert info.value.response["error"] == "invalid_auth"
    if bad.session is not None:
        await bad.session.close()


async def test_slack_429_fails_without_and_is_retried_with_the_retry_handler(
    slack: FakeSlack, web: AsyncWebClient
) -> None:
    slack.rate_limit_next(1, retry_after=0)
    with pytest.raises(SlackApiError) as info:
        await web.chat_postMessage(channel="C0OPS", text="first")
    assert info.value.response.status_code == 429
    assert info.value.response["error"] == "ratelimited"
    assert info.value.response.headers["Retry-After"] == "0"

    web.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    slack.rate_limit_next(1, retry_after=0)
    ok = await web.chat_postMessage(channel="C0OPS", text="second")
    assert ok["ok"]
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses == [429, 429, 200]
    assert [m["text"] for m in slack.messages_in("C0OPS")] == ["second"]


async def test_slack_server_errors_are_injected(slack: FakeSlack, web: AsyncWebClient) -> None:
    slack.fail_next(1, status=503, only="chat.update")
    posted = await web.chat_postMessage(channel="C0OPS", text="a")  # not affected
    with pytest.raises(SlackApiError) as info:
        await web.chat_update(channel="C0OPS", ts=posted["ts"], text="b")
    assert info.value.response.status_code == 503
    web.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=1))
    slack.fail_next(1, status=500)
    await web.chat_update(channel="C0OPS", ts=posted["ts"], text="c")
    assert slack.message("C0OPS", posted["ts"])["text"] == "c"


async def test_slack_directory_and_interaction_methods(
    slack: FakeSlack, web: AsyncWebClient
) -> None:
    slack.add_user("U1", "alice")
    slack.add_user("U2", "mallory", team_id="T0OTHER", enterprise_id="E9")
    slack.set_usergroup("S0DEPLOY", ["U1"])
    slack.add_channel("C0SHARED", "partners", is_ext_shared=True)

    assert (await web.usergroups_users_list(usergroup="S0DEPLOY"))["users"] == ["U1"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        await web.usergroups_users_list(usergroup="S0NOPE")
    mallory = (await web.users_info(user="U2"))["user"]
    assert (mallory["team_id"], mallory["enterprise_user"]["enterprise_id"]) == ("T0OTHER", "E9")
    shared = (await web.conversations_info(channel="C0SHARED"))["channel"]
    assert shared["is_ext_shared"] is True

    await web.chat_postEphemeral(channel="C0OPS", user="U1", text="only you")
    assert slack.ephemeral[0]["user"] == "U1" and slack.messages_in("C0OPS") == []
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Confirm"}, "blocks": []}
    trigger = slack.new_trigger_id()
    opened = await web.views_open(trigger_id=trigger, view=view)
    assert opened["view"]["id"].startswith("V") and slack.views[0]["trigger_id"] == trigger
    with pytest.raises(SlackApiError) as never_issued:
        await web.views_open(trigger_id="123.456", view=view)
    assert never_issued.value.response["error"] == "invalid_trigger_id"
    calls = [c.method for c in slack.calls]
    assert "usergroups.users.list" in calls and "views.open" in calls


async def test_slack_refuses_by_channel_state_expired_triggers_and_past_tier_limits(
    slack: FakeSlack, web: AsyncWebClient
) -> None:
    await web.chat_postMessage(channel="C0OPS", text="in")
    slack.leave_channel("C0OPS")
    slack.archive_channel("C0ALERTS")
    for channel, error in (("C0OPS", "not_in_channel"), ("C0ALERTS", "is_archived")):
        with pytest.raises(SlackApiError) as refused:
            await web.chat_postMessage(channel=channel, text="x")
        assert refused.value.response["error"] == error

    slack.trigger_ttl = 0.1
    trigger = slack.new_trigger_id()
    issued = time.monotonic()  # the fake stamped it before this
    await until_async(lambda: time.monotonic() - issued > 0.1)  # the 3 s (here 0.1 s) pass
    view = {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []}
    with pytest.raises(SlackApiError) as late:
        await web.views_open(trigger_id=trigger, view=view)
    assert late.value.response["error"] == "expired_trigger_id"

    # Tier 2 (usergroups.users.list): 20 a minute, then 429 with Retry-After
    slack.set_usergroup("S0OPS", ["U1"])
    for _ in range(20):
        await web.usergroups_users_list(usergroup="S0OPS")
    with pytest.raises(SlackApiError) as limited:
        await web.usergroups_users_list(usergroup="S0OPS")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert int(limited.value.response.headers["retry-after"]) >= 1


async def test_slack_response_url_replaces_the_message_and_allows_five_uses(
    slack: FakeSlack, web: AsyncWebClient
) -> None:
    posted = await web.chat_postMessage(channel="C0OPS", text="⏳ sync payments")
    url = slack.new_response_url("C0OPS", posted["ts"])
    hook = AsyncWebhookClient(url)
    for i in range(RESPONSE_URL_USES):
        response = await hook.send(text=f"step {i}", replace_original=True)
        assert response.status_code == 200
    assert slack.message("C0OPS", posted["ts"])["text"] == f"step {RESPONSE_URL_USES - 1}"
    sixth = await hook.send(text="too many", replace_original=True)
    assert sixth.status_code == 404 and "used_url" in sixth.body
    assert len(slack.response_posts(url)) == RESPONSE_URL_USES

    other = slack.new_response_url()
    slack.expire_response_url(other)
    expired = await AsyncWebhookClient(other).send(text="late")
    assert expired.status_code == 404 and "expired_url" in expired.body


def test_slack_bolt_app_calls_auth_test_at_construction(slack: FakeSlack) -> None:
    client = WebClient(token=slack.token, base_url=slack.api_url)
    App(client=client, signing_secret="not-a-real-secret")
    assert [c.method for c in slack.calls] == ["auth.test"]


# --- Discord ----------------------------------------------------------------------------------


@pytest.fixture
def discord_fake() -> Iterator[FakeDiscord]:
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


@pytest.fixture
def route_base(discord_fake: FakeDiscord) -> Iterator[str]:
    saved = discord.http.Route.BASE
    discord.http.Route.BASE = discord_fake.api_url
    yield discord_fake.api_url
    discord.http.Route.BASE = saved


@pytest.fixture
async def client(discord_fake: FakeDiscord, route_base: str) -> AsyncIterator[discord.Client]:
    bot = discord.Client(intents=discord.Intents.default())
    await bot.login(discord_fake.token)
    bot._connection.parse_guild_create(dp.guild_create(roles={"1100000000000000500": "deployers"}))
    yield bot
    await bot.close()


def view_from(components: list[dict[str, Any]]) -> discord.ui.View:
    """What an adapter does with rendered components: one discord.py button per dict."""
    view = discord.ui.View(timeout=None)
    for r, row in enumerate(components):
        for b in row["components"]:
            view.add_item(
                discord.ui.Button(
                    style=discord.ButtonStyle(b["style"]),
                    label=b["label"],
                    custom_id=b.get("custom_id"),
                    url=b.get("url"),
                    row=r,
                )
            )
    return view


async def test_discord_login_makes_the_two_rest_calls(
    discord_fake: FakeDiscord, client: discord.Client
) -> None:
    assert client.user is not None and str(client.user.id) == dp.BOT_USER_ID
    assert str(client.application_id) == dp.APPLICATION_ID
    assert [c.method for c in discord_fake.calls] == [
        "GET /users/@me",
        "GET /oauth2/applications/@me",
    ]
    assert discord_fake.calls[0].headers["User-Agent"].startswith("DiscordBot")
    guild = client.get_guild(int(dp.GUILD_ID))
    assert guild is not None and guild.get_channel(int(dp.CHANNEL_ID)) is not None


async def test_discord_bad_token_is_a_login_failure(
    discord_fake: FakeDiscord, route_base: str
) -> None:
    bot = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await bot.login("wrong-token")
    await bot.close()


async def test_discord_slash_command_defers_then_edits_the_original(
    discord_fake: FakeDiscord, client: discord.Client
) -> None:
    tree = app_commands.CommandTree(client)
    done = asyncio.Event()
    seen: dict[str, Any] = {}

    @tree.command(name="sync", description="Sync an app", guild=discord.Object(int(dp.GUILD_ID)))
    async def sync(interaction: discord.Interaction, app: str) -> None:
        seen["roles"] = [r.id for r in getattr(interaction.user, "roles", [])]
        await interaction.response.defer(thinking=True)
        progress = render_discord.progress_message("sync", app, STEPS)
        await interaction.edit_original_response(
            content=progress["content"],
            embeds=[discord.Embed.from_dict(e) for e in progress["embeds"]],
        )
        final = render_discord.result_message(RESULT)
        await interaction.edit_original_response(
            content=final["content"],
            embeds=[discord.Embed.from_dict(e) for e in final["embeds"]],
            view=view_from(final["components"]),
        )
        done.set()

    synced = await tree.sync(guild=discord.Object(int(dp.GUILD_ID)))
    assert [c.name for c in synced] == ["sync"]
    assert [c["name"] for c in discord_fake.commands(dp.GUILD_ID)] == ["sync"]

    payload = discord_fake.add_interaction(
        dp.slash_command("sync", {"app": "payments"}, roles=["1100000000000000500"])
    )
    client._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
    await asyncio.wait_for(done.wait(), 5)

    assert discord_fake.callback_type(payload) == 5
    original = discord_fake.original_response(payload)
    assert original is not None
    assert original["content"] == "❌ sync payments: post-sync check failed"
    assert original["embeds"][0]["description"] == "**revision:** a1b2c3d"
    assert original["flags"] & 128 == 0  # no longer "thinking"
    assert original["edits"] == 2
    buttons = [b for row in original["components"] for b in row["components"]]
    assert [(b["style"], b.get("custom_id")) for b in buttons] == [
        (1, "chatops:cmd:sync payments"),
        (4, "chatops:cmd:rollback payments"),
        (5, None),
    ]
    assert 1100000000000000500 in seen["roles"]  # the role from the payload, resolved in the guild
    callback = discord_fake.calls_to("/callback")[0]
    assert callback.status == 200 and callback.params["type"] == 5


async def test_discord_button_click_routes_the_custom_id_and_edits_the_message(
    discord_fake: FakeDiscord, client: discord.Client
) -> None:
    clicked = asyncio.Event()

    class CommandButton(
        discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"chatops:cmd:(?P<command>.+)"
    ):
        def __init__(self, command: str) -> None:
            super().__init__(discord.ui.Button(label=command, custom_id=f"chatops:cmd:{command}"))
            self.command = command

        @classmethod
        async def from_custom_id(
            cls, interaction: discord.Interaction, item: Any, match: re.Match[str]
        ) -> CommandButton:
            return cls(match["command"])

        async def callback(self, interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await interaction.edit_original_response(
                content=f"⏳ {self.command} (asked by {interaction.user.name})"
            )
            clicked.set()

    client.add_dynamic_items(CommandButton)
    alert = render_discord.result_message(RESULT)
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=dp.CHANNEL_ID)
    posted = await client.http.request(route, json=alert)  # the rendered dict as wire JSON

    payload = discord_fake.add_interaction(
        dp.button_click("chatops:cmd:sync payments", discord_fake.message(posted["id"]))
    )
    client._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
    await asyncio.wait_for(clicked.wait(), 5)

    assert discord_fake.callback_type(payload) == 6
    message = discord_fake.message(posted["id"])
    assert message["content"] == "⏳ sync payments (asked by alice)"
    assert message["embeds"][0]["description"] == "**revision:** a1b2c3d"  # untouched by the edit


async def test_discord_429_with_via_is_retried_by_discord_py(
    discord_fake: FakeDiscord, client: discord.Client
) -> None:
    discord_fake.rate_limit_next(1, retry_after=0.05, only="POST /channels")
    channel = client.get_channel(int(dp.CHANNEL_ID))
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("hello")
    assert [c.status for c in discord_fake.calls_to("POST /channels")] == [429, 200]
    assert discord_fake.message(str(sent.id))["content"] == "hello"

    discord_fake.fail_next(1, status=503, only="PATCH /channels")
    with pytest.raises(discord.DiscordServerError):
        await sent.edit(content="edited")


async def test_discord_rest_answers_like_discord(discord_fake: FakeDiscord) -> None:
    auth = {"Authorization": f"Bot {discord_fake.token}"}
    payload = discord_fake.add_interaction(dp.slash_command("status", {"app": "payments"}))
    callback = f"/interactions/{payload['id']}/{payload['token']}/callback"
    async with httpx.AsyncClient(base_url=discord_fake.api_url) as http:
        me = await http.get("/users/@me", headers=auth)
        assert me.headers["content-type"] == "application/json"
        assert (await http.get("/users/@me")).status_code == 401

        unknown = await http.post("/interactions/1/nope/callback", json={"type": 5})
        assert (unknown.status_code, unknown.json()["code"]) == (404, 10062)
        first = await http.post(callback, json={"type": 4, "data": {"content": "hi"}})
        assert first.status_code == 204  # without with_response, as Discord
        again = await http.post(callback, json={"type": 5}, params={"with_response": "true"})
        assert (again.status_code, again.json()["code"]) == (400, 40060)

        empty = await http.post(f"/channels/{dp.CHANNEL_ID}/messages", json={}, headers=auth)
        assert (empty.status_code, empty.json()["code"]) == (400, 50006)
        long = await http.post(
            f"/channels/{dp.CHANNEL_ID}/messages", json={"content": "x" * 2001}, headers=auth
        )
        assert (long.status_code, long.json()["code"]) == (400, 50035)
        assert "content" in long.json()["errors"]
        nowhere = await http.post("/channels/42/messages", json={"content": "x"}, headers=auth)
        assert (nowhere.status_code, nowhere.json()["code"]) == (404, 10003)

        discord_fake.rate_limit_next(1, retry_after=0.5, is_global=True)
        limited = await http.get("/users/@me", headers=auth)
        assert limited.status_code == 429 and limited.headers["via"]
        assert limited.json() == {
            "message": "You are being rate limited.",
            "retry_after": 0.5,
            "global": True,
            "code": 0,
        }

        discord_fake.expire_interaction(payload)
        edit = await http.patch(
            f"/webhooks/{dp.APPLICATION_ID}/{payload['token']}/messages/@original",
            json={"content": "late"},
        )
        assert (edit.status_code, edit.json()["code"]) == (401, 50027)


async def test_discord_refuses_bad_json_bad_command_names_and_late_callbacks() -> None:
    fake = FakeDiscord(callback_window=0.2).start()
    auth = {"Authorization": f"Bot {fake.token}", "Content-Type": "application/json"}
    try:
        async with httpx.AsyncClient(base_url=fake.api_url) as http:
            broken = await http.post(
                f"/channels/{dp.CHANNEL_ID}/messages", content=b"{nope", headers=auth
            )
            assert broken.status_code == 400
            assert broken.json() == {"message": "The request body contains invalid JSON.",
                                     "code": 50109}  # fmt: skip

            commands = f"/applications/{fake.application_id}/commands"
            names = ["sync", "Argo-sync", "argo sync", "x" * 33, "", "état-2", "verify_rootless"]
            bulk = [{"name": n, "description": "d", "type": 1} for n in names]
            refused = await http.put(commands, json=bulk, headers=auth)
            assert (refused.status_code, refused.json()["code"]) == (400, 50035)
            assert sorted(refused.json()["errors"]) == ["1", "2", "3", "4"]
            assert refused.json()["errors"]["1"]["name"]["_errors"][0]["code"] == (
                "APPLICATION_COMMAND_INVALID_NAME"
            )
            assert fake.commands() == []  # nothing saved
            ok = [b for i, b in enumerate(bulk) if i in (0, 5, 6)]
            assert (await http.put(commands, json=ok, headers=auth)).status_code == 200

            payload = fake.add_interaction(dp.slash_command("status", {"app": "payments"}))
            callback = f"/interactions/{payload['id']}/{payload['token']}/callback"
            received = time.monotonic()  # the fake stamped it before this
            await until_async(lambda: time.monotonic() - received > 0.2)  # the window passes
            late = await http.post(callback, json={"type": 5})
            assert (late.status_code, late.json()["code"]) == (404, 10062)
    finally:
        fake.stop()


async def test_discord_followup_and_rendered_alert_pass_the_fake_validation(
    discord_fake: FakeDiscord,
) -> None:
    from tests.test_render import ALERT_CASES

    auth = {"Authorization": f"Bot {discord_fake.token}"}
    async with httpx.AsyncClient(base_url=discord_fake.api_url) as http:
        for alert in ALERT_CASES.values():
            response = await http.post(
                f"/channels/{dp.CHANNEL_ID}/messages",
                json=render_discord.alert_message(alert),
                headers=auth,
            )
            assert response.status_code == 200, response.text
        payload = discord_fake.add_interaction(dp.slash_command("help"))
        hook = f"/webhooks/{dp.APPLICATION_ID}/{payload['token']}"
        early = await http.post(hook, json={"content": "x"}, params={"wait": "true"})
        assert early.status_code == 404  # no followup before the interaction is answered
        await http.post(
            f"/interactions/{payload['id']}/{payload['token']}/callback",
            json={"type": 5, "data": {"flags": 64}},
            params={"with_response": "true"},
        )
        follow = await http.post(hook, json={"content": "more"}, params={"wait": "true"})
        assert follow.status_code == 200 and follow.json()["content"] == "more"
    original = discord_fake.original_response(payload)
    assert original is not None and original["flags"] == 64 | 128  # ephemeral and thinking
