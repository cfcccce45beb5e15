"""The CLI's external interface: exit codes, messages, no traceback, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = str(Path(sys.executable).parent / "chatops")


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPS_")}
    base.update(env or {})
    return subprocess.run(
        [BIN, *args], capture_output=True, text=True, env=base, input=stdin, timeout=60
    )


def offline_env(tmp_path: Path, token: str = "t") -> dict[str, str]:  # noqa: S107 - a test token
    """A complete configuration whose Argo CD is unreachable (nothing listens on port 9), so a
    command that got as far as calling it would fail with 1."""
    return {
        "CHATOPS_ARGOCD_URL": "http://127.0.0.1:9",
        "CHATOPS_ARGOCD_TOKEN": token,
        "CHATOPS_STATE_DB": str(tmp_path / "s.db"),
    }


def test_help_exits_zero_and_lists_commands():
    p = run("--help")
    assert p.returncode == 0
    for cmd in (
        "serve",
        "sync",
        "rollback",
        "selfheal",
        "verify-rootless",
        "status",
        "hook",
        "ci",
        "doctor",
    ):
        assert cmd in p.stdout


def test_help_does_not_import_sdks():
    code = (
        "import sys, bot.cli.main; "
        "print([m for m in sys.modules if m.split('.')[0] in "
        "('kubernetes', 'slack_bolt', 'slack_sdk', 'discord', 'httpx', 'aiohttp')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_usage_exits_2():
    p = run("sync")
    assert p.returncode == 2
    assert "app" in p.stderr
    p = run("selfheal", "maybe", "payments")
    assert p.returncode == 2


def test_missing_config_exits_2_with_one_message(tmp_path):
    p = run("status", "payments", env={"CHATOPS_STATE_DB": str(tmp_path / "s.db")})
    assert p.returncode == 2
    assert "CHATOPS_ARGOCD_URL is not set" in p.stderr
    assert "CHATOPS_ARGOCD_TOKEN is not set" in p.stderr
    assert "Traceback" not in p.stderr


def test_invalid_setting_exits_2(tmp_path):
    p = run("status", "payments", env={"CHATOPS_LISTEN": "nope"})
    assert p.returncode == 2
    assert "CHATOPS_LISTEN" in p.stderr and "Traceback" not in p.stderr


def test_invalid_app_name_refused_before_any_call(tmp_path):
    env = offline_env(tmp_path)
    p = run("status", "Bad_Name", env=env)
    assert p.returncode == 2
    assert "not a valid application name" in p.stderr


def test_unreachable_argocd_exits_1_json(tmp_path):
    env = offline_env(tmp_path, token="secret-token-value")
    p = run("status", "payments", "--json", env=env)
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["ok"] is False and out["error"] == "unavailable"
    assert "unreachable" in out["message"]
    assert "secret-token-value" not in p.stdout + p.stderr


def test_rollback_without_terminal_or_yes_refuses(tmp_path):
    env = offline_env(tmp_path)
    env.update(
        CHATOPS_GIT_REPO="acme/deploy",
        CHATOPS_GIT_TOKEN="g",
        CHATOPS_GIT_API_URL="http://127.0.0.1:9",
    )
    p = run("rollback", "payments", env=env, stdin="")
    assert p.returncode == 2
    assert "--yes" in p.stderr


def test_selfheal_duration_out_of_range(tmp_path):
    env = offline_env(tmp_path)
    p = run("selfheal", "off", "payments", "--for", "9d", env=env)
    assert p.returncode == 2
    assert "1m to 7d" in p.stderr


def test_audit_empty(tmp_path):
    p = run("audit", "--json", env={"CHATOPS_STATE_DB": str(tmp_path / "s.db")})
    assert p.returncode == 0
    assert json.loads(p.stdout) == []
