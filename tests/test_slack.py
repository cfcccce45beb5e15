"""Slack end to end: the real bolt app behind our aiohttp server, requests signed as Slack signs
them, the Web API pointed at FakeSlack and the command core at FakeArgoCD."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from commands.selfheal import TIMER_KIND
from tests.chat_fixtures import (
    ALERTS,
    CHANNEL,
    GROUP_MEMBER,
    GROUP_MEMBER_NAME,
    OPERATOR,
    OPERATOR_NAME,
    OTHER_TEAM,
    VIEWER,
    VIEWER_NAME,
    SlackHarness,
    argo,  # noqa: F401 - fixture
    button,
    buttons_of,
    chat_settings,
    signed_headers,
    slack,  # noqa: F401 - fixture
    slack_harness,
    slash_command_body,
    text_of,
)
from tests.fakes import slack_api
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.kube_api import FakeKube
from tests.fakes.kube_api import api_client as kube_api_client
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
async def h(tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD) -> AsyncIterator[SlackHarness]:  # noqa: F811
    async with slack_harness(chat_settings(tmp_path, argo, slack), slack, argo) as harness:
        yield harness


def syncs(argo: FakeArgoCD, app: str) -> int:  # noqa: F811
    path = f"/api/v1/applications/{app}/sync"
    return sum(1 for r in argo.requests if r.method == "POST" and r.path == path)


async def test_signed_sync_is_acked_then_one_message_is_edited_to_the_result(
    h: SlackHarness,
) -> None:
    status, body, _url = await h.command("/sync", "payments")
    assert status == 200 and body == ""  # how fast: tests/bench/bench_slack_command_ack.py

    msg = await h.final("synced")
    assert msg["text"].startswith("✅ sync payments")
    assert "healthy" in msg["text"]
    # one message, posted once and edited per step (progress first, result last)
    posts = [c for c in h.slack.calls_to("chat.postMessage") if c.params["channel"] == CHANNEL]
    assert len(posts) == 1
    assert h.slack.calls_to("chat.update"), "progress edits expected"
    assert msg["history"][0]["text"].startswith("⏳ sync payments")
    assert syncs(h.argo, "payments") == 1
    sync_req = next(r for r in h.argo.requests if r.path.endswith("/payments/sync"))
    assert sync_req.json.get("prune") in (None, False)  # chat /sync does not prune by default


async def test_bad_signature_is_401_and_nothing_runs(h: SlackHarness) -> None:
    body = slash_command_body("/sync", "payments", response_url=h.slack.new_response_url())
    headers = signed_headers(body, secret="not-the-signing-secret")
    status, _ = await h.post(body, headers)
    assert status == 401
    # a body changed after signing fails too (the signature covers the raw bytes)
    good = signed_headers(body)
    status, _ = await h.post(body.replace(b"payments", b"orders"), good)
    assert status == 401
    assert syncs(h.argo, "payments") == syncs(h.argo, "orders") == 0
    assert h.bot.store is not None and h.bot.store.audit_list() == []


async def test_a_command_that_mentions_payload_is_still_a_command(h: SlackHarness) -> None:
    # bolt's own body parser takes any form body containing the text "payload" for an
    # interaction (and finds no command in it): the app name must not decide the route
    h.argo.add_app(make_app("payload-api"))
    status, body, _url = await h.command("/sync", "payload-api")
    assert status == 200 and body == ""
    msg = await h.final("synced")
    assert msg["text"].startswith("✅ sync payload-api")
    assert syncs(h.argo, "payload-api") == 1
    # or anywhere else in the form
    status, _, _ = await h.command("/status", "payload-api", user_name="payload")
    assert status == 200
    await h.channel_message(lambda m: m["text"].startswith("☑️ status payload-api"))


async def test_stale_timestamp_is_401(h: SlackHarness) -> None:
    body = slash_command_body("/status", "payments")
    status, _ = await h.post(body, signed_headers(body, timestamp=time.time() - 6 * 60))
    assert status == 401
    status, _ = await h.post(body, signed_headers(body, timestamp=time.time() - 60))
    assert status == 200


async def test_viewer_is_denied_a_mutating_command_with_the_role_named(h: SlackHarness) -> None:
    status, _, url = await h.command("/sync", "payments", user_id=VIEWER, user_name=VIEWER_NAME)
    assert status == 200
    [post] = await h.responses(url)
    assert post["response_type"] == "ephemeral"
    assert (
        "You need the operator role to run sync payments; you have the viewer role."
        in (post["text"])
    )
    # read-only commands stay open to viewers
    await h.command("/status", "payments", user_id=VIEWER, user_name=VIEWER_NAME)
    await h.channel_message(lambda m: m["text"].startswith("☑️ status payments"))
    assert syncs(h.argo, "payments") == 0


async def test_slack_connect_user_from_another_organisation_is_denied(h: SlackHarness) -> None:
    # the user ID is an operator's, but the signed payload says another organisation
    _, _, url = await h.command("/status", "payments", team_id=OTHER_TEAM)
    [post] = await h.responses(url)
    assert "only accepted from members of this Slack workspace" in post["text"]
    assert "Slack Connect" in post["text"]
    assert h.slack.calls_to("chat.postMessage") == []


async def test_user_group_grants_operator_and_is_looked_up_once(h: SlackHarness) -> None:
    for n in (1, 2):
        await h.command(
            "/selfheal", "on payments", user_id=GROUP_MEMBER, user_name=GROUP_MEMBER_NAME
        )
        await h.settled(n)
    texts = [m["text"] for m in h.slack.messages_in(CHANNEL)]
    assert all("Self-heal was already on for payments" in t for t in texts), texts
    assert len(h.slack.calls_to("usergroups.users.list")) == 1


async def test_selfheal_off_asks_first_and_the_confirmed_button_runs_it(h: SlackHarness) -> None:
    _, _, url = await h.command("/selfheal", "off payments")
    [prompt] = await h.responses(url)
    assert prompt["response_type"] == "ephemeral"
    [confirm, cancel] = buttons_of(prompt)
    assert confirm["value"] == "selfheal off payments"
    assert confirm["confirm"]["style"] == "danger"  # Slack's native confirmation dialog
    assert cancel["action_id"] == "chatops:cancel"
    assert h.argo.app("payments")["spec"]["syncPolicy"]["automated"]["selfHeal"] is True

    prompt_url = h.slack.new_response_url()
    status, _ = await h.click(
        button(confirm["value"], action_id=confirm["action_id"], confirm=True),
        response_url=prompt_url,
        ephemeral=True,
    )
    assert status == 200
    msg = await h.final("Self-heal is now off", n=2)
    assert "Self-heal on" in [b["text"]["text"] for b in buttons_of(msg)]
    assert h.argo.app("payments")["spec"]["syncPolicy"]["automated"]["selfHeal"] is False
    # the prompt is removed once answered
    assert await h.responses(prompt_url) == [{"delete_original": True}]


async def test_destructive_button_without_a_confirm_dialog_asks_again(h: SlackHarness) -> None:
    url = h.slack.new_response_url()
    await h.click(button("selfheal off payments"), response_url=url)
    [prompt] = await h.responses(url)
    assert buttons_of(prompt)[0]["value"] == "selfheal off payments"
    assert h.argo.app("payments")["spec"]["syncPolicy"]["automated"]["selfHeal"] is True


async def test_cancel_removes_the_prompt_and_runs_nothing(h: SlackHarness) -> None:
    url = h.slack.new_response_url()
    await h.click(button("cancel", action_id="chatops:cancel"), response_url=url, ephemeral=True)
    assert await h.responses(url) == [{"delete_original": True}]
    link_url = h.slack.new_response_url()
    status, _ = await h.click(
        {**button(""), "action_id": "chatops:link:0", "url": "https://argocd"},
        response_url=link_url,
    )
    assert status == 200
    assert h.bot.store is not None and h.bot.store.audit_list() == []
    assert h.slack.response_posts(link_url) == []


async def test_rollback_of_a_pinned_commit_needs_the_confirm_dialog(h: SlackHarness) -> None:
    sha = "a1b2c3d4" * 5
    _, _, url = await h.command("/rollback", f"payments {sha}")
    [prompt] = await h.responses(url)
    [confirm, _cancel] = buttons_of(prompt)
    assert confirm["value"] == f"rollback payments {sha}"
    assert "confirm" in confirm
    await h.click(button(confirm["value"], action_id="chatops:confirm", confirm=True))
    # no Git host is configured in these tests: the core says so, after the confirmation
    msg = await h.final("rollback payments", n=2)
    assert "Rollback is not configured" in msg["text"]


async def test_second_command_on_a_busy_app_says_who_started_what_and_when(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
) -> None:
    slow = FakeArgoCD(step_delay=0.3).start()
    for app in ("payments", "orders"):
        slow.add_app(make_app(app))
    try:
        async with slack_harness(chat_settings(tmp_path, slow, slack), slack, slow) as h:
            await h.command("/sync", "payments")
            await until_async(lambda: syncs(slow, "payments") == 1)
            _, _, url = await h.command(
                "/sync", "payments", user_id=GROUP_MEMBER, user_name=GROUP_MEMBER_NAME
            )
            [busy] = await h.responses(url)
            assert busy["response_type"] == "ephemeral"
            assert (
                f"payments is busy: {OPERATOR_NAME} (slack) started `sync payments` at"
                in (busy["text"])
            )
            # another app is not held up by it
            await h.command("/sync", "orders")
            await until_async(lambda: syncs(slow, "orders") == 1)
            assert syncs(slow, "payments") == 1
            await h.final("sync payments", n=3)
            await h.final("sync orders", n=3)
    finally:
        slow.stop()


async def test_selfheal_pause_is_undone_after_a_restart(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    settings = chat_settings(tmp_path, argo, slack)
    start = time.time()
    async with slack_harness(settings, slack, argo, clock=lambda: start) as h:
        await h.click(button("selfheal off payments 30m", confirm=True))
        msg = await h.final("Self-heal is now off")
        assert "in 30m" in text_of(msg)
        assert h.bot.store is not None
        [timer] = h.bot.store.timers(TIMER_KIND)
        assert timer["key"] == "payments" and timer["due_at"] == start + 1800
    assert argo.app("payments")["spec"]["syncPolicy"]["automated"]["selfHeal"] is False

    # a new process, 30 minutes later: the timer is in the store, the scheduler picks it up
    async with slack_harness(settings, slack, argo, clock=lambda: start + 1800) as h:
        note = await h.channel_message(lambda m: "back on" in m["text"], channel=ALERTS)
        assert note["text"] == (
            f"Self-heal is back on for payments: the pause set by {OPERATOR_NAME} via slack "
            "is over."
        )
        assert argo.app("payments")["spec"]["syncPolicy"]["automated"]["selfHeal"] is True
        store = h.bot.store
        assert store is not None
        await until_async(lambda: store.timers(TIMER_KIND) == [])
        [row] = [r for r in store.audit_list() if r["platform"] == "scheduler"]
        assert row["app"] == "payments" and row["outcome"] == "changed"


async def test_selfheal_on_cancels_a_pending_timer(h: SlackHarness) -> None:
    await h.click(button("selfheal off payments 2h", confirm=True))
    await h.final("Self-heal is now off")
    store = h.bot.store
    assert store is not None and len(store.timers(TIMER_KIND)) == 1
    await h.command("/selfheal", "on payments")
    msg = await h.final("Self-heal is now on", n=2)
    assert "the pending re-enable was cancelled" in text_of(msg)
    assert store.timers(TIMER_KIND) == []
    assert h.bot.scheduler is not None
    await until_async(lambda: h.bot.scheduler is not None and not h.bot.scheduler._jobs)


async def test_rate_limited_post_is_retried_after_retry_after(h: SlackHarness) -> None:
    h.slack.rate_limit_next(1, retry_after=1, only="chat.postMessage")
    await h.command("/status", "payments")
    await h.channel_message(lambda m: m["text"].startswith("☑️ status payments"))
    posts = h.slack.calls_to("chat.postMessage")
    assert [c.status for c in posts] == [429, 200]
    # the client waited: the fake saw the retry at least Retry-After after the 429
    assert posts[1].at - posts[0].at >= 1.0


async def test_slacks_own_per_channel_limit_is_waited_out(h: SlackHarness) -> None:
    # chat.postMessage: about one message a second per channel, after a burst (FakeSlack)
    other = AsyncWebClient(token=h.slack.token, base_url=h.slack.api_url)  # another poster
    for i in range(slack_api.POST_BURST):
        await other.chat_postMessage(channel=ALERTS, text=f"filler {i}")
    await h.command("/status", "payments", channel_id=ALERTS)
    await h.channel_message(lambda m: m["text"].startswith("☑️ status payments"), ALERTS)
    posts = [c for c in h.slack.calls_to("chat.postMessage") if c.params["channel"] == ALERTS]
    limited = [i for i, c in enumerate(posts) if c.status == 429]
    assert limited, "the burst is spent: the command's post must have been limited"
    first = limited[0]
    assert posts[first + 1].status == 200
    assert posts[first + 1].at - posts[first].at >= 1.0  # waited Retry-After (1 s)


async def test_a_channel_the_bot_left_is_answered_through_response_url(h: SlackHarness) -> None:
    h.slack.leave_channel(CHANNEL)
    _, _, url = await h.command("/status", "payments")
    [answer] = await h.responses(url)
    assert answer["response_type"] == "in_channel"
    assert answer["text"].startswith("☑️ status payments")
    [refused] = h.slack.calls_to("chat.postMessage")
    assert refused.status == 200 and h.slack.messages_in(CHANNEL) == []


async def test_audit_rows_record_who_what_where_and_the_outcome(h: SlackHarness) -> None:
    await h.command("/status", "payments")
    await h.final("status payments")
    _, _, url = await h.command("/sync", "orders", user_id=VIEWER, user_name=VIEWER_NAME)
    await h.responses(url)
    store = h.bot.store
    assert store is not None
    rows = await until_async(
        lambda: (
            [r for r in store.audit_list() if r["outcome"]]
            if len(store.audit_list()) == 2 and all(r["outcome"] for r in store.audit_list())
            else None
        )
    )
    by_cmd = {r["command"]: r for r in rows}
    status_row, sync_row = by_cmd["status"], by_cmd["sync"]
    assert (status_row["platform"], status_row["user_id"], status_row["user_name"]) == (
        "slack",
        OPERATOR,
        OPERATOR_NAME,
    )
    assert status_row["channel"] == CHANNEL and status_row["args"] == "payments"
    assert status_row["app"] == "payments" and status_row["outcome"] == "noop"
    assert status_row["ended_at"] >= status_row["started_at"]
    assert (sync_row["user_id"], sync_row["outcome"]) == (VIEWER, "denied")


async def test_help_lists_the_commands_under_their_configured_names(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    settings = chat_settings(tmp_path, argo, slack, command_prefix="argo-")
    async with slack_harness(settings, slack, argo) as h:
        await h.command("/argo-help")
        msg = await h.channel_message(lambda m: "help" in m["text"])
        text = text_of(msg)
        for line in (
            "/argo-sync APP [prune]",
            "/argo-rollback APP [COMMIT]",
            "/argo-selfheal off|on APP [DURATION]",
            "/argo-verify-rootless APP",
            "/argo-status [APP]",
        ):
            assert line in text
        await h.command("/argo-status", "orders")
        await h.channel_message(lambda m: m["text"].startswith("☑️ status orders"))


async def test_bad_input_gets_the_usage_line_only_for_the_caller(h: SlackHarness) -> None:
    _, _, url = await h.command("/sync", "")
    [post] = await h.responses(url)
    assert post["response_type"] == "ephemeral"
    assert "Missing APP." in post["text"] and "Usage: /sync APP [prune]" in post["text"]
    _, _, url = await h.command("/selfheal", "sideways payments")
    [post] = await h.responses(url)
    assert "'sideways' is not on or off." in post["text"]
    assert "Usage: /selfheal off|on APP [DURATION]" in post["text"]


async def test_failed_sync_buttons_work_after_a_restart(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    settings = chat_settings(tmp_path, argo, slack)
    argo.script("payments", "fail")
    async with slack_harness(settings, slack, argo) as h:
        await h.command("/sync", "payments")
        failed = await h.final("sync payments")
        assert failed["text"].startswith("❌")
    labels = {b["text"]["text"]: b for b in buttons_of(failed)}
    assert {"Retry", "Rollback", "Argo CD"} <= set(labels)
    assert "confirm" in labels["Rollback"]

    async with slack_harness(settings, slack, argo) as h:  # a new process, nothing in memory
        retry = labels["Retry"]
        await h.click(button(retry["value"], action_id=retry["action_id"]))
        await h.channel_message(lambda m: m["text"].startswith("✅ sync payments"))
        rows = h.bot.store.audit_list() if h.bot.store else []
        assert rows[0]["args"] == "payments [button]"


async def test_bot_not_in_the_channel_answers_through_the_response_url(h: SlackHarness) -> None:
    _, _, url = await h.command("/status", "payments", channel_id="C0PRIVATE")
    [post] = await h.responses(url)
    assert post["response_type"] == "in_channel"
    assert post["text"].startswith("☑️ status payments")


async def test_sync_runs_the_hooks_against_kubernetes_and_verify_finds_root(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    kube = FakeKube(pod_delay=0.01, bookmark_interval=0.2).start()
    api = kube_api_client(kube)
    try:
        kube.add_statefulset("prod", "payments-db", app="payments")
        kube.report_uid("payments-db", "payments-db", 1001)
        kube.add_statefulset("prod", "orders-db", app="orders")  # its image runs as root
        settings = chat_settings(tmp_path, argo, slack)
        async with slack_harness(settings, slack, argo, kube_client=api) as h:
            await h.command("/sync", "payments")
            msg = await h.final("sync payments")
            assert msg["text"].startswith("✅ sync payments"), msg["text"]
            assert "✅ Pre-sync hook · ✅ Sync · ✅ Wait for healthy · ✅ Post-sync checks" in (
                text_of(msg)
            )
            scales = [r.body for r in kube.requests_to("PATCH", "/statefulsets/payments-db/scale")]
            assert scales == [{"spec": {"replicas": 0}}, {"spec": {"replicas": 1}}]

            await h.command("/verify-rootless", "orders")
            msg = await h.final("verify-rootless orders", n=2)
            assert msg["text"].startswith("❌ verify-rootless orders")
            assert "run as root" in msg["text"]
    finally:
        api.close()
        kube.stop()
