"""Shared helpers for the chat tests: Slack request signing and payloads, a recording ``Reply``,
settings for a bot wired to the local fakes, and a harness running the whole ``serve`` stack.

Requests are signed exactly as Slack signs them (``v0=`` HMAC-SHA256 over ``v0:{ts}:{raw
body}``), so the real bolt verification runs; the Web API goes to ``FakeSlack``; Argo CD is
``FakeArgoCD``. Other chat test modules may add helpers at the end of this file.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config.models import Authorization, Grant
from bot.server.serve import Bot
from bot.settings import Settings
from commands.results import Result, Step
from tests.fakes import discord_payloads as dp
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # a test value, the shape of Slack's
TEAM = "T0FAKE"  # FakeSlack's workspace (auth.test)
OTHER_TEAM = "T0OTHER"  # a Slack Connect partner organisation
CHANNEL = "C0OPS"
ALERTS = "C0ALERTS"
OPERATOR, OPERATOR_NAME = "U0OPS", "olivia"
VIEWER, VIEWER_NAME = "U0VIEW", "victor"
GROUP = "S0ONCALL"
GROUP_MEMBER, GROUP_MEMBER_NAME = "U0ONCALL", "gina"
APPS = ("payments", "orders")
_TRIGGERS = itertools.count(13345224609)


def trigger_id() -> str:
    """A fresh trigger_id, as Slack sends with every command and click (each is unique: the bot
    runs a repeated one only once)."""
    return f"{next(_TRIGGERS)}.738474920.8088930838d88f008e0"


# -- Slack wire format --------------------------------------------------------------------------
def slack_signature(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: bytes,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: float | None = None,
    content_type: str = "application/x-www-form-urlencoded",
) -> dict[str, str]:
    ts = str(int(timestamp if timestamp is not None else time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(body, ts, secret),
    }


def slash_command_body(
    command: str,
    text: str,
    *,
    user_id: str = OPERATOR,
    user_name: str = OPERATOR_NAME,
    team_id: str = TEAM,
    channel_id: str = CHANNEL,
    response_url: str = "",
    enterprise_id: str | None = None,
) -> bytes:
    """A slash command as Slack POSTs it (form-encoded)."""
    fields = {
        "token": "deprecated-verification-token",
        "team_id": team_id,
        "team_domain": "fake",
        "channel_id": channel_id,
        "channel_name": "ops",
        "user_id": user_id,
        "user_name": user_name,
        "command": command if command.startswith("/") else f"/{command}",
        "text": text,
        "api_app_id": "A0CHATOPS",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id(),
    }
    if enterprise_id:
        fields["enterprise_id"] = enterprise_id
    return urllib.parse.urlencode(fields).encode()


def button(
    value: str,
    *,
    action_id: str = "chatops:0",
    label: str = "Go",
    confirm: bool = False,
    style: str | None = None,
) -> dict[str, Any]:
    """A button element as it comes back in ``actions[]`` (Slack echoes ``confirm``)."""
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "block_id": "b1",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": value,
        "action_ts": f"{time.time():.6f}",
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = {
            "title": {"type": "plain_text", "text": "Are you sure?"},
            "text": {"type": "plain_text", "text": "Really?"},
            "confirm": {"type": "plain_text", "text": "Yes"},
            "deny": {"type": "plain_text", "text": "Cancel"},
            "style": "danger",
        }
    return element


def block_actions_body(
    action: dict[str, Any],
    *,
    user_id: str = OPERATOR,
    user_name: str = OPERATOR_NAME,
    team_id: str = TEAM,
    channel_id: str = CHANNEL,
    response_url: str = "",
    message_ts: str = "1714564801.000001",
    ephemeral: bool = False,
) -> bytes:
    """A ``block_actions`` interaction as Slack POSTs it: ``payload=<json>``."""
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": "A0CHATOPS",
        "token": "deprecated-verification-token",
        "container": {
            "type": "ephemeral_message" if ephemeral else "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": ephemeral,
        },
        "trigger_id": trigger_id(),
        "team": {"id": TEAM, "domain": "fake"},
        "channel": {"id": channel_id, "name": "ops"},
        "response_url": response_url,
        "actions": [action],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def buttons_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        el
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for el in block.get("elements", [])
    ]


def text_of(message: dict[str, Any]) -> str:
    """Everything a reader sees in a Block Kit message, as one string."""
    parts = [str(message.get("text", ""))]
    for block in message.get("blocks", []):
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(str(text.get("text", "")))
        for el in block.get("elements", []):
            if isinstance(el.get("text"), str):
                parts.append(el["text"])
            elif isinstance(el.get("text"), dict):
                parts.append(str(el["text"].get("text", "")))
    return "\n".join(parts)


# -- a Reply that records (the platform side of the dispatcher port) ----------------------------
@dataclass
class RecordingReply:
    edits: list[tuple[str, str, tuple[Step, ...]]] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    confirms: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    progress_delay: float = 0.0

    async def progress(self, command: str, target: str, steps: Sequence[Step]) -> None:
        if self.progress_delay:
            await asyncio.sleep(self.progress_delay)  # a slow chat API
        self.edits.append((command, target, tuple(steps)))
        self.order.append("progress")

    async def result(self, result: Result) -> None:
        self.results.append(result)
        self.order.append("result")

    async def ask_confirm(self, prompt: str, command: str) -> None:
        self.confirms.append((prompt, command))
        self.order.append("confirm")

    async def error(self, text: str) -> None:
        self.errors.append(text)
        self.order.append("error")


# -- settings and fakes -------------------------------------------------------------------------
def chat_settings(
    tmp_path: Path,
    argo: FakeArgoCD | None,
    slack: FakeSlack | None = None,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "state_db": str(tmp_path / "state.db"),
        "listen": "127.0.0.1:8080",
        "authorization": Authorization(
            grants=[
                Grant(role="operator", slack_users=[OPERATOR]),
                Grant(role="operator", slack_groups=[GROUP]),
            ]
        ),
    }
    if argo is not None:
        values |= {"argocd_url": argo.url, "argocd_token": argo.token}
    if slack is not None:
        values |= {
            "slack_bot_token": slack.token,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": slack.api_url,
            "slack_alert_channel": ALERTS,
        }
    values |= overrides
    return Settings(**values)


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    fake = FakeArgoCD(step_delay=0.01).start()
    for name in APPS:
        fake.add_app(make_app(name))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    fake.add_user(OPERATOR, OPERATOR_NAME)
    fake.add_user(VIEWER, VIEWER_NAME)
    fake.add_user(GROUP_MEMBER, GROUP_MEMBER_NAME)
    fake.set_usergroup(GROUP, [GROUP_MEMBER])
    try:
        yield fake
    finally:
        fake.stop()


# -- the whole bot, driven like Slack drives it ---------------------------------------------------
@dataclass
class SlackHarness:
    bot: Bot
    slack: FakeSlack
    argo: FakeArgoCD
    session: aiohttp.ClientSession

    @property
    def events_url(self) -> str:
        return self.bot.url + "/slack/events"

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        async with self.session.post(self.events_url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    async def command(self, command: str, text: str = "", **kw: Any) -> tuple[int, str, str]:
        """Send a signed slash command; returns (status, body, the response_url it carried)."""
        response_url = self.slack.new_response_url()
        body = slash_command_body(command, text, response_url=response_url, **kw)
        status, answer = await self.post(body, signed_headers(body))
        return status, answer, response_url

    async def click(self, action: dict[str, Any], **kw: Any) -> tuple[int, str]:
        kw.setdefault("response_url", self.slack.new_response_url())
        body = block_actions_body(action, **kw)
        return await self.post(body, signed_headers(body))

    async def responses(self, url: str, n: int = 1) -> list[dict[str, Any]]:
        """Wait until ``url`` got ``n`` posts; return them."""

        def got() -> list[dict[str, Any]] | None:
            posts = self.slack.response_posts(url)
            return posts if len(posts) >= n else None

        return await until_async(got)

    async def settled(self, n: int = 1) -> list[dict[str, Any]]:
        """Wait until at least ``n`` commands were audited and every one has finished (the
        dispatcher shows the result before it closes the audit row)."""
        store = self.bot.store
        assert store is not None

        def done() -> list[dict[str, Any]] | None:
            rows = store.audit_list()
            return rows if len(rows) >= n and all(r["outcome"] for r in rows) else None

        return await until_async(done, timeout=10.0)

    async def final(self, text: str, *, n: int = 1, channel: str = CHANNEL) -> dict[str, Any]:
        """The channel message containing ``text`` once the commands have finished."""
        await self.settled(n)
        return await self.channel_message(lambda m: text in m["text"], channel)

    async def channel_message(
        self, predicate: Callable[[dict[str, Any]], bool], channel: str = CHANNEL
    ) -> dict[str, Any]:
        """Wait for a top-level message in ``channel`` that satisfies ``predicate``."""

        def found() -> dict[str, Any] | None:
            for message in self.slack.messages_in(channel):
                if predicate(message):
                    return message
            return None

        return await until_async(found, timeout=10.0)


@asynccontextmanager
async def running_bot(settings: Settings, **kw: Any) -> AsyncIterator[Bot]:
    bot = Bot(settings, host="127.0.0.1", port=0, **kw)
    try:
        await bot.start()
        yield bot
    finally:
        await bot.stop()


@asynccontextmanager
async def slack_harness(
    settings: Settings, slack: FakeSlack, argo: FakeArgoCD, **kw: Any
) -> AsyncIterator[SlackHarness]:
    async with running_bot(settings, **kw) as bot, aiohttp.ClientSession() as session:
        yield SlackHarness(bot, slack, argo, session)


# -- Discord ------------------------------------------------------------------------------------
DISCORD_OPERATOR_ROLE = "1100000000000000777"  # members with this guild role are operators


def discord_settings(discord: FakeDiscord, argo: FakeArgoCD, **overrides: Any) -> Settings:
    """A Discord bot on the fakes: Argo CD, the fake Discord's token and guild, and operators by
    ``DISCORD_OPERATOR_ROLE``."""
    return Settings(
        argocd_url=argo.url,
        argocd_token=argo.token,
        discord_token=discord.token,
        discord_guild_id=dp.GUILD_ID,
        authorization=Authorization(
            grants=[Grant(role="operator", discord_roles=[DISCORD_OPERATOR_ROLE])]
        ),
        **overrides,
    )
