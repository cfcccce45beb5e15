"""The Discord adapter end to end: discord.py against a fake Discord REST API, interactions fed as
raw gateway payloads, the real dispatcher and command core behind it, a fake Argo CD behind that.

Every assertion is on what a service saw: the interaction callbacks and webhook edits the fake
Discord recorded (and the messages it now holds), the requests the fake Argo CD received, the
audit rows in the store.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest
import yarl

from bot.chat import discord_gateway
from bot.chat.dispatch import Dispatcher
from bot.server.wiring import services as build_services
from bot.settings import ConfigError, Settings
from bot.state.store import Store
from commands.context import Services
from tests.chat_fixtures import DISCORD_OPERATOR_ROLE, discord_settings
from tests.fakes import discord_payloads as dp
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.discord_api import (
    AUTOCOMPLETE_RESULT,
    DEFERRED_CHANNEL_MESSAGE,
    EPHEMERAL,
    UPDATE_MESSAGE,
    FakeDiscord,
)
from tests.fakes.kube_api import FakeKube, api_client
from tests.fakes.recording import Call, until_async

OTHER_ROLE = "1100000000000000778"
BOB = "1100000000000000301"


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    old_base = discord.http.Route.BASE
    server = FakeDiscord().start()
    try:
        yield server
    finally:
        discord.http.Route.BASE = old_base
        server.stop()


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    server = FakeArgoCD(step_delay=0.01).start()
    # no past operation: the core tells its own sync from an earlier one by startedAt, which
    # has one-second resolution, so a fixture op started "now" would look like ours
    server.add_app(make_app("payments", history=False))
    server.add_app(make_app("orders", history=False))
    server.add_app(make_app("billing", sync="OutOfSync", history=False))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Bot:
    fake: FakeDiscord
    argo: FakeArgoCD
    settings: Settings
    store: Store
    services: Services
    dispatcher: Dispatcher
    runner: discord_gateway.DiscordRunner

    async def restart(self) -> None:
        """A new process: a new client (and dispatcher) with nothing carried over in memory."""
        await self.runner.close()
        self.dispatcher = Dispatcher(self.settings, self.services, self.store)
        self.runner = await start(self.settings, self.dispatcher, self.fake)

    def feed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Deliver an INTERACTION_CREATE, as the gateway would."""
        self.fake.add_interaction(payload)
        self.runner.client._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
        return payload

    def command(
        self, name: str, options: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        kw.setdefault("roles", [DISCORD_OPERATOR_ROLE])
        return self.feed(dp.slash_command(name, options, **kw))

    def click(self, custom_id: str, message: dict[str, Any], **kw: Any) -> dict[str, Any]:
        kw.setdefault("roles", [DISCORD_OPERATOR_ROLE])
        return self.feed(dp.button_click(custom_id, message, **kw))

    # what the fake Discord saw for one interaction
    def calls(self, payload: dict[str, Any]) -> list[Call]:
        return [c for c in self.fake.calls if payload["token"] in c.method]

    def ephemerals(self, payload: dict[str, Any]) -> list[Call]:
        return [
            c
            for c in self.calls(payload)
            if c.method.startswith("POST /webhooks/") and (c.params.get("flags") or 0) & EPHEMERAL
        ]

    def placeholder_deleted_before(self, payload: dict[str, Any], answer: Call) -> bool:
        """The public "thinking…" message was deleted (204) before the ephemeral ``answer``:
        otherwise Discord would turn that answer into a public edit of the placeholder."""
        calls = self.calls(payload)
        deletes = [i for i, c in enumerate(calls)
                   if c.method.startswith("DELETE") and c.method.endswith("/@original")
                   and c.status == 204]  # fmt: skip
        return bool(deletes) and deletes[0] < calls.index(answer)

    async def final(self, payload: dict[str, Any], prefix: str) -> dict[str, Any]:
        """Wait until the interaction's original response starts with ``prefix``."""

        def done() -> dict[str, Any] | None:
            msg = self.fake.original_response(payload)
            return msg if msg is not None and msg["content"].startswith(prefix) else None

        return await until_async(done)

    def argo_syncs(self, app: str) -> int:
        path = f"/api/v1/applications/{app}/sync"
        return sum(1 for r in self.argo.requests if r.method == "POST" and r.path == path)


async def start(
    settings: Settings, dispatcher: Dispatcher, fake: FakeDiscord
) -> discord_gateway.DiscordRunner:
    runner = await discord_gateway.start_discord(
        settings, dispatcher, api_url=fake.api_url, connect=False
    )
    runner.client._connection.parse_guild_create(dp.guild_create(roles={OTHER_ROLE: "devs"}))  # type: ignore[arg-type]
    return runner


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, argo: FakeArgoCD, tmp_path: Path, kube_client: Any = None
) -> AsyncIterator[Bot]:
    settings = discord_settings(fake, argo)
    store = Store(tmp_path / "state.db")
    services = build_services(
        settings, store=store, with_kube=kube_client is not None, kube_client=kube_client
    )
    dispatcher = Dispatcher(settings, services, store)
    runner = await start(settings, dispatcher, fake)
    b = Bot(fake, argo, settings, store, services, dispatcher, runner)
    try:
        yield b
    finally:
        await b.dispatcher.drain(5.0)
        await b.runner.close()
        await services.argocd.aclose()
        store.close()


