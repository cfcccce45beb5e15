"""`chatops alert test`: a sample alert through the real routes, outbox and sinks, checked
end to end against the fake Slack and Discord over HTTP, run as the user runs it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import discord_payloads as dp
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.slack_api import FakeSlack
from tests.test_cli import run


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


def slack_env(slack: FakeSlack, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CHATOPS_SLACK_BOT_TOKEN": slack.token,
        "CHATOPS_SLACK_API_URL": slack.api_url,
        "CHATOPS_SLACK_ALERT_CHANNEL": "C0ALERTS",
        "CHATOPS_STATE_DB": str(tmp_path / "s.db"),
        **extra,
    }


def discord_env(discord: FakeDiscord, tmp_path: Path) -> dict[str, str]:
    return {
        "CHATOPS_DISCORD_TOKEN": discord.token,
        "CHATOPS_DISCORD_API_URL": discord.api_url,
        "CHATOPS_DISCORD_ALERT_CHANNEL": dp.CHANNEL_ID,
        "CHATOPS_STATE_DB": str(tmp_path / "s.db"),
    }


def outbox(tmp_path: Path) -> list[tuple[str, str, str, str | None]]:
    with sqlite3.connect(tmp_path / "s.db") as db:
        return db.execute("SELECT platform, channel, status, error FROM outbox").fetchall()


def test_slack_default_channel_delivered(slack: FakeSlack, tmp_path: Path):
    p = run("alert", "test", env=slack_env(slack, tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Sample alert delivered to slack C0ALERTS" in p.stdout
    [msg] = slack.messages_in("C0ALERTS")
    assert "chatops-alert-test: test alert" in msg["text"]
    assert outbox(tmp_path) == [("slack", "C0ALERTS", "sent", None)]  # through the outbox


def test_slack_unknown_channel_exit_1_with_slacks_error(slack: FakeSlack, tmp_path: Path):
    p = run("alert", "test", "--channel", "C0NOPE", "--json", env=slack_env(slack, tmp_path))
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["ok"] is False
    assert "channel_not_found" in out["facts"]["slack C0NOPE"]
    [(platform, channel, status, error)] = outbox(tmp_path)
    assert (platform, channel, status) == ("slack", "C0NOPE", "failed")
    assert "channel_not_found" in error


def test_slack_bad_token(slack: FakeSlack, tmp_path: Path):
    env = slack_env(slack, tmp_path, CHATOPS_SLACK_BOT_TOKEN="xoxb-wrong")
    p = run("alert", "test", env=env)
    assert p.returncode == 1
    assert "invalid_auth" in p.stdout and "xoxb-wrong" not in p.stdout + p.stderr


def test_routes_pick_the_channel(slack: FakeSlack, tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("routes:\n  - apps: ['payments-*']\n    slack_channel: C0OPS\n")
    env = slack_env(slack, tmp_path)
    p = run("--config", str(cfg), "alert", "test", "--app", "payments-api", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(slack.messages_in("C0OPS")) == 1 and slack.messages_in("C0ALERTS") == []
    p = run("alert", "test", "--app", "web", "--config", str(cfg), env=env)
    assert p.returncode == 0
    assert len(slack.messages_in("C0ALERTS")) == 1


def test_discord_delivered_and_unknown_channel(discord: FakeDiscord, tmp_path: Path):
    env = discord_env(discord, tmp_path)
    p = run("alert", "test", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    [msg] = discord.messages_in(dp.CHANNEL_ID)
    assert "test alert" in json.dumps(msg)
    p = run("alert", "test", "--channel", "1100000000000000999", env=env)
    assert p.returncode == 1
    assert "HTTP 404 10003" in p.stdout  # Discord's own error code: Unknown Channel


def test_both_platforms(slack: FakeSlack, discord: FakeDiscord, tmp_path: Path):
    env = {**slack_env(slack, tmp_path), **discord_env(discord, tmp_path)}
    p = run("alert", "test", "--json", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    facts = json.loads(p.stdout)["facts"]
    assert facts == {"slack C0ALERTS": "✓ delivered", f"discord {dp.CHANNEL_ID}": "✓ delivered"}
    p = run("alert", "test", "--channel", "C0OPS", env=env)
    assert p.returncode == 2 and "--platform" in p.stderr
    p = run("alert", "test", "--channel", "C0OPS", "--platform", "slack", env=env)
    assert p.returncode == 0 and len(slack.messages_in("C0OPS")) == 1


def test_nothing_to_try_is_a_configuration_problem(slack: FakeSlack, tmp_path: Path):
    p = run("alert", "test", "--json", env={"CHATOPS_STATE_DB": str(tmp_path / "s.db")})
    assert p.returncode == 2
    assert "CHATOPS_SLACK_BOT_TOKEN" in json.loads(p.stdout)["message"]
    env = slack_env(slack, tmp_path)
    del env["CHATOPS_SLACK_ALERT_CHANNEL"]
    p = run("alert", "test", env=env)
    assert p.returncode == 2 and "No alert channel for chatops-alert-test" in p.stderr
    p = run("alert", "test", "--platform", "discord", env=slack_env(slack, tmp_path))
    assert p.returncode == 2 and "CHATOPS_DISCORD_TOKEN is not set" in p.stderr
