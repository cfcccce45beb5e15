"""The incident engine: correlation, de-duplication, grace, recovery, flapping, event folding.

The engine is pure (time is passed in), so these tests drive it with explicit clocks.
"""

from __future__ import annotations

from notifiers.alert import EventCount, ResourceProblem
from notifiers.incidents.engine import Engine
from notifiers.incidents.model import Changes, Incident, Policy, Signal
from notifiers.incidents.warning_events import OTHER_EVENTS
from notifiers.routing import Router, Target, targets_for


class R:
    """A route as bot.settings.Route presents itself (only the protocol is used)."""

    def __init__(self, apps=(), projects=(), namespaces=(), slack=None, discord=None):
        self.apps, self.projects, self.namespaces = list(apps), list(projects), list(namespaces)
        self.slack_channel, self.discord_channel = slack, discord

    def matches(self, app, project, namespace):
        import fnmatch

        def ok(pats, v):
            return not pats or any(fnmatch.fnmatch(v, p) for p in pats)

        return ok(self.apps, app) and ok(self.projects, project) and ok(self.namespaces, namespace)


SLACK = (Target("slack", "C-ALERTS"),)


def engine(**policy) -> Engine:
    return Engine(Policy(**policy), lambda app, project, ns: SLACK, ui_url="https://argo.example")


def failed(app="payments", op="2024-01-01T10:00:00Z", source="watch", **kw) -> Signal:
    return Signal(
        kind="sync_failed", app=app, source=source, operation=op, message="hook failed", **kw
    )


def ops(ch: Changes) -> list[str]:
    return [e.op for e in ch.effects]


def test_one_failed_operation_reported_by_webhook_and_watch_is_one_incident():
    e = engine()
    first = e.apply(failed(source="webhook"), now=100)
    assert ops(first) == ["post"]
    alert = first.effects[0].alert
    assert alert.key == "payments:sync_failed" and alert.kind == "sync_failed"
    assert alert.url == "https://argo.example/applications/payments"
    assert [a.command for a in alert.actions] == [
        "sync payments",
        "rollback payments",
        "selfheal off payments",
        "verify-rootless payments",
        "ack payments:sync_failed",
    ]
    assert alert.actions[1].confirm and alert.actions[2].confirm
    # the same operation from the watch, and Argo CD retrying the webhook: nothing visible
    assert ops(e.apply(failed(source="watch"), now=101)) == []
    assert ops(e.apply(failed(source="webhook"), now=102)) == []
    # the watch knows WHICH resource failed: the root is edited, no new message
    res = (ResourceProblem("Job", "migrate", "prod", "SyncFailed", "BackoffLimitExceeded"),)
    ch = e.apply(failed(resources=res), now=103)
    assert ops(ch) == ["update"]
    assert ch.effects[0].alert.resources == res


def test_a_new_failed_operation_replies_in_the_same_thread():
    e = engine()
    e.apply(failed(op="2024-01-01T10:00:00Z"), now=100)
    ch = e.apply(failed(op="2024-01-01T10:05:00Z", revision="b" * 40), now=400)
    assert ops(ch) == ["update", "reply"]
    assert ch.effects[1].alert.title == "payments: sync failed again"
    assert {eff.incident_id for eff in ch.effects} == {1}


def test_degraded_blip_within_the_grace_period_pages_nobody():
    e = engine(degraded_grace=60)
    ch = e.apply(Signal(kind="degraded", app="api"), now=0)
    assert ops(ch) == [] and ch.saved  # stored as pending, not posted
    assert e.next_deadline() == 60
    ch = e.apply(Signal(kind="healthy", app="api"), now=30)
    assert ops(ch) == [] and ch.dropped == {1}
    assert ops(e.tick(now=61)) == []
    assert e.incidents == {}


