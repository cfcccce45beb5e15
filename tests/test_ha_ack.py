"""``ack`` on any replica: two ``Bot``s on one real PostgreSQL store (tests/test_ha.py's Pair,
lease 1 s). A click that lands on the follower (Slack HTTP mode behind one Service) is queued in
the store, applied by the leader's engine, and answered in the leader's words; with no leader it
is answered "queued" and applied once a replica leads."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from bot.server.serve import Bot
from bot.state.leader import LeaderElector
from tests.chat_fixtures import (
    ALERTS,
    OPERATOR_NAME,
    RecordingReply,
    SlackHarness,
    button,
    buttons_of,
    text_of,
)
from tests.fakes.kube_api import api_client
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack
from tests.test_ha import (  # noqa: F401 - fixtures
    FAST,
    NS,
    Pair,
    argo,
    invocation,
    kube,
    pair,
    posts_about,
    slack,
)

KEY = "payments:degraded"


async def degraded_root(leader: Bot, chat: FakeSlack, argo_fake: Any) -> dict[str, Any]:
    """payments goes Degraded; the leader's alert, once it is in the channel."""
    await until_async(lambda: leader.alerts.app_watch.knows("payments"))  # type: ignore[union-attr]
    argo_fake.set_health("payments", "Degraded", "Back-off pulling image payments:2")
    [root] = await until_async(lambda: posts_about(chat, "payments"), timeout=5)
    return root


def ack_replies(chat: FakeSlack, root: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chat.thread(ALERTS, root["ts"]) if "Acknowledged by" in m["text"]]


def audited_acks(bot: Bot) -> list[dict[str, Any]]:
    assert bot.store is not None
    return [r for r in bot.store.audit_list() if r["command"] == "ack"]


async def test_an_ack_clicked_on_the_follower_acknowledges_on_the_leader(
    pair: Pair,  # noqa: F811
) -> None:
    a = await pair.start("pod-a")
    b = await pair.start("pod-b")
    leader = await pair.leader()
    follower = b if leader is a else a
    root = await degraded_root(leader, pair.slack, pair.argo)
    [value] = [v["value"] for v in buttons_of(root) if v.get("value", "").startswith("ack ")]
    assert value == f"ack {KEY}"

    async with aiohttp.ClientSession() as session:
        on_follower = SlackHarness(follower, pair.slack, pair.argo, session)
        status, _ = await on_follower.click(button(value, label="Acknowledge"))
        assert status == 200
        # the answer in the channel is the leader's
        said = f"Acknowledged {KEY}; it will not be re-announced."
        await on_follower.channel_message(lambda m: said in text_of(m))

        # the leader's engine has it: no more re-announcements, however late it gets
        runner = leader.alerts
        assert runner is not None and runner.alert_store is not None
        assert runner.engine.incidents[KEY].acked_by == OPERATOR_NAME
        later = time.time() + 10 * runner.engine.policy.reannounce_interval
        changes = await runner.alert_store.writer.submit(
            lambda _db: runner.engine.reannounce(later)
        )
        assert changes.effects == []

        # clicked again (on the follower): the leader's answer, and nothing new in the thread
        await on_follower.click(button(value, label="Acknowledge"))
        said = f"{KEY} was already acknowledged by {OPERATOR_NAME}."
        await on_follower.channel_message(lambda m: said in text_of(m))
    # the thread says so once, and the alert shows who acknowledged it (edits of one message
    # go out at most every 5 s: the delivery policy's update_interval)
    await until_async(lambda: len(ack_replies(pair.slack, root)) == 1, timeout=10)
    await until_async(lambda: "acknowledged by" in text_of(pair.slack.message(ALERTS, root["ts"])))

    await until_async(lambda: len(audited_acks(follower)) == 2 and all(
        r["outcome"] for r in audited_acks(follower)))  # fmt: skip
    # audited once per click, by the replica the user reached
    assert [r["outcome"] for r in audited_acks(follower)] == ["noop", "changed"]
    assert len(ack_replies(pair.slack, root)) == 1
    assert follower.store is not None
    assert follower.store.query("SELECT COUNT(*) FROM ack_requests")[0][0] == 0


async def test_an_ack_with_no_leader_is_queued_and_applied_once_one_leads(
    pair: Pair,  # noqa: F811
) -> None:
    a = await pair.start("pod-a")
    assert (await pair.leader()) is a
    await degraded_root(a, pair.slack, pair.argo)
    await a.stop()  # releases the Lease; a replica that holds it but runs nothing takes it
    stuck = LeaderElector(
        api_client(pair.kube), name="argocd-chatops", namespace=NS, identity="pod-z", timings=FAST
    )
    stuck.start()
    try:
        await until_async(lambda: stuck.is_leader)
        b = await pair.start("pod-b")
        assert b.leadership is not None and b.dispatcher is not None
        await until_async(lambda: b.leadership.elector.holder == "pod-z")  # type: ignore[union-attr]
        b.leadership.ack.wait = 0.5

        reply = RecordingReply()
        result = await b.dispatcher.handle(invocation(f"ack {KEY}"), reply)
        assert result is not None and reply.errors == []
        assert result.summary.startswith(
            f"Your acknowledgement of {KEY} is queued: the leading replica (pod-z) has not "
            "applied it yet."
        )
        assert b.leadership.acks.waiting() == 1
    finally:
        await stuck.stop()  # released: b leads now
    assert (await pair.leader()) is b
    await until_async(lambda: b.leadership.acks.waiting() == 0)  # type: ignore[union-attr]
    assert b.alerts is not None
    assert b.alerts.engine.incidents[KEY].acked_by == OPERATOR_NAME
    # the thread will say so: the reply is in the outbox (delivery is tested on its own)
    assert b.store is not None
    replies = b.store.query(
        "SELECT COUNT(*) FROM outbox WHERE op='reply' AND payload LIKE ?", ("%Acknowledged by%",)
    )
    assert replies[0][0] == 1
    [row] = audited_acks(b)
    assert row["outcome"] == "noop" and "queued" in row["detail"]