@pytest.fixture
async def bot(fake: FakeDiscord, argo: FakeArgoCD, tmp_path: Path) -> AsyncIterator[Bot]:
    async with running_bot(fake, argo, tmp_path) as b:
        yield b


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    server = FakeKube(pod_delay=0.01).start()
    try:
        yield server
    finally:
        server.stop()


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [
        b["custom_id"]
        for row in message.get("components", [])
        for b in row["components"]
        if "custom_id" in b
    ]


# -- start-up -----------------------------------------------------------------------------------
async def test_slash_commands_are_synced_once_to_the_configured_guild(bot: Bot) -> None:
    commands = {c["name"]: c for c in bot.fake.commands(dp.GUILD_ID)}
    assert set(commands) == {
        "sync", "rollback", "selfheal", "verify-rootless", "status", "autorollback", "help",
    }  # fmt: skip
    assert bot.fake.commands(None) == []  # nothing pushed globally
    sync_opts = {o["name"]: o for o in commands["sync"]["options"]}
    assert sync_opts["app"]["autocomplete"] is True and sync_opts["app"]["required"] is True
    selfheal_opts = {o["name"]: o for o in commands["selfheal"]["options"]}
    assert [c["value"] for c in selfheal_opts["mode"]["choices"]] == ["off", "on"]
    assert len(bot.fake.calls_to("PUT /applications/")) == 1


async def test_command_names_follow_the_configured_prefix(
    fake: FakeDiscord, argo: FakeArgoCD, tmp_path: Path
) -> None:
    settings = Settings(discord_token=fake.token, command_prefix="argo-")
    store = Store(tmp_path / "s.db")
    runner = await discord_gateway.start_discord(
        settings, Dispatcher(settings, None, store), api_url=fake.api_url, connect=False
    )
    try:
        names = {c["name"] for c in fake.commands(None)}  # no guild configured: global
        assert names == {"argo-sync", "argo-rollback", "argo-selfheal", "argo-verify-rootless",
                         "argo-status", "argo-autorollback", "argo-help"}  # fmt: skip
    finally:
        await runner.close()
        store.close()


async def test_missing_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CHATOPS_DISCORD_TOKEN"):
        await discord_gateway.start_discord(Settings(), None, connect=False)  # type: ignore[arg-type]


def test_gateway_and_api_urls_are_configurable() -> None:
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        discord_gateway.configure_endpoints("http://proxy.local/api/v10/", "ws://proxy.local/gw")
        assert discord.http.Route("GET", "/users/@me").url == "http://proxy.local/api/v10/users/@me"
        assert discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY == yarl.URL("ws://proxy.local/gw")
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


# -- a command: defer, progress edits, result ---------------------------------------------------
async def test_sync_defers_first_then_edits_progress_and_result(bot: Bot) -> None:
    bot.dispatcher.progress_interval = 0.0
    payload = bot.command("sync", {"app": "payments"})
    final = await bot.final(payload, "✅")

    calls = bot.calls(payload)
    assert calls[0].method.endswith("/callback")
    assert calls[0].params["type"] == DEFERRED_CHANNEL_MESSAGE
    edits = [c for c in calls if c.method.startswith("PATCH") and c.method.endswith("/@original")]
    assert len(edits) >= 2
    assert edits[0].params["content"].startswith("⏳ sync payments")  # progress first
    assert "Refresh" in edits[0].params["embeds"][0]["description"]
    assert final["content"].startswith("✅ sync payments")
    assert edits[-1].params["allowed_mentions"] == {"parse": []}
    assert bot.argo_syncs("payments") == 1

    rows = await until_async(lambda: bot.store.audit_list(app="payments"))
    assert rows[0]["platform"] == "discord" and rows[0]["user_id"] == dp.USER_ID
    assert rows[0]["command"] == "sync" and rows[0]["channel"] == dp.CHANNEL_ID