def test_degraded_after_the_grace_period_posts_with_the_resources():
    e = engine(degraded_grace=60)
    res = (ResourceProblem("Deployment", "api", "prod", "Degraded", "progress deadline"),)
    e.apply(Signal(kind="degraded", app="api", message="1 resource Degraded"), now=0)
    assert ops(e.tick(now=59.9)) == []
    e.apply(Signal(kind="degraded", app="api", resources=res), now=30)  # still the same incident
    ch = e.tick(now=60)
    assert ops(ch) == ["post"]
    alert = ch.effects[0].alert
    assert alert.kind == "degraded" and alert.resources == res
    assert alert.summary == "1 resource Degraded"


def test_recovery_edits_the_root_and_posts_one_closing_reply():
    e = engine(degraded_grace=0)
    e.apply(Signal(kind="degraded", app="api"), now=1000)
    ch = e.apply(Signal(kind="healthy", app="api"), now=1000 + 12 * 60)
    assert ops(ch) == ["update", "reply"]
    root, reply = ch.effects[0].alert, ch.effects[1].alert
    assert root.kind == "recovered" and root.recovered_after == 720
    assert root.actions == ()  # no buttons on a recovered incident
    assert reply.kind == "recovered" and reply.recovered_after == 720
    # the closed incident is kept for the flap window, then closed for good
    ch = e.tick(now=1000 + 12 * 60 + 600)
    assert ops(ch) == [] and ch.saved[1].state == "closed"
    assert e.incidents == {}
    # a later problem is a NEW incident (new thread)
    ch = e.apply(Signal(kind="degraded", app="api"), now=5000)
    assert ops(ch) == ["post"] and ch.effects[0].incident_id == 2


def test_a_flapping_app_does_not_get_a_message_per_flap():
    e = engine(degraded_grace=0, flap_window=600, flapping_hold=300)
    messages: list[str] = []
    now = 0.0
    for _ in range(10):  # ten flaps, 90 s Degraded then 90 s Healthy
        for kind in ("degraded", "healthy"):
            ch = e.apply(Signal(kind=kind, app="api"), now=now)  # type: ignore[arg-type]
            ch.merge(e.tick(now))
            messages += [x for x in ops(ch) if x != "update"]
            now += 90
    # post, recovered reply, one "again" reply; everything after only edits the root
    assert messages == ["post", "reply", "reply"]
    inc = e.incidents["api:degraded"]
    assert inc.flaps == 9 and inc.state == "recovering"  # 10 Degraded spells
    ch = e.tick(now + 300)
    assert ops(ch) == ["update", "reply"]
    assert ch.effects[1].alert.kind == "recovered"
    assert "flapping, 10×" in ch.effects[0].alert.title


def test_late_webhook_of_a_superseded_failure_does_not_reopen():
    e = engine()
    e.apply(failed(op="2024-01-01T10:00:00Z"), now=0)
    ch = e.apply(Signal(kind="sync_ok", app="payments", operation="2024-01-01T10:10:00Z"), now=5)
    assert ops(ch) == ["update", "reply"]
    # Argo CD retries the old failure webhook after the success arrived
    assert ops(e.apply(failed(op="2024-01-01T10:00:00Z", source="webhook"), now=6)) == []
    assert e.incidents["payments:sync_failed"].state == "resolved"


def test_warning_events_attach_to_the_open_incident_with_counts():
    e = engine(degraded_grace=0)
    e.apply(Signal(kind="degraded", app="api"), now=0)
    for n in range(5):
        ev = EventCount("BackOff", f"Pod/api-{n % 2}", "Back-off restarting", 1)
        ch = e.apply(Signal(kind="warning", app="api", source="events", event=ev), now=1 + n)
        assert ops(ch) == ["update"]
    alert = e.alert(e.incidents["api:degraded"], now=10)
    assert alert.events == (
        EventCount("BackOff", "Pod/api-0", "Back-off restarting", 3),
        EventCount("BackOff", "Pod/api-1", "Back-off restarting", 2),
    )
    assert "api:warning_events" not in e.incidents


