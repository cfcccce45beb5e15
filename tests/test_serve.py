"""``chatops serve``: probes, metrics, start-up lines, what runs without which settings, and a
graceful SIGTERM that lets running commands finish (or records them as interrupted)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.chat.invocation import Invocation
from bot.server import serve, wiring
from bot.server.serve import Bot
from tests.chat_fixtures import (
    CHANNEL,
    OPERATOR,
    OPERATOR_NAME,
    SIGNING_SECRET,
    TEAM,
    RecordingReply,
    argo,  # noqa: F401 - fixture
    chat_settings,
    running_bot,
    signed_headers,
    slack,  # noqa: F401 - fixture
    slack_harness,
    slash_command_body,
)
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_probes_and_metrics(tmp_path: Path, argo: FakeArgoCD) -> None:  # noqa: F811
    async with running_bot(chat_settings(tmp_path, argo)) as bot:
        assert await get(bot.url + "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
        status, _, body = await get(bot.url + "/readyz")
        assert status == 200 and '"ready": true' in body
        reply = RecordingReply()
        assert bot.dispatcher is not None
        inv = Invocation("slack", OPERATOR, OPERATOR_NAME, CHANNEL, "status payments", TEAM)
        bot.dispatcher.authz.slack_home_team = TEAM
        await bot.dispatcher.handle(inv, reply)
        status, ctype, text = await get(bot.url + "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        requests = "chatops_http_requests_total"
        assert samples[(requests, (("route", "/healthz"), ("status", "200")))] == 1
        assert samples[(requests, (("route", "/readyz"), ("status", "200")))] == 1
        outcome = (("command", "status"), ("outcome", "noop"), ("platform", "slack"))
        assert samples[("chatops_commands_total", outcome)] == 1
        assert samples[("chatops_command_seconds_count", (("command", "status"),))] == 1
        assert "# TYPE chatops_http_request_seconds histogram" in text
        assert "_created" not in text  # the series the bot exports, and no more


async def test_without_argocd_it_still_serves_and_says_what_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chatops.serve"):
        async with running_bot(chat_settings(tmp_path, None)) as bot:
            assert (await get(bot.url + "/healthz"))[0] == 200
            status, _, body = await get(bot.url + "/readyz")
            assert status == 503
            assert "CHATOPS_ARGOCD_URL" in body and '"ready": false' in body
            assert bot.dispatcher is not None and bot.scheduler is None
            reply = RecordingReply()
            inv = Invocation("cli", "root", "root", "", "status payments")
            result = await bot.dispatcher.handle(inv, reply)
            assert result is not None and result.summary == "Argo CD is not configured."
    lines = caplog.text
    assert "argocd: MISSING (set CHATOPS_ARGOCD_URL and CHATOPS_ARGOCD_TOKEN)" in lines
    assert "slack: off (CHATOPS_SLACK_BOT_TOKEN is not set)" in lines
    assert "discord: off (CHATOPS_DISCORD_TOKEN is not set)" in lines


async def test_startup_lines_list_features_and_never_a_secret(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
    slack: FakeSlack,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = chat_settings(
        tmp_path, argo, slack, git_repo="acme/deploy", git_token="ghp_secretsecret"
    )
    with caplog.at_level(logging.DEBUG):
        async with running_bot(settings) as bot:
            status, _, _ = await get(bot.url + "/healthz")
            assert status == 200
    text = caplog.text
    assert f"argocd: {argo.url}" in text
    assert "slack: HTTP mode at POST /slack/events, as chatops in T0FAKE" in text
    assert "git: github acme/deploy (rollback enabled)" in text
    assert "kubernetes: " in text and "timers: self-heal timers: 0 pending" in text
    for secret in (argo.token, slack.token, SIGNING_SECRET, "ghp_secretsecret"):
        assert secret not in text


async def test_the_webhook_route_reaches_the_alert_runner_the_wiring_started(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    from tests.alert_fixtures import TOKEN, body_for

    settings = chat_settings(tmp_path, argo, webhook_token=TOKEN)
    async with running_bot(settings) as bot:
        assert bot.enabled["webhooks"] == "POST /webhooks/argocd"
        assert bot.webhook is not None and bot.webhook.runner is bot.alerts
        headers = {"Authorization": f"Bearer {TOKEN}"}
        body = body_for("deployed", make_app("payments"))
        async with (
            aiohttp.ClientSession() as s,
            s.post(bot.url + "/webhooks/argocd", data=body, headers=headers) as r,
        ):
            assert (r.status, await r.json()) == (202, {"status": "accepted"})
    async with running_bot(chat_settings(tmp_path, argo)) as bot:
        assert bot.webhook is None
        assert bot.enabled["webhooks"] == "off (CHATOPS_WEBHOOK_TOKEN is not set)"
        async with aiohttp.ClientSession() as s, s.post(bot.url + "/webhooks/argocd") as r:
            assert r.status == 404


def test_urls_in_log_lines_lose_credentials() -> None:
    assert wiring.safe_url("https://user:pw@argocd.example:8443/base?token=x") == (
        "https://argocd.example:8443/base"
    )


async def test_slack_without_a_signing_secret_stays_off(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
    slack: FakeSlack,  # noqa: F811
) -> None:
    settings = chat_settings(tmp_path, argo, slack, slack_signing_secret=None)
    async with running_bot(settings) as bot:
        assert bot.slack is None
        assert "CHATOPS_SLACK_SIGNING_SECRET" in bot.enabled["slack"]
        body = slash_command_body("/status", "payments")
        async with (
            aiohttp.ClientSession() as s,
            s.post(bot.url + "/slack/events", data=body, headers=signed_headers(body)) as r,
        ):
            assert r.status == 404


async def test_socket_mode_when_an_app_token_is_set(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
    slack: FakeSlack,  # noqa: F811
) -> None:
    settings = chat_settings(tmp_path, argo, slack, slack_app_token="xapp-1-A0-1-test")
    async with running_bot(settings) as bot:
        assert bot.slack is not None and bot.slack.socket_mode
        assert bot.enabled["slack"].startswith("Socket Mode")
        async with aiohttp.ClientSession() as s, s.post(bot.url + "/slack/events") as r:
            assert r.status == 404  # no HTTP endpoint in Socket Mode
        # the SDK asks for a WebSocket URL with the app token (the fake does not know it)
        await until_async(lambda: slack.calls_to("apps.connections.open"))
        assert "xapp" not in str(bot.enabled)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_stops_accepting_and_lets_running_commands_finish(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
) -> None:
    slow = FakeArgoCD(step_delay=0.15).start()
    slow.add_app(make_app("payments"))
    port = free_port()
    settings = chat_settings(tmp_path, slow, slack, listen=f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    try:
        runner = asyncio.create_task(serve.run(settings))
        await until_async(lambda: slack.calls_to("auth.test"))
        await until_async(lambda: _up(base))
        body = slash_command_body("/sync", "payments", response_url=slack.new_response_url())
        async with (
            aiohttp.ClientSession() as s,
            s.post(base + "/slack/events", data=body, headers=signed_headers(body)) as r,
        ):
            assert r.status == 200
        await until_async(lambda: [r for r in slow.requests if r.path.endswith("/sync")])

        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(runner, 15) == 0
        assert not _up(base)  # the listener is closed
        [msg] = slack.messages_in(CHANNEL)
        assert msg["text"].startswith("✅ sync payments")  # finished, not cut off
    finally:
        slow.stop()


def _up(base: str) -> bool:
    host, port = base.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


async def test_commands_outliving_the_grace_period_are_recorded_as_interrupted(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
    slack: FakeSlack,  # noqa: F811
) -> None:
    argo.script("payments", "hang")
    settings = chat_settings(tmp_path, argo, slack)
    async with slack_harness(settings, slack, argo, drain_timeout=0.2) as h:
        await h.command("/sync", "payments")
        await until_async(lambda: [r for r in argo.requests if r.path.endswith("/sync")])
    # stopped: the audit row says what happened, and so does the message
    rows = audit_rows(tmp_path)
    assert rows[0]["outcome"] == "interrupted"
    [msg] = slack.messages_in(CHANNEL)
    assert msg["text"] == ("❌ sync payments: The bot restarted before sync payments finished.")


def audit_rows(tmp_path: Path) -> list[dict[str, Any]]:
    from bot.state.store import Store

    store = Store(tmp_path / "state.db")
    try:
        return store.audit_list()
    finally:
        store.close()


def test_main_exits_2_when_the_state_file_cannot_be_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = chat_settings(tmp_path, None, state_db=str(blocker / "state.db"))
    root = logging.getLogger()
    level = root.level
    try:
        assert serve.main(settings) == 2
    finally:
        root.setLevel(level)


async def test_bot_start_failure_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        bot = Bot(chat_settings(tmp_path, None), host="127.0.0.1", port=port)
        with pytest.raises(OSError):
            await bot.start()
        await bot.stop()  # safe after a failed start: closes what was opened
        assert "store: the store is closed" in bot.probes.problems()


# -- the self-heal scheduler on its own --------------------------------------------------------
class Timers:
    """A scheduler wired like serve wires it, with what it announced."""

    def __init__(self, tmp_path: Path, fake: FakeArgoCD, **kw: Any) -> None:
        from bot.server import wiring
        from bot.state.scheduler import SelfHealScheduler
        from bot.state.store import Store

        self.store = Store(tmp_path / "timers.db")
        self.services = wiring.services(chat_settings(tmp_path, fake), with_kube=False)
        self.said: list[str] = []
        self.scheduler = SelfHealScheduler(
            self.store, self.services, announce=self._say, retry_interval=0.2, **kw
        )
        self.services.timers = self.scheduler.timers()

    async def _say(self, text: str) -> None:
        self.said.append(text)

    async def close(self) -> None:
        await self.scheduler.close()
        await self.services.argocd.aclose()
        self.store.close()


def self_heal(fake: FakeArgoCD, app: str) -> bool:
    return bool(fake.app(app)["spec"]["syncPolicy"]["automated"]["selfHeal"])


async def test_timer_written_by_another_process_is_found_by_the_rescan(tmp_path: Path) -> None:
    fake = FakeArgoCD(step_delay=0.01).start()
    fake.add_app(make_app("payments", self_heal=False))
    t = Timers(tmp_path, fake, rescan_interval=0.2)
    try:
        assert await t.scheduler.start() == 0
        # what `chatops selfheal off payments --for 1m` in another process leaves behind
        t.store.schedule_timer("selfheal-on", "payments", time.time() + 0.3, {}, "cli")
        await until_async(lambda: t.said)
        assert t.said == ["Self-heal is back on for payments: the pause set by cli is over."]
        assert self_heal(fake, "payments")
        assert t.store.timers() == []
    finally:
        await t.close()
        fake.stop()


async def test_timer_fires_when_due_not_before(tmp_path: Path) -> None:
    fake = FakeArgoCD(step_delay=0.01).start()
    fake.add_app(make_app("payments", self_heal=False))
    t = Timers(tmp_path, fake)
    try:
        await t.scheduler.start()
        due = time.time() + 0.5
        await t.scheduler.timers().schedule("selfheal-on", "payments", due, {}, "olivia via slack")
        await asyncio.sleep(0.2)  # deliberately inside the pause: nothing may happen yet
        assert t.said == [] and not self_heal(fake, "payments")
        await until_async(lambda: t.said)
        assert time.time() >= due and self_heal(fake, "payments")
    finally:
        await t.close()
        fake.stop()


async def test_unreachable_argocd_is_retried_and_a_vanished_app_is_reported(
    tmp_path: Path,
) -> None:
    fake = FakeArgoCD(step_delay=0.01).start()
    fake.add_app(make_app("payments", self_heal=False))
    t = Timers(tmp_path, fake)
    try:
        fake.pause()
        now = time.time()
        t.store.schedule_timer("selfheal-on", "payments", now, {}, "olivia via slack")
        t.store.schedule_timer("selfheal-on", "ghost", now, {}, "olivia via slack")
        await t.scheduler.start()
        # payments' own attempt failed (not just ghost's): its timer moved on, not dropped
        await until_async(
            lambda: any(
                r["outcome"] == "unavailable" and r["app"] == "payments"
                for r in t.store.audit_list()
            )
        )
        [timer] = await until_async(
            lambda: [r for r in t.store.timers() if r["key"] == "payments" and r["due_at"] > now]
        )
        assert timer["due_at"] > now
        fake.resume()
        await until_async(lambda: len(t.said) == 2)
        assert "Self-heal is back on for payments" in " ".join(t.said)
        [ghost] = [s for s in t.said if "ghost" in s]
        assert ghost.startswith("Could not turn self-heal back on for ghost after the pause")
        assert t.store.timers() == [] and self_heal(fake, "payments")
    finally:
        await t.close()
        fake.stop()


# -- readiness that tells the truth ----------------------------------------------------------------
async def readiness(bot: Bot) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(bot.url + "/readyz") as r:
        return r.status, await r.json()


async def test_readyz_is_503_until_slack_auth_test_succeeds_and_retries_it(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
    slack: FakeSlack,  # noqa: F811
) -> None:
    slack.fail_next(1, 500, only="auth.test")
    async with running_bot(chat_settings(tmp_path, argo, slack)) as bot:
        status, body = await readiness(bot)
        assert status == 503 and body["ready"] is False
        assert body["checks"]["slack"].startswith("auth.test failed (")
        assert body["checks"]["store"] == "ok" and body["checks"]["argocd"] == "ok"
        assert "slack: auth.test failed" in " ".join(body["problems"])
        assert (await get(bot.url + "/healthz"))[0] == 200  # liveness is not readiness
        # retried in the background (no Slack request needed to recover)
        await until_async(lambda: len(slack.calls_to("auth.test")) >= 2)
        await until_async(lambda: bot.slack is not None and bot.slack.auth_problem() is None)
        status, body = await readiness(bot)
        assert status == 200 and body["checks"]["slack"] == "ok"


async def test_discord_start_is_retried_and_readyz_names_the_gateway(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    import discord

    from tests.chat_fixtures import discord_settings
    from tests.fakes.discord_api import FakeDiscord

    fake = FakeDiscord().start()
    fake.fail_next(1, 401, only="GET /users/@me")  # the first login is refused
    settings = discord_settings(
        fake, argo, state_db=str(tmp_path / "state.db"), discord_api_url=fake.api_url
    )
    base = discord.http.Route.BASE
    try:
        async with running_bot(settings) as bot:
            assert bot.enabled["discord"].startswith("FAILED to start (start failed: LoginFailure")
            status, body = await readiness(bot)
            assert status == 503 and body["checks"]["discord"].startswith("start failed")
            await until_async(lambda: bot.discord.runner is not None)  # the retry logged in
            assert bot.discord.attempts == 2
            # the fake has no gateway: logged in, but not connected, and /readyz says so
            status, body = await readiness(bot)
            assert status == 503
            assert body["checks"]["discord"] == "the gateway is not connected"
    finally:
        discord.http.Route.BASE = base
        fake.stop()


async def test_readyz_is_503_while_the_argocd_watch_is_failing(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    async with running_bot(chat_settings(tmp_path, argo)) as bot:
        assert (await readiness(bot))[0] == 200
        # the stream breaks and the first reconnect is refused (Argo CD restarting)
        argo.fail_next(1, 503, "argocd-server is restarting", path="/stream/applications")
        argo._close_streams()
        argo.state.closing = False  # what resume() does, without restarting the server
        await until_async(lambda: bot.probes.detail()["watches"] != "ok", timeout=10)
        status, body = await readiness(bot)
        assert status == 503 and body["checks"]["watches"].startswith("app_watch: ")
        await until_async(lambda: bot.probes.detail()["watches"] == "ok", timeout=10)
        assert (await readiness(bot))[0] == 200


async def test_readyz_is_503_when_the_alert_pipeline_failed_to_start(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    from bot.state.store import Store

    store = Store(tmp_path / "state.db")  # an incident row this version cannot read
    store.execute(
        "INSERT INTO incidents (key, app, state, data, opened_at, updated_at)"
        " VALUES ('payments:degraded', 'payments', 'open', 'not json', 0, 0)"
    )
    store.close()
    async with running_bot(chat_settings(tmp_path, argo)) as bot:
        status, body = await readiness(bot)
        assert status == 503
        assert body["checks"]["alerts"].startswith("failed to start (")
        assert bot.enabled["alerts"].startswith("FAILED")