async def test_failed_sync_shows_retry_rollback_and_argo_link_buttons(bot: Bot) -> None:
    bot.argo.script("payments", "fail", message="one or more objects failed to apply")
    payload = bot.command("sync", {"app": "payments"})
    final = await bot.final(payload, "❌")

    assert "chatops:cmd:sync payments" in custom_ids(final)
    assert "chatops:cmd:rollback payments" in custom_ids(final)
    links = [b for row in final["components"] for b in row["components"] if b.get("style") == 5]
    assert any(b["url"].endswith("/applications/payments") for b in links)
    styles = {b["custom_id"]: b["style"] for row in final["components"] for b in row["components"]
              if "custom_id" in b}  # fmt: skip
    assert styles["chatops:cmd:rollback payments"] == 4  # danger: it is destructive


async def test_read_only_status_is_open_to_a_member_without_roles(bot: Bot) -> None:
    payload = bot.command("status", {"app": "orders"}, roles=[], user_id=BOB, username="bob")
    final = await bot.final(payload, "☑️")
    assert "status orders" in final["content"]
    assert bot.ephemerals(payload) == []


async def test_help_lists_the_commands(bot: Bot) -> None:
    payload = bot.command("help", roles=[])
    final = await bot.final(payload, "☑️")
    assert "/sync" in final["embeds"][0]["description"]


# -- authorization from the payload's member.roles -----------------------------------------------
async def test_member_without_operator_role_is_denied_with_the_role_named(bot: Bot) -> None:
    payload = bot.command("sync", {"app": "payments"}, roles=[OTHER_ROLE], user_id=BOB)
    (denial,) = await until_async(lambda: bot.ephemerals(payload))

    assert "operator role" in denial.params["content"]
    assert bot.calls(payload)[0].params["type"] == DEFERRED_CHANNEL_MESSAGE
    assert bot.placeholder_deleted_before(payload, denial)
    assert bot.argo_syncs("payments") == 0
    rows = bot.store.audit_list(app="payments")
    assert rows[0]["outcome"] == "denied" and rows[0]["user_id"] == BOB


async def test_operator_role_counts_even_when_the_guild_cache_does_not_know_it(bot: Bot) -> None:
    guild = bot.runner.client.get_guild(int(dp.GUILD_ID))
    assert guild is not None and guild.get_role(int(DISCORD_OPERATOR_ROLE)) is None  # not cached
    payload = bot.command("selfheal", {"mode": "on", "app": "orders"})
    await bot.final(payload, "☑️")  # already on: nothing to do, but allowed
    assert bot.ephemerals(payload) == []


# -- destructive commands: ephemeral Confirm / Cancel -------------------------------------------
async def test_selfheal_off_asks_ephemerally_and_confirm_runs_it(bot: Bot) -> None:
    payload = bot.command("selfheal", {"mode": "off", "app": "payments", "duration": "30m"})
    (ask,) = await until_async(lambda: bot.ephemerals(payload))
    assert "Turn self-heal off for payments" in ask.params["content"]
    ids = [b["custom_id"] for row in ask.params["components"] for b in row["components"]]
    assert ids == ["chatops:confirm:selfheal off payments 30m", "chatops:cancel"]
    assert bot.argo.app("payments")["spec"]["syncPolicy"]["automated"]["selfHeal"] is True

    prompt = next(m for m in bot.fake.messages_in(dp.CHANNEL_ID) if m["flags"] & EPHEMERAL)
    click = bot.click(ids[0], prompt)
    await until_async(lambda: not bot.fake.message(prompt["id"])["components"])
    assert bot.calls(click)[0].params["type"] == UPDATE_MESSAGE  # the prompt loses its buttons
    assert bot.fake.message(prompt["id"])["content"].startswith("Confirmed")

    def public_result() -> dict[str, Any] | None:
        for m in bot.fake.messages_in(dp.CHANNEL_ID):
            if m["content"].startswith("✅ selfheal payments") and not m["flags"] & EPHEMERAL:
                return m
        return None

    await until_async(public_result)
    app = bot.argo.app("payments")
    assert app["spec"]["syncPolicy"]["automated"]["selfHeal"] is False
    (timer,) = bot.store.timers()  # the re-enable timer, durable across a restart
    assert timer["key"] == "payments"
    assert abs(timer["due_at"] - (time.time() + 30 * 60)) < 60
    assert "alice" in timer["created_by"]


