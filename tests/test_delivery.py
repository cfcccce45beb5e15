"""Delivery without loss: 429 Retry-After, 5xx backoff, bounded tries, permanent errors,
coalesced edits, Discord, and pending messages surviving a restart (in-process; the kill -9
variant is in test_alerts_e2e.py). Runs the real sinks against the Slack and Discord fakes."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace

import pytest

from notifiers.alert import EventCount
from notifiers.delivery import DeliveryPolicy
from notifiers.incidents.engine import Policy, Signal
from tests.alert_fixtures import FAST, Harness, discord_channel, settings
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.recording import until_async


@pytest.fixture
def discord():
    fake = FakeDiscord().start()
    yield fake
    fake.stop()


def failed(app: str = "payments", op: str = "2024-05-01T10:00:00Z") -> Signal:
    return Signal(kind="sync_failed", app=app, operation=op, message="PreSync hook failed")


def outbox(h: Harness) -> list[tuple[str, str, int]]:
    db = sqlite3.connect(h.settings.state_db)
    try:
        return db.execute("SELECT op, status, tries FROM outbox ORDER BY id").fetchall()
    finally:
        db.close()


async def test_429_retry_after_is_honored(tmp_path, slack):
    slack.rate_limit_next(1, retry_after=1, only="chat.postMessage")
    async with Harness(settings(tmp_path, slack=slack)) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle(10)
        first, second = slack.calls_to("chat.postMessage")
        assert first.status == 429 and second.status == 200
        assert second.at - first.at >= 0.95  # waited Retry-After, not our own backoff
        assert len(slack.messages_in("C0ALERTS")) == 1
        assert outbox(h) == [("post", "sent", 1)]
        assert 'result="rate_limited"' in h.metrics.render()


async def test_5xx_is_retried_with_backoff_then_sent(tmp_path, slack):
    slack.fail_next(2, status=503, only="chat.postMessage")
    async with Harness(settings(tmp_path, slack=slack)) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle()
        calls = slack.calls_to("chat.postMessage")
        assert [c.status for c in calls] == [503, 503, 200]
        assert calls[2].at - calls[1].at >= 0.04  # backed off, not hammered
        assert len(slack.messages_in("C0ALERTS")) == 1
        assert outbox(h) == [("post", "sent", 3)]


async def test_an_outage_outlasting_the_old_six_tries_is_waited_out(tmp_path, slack):
    # 12 failures in a row: the old worker gave up after 6 tries (about 30 s of outage)
    slack.fail_next(12, status=503, only="chat.postMessage")
    async with Harness(settings(tmp_path, slack=slack)) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle(20)
        calls = slack.calls_to("chat.postMessage")
        assert [c.status for c in calls] == [503] * 12 + [200]
        assert len(slack.messages_in("C0ALERTS")) == 1
        assert outbox(h) == [("post", "sent", 13)]
        text = h.metrics.render()
        assert (
            'chatops_alert_delivery_failures_total{platform="slack",reason="transient"} 12' in text
        )
        assert 'result="failed"' not in text
        # the incident's next edit goes to the same message, not "failed at once"
        await h.runner.ingest([Signal(kind="sync_ok", app="payments", operation="2024-05-02")])
        await h.idle()
        assert [s for _, s, _ in outbox(h)] == ["sent", "sent", "sent"]
        [root] = slack.messages_in("C0ALERTS")
        assert "recovered" in root["text"]


async def test_a_channel_failing_past_the_horizon_gives_up_then_starts_afresh(tmp_path, slack):
    short = replace(FAST, horizon=0.5)
    slack.fail_next(10_000, status=503, only="chat.postMessage")
    async with Harness(settings(tmp_path, slack=slack), delivery=short) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle(10)
        assert outbox(h) == [("post", "failed", len(slack.calls_to("chat.postMessage")))]
        text = h.metrics.render()
        assert 'chatops_alert_delivery_failures_total{platform="slack",reason="expired"} 1' in text
        slack.clear_failures()  # Slack is back: a new alert gets a horizon of its own
        await h.runner.ingest([failed("orders")])
        await h.idle()
        assert [m["text"] for m in slack.messages_in("C0ALERTS")] == [
            "🔴 orders: sync failed — PreSync hook failed"
        ]


async def test_permanent_error_fails_at_once(tmp_path, slack):
    async with Harness(settings(tmp_path, slack=slack, slack_alert_channel="C0NOPE")) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle()
        assert len(slack.calls_to("chat.postMessage")) == 1
        assert outbox(h) == [("post", "failed", 0)]


async def test_edits_are_coalesced_and_spaced(tmp_path, slack):
    delivery = DeliveryPolicy(rates=FAST.rates, update_interval=0.3, backoff_base=0.05)
    async with Harness(settings(tmp_path, slack=slack), delivery=delivery) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        started = time.monotonic()
        for n in range(200):  # 200 events for the app while its alert is open
            ev = EventCount("BackOff", f"Pod/payments-{n % 3}", "Back-off restarting", 1)
            await h.runner.ingest([Signal(kind="warning", app="payments", event=ev)])
        await h.idle()
        elapsed = time.monotonic() - started
        posts = slack.calls_to("chat.postMessage")
        updates = slack.calls_to("chat.update")
        assert len(posts) == 1
        assert 1 <= len(updates) <= elapsed / 0.3 + 1
        [final] = slack.messages_in("C0ALERTS")
        text = json.dumps(final["blocks"], ensure_ascii=False)
        assert "×67" in text and "×66" in text  # 200 events over 3 pods, all counted
        statuses = [s for _, s, _ in outbox(h)]
        assert statuses.count("sent") == 1 + len(updates)
        assert statuses.count("merged") == 200 - len(updates)


async def test_discord_post_edit_and_reply_reference_the_root(tmp_path, discord):
    async with Harness(settings(tmp_path, discord=discord)) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle()
        [root] = discord.messages_in(discord_channel())
        assert "payments: sync failed" in root["content"]
        discord.rate_limit_next(1, retry_after=0.2, only="PATCH")
        await h.runner.ingest([Signal(kind="sync_ok", app="payments", operation="2024-06-01")])
        await h.idle()
        patches = discord.calls_to("PATCH")
        assert [c.status for c in patches] == [429, 200]
        edited = discord.message(root["id"])
        assert "recovered" in edited["content"]
        reply = discord.calls_to("POST /channels")[-1]
        assert reply.params["message_reference"]["message_id"] == root["id"]
        assert reply.params["allowed_mentions"] == {"parse": []}


async def test_pending_messages_survive_a_restart_and_go_out_once(tmp_path, slack):
    s = settings(tmp_path, slack=slack)
    slack.server.pause()  # Slack unreachable: the alert stays in the outbox
    slow = DeliveryPolicy(rates=FAST.rates, backoff_base=30, backoff_cap=30)
    async with Harness(s, delivery=slow) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        assert h.runner.deliverer is not None
        await until_async(lambda: outbox(h)[0][2] == 1)  # one failed try recorded
    slack.server.resume()
    async with Harness(s) as h2:
        await until_async(lambda: slack.messages_in("C0ALERTS"))
        await h2.idle()
        assert len(slack.messages_in("C0ALERTS")) == 1
        assert outbox(h2) == [("post", "sent", 2)]
        # and the restarted engine knows the incident: the same report is not a new alert
        assert h2.runner is not None
        await h2.runner.ingest([failed()])
        await h2.idle()
        assert len(slack.calls_to("chat.postMessage")) == 1


async def test_ack_command_records_who_and_edits_the_alert(tmp_path, slack):
    class Inv:
        user_name = "alice"
        user_id = "U1"

    async with Harness(settings(tmp_path, slack=slack), policy=Policy(degraded_grace=0)) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle()
        result = await h.runner.ack_command(Inv(), ["payments:sync_failed"])
        assert result.status.value == "changed"
        await h.idle()
        [root] = slack.messages_in("C0ALERTS")
        assert "acknowledged by alice" in json.dumps(root["blocks"])
        assert "ack payments:sync_failed" not in json.dumps(root["blocks"])
        assert "Acknowledged by alice" in slack.thread("C0ALERTS", root["ts"])[0]["text"]
        again = await h.runner.ack_command(Inv(), ["#1"])
        assert again.status.value == "noop" and "alice" in again.summary
        from commands import errors

        with pytest.raises(errors.NotFound):
            await h.runner.ack_command(Inv(), ["nothing:here"])


class RecordingReply:
    """The chat adapter's side of the dispatcher (bot.chat.dispatch.Reply), recorded."""

    def __init__(self) -> None:
        self.results: list = []
        self.errors: list[str] = []

    async def progress(self, command, target, steps) -> None:
        pass

    async def result(self, result) -> None:
        self.results.append(result)

    async def ask_confirm(self, prompt, command) -> None:
        raise AssertionError("ack needs no confirmation")

    async def error(self, text: str) -> None:
        self.errors.append(text)


