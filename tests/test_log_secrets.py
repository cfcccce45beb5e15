"""Capability URLs and tokens stay out of the log at every level: a Slack ``response_url`` lets
whoever holds it post as the bot in that channel for 30 minutes, a Discord interaction token for
15, so neither is written, not even by the SDKs' DEBUG request lines or INFO retry lines."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.chat_fixtures import (
    VIEWER,
    VIEWER_NAME,
    SlackHarness,
    argo,  # noqa: F401 - fixture
    button,
    chat_settings,
    slack,  # noqa: F401 - fixture
    slack_harness,
)
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
async def h(tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD) -> AsyncIterator[SlackHarness]:  # noqa: F811
    async with slack_harness(chat_settings(tmp_path, argo, slack), slack, argo) as harness:
        yield harness


async def test_response_url_is_never_logged_even_at_debug(
    h: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # a denial answers through the command's response_url; Slack rate-limits it once, so the
    # SDK's retry path (which logs the URL at INFO by default) runs too
    h.slack.rate_limit_next(1, retry_after=0, only="response_url")
    status, _, url = await h.command("/sync", "payments", user_id=VIEWER, user_name=VIEWER_NAME)
    assert status == 200
    [post] = await h.responses(url)
    assert "You need the operator role" in post["text"]
    # Cancel deletes the prompt through the click's response_url
    cancel_url = h.slack.new_response_url()
    await h.click(button("cancel", action_id="chatops:cancel"), response_url=cancel_url)
    await h.responses(cancel_url)

    assert [c.status for c in h.slack.calls_to("response_url")] == [429, 200, 200]
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG was captured
    path = url.split("://", 1)[1].split("/", 1)[1]  # "response/R00001": the secret part
    for secret in (url, path, cancel_url, cancel_url.split("/", 3)[3], h.slack.token):
        assert secret not in caplog.text


async def test_discord_interaction_tokens_are_never_logged_even_at_debug(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    import discord

    from tests.fakes.discord_api import FakeDiscord
    from tests.test_discord import running_bot

    caplog.set_level(logging.DEBUG)
    old_base = discord.http.Route.BASE  # the bot points discord.py at the fake (process-wide)
    fake = FakeDiscord().start()
    try:
        async with running_bot(fake, argo, tmp_path) as bot:
            payload = bot.command("status", {"app": "payments"})
            await bot.final(payload, "☑️")
            assert bot.calls(payload)  # the interaction's webhook URLs were used
    finally:
        discord.http.Route.BASE = old_base
        fake.stop()
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    assert payload["token"] not in caplog.text