async def test_cancel_runs_nothing(bot: Bot) -> None:
    payload = bot.command("sync", {"app": "payments", "prune": True})
    (ask,) = await until_async(lambda: bot.ephemerals(payload))
    ids = [b["custom_id"] for row in ask.params["components"] for b in row["components"]]
    assert ids[0] == "chatops:confirm:sync payments prune"

    prompt = next(m for m in bot.fake.messages_in(dp.CHANNEL_ID) if m["flags"] & EPHEMERAL)
    click = bot.click("chatops:cancel", prompt)
    await until_async(lambda: bot.calls(click))
    await until_async(lambda: bot.fake.message(prompt["id"])["content"].startswith("Cancelled"))
    assert bot.fake.message(prompt["id"])["components"] == []
    assert bot.argo_syncs("payments") == 0


async def test_rollback_of_a_pinned_commit_asks_first_and_fits_the_confirm_button(bot: Bot) -> None:
    sha = "a1b2c3d4" * 5
    payload = bot.command("rollback", {"app": "payments", "commit": sha.upper()})
    (ask,) = await until_async(lambda: bot.ephemerals(payload))
    assert f"Revert commit {sha[:7]} of payments" in ask.params["content"]
    ids = [b["custom_id"] for row in ask.params["components"] for b in row["components"]]
    assert ids == [f"chatops:confirm:rollback payments {sha}", "chatops:cancel"]


# -- one operation per app ----------------------------------------------------------------------
async def test_second_sync_of_a_busy_app_says_who_started_what(bot: Bot) -> None:
    bot.argo.set_reconcile_delay(0.3)
    first = bot.command("sync", {"app": "payments"})
    await until_async(lambda: bot.argo_syncs("payments") == 1)
    second = bot.command("sync", {"app": "payments"}, user_id=BOB, username="bob")
    (busy,) = await until_async(lambda: bot.ephemerals(second))
    assert "payments is busy: alice (discord) started `sync payments`" in busy.params["content"]

    other = bot.command("status", {"app": "orders"})  # other apps are not blocked
    await bot.final(other, "☑️")
    await bot.final(first, "✅")
    assert bot.argo_syncs("payments") == 1


# -- buttons ------------------------------------------------------------------------------------
async def test_result_button_reenters_the_dispatcher_as_a_button(bot: Bot) -> None:
    payload = bot.command("status", {"app": "billing"})
    status = await bot.final(payload, "❌")  # OutOfSync: offers Sync
    assert "chatops:cmd:sync billing" in custom_ids(status)

    click = bot.click("chatops:cmd:sync billing", status)
    final = await bot.final(click, "✅")
    assert bot.calls(click)[0].params["type"] == DEFERRED_CHANNEL_MESSAGE
    assert final["id"] != status["id"]  # a new message; the status stays visible
    assert final["content"].startswith("✅ sync billing")
    assert bot.argo_syncs("billing") == 1
    rows = bot.store.audit_list(app="billing")
    assert rows[0]["command"] == "sync" and rows[0]["args"].endswith("[button]")


async def test_buttons_keep_working_after_a_restart(bot: Bot) -> None:
    payload = bot.command("status", {"app": "payments"})
    old = await bot.final(payload, "☑️")
    # a message posted by the previous process, with a button routed by its custom_id only
    message = dp.message(
        content=old["content"],
        components=[{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "Sync", "custom_id": "chatops:cmd:sync payments"}]}],
    )  # fmt: skip
    await bot.restart()

    click = bot.click("chatops:cmd:sync payments", message)
    await bot.final(click, "✅")
    assert bot.argo_syncs("payments") == 1


async def test_confirm_button_survives_a_restart(bot: Bot) -> None:
    payload = bot.command("sync", {"app": "orders", "prune": True})
    await until_async(lambda: bot.ephemerals(payload))
    prompt = next(m for m in bot.fake.messages_in(dp.CHANNEL_ID) if m["flags"] & EPHEMERAL)
    await bot.restart()

    bot.click("chatops:confirm:sync orders prune", prompt)
    await until_async(lambda: bot.argo_syncs("orders") == 1)
    sync_body = next(r for r in bot.argo.requests if r.path.endswith("/orders/sync"))
    assert sync_body.json.get("prune") is True


