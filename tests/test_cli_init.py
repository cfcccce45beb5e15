"""`chatops init`: a commented starting config that loads as the bot's settings, and the
Secret template; from flags or questions; never overwriting without --force."""

from __future__ import annotations

import argparse
import json
import stat

import pytest
import yaml

from bot.cli import init
from bot.cli.parser import build_parser
from bot.settings import load
from tests.test_cli import run


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("CHATOPS_"):
            monkeypatch.delenv(k)


def load_deployed(directory, monkeypatch):
    """The settings as the bot in the cluster sees them: the config file, and the Secret's
    values as CHATOPS_* environment variables (placeholders and all)."""
    secret = yaml.safe_load((directory / "secret.yaml").read_text())
    for key, value in secret["stringData"].items():
        monkeypatch.setenv(key, value)
    return load(str(directory / "chatops.yaml"))


def test_flags_write_a_config_that_loads(tmp_path, monkeypatch):
    out = tmp_path / "cfg"
    p = run(
        "init", "--slack", "--slack-channel", "C0ALERTS", "--discord",
        "--discord-channel", "123456789012345678", "--git-provider", "gitlab",
        "--git-repo", "platform/deploy", "--argocd-url", "https://argocd.example.com",
        "--operator", "U0ALICE", "--operator", "223456789012345678", "--output", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert f"Wrote {out / 'chatops.yaml'}" in p.stdout
    settings = load_deployed(out, monkeypatch)
    assert settings.argocd_url == "https://argocd.example.com"
    assert settings.slack_alert_channel == "C0ALERTS"
    assert settings.discord_alert_channel == "123456789012345678"
    assert (settings.git_provider, settings.git_repo) == ("gitlab", "platform/deploy")
    [grant] = settings.authorization.grants
    assert grant.role == "operator"
    assert grant.slack_users == ["U0ALICE"] and grant.discord_users == ["223456789012345678"]
    text = (out / "chatops.yaml").read_text()
    assert text.count("\n#") > 10  # commented: the options are explained in place

    secret_file = out / "secret.yaml"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = yaml.safe_load(secret_file.read_text())
    assert secret["kind"] == "Secret" and secret["metadata"]["namespace"] == "argocd-chatops"
    data = secret["stringData"]
    assert {"CHATOPS_ARGOCD_TOKEN", "CHATOPS_SLACK_BOT_TOKEN", "CHATOPS_DISCORD_TOKEN",
            "CHATOPS_GIT_TOKEN", "CHATOPS_WEBHOOK_TOKEN"} <= set(data)  # fmt: skip
    assert len(data["CHATOPS_WEBHOOK_TOKEN"]) >= 40  # generated, not a placeholder
    assert data["CHATOPS_WEBHOOK_TOKEN"] not in p.stdout + p.stderr  # never echoed


def test_minimal_config_loads_and_grants_nobody(tmp_path):
    p = run("init", "--no-input", "--output", str(tmp_path))
    assert p.returncode == 0, p.stderr
    settings = load(str(tmp_path / "chatops.yaml"))
    assert settings.authorization.grants == [] and settings.git_repo is None
    data = yaml.safe_load((tmp_path / "secret.yaml").read_text())["stringData"]
    assert "CHATOPS_SLACK_BOT_TOKEN" not in data and "CHATOPS_GIT_TOKEN" not in data


def test_refuses_to_overwrite_without_force(tmp_path):
    (tmp_path / "chatops.yaml").write_text("# mine\n")
    p = run("init", "--slack", "--output", str(tmp_path), "--json")
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["error"] == "conflict" and "--force" in out["hint"]
    assert (tmp_path / "chatops.yaml").read_text() == "# mine\n"
    assert not (tmp_path / "secret.yaml").exists()  # nothing half-written
    p = run("init", "--slack", "--output", str(tmp_path), "--force")
    assert p.returncode == 0, p.stderr
    assert load(str(tmp_path / "chatops.yaml")).slack_alert_channel is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--operator", "alice"], "neither a Slack user ID"),
        (["--argocd-url", "argocd.local"], "not an http(s) URL"),
        (["--git-repo", "deploy"], "owner/name"),
        (["--slack-channel", "bad channel!"], "not a channel ID"),
    ],
)
def test_bad_values_are_refused(tmp_path, argv, expected):
    p = run("init", "--output", str(tmp_path), *argv)
    assert p.returncode == 2
    assert expected in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "chatops.yaml").exists()


def test_questions_on_a_terminal(tmp_path, monkeypatch):
    answers = iter([
        "",  # Argo CD URL: the default
        "y",  # Slack
        "C0OPS",  # its channel
        "n",  # Discord
        "y",  # rollback
        "gitea",  # not a provider: asked again
        "github",
        "acme/deploy",
        "U0BOB, W0CAROL",
    ])  # fmt: skip
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return next(answers)

    a = init.interview(ask)
    a.check()
    assert asked[0] == f"Argo CD API URL [{init.DEFAULT_ARGOCD_URL}]: "
    assert sum("Git provider" in q for q in asked) == 2
    init.write(a, tmp_path, force=False)
    settings = load_deployed(tmp_path, monkeypatch)
    assert settings.argocd_url == init.DEFAULT_ARGOCD_URL
    assert settings.slack_alert_channel == "C0OPS" and settings.discord_alert_channel is None
    assert settings.git_repo == "acme/deploy"
    assert settings.authorization.grants[0].slack_users == ["U0BOB", "W0CAROL"]


def test_flags_skip_the_questions(tmp_path, monkeypatch):
    args = build_parser().parse_args(["init", "--slack", "--output", str(tmp_path)])
    assert isinstance(args, argparse.Namespace)

    def no_questions(_q: str) -> str:
        raise AssertionError("asked a question although flags were given")

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert init.run(args, ask=no_questions) == 0
    assert (tmp_path / "chatops.yaml").exists()