def test_warning_storm_is_one_incident_and_every_event_is_counted():
    e = engine(degraded_grace=5, max_event_groups=25)
    posts = 0
    total = 0
    for n in range(10_000):
        ev = EventCount("FailedMount", f"Pod/web-{n % 100}", "MountVolume.SetUp failed", 1)
        ch = e.apply(Signal(kind="warning", app="web", event=ev), now=n / 1000)
        ch.merge(e.tick(n / 1000))
        posts += ops(ch).count("post")
        total += 1
    assert posts == 1
    inc = e.incidents["web:warning_events"]
    assert inc.events_total == 10_000
    assert sum(n for _, n in inc.events.values()) == 10_000
    assert len(inc.events) == 26 and OTHER_EVENTS in inc.events
    assert e.alert(inc, 10).title == "web: 10000 Warning events"
    # quiet for the quiet period: resolved with a closing reply
    ch = e.tick(10 + 600)
    assert ops(ch) == ["update", "reply"]


def test_acknowledge_records_who_and_stops_reannouncing():
    e = engine(reannounce_interval=1800)
    e.apply(failed(), now=0)
    ch = e.reannounce(now=1799)
    assert ops(ch) == []
    ch = e.reannounce(now=1800)
    assert ops(ch) == ["reply"] and ch.effects[0].broadcast
    assert ch.effects[0].alert.title.startswith("Still unacknowledged")
    inc, fresh, ch = e.acknowledge("payments:sync_failed", "alice", now=1900)
    assert inc is not None and fresh and ops(ch) == ["update", "reply"]
    assert ch.effects[0].alert.acknowledged_by == "alice"
    assert "ack payments:sync_failed" not in [a.command for a in ch.effects[0].alert.actions]
    assert ch.effects[1].alert.title == "Acknowledged by alice"
    assert ops(e.reannounce(now=99999)) == []
    inc, fresh, _ = e.acknowledge("#1", "bob", now=2000)
    assert inc is not None and not fresh and inc.acked_by == "alice"
    assert e.acknowledge("nope:degraded", "bob", now=2000)[0] is None


def test_deleted_app_resolves_its_incidents():
    e = engine(degraded_grace=0)
    e.apply(failed(), now=0)
    ch = e.apply(Signal(kind="deleted", app="payments"), now=10)
    assert ops(ch) == ["update", "reply"]
    assert ch.effects[0].alert.summary == "The Application was deleted."


def test_incident_survives_a_json_round_trip():
    e = engine(degraded_grace=0)
    e.apply(failed(resources=(ResourceProblem("Job", "m", "ns", "SyncFailed", "x"),)), now=0)
    ev = EventCount("BackOff", "Pod/p", "m", 4)
    e.apply(Signal(kind="warning", app="payments", event=ev), now=1)
    inc = e.incidents["payments:sync_failed"]
    again = Incident.from_json(inc.to_json())
    assert again == inc
    other = engine()
    other.load([again], next_id=2)
    assert ops(other.apply(failed(), now=5)) == []  # already reported: no new message
    assert other.apply(failed(app="other"), now=5).effects[0].incident_id == 2


def test_routes_first_match_per_platform_then_default():
    routes = [
        R(projects=["payments"], slack="C-PAY"),
        R(namespaces=["prod-*"], discord="D-PROD"),
        R(apps=["*"], slack="C-ALL"),
    ]
    defaults = {"slack": "C-DEFAULT", "discord": "D-DEFAULT"}
    assert targets_for(routes, defaults, app="a", project="payments", namespace="x") == (
        Target("slack", "C-PAY"),
        Target("discord", "D-DEFAULT"),
    )
    assert targets_for(routes, defaults, app="a", project="web", namespace="prod-eu") == (
        Target("slack", "C-ALL"),
        Target("discord", "D-PROD"),
    )
    only_slack = Router([], {"slack": "C1", "discord": "D1"}, platforms=("slack",))
    assert only_slack("a", "p", "n") == (Target("slack", "C1"),)
    assert targets_for([], {}, app="a", project="p", namespace="n") == ()
