"""/rollback from chat through to Healthy: a Slack command and a Discord button, the preview
that shows the commit, the confirmation, the revert on the fake GitHub (a real repository), the
auto-sync on the fake Argo CD, and the final message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.chat import discord_gateway
from bot.chat.dispatch import Dispatcher
from bot.server.wiring import services as build_services
from bot.state.store import Store
from tests.chat_fixtures import (
    DISCORD_OPERATOR_ROLE,
    OPERATOR,
    button,
    buttons_of,
    chat_settings,
    discord_settings,
    slack,  # noqa: F401 - fixture
    slack_harness,
)
from tests.fakes import discord_payloads as dp
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.github_api import FakeGitHub
from tests.fakes.gitrepo import Workspace
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack

VALUES = "apps/payments/values.yaml"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path)
    w.commit("Initial layout", {VALUES: "image: pay:1.0\n"})
    w.commit("Bump payments to 1.1", {VALUES: "image: pay:1.1\n"}, author="Bob <b@x.io>")
    return w


@pytest.fixture
def github(ws: Workspace) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(ws.served).start()
    yield fake
    fake.stop()


@pytest.fixture
def argo(ws: Workspace) -> Iterator[FakeArgoCD]:
    fake = FakeArgoCD(step_delay=0.01).start()
    fake.add_app(make_app("payments", revision=ws.tip()))
    fake.track_git("payments", ws.tip)  # refreshes read the fake GitHub's repository
    yield fake
    fake.stop()


def git_settings(github: FakeGitHub) -> dict[str, Any]:
    return {
        "git_provider": "github",
        "git_api_url": github.url,
        "git_token": "good-token",
        "git_repo": "acme/deploy",
        "git_branch": "main",
    }


async def test_slack_rollback_command_preview_confirm_to_healthy(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
    argo: FakeArgoCD,
    github: FakeGitHub,
    ws: Workspace,
) -> None:
    bad = ws.tip()
    settings = chat_settings(tmp_path, argo, slack, **git_settings(github))
    async with slack_harness(settings, slack, argo) as h:
        await h.command("/rollback", "payments", user_id=OPERATOR)
        preview = await h.final("Roll back payments")
        assert bad[:7] in preview["text"] and "Bump payments to 1.1" in str(preview["blocks"])
        assert ws.tip() == bad  # nothing written yet
        [revert] = [b for b in buttons_of(preview) if b.get("value", "").startswith("rollback")]
        assert revert["value"] == f"rollback payments {bad}"
        assert "confirm" in revert  # Slack's own confirmation dialog on the phone

        ctl = argo.auto_sync_when_head_moves("payments", ws.tip, timeout=15)
        await h.click(button(revert["value"], confirm=True), user_id=OPERATOR)
        done = await h.final("Rolled back payments", n=2)
        ctl.join(15)
        assert h.bot.store is not None
        rows = h.bot.store.audit_list()
    assert done["text"].startswith("✅")
    assert ws.tip() != bad and ws.read(ws.tip(), VALUES) == b"image: pay:1.0\n"
    assert "Requested-by:" in ws.message(ws.tip())
    assert argo.app("payments")["status"]["sync"]["revision"] == ws.tip()
    assert argo.app("payments")["status"]["health"]["status"] == "Healthy"
    assert {r["command"] for r in rows} == {"rollback"} and len(rows) == 2


async def test_discord_rollback_button_confirm_to_healthy(
    tmp_path: Path, argo: FakeArgoCD, github: FakeGitHub, ws: Workspace
) -> None:
    bad = ws.tip()
    old_base = discord.http.Route.BASE
    fake = FakeDiscord().start()
    settings = discord_settings(fake, argo, **git_settings(github))
    store = Store(tmp_path / "state.db")
    services = build_services(settings, store=store, with_kube=False)
    dispatcher = Dispatcher(settings, services, store)
    runner = await discord_gateway.start_discord(
        settings, dispatcher, api_url=fake.api_url, connect=False
    )
    runner.client._connection.parse_guild_create(dp.guild_create())  # type: ignore[arg-type]

    def feed(payload: dict[str, Any]) -> dict[str, Any]:
        fake.add_interaction(payload)
        runner.client._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
        return payload

    def originals() -> list[dict[str, Any]]:
        out = []
        for p in payloads:
            try:
                msg = fake.original_response(p)
            except KeyError:  # deleted (the placeholder before an ephemeral prompt)
                continue
            if msg is not None:
                out.append(msg)
        return out

    def find_button(prefix: str) -> tuple[dict[str, Any], str]:
        for m in fake.messages_in(dp.CHANNEL_ID) + originals():
            for row in m.get("components", []):
                for b in row["components"]:
                    if b.get("custom_id", "").startswith(prefix):
                        return m, b["custom_id"]
        raise LookupError(prefix)

    payloads: list[dict[str, Any]] = []
    try:
        # an alert's Rollback button ("rollback payments") first shows the commit
        alert = dp.message(
            content="payments: sync failed",
            components=[{"type": 1, "components": [{"type": 2, "style": 4, "label": "Rollback",
                                                     "custom_id": "chatops:cmd:rollback payments"}]}],
        )  # fmt: skip
        payloads.append(
            feed(
                dp.button_click(
                    "chatops:cmd:rollback payments", alert, roles=[DISCORD_OPERATOR_ROLE]
                )
            )
        )
        msg, revert_id = await until_async(
            lambda: _try(find_button, f"chatops:cmd:rollback payments {bad}")
        )
        assert revert_id == f"chatops:cmd:rollback payments {bad}"
        assert ws.tip() == bad

        payloads.append(feed(dp.button_click(revert_id, msg, roles=[DISCORD_OPERATOR_ROLE])))
        # destructive: an ephemeral Confirm / Cancel first
        prompt, confirm_id = await until_async(
            lambda: _try(find_button, "chatops:confirm:") or None
        )
        assert confirm_id == f"chatops:confirm:rollback payments {bad}"
        ctl = argo.auto_sync_when_head_moves("payments", ws.tip, timeout=15)
        payloads.append(feed(dp.button_click(confirm_id, prompt, roles=[DISCORD_OPERATOR_ROLE])))
        rows = await until_async(
            lambda: (
                r if len(r := store.audit_list()) == 3 and all(x["outcome"] for x in r) else None
            ),
            timeout=15,
        )
        assert argo.app("payments")["status"]["sync"]["revision"] == ws.tip() != bad
        assert argo.app("payments")["status"]["health"]["status"] == "Healthy"
        ctl.join(15)
        assert rows[0]["command"] == "rollback" and rows[0]["outcome"] == "changed"
        assert ws.read(ws.tip(), VALUES) == b"image: pay:1.0\n"
    finally:
        await dispatcher.drain(5.0)
        await runner.close()
        await services.argocd.aclose()
        store.close()
        discord.http.Route.BASE = old_base
        fake.stop()


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except LookupError:
        return None
