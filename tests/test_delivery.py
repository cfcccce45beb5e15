"""Delivery without loss against the Slack and Discord fakes: 429 Retry-After, outages waited
out (no give-up after a few tries; a horizon), permanent errors at once, coalesced edits and
replies, a root never delivered posted late, wake-up when the platform answers, probing instead
of storming, and waiting messages surviving a restart and an upgrade (in-process; the kill -9
variants are in test_alerts_e2e.py and test_chaos_delivery.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace

import pytest

from notifiers.alert import EventCount
from notifiers.delivery import DeliveryPolicy
from notifiers.incidents.model import Policy, Signal
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


async def test_messages_waiting_out_an_outage_survive_a_restart_and_go_out_once(tmp_path, slack):
    s = settings(tmp_path, slack=slack)
    slack.server.pause()  # Slack unreachable: the alert stays in the outbox
    slow = replace(FAST, backoff_base=30, backoff_cap=30, probe_interval=60)
    async with Harness(s, delivery=slow) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await until_async(lambda: outbox(h)[0][2] == 1)  # one failed try recorded
        health = h.runner.delivery_health()
        assert health["state"] == "waiting" and health["waiting"] == 1
        [channel] = health["failing_channels"]
        assert channel["channel"] == "C0ALERTS" and "ClientConnectorError" in channel["last_error"]
        assert 'chatops_alert_outbox_waiting{platform="slack"} 1' in h.metrics.render()
    # the row is still pending, with its retry state: waiting is not failing
    [row] = (
        sqlite3.connect(s.state_db)
        .execute("SELECT status, tries, first_failed_at, not_before > created_at FROM outbox")
        .fetchall()
    )
    assert row[0] == "pending" and row[1] == 1 and row[2] is not None and row[3] == 1
    slack.server.resume()
    async with Harness(s, delivery=slow) as h2:  # the slow backoff: the restart probes at once
        await until_async(lambda: slack.messages_in("C0ALERTS"))
        await h2.idle()
        assert len(slack.messages_in("C0ALERTS")) == 1
        assert outbox(h2) == [("post", "sent", 2)]
        assert h2.runner is not None and h2.runner.delivery_health()["state"] == "ok"
        # and the restarted engine knows the incident: the same report is not a new alert
        await h2.runner.ingest([failed()])
        await h2.idle()
        assert len(slack.calls_to("chat.postMessage")) == 1


async def test_messages_an_older_version_gave_up_on_are_delivered_after_the_upgrade(
    tmp_path, slack
):
    from bot.state import store as st

    s = settings(tmp_path, slack=slack)
    db = sqlite3.connect(s.state_db)
    for _version, sql in st.MIGRATIONS[:2]:  # a database of schema version 2
        db.executescript(sql)
    payload = json.dumps({"alert": _alert_json("payments"), "broadcast": False})
    now = time.time()
    rows = [
        (1, "post", "failed", "gave up after 6 tries: slack chat.postMessage: HTTP 503", now),
        (1, "reply", "failed", "the incident's first message was never delivered", now),
        (2, "post", "failed", "slack chat.postMessage: channel_not_found", now),  # permanent
        (3, "post", "failed", "gave up after 6 tries: HTTP 503", now - 3 * 86400),  # too old
    ]
    db.executemany(
        "INSERT INTO outbox (incident_id, platform, channel, op, payload, status, tries,"
        " not_before, created_at, done_at, error) VALUES (?, 'slack', 'C0ALERTS', ?, ?, ?, 6,"
        " 0, ?, ?, ?)",
        [(i, op, payload, status, at, at, err) for i, op, status, err, at in rows],
    )
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    async with Harness(s) as h:
        await until_async(lambda: [st for _, st, _ in outbox(h)][:2] == ["sent", "sent"])
        assert [st for _, st, _ in outbox(h)] == ["sent", "sent", "failed", "failed"]
        [root] = slack.messages_in("C0ALERTS")
        assert len(slack.thread("C0ALERTS", root["ts"])) == 1


def _alert_json(app: str) -> dict:
    from datetime import UTC, datetime

    from notifiers.alert import Alert, Severity

    return Alert(
        key=f"{app}:sync_failed", app=app, kind="sync_failed", severity=Severity.CRITICAL,
        title=f"{app}: sync failed", summary="PreSync hook failed",
        occurred_at=datetime(2024, 5, 1, tzinfo=UTC),
    ).to_json()  # fmt: skip


async def test_a_root_never_delivered_is_posted_with_the_latest_state(tmp_path, slack):
    async with Harness(settings(tmp_path, slack=slack, slack_alert_channel="C0LATER")) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle()
        assert outbox(h) == [("post", "failed", 0)]  # channel_not_found: permanent, at once
        slack.add_channel("C0LATER", "later")  # someone creates the channel
        # the next report of the incident: an edit and a "sync failed again" reply
        again = Signal(kind="sync_failed", app="payments", operation="2024-05-01T11:00:00Z",
                       message="Job migrate: backoff limit reached")  # fmt: skip
        await h.runner.ingest([again])
        await h.idle()
        [root] = slack.messages_in("C0LATER")  # the incident as it reads now
        assert root["text"] == "🔴 payments: sync failed — Job migrate: backoff limit reached"
        [reply] = slack.thread("C0LATER", root["ts"])
        assert "sync failed again" in reply["text"]
        assert [st for _, st, _ in outbox(h)] == ["failed", "sent", "sent"]
        assert [op for op, _, _ in outbox(h)] == ["post", "post", "reply"]


async def test_a_reply_whose_root_is_missing_posts_the_root_first(tmp_path, slack):
    policy = Policy(degraded_grace=0, reannounce_interval=0.3)
    s = settings(tmp_path, slack=slack, slack_alert_channel="C0LATER")
    async with Harness(s, policy=policy, reannounce_every=0.1) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        await h.idle()
        slack.add_channel("C0LATER", "later")
        # only a reply comes next: the re-announcement of the unacknowledged incident
        await until_async(lambda: slack.messages_in("C0LATER"), timeout=5)
        await h.idle()
        root = slack.messages_in("C0LATER")[0]
        assert root["text"].startswith("🔴 payments: sync failed")
        thread = slack.thread("C0LATER", root["ts"])
        assert thread and thread[0]["text"].startswith("🔴 Still unacknowledged")


async def test_an_answer_from_the_platform_wakes_channels_waiting_out_their_backoff(
    tmp_path, slack
):
    routes = [{"apps": ["web*"], "slack_channel": "C0OPS"}]
    slow = replace(FAST, backoff_base=60, backoff_cap=60, probe_interval=60)
    slack.fail_next(1, status=503, only="chat.postMessage")
    async with Harness(settings(tmp_path, slack=slack, routes=routes), delivery=slow) as h:
        assert h.runner is not None
        await h.runner.ingest([failed("payments")])
        await until_async(lambda: slack.calls_to("chat.postMessage"))  # the 503
        assert h.runner.delivery_health()["state"] == "waiting"  # for 30-60 s
        await h.runner.ingest([failed("web")])  # another channel of the same Slack: it works
        await until_async(lambda: slack.messages_in("C0ALERTS"), timeout=5)
        await h.idle()
        assert [c.status for c in slack.calls_to("chat.postMessage")] == [503, 200, 200]
        assert h.runner.delivery_health()["state"] == "ok"


async def test_while_slack_is_down_a_channel_is_probed_not_stormed(tmp_path, slack):
    probing = replace(FAST, backoff_base=0.05, backoff_cap=0.1, probe_interval=0.1)
    slack.fail_next(1_000_000, status=503)
    async with Harness(settings(tmp_path, slack=slack), delivery=probing) as h:
        assert h.runner is not None
        for n in range(20):  # 20 incidents in one channel
            await h.runner.ingest([failed(f"app-{n:02d}")])
        await until_async(lambda: len(slack.calls) >= 8)
        # every failed call was a probe (one backoff step each), none was a message of the 20
        # trying on its own: the failure count and the probe steps agree (read at one instant,
        # between a failure and its bookkeeping they may differ by one, hence the wait)

        def agreeing() -> tuple[dict[str, object], int] | None:
            health, text = h.runner.delivery_health(), h.metrics.render()
            steps = health["failing_channels"][0]["failed_tries"]
            line = (
                'chatops_alert_delivery_failures_total{platform="slack",reason="transient"} '
                f"{float(steps)}"
            )
            return (health, steps) if steps >= 8 and line in text.splitlines() else None

        health, _steps = await until_async(agreeing, timeout=10)
        assert health["waiting"] >= 19  # (one may be in flight)
        slack.clear_failures()
        await h.idle(10)
        posts = slack.calls_to("chat.postMessage")
        assert len(slack.messages_in("C0ALERTS")) == 20
        assert sum(c.status == 200 for c in posts) == 20


async def test_updates_and_replies_waiting_out_an_outage_are_coalesced(tmp_path, slack):
    slack.fail_next(1_000_000, status=503)
    async with Harness(settings(tmp_path, slack=slack)) as h:
        assert h.runner is not None
        await h.runner.ingest([failed()])
        for n in range(1, 31):  # 30 more failed syncs: 30 edits and 30 "sync failed again"
            await h.runner.ingest([failed(op=f"2024-05-01T11:{n:02d}:00Z")])
        await h.runner.ingest([Signal(kind="sync_ok", app="payments", operation="2024-05-02")])
        await until_async(lambda: len(slack.calls) >= 3)
        slack.clear_failures()
        await h.idle(10)
        ok = [c for c in slack.calls if c.status == 200]
        assert [c.method for c in ok] == ["chat.postMessage", "chat.postMessage"]
        [root] = slack.messages_in("C0ALERTS")
        assert root["text"].startswith("🟢 payments: recovered")  # the latest state, at once
        [summary] = slack.thread("C0ALERTS", root["ts"])
        assert "+30 more events: 30× payments: sync failed again" in summary["text"]
        statuses = [st for _, st, _ in outbox(h)]
        assert statuses.count("sent") == 2 and statuses.count("merged") == len(statuses) - 2


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
    """The chat adapter's side of the dispatcher (bot.chat.invocation.Reply), recorded."""

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
    from bot.chat.dispatch import Dispatcher
    from bot.chat.invocation import Invocation
    from bot.state.store import Store

    s = settings(
        tmp_path,
        slack=slack,
        authorization={
            "slack_team_ids": [slack.team_id],
            "grants": [{"role": "operator", "slack_users": ["U1"]}],  # ack needs operator
        },
    )
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