# -- autocomplete -------------------------------------------------------------------------------
async def test_app_autocomplete_is_served_from_a_cached_app_list(bot: Bot) -> None:
    def autocomplete(typed: str) -> dict[str, Any]:
        payload = dp.slash_command("sync", {"app": typed})
        payload["type"] = dp.AUTOCOMPLETE
        payload["data"]["options"][0]["focused"] = True
        return bot.feed(payload)

    first = autocomplete("pay")
    (answer,) = await until_async(lambda: bot.calls(first))
    assert answer.params["type"] == AUTOCOMPLETE_RESULT
    assert answer.params["data"]["choices"] == [{"name": "payments", "value": "payments"}]

    second = autocomplete("")
    (answer,) = await until_async(lambda: bot.calls(second))
    values = [c["value"] for c in answer.params["data"]["choices"]]
    assert values == ["billing", "orders", "payments"]
    lists = [r for r in bot.argo.requests if r.method == "GET" and r.path == "/api/v1/applications"]
    assert len(lists) == 1  # the second answer came from the cache


# -- bad input, long work -----------------------------------------------------------------------
async def test_bad_input_gets_an_ephemeral_usage_line(bot: Bot) -> None:
    payload = bot.command("selfheal", {"mode": "off", "app": "payments", "duration": "forever"})
    (err,) = await until_async(lambda: bot.ephemerals(payload))
    assert "Usage: /selfheal off|on APP [DURATION]" in err.params["content"]
    assert bot.placeholder_deleted_before(payload, err)


async def test_work_past_the_token_lifetime_moves_to_a_channel_message(bot: Bot) -> None:
    bot.runner.app.token_ttl = 0.0  # as if 14 minutes had passed
    payload = bot.command("status", {"app": "payments"})

    def posted() -> list[Call]:
        return bot.fake.calls_to(f"POST /channels/{dp.CHANNEL_ID}/messages")

    (post,) = await until_async(posted)
    assert post.params["content"].startswith("☑️ status payments")
    assert not [c for c in bot.calls(payload) if c.method.startswith("PATCH")]


async def test_a_refused_interaction_token_falls_back_to_the_channel(bot: Bot) -> None:
    bot.argo.set_reconcile_delay(0.2)
    payload = bot.command("sync", {"app": "payments"})
    await until_async(lambda: bot.argo_syncs("payments") == 1)
    bot.fake.expire_interaction(payload)

    def channel_result() -> list[dict[str, Any]]:
        return [m for m in bot.fake.messages_in(dp.CHANNEL_ID)
                if m["content"].startswith("✅ sync payments")]  # fmt: skip

    (msg,) = await until_async(channel_result)
    assert msg.get("webhook_id") is None  # posted with the bot token, not the interaction's


# -- with Kubernetes behind the core ------------------------------------------------------------
async def test_verify_rootless_reports_root_containers(
    fake: FakeDiscord, argo: FakeArgoCD, kube: FakeKube, tmp_path: Path
) -> None:
    containers = [{"name": "postgresql", "image": "bitnami/postgresql"}]
    kube.add_statefulset("prod", "payments-db", app="payments", containers=containers)
    kube.exec_uid("postgresql", 0)
    client = api_client(kube)
    try:
        async with running_bot(fake, argo, tmp_path, kube_client=client) as b:
            payload = b.command("verify-rootless", {"app": "payments"}, roles=[])  # viewer
            final = await b.final(payload, "❌")
    finally:
        client.close()
    assert final["content"].startswith("❌ verify-rootless payments")
    assert "run as root" in final["content"]
    assert "payments-db-0/postgresql" in final["embeds"][0]["description"]
    assert ("payments-db-0", "postgresql") in [(e.pod, e.container) for e in kube.execs]


async def test_announcements_go_to_the_alert_channel(
    fake: FakeDiscord, argo: FakeArgoCD, tmp_path: Path
) -> None:
    settings = Settings(discord_token=fake.token, discord_alert_channel=dp.CHANNEL_ID)
    store = Store(tmp_path / "s.db")
    runner = await discord_gateway.start_discord(
        settings, Dispatcher(settings, None, store), api_url=fake.api_url, connect=False
    )
    try:
        assert await runner.announce("Self-heal is back on for payments.") is True
        [msg] = fake.messages_in(dp.CHANNEL_ID)
        assert msg["content"] == "Self-heal is back on for payments."
        runner.alert_channel = None
        assert await runner.announce("nobody hears this") is False
    finally:
        await runner.close()
        store.close()