async def test_ack_button_goes_through_the_real_dispatcher(tmp_path, slack):
    from bot.chat.dispatch import Dispatcher, Invocation
    from bot.state.store import Store

    s = settings(tmp_path, slack=slack, authorization={"slack_team_ids": [slack.team_id]})
    store = Store(tmp_path / "dispatch.db")
    dispatcher = Dispatcher(s, None, store)
    async with Harness(s, dispatcher=dispatcher) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle()
        [root] = slack.messages_in("C0ALERTS")
        ack = next(
            e["value"] for b in root["blocks"] if b["type"] == "actions" for e in b["elements"]
            if e.get("value", "").startswith("ack ")
        )  # fmt: skip
        reply = RecordingReply()
        inv = Invocation(
            "slack", "U1", "alice", "C0ALERTS", ack, team_id=slack.team_id, source="button"
        )
        result = await dispatcher.handle(inv, reply)
        assert reply.errors == [] and result is not None and result.status.value == "changed"
        await h.idle()
        assert "acknowledged by alice" in json.dumps(slack.messages_in("C0ALERTS")[0]["blocks"])
        assert [a["command"] for a in store.audit_list()] == ["ack"]
    store.close()


async def test_unacknowledged_incident_is_reannounced_by_the_scheduler(tmp_path, slack):
    policy = Policy(degraded_grace=0, reannounce_interval=0.3)
    async with Harness(settings(tmp_path, slack=slack), policy=policy,
                       reannounce_every=0.1) as h:  # fmt: skip
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await until_async(lambda: slack.messages_in("C0ALERTS"))
        root = slack.messages_in("C0ALERTS")[0]
        await until_async(lambda: slack.thread("C0ALERTS", root["ts"]), timeout=5)
        first = slack.thread("C0ALERTS", root["ts"])[0]
        assert first["text"].startswith("🔴 Still unacknowledged")
        calls = [c for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts")]
        assert calls[0].params["reply_broadcast"] in (True, "true", "1", 1)


async def test_purge_forgets_old_history_but_not_open_incidents(tmp_path, slack):
    async with Harness(settings(tmp_path, slack=slack)) as h:
        assert h.runner is not None and h.store is not None
        await h.runner.ingest([failed("old")], dedup_key="k-old")
        await h.runner.ingest([failed("new")])
        await h.idle()
        await h.runner.ingest([Signal(kind="sync_ok", app="old", operation="2024-06-01")])
        await h.idle()
        long_ago = time.time() - 40 * 86400
        h.store.execute("UPDATE incidents SET state='closed', updated_at=? WHERE app='old'",
                        (long_ago,))  # fmt: skip
        h.store.execute("UPDATE outbox SET done_at=? WHERE incident_id=1", (long_ago,))
        h.store.execute("UPDATE webhook_dedup SET received_at=?", (long_ago,))
        await h.runner.purge()
        rows = h.store.query("SELECT app, state FROM incidents ORDER BY id")
        assert [tuple(r) for r in rows] == [("new", "open")]
        assert h.store.query("SELECT COUNT(*) FROM webhook_dedup")[0][0] == 0
        assert h.store.query("SELECT DISTINCT incident_id FROM alert_threads")[0][0] == 2
        assert {r[0] for r in h.store.query("SELECT incident_id FROM outbox")} == {2}
