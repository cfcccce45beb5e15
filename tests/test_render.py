"""Golden-file tests of the Slack and Discord renderers, plus limit and escaping checks.

Each case renders to tests/golden/<case>.slack.json and <case>.discord.json, compared exactly.
After an intended change, rewrite them with ``UPDATE_GOLDEN=1 pytest tests/test_render.py`` and
review the diff. Every rendering, golden or generated, is also checked against the platform
limits, so a golden file can never pin a message the platform would reject.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.results import Action, Fact, Link, Result, Status, Step, StepState
from notifiers.alert import Alert, CommitRef, EventCount, ResourceProblem, Severity
from notifiers.render import common as rc
from notifiers.render import discord as render_discord
from notifiers.render import slack as render_slack

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

ARGO = "https://argocd.example.com/applications/argocd/payments"
AT = datetime(2024, 5, 1, 12, 3, 0, tzinfo=UTC)
SHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"

# --- cases ------------------------------------------------------------------------------------

SYNC_CHANGED = Result(
    command="sync",
    target="payments",
    status=Status.CHANGED,
    summary="synced to a1b2c3d",
    facts=(
        Fact("revision", "9f8e7d6 → a1b2c3d"),
        Fact("resources", "12 synced, 1 pruned"),
        Fact("duration", "42s"),
    ),
    links=(
        Link("Open in Argo CD", ARGO),
        Link("Commit a1b2c3d", "https://github.com/acme/deploy/commit/" + SHA),
    ),
    steps=(
        Step("refresh", StepState.DONE, "a1b2c3d"),
        Step("presync", StepState.DONE, "scaled 1 StatefulSet to 0"),
        Step("sync", StepState.DONE),
        Step("wait", StepState.DONE, "Healthy"),
        Step("postsync", StepState.DONE, "2 StatefulSets Ready, non-root"),
    ),
)

SYNC_FAILED = Result(
    command="sync",
    target="payments",
    status=Status.FAILED,
    summary="post-sync check failed: db-0 runs as root",
    facts=(
        Fact("revision", "a1b2c3d"),
        Fact("phase", "Failed"),
        Fact("hint", "Set runAsNonRoot: true on the db StatefulSet, or roll back."),
    ),
    links=(Link("Open in Argo CD", ARGO),),
    actions=(
        Action("Retry", "sync payments", style="primary"),
        Action(
            "Rollback",
            "rollback payments",
            style="danger",
            confirm="Revert a1b2c3d on main and sync payments?",
        ),
    ),
    steps=(
        Step("refresh", StepState.DONE),
        Step("presync", StepState.DONE),
        Step("sync", StepState.DONE),
        Step("wait", StepState.DONE),
        Step("postsync", StepState.FAILED, "db-0 runs as uid 0"),
    ),
)

DENIED = Result(
    command="rollback",
    target="payments",
    status=Status.DENIED,
    summary="you are not allowed to roll back payments",
    facts=(Fact("hint", "Ask in #platform to be added to the deployers group."),),
)

NOOP = Result(
    command="selfheal",
    target="payments",
    status=Status.NOOP,
    summary="self-heal is already on",
)

PROGRESS_MIXED = (
    "sync",
    "payments",
    (
        Step("refresh", StepState.DONE, "a1b2c3d"),
        Step("presync", StepState.SKIPPED, "no StatefulSets"),
        Step("sync", StepState.DONE, "12 resources"),
        Step("wait", StepState.RUNNING, "2 of 3 Healthy"),
    ),
)

PROGRESS_FAILED = (
    "rollback",
    "payments",
    (
        Step("revert", StepState.DONE, "d4e5f60 reverts a1b2c3d"),
        Step("refresh", StepState.DONE),
        Step("sync", StepState.FAILED, "ComparisonError: <rendered manifests & hooks>"),
    ),
)

ALERT_DEGRADED = Alert(
    key="prod-cluster/payments:degraded",
    app="payments",
    kind="degraded",
    severity=Severity.CRITICAL,
    title="payments: Degraded",
    summary="2 resources are unhealthy after the sync to a1b2c3d.",
    project="default",
    cluster="prod-cluster",
    namespace="payments",
    revision=SHA,
    resources=(
        ResourceProblem(
            "Deployment", "payments-api", "payments", "Degraded", "Readiness probe failed: 503"
        ),
        ResourceProblem("StatefulSet", "db", "payments", "Progressing", "0 of 1 replicas ready"),
        ResourceProblem("Ingress", "payments", "edge", "Missing"),
    ),
    commit=CommitRef(SHA, "Alice Doe", "Bump payments-api to 2.4.0"),
    occurred_at=AT,
    url=ARGO,
    events=(
        EventCount("BackOff", "Pod/payments-api-7d9f", "Back-off restarting failed container", 12),
        EventCount("FailedMount", "Pod/db-0", 'MountVolume.SetUp failed for volume "data"', 1),
    ),
    actions=(
        Action("Status", "status payments"),
        Action("Sync", "sync payments", style="primary"),
        Action("Rollback", "rollback payments", style="danger", confirm="Revert a1b2c3d?"),
    ),
)

ALERT_RECOVERED = Alert(
    key="prod-cluster/payments:degraded",
    app="payments",
    kind="recovered",
    severity=Severity.RESOLVED,
    title="payments: recovered",
    summary="All resources are Healthy again.",
    project="default",
    cluster="prod-cluster",
    namespace="payments",
    revision="v2.4.1",
    occurred_at=AT + timedelta(minutes=12, seconds=30),
    url=ARGO,
    acknowledged_by="alice",
    recovered_after=750,
)


def _oversize_result() -> Result:
    long = "Lorem ipsum dolor sit amet 🚀 <b>&amp; " * 200
    return Result(
        command="sync",
        target="x" * 253,
        status=Status.FAILED,
        summary=long,
        facts=tuple(Fact(f"fact-{i} {'n' * 300}", long[:700]) for i in range(60)),
        links=(
            *(Link(f"Link {i} " + "l" * 100, f"https://example.com/{i}") for i in range(8)),
            Link("Too long", "https://example.com/" + "u" * 3000),
        ),
        actions=tuple(
            Action(f"Action {i} " + "a" * 100, f"sync app-{i}", confirm=long if i % 3 else None)
            for i in range(30)
        ),
        steps=tuple(Step(f"step-{i}", StepState.FAILED, long[:500]) for i in range(40)),
    )


def _oversize_alert() -> Alert:
    long = "Warning: `back-off` *restarting* <failed> container @everyone 👍🏽 " * 100
    return Alert(
        key="prod/" + "k" * 300,
        app="payments",
        kind="warning_events",
        severity=Severity.WARNING,
        title="payments: " + "t" * 3000,
        summary=long,
        project="p" * 500,
        cluster="c" * 500,
        namespace="payments",
        revision="main",
        resources=tuple(
            ResourceProblem("Pod", f"pod-{i}", "other", "Degraded", long) for i in range(500)
        ),
        commit=CommitRef("0" * 40, "a" * 500, "s" * 2000),
        occurred_at=AT,
        url=ARGO,
        events=tuple(EventCount("BackOff", f"Pod/p-{i}", long, i) for i in range(300)),
        actions=tuple(Action(f"Do {i}", f"status app-{i}") for i in range(40)),
        acknowledged_by="b" * 3000,
    )


RESULT_CASES: dict[str, Result] = {
    "sync_changed": SYNC_CHANGED,
    "sync_failed": SYNC_FAILED,
    "denied": DENIED,
    "noop": NOOP,
    "oversize_result": _oversize_result(),
}
PROGRESS_CASES = {"progress_mixed": PROGRESS_MIXED, "progress_failed": PROGRESS_FAILED}
ALERT_CASES: dict[str, Alert] = {
    "alert_degraded": ALERT_DEGRADED,
    "alert_recovered": ALERT_RECOVERED,
    "oversize_alert": _oversize_alert(),
}


# --- golden files -----------------------------------------------------------------------------


def check_golden(name: str, payload: dict[str, Any]) -> None:
    path = GOLDEN / name
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing {path}; run UPDATE_GOLDEN=1 pytest {__file__}"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        assert payload == json.loads(expected), f"{name} differs (UPDATE_GOLDEN=1 to rewrite)"
        assert text == expected, f"{name}: same data, different formatting"


# --- limit checkers (independent of the renderer's own bookkeeping) ---------------------------


def u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def assert_slack_ok(msg: dict[str, Any]) -> None:
    json.dumps(msg, ensure_ascii=False).encode("utf-8")
    assert set(msg) == {"text", "blocks"}
    assert msg["text"] and u16(msg["text"]) <= rc.SLACK_FALLBACK_TEXT
    blocks = msg["blocks"]
    assert 1 <= len(blocks) <= rc.SLACK_MAX_BLOCKS
    action_ids: list[str] = []
    for block in blocks:
        kind = block["type"]
        if kind == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 0 < u16(block["text"]["text"]) <= rc.SLACK_SECTION_TEXT
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= rc.SLACK_CONTEXT_ELEMENTS
            for el in block["elements"]:
                assert 0 < u16(el["text"]) <= rc.SLACK_CONTEXT_TEXT
        elif kind == "actions":
            assert 1 <= len(block["elements"]) <= rc.BUTTONS_PER_ROW
            for b in block["elements"]:
                assert b["type"] == "button"
                assert 0 < u16(b["text"]["text"]) <= rc.SLACK_BUTTON_TEXT
                assert len(b["action_id"]) <= rc.SLACK_ACTION_ID
                action_ids.append(b["action_id"])
                assert ("url" in b) != ("value" in b)
                if "value" in b:
                    assert rc.SLACK_COMMAND_ACTION_ID.match(b["action_id"])
                    assert len(b["value"]) <= rc.SLACK_BUTTON_VALUE
                else:
                    assert b["action_id"].startswith(rc.SLACK_LINK_ACTION_PREFIX)
                    assert len(b["url"]) <= rc.SLACK_BUTTON_URL
                assert b.get("style", "primary") in ("primary", "danger")
                if "confirm" in b:
                    c = b["confirm"]
                    assert u16(c["title"]["text"]) <= rc.SLACK_CONFIRM_TITLE
                    assert u16(c["text"]["text"]) <= rc.SLACK_CONFIRM_TEXT
                    assert u16(c["confirm"]["text"]) <= rc.SLACK_CONFIRM_BUTTON
                    assert u16(c["deny"]["text"]) <= rc.SLACK_CONFIRM_BUTTON
                    assert c["style"] == "danger"
        else:
            pytest.fail(f"unexpected block type {kind}")
    assert len(action_ids) == len(set(action_ids)), "action_id must be unique per message"
    rows = [b for b in blocks if b["type"] == "actions"]
    assert len(rows) <= rc.MAX_BUTTON_ROWS


def assert_discord_ok(msg: dict[str, Any]) -> None:
    json.dumps(msg, ensure_ascii=False).encode("utf-8")
    assert set(msg) == {"content", "embeds", "components", "allowed_mentions"}
    assert msg["allowed_mentions"] == {"parse": []}
    assert 0 < u16(msg["content"]) <= rc.DISCORD_CONTENT
    assert len(msg["embeds"]) <= rc.DISCORD_EMBEDS
    total = 0
    for e in msg["embeds"]:
        assert u16(e.get("title", "")) <= rc.DISCORD_EMBED_TITLE
        assert u16(e.get("description", "")) <= rc.DISCORD_EMBED_DESCRIPTION
        fields = e.get("fields", [])
        assert len(fields) <= rc.DISCORD_EMBED_FIELDS
        for f in fields:
            assert 0 < u16(f["name"]) <= rc.DISCORD_FIELD_NAME
            assert 0 < u16(f["value"]) <= rc.DISCORD_FIELD_VALUE
        assert u16(e.get("footer", {}).get("text", "")) <= rc.DISCORD_FOOTER_TEXT
        assert isinstance(e["color"], int) and 0 <= e["color"] <= 0xFFFFFF
        total += u16(e.get("title", "")) + u16(e.get("description", ""))
        total += sum(u16(f["name"]) + u16(f["value"]) for f in fields)
        total += u16(e.get("footer", {}).get("text", ""))
    assert total <= rc.DISCORD_EMBED_TOTAL
    rows = msg["components"]
    assert len(rows) <= rc.DISCORD_ACTION_ROWS
    ids: list[str] = []
    for row in rows:
        assert row["type"] == 1
        assert 1 <= len(row["components"]) <= rc.DISCORD_BUTTONS_PER_ROW
        for b in row["components"]:
            assert b["type"] == 2 and b["style"] in (1, 2, 3, 4, 5)
            assert 0 < u16(b["label"]) <= rc.DISCORD_BUTTON_LABEL
            if b["style"] == 5:
                assert "custom_id" not in b and len(b["url"]) <= rc.DISCORD_BUTTON_URL
            else:
                assert "url" not in b and len(b["custom_id"]) <= rc.DISCORD_CUSTOM_ID
                assert b["custom_id"].startswith(rc.DISCORD_CUSTOM_ID_PREFIX)
                ids.append(b["custom_id"])
    assert len(ids) == len(set(ids)), "custom_id must be unique per message"


# --- golden tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", RESULT_CASES)
def test_result_golden(case: str) -> None:
    slack = render_slack.result_blocks(RESULT_CASES[case])
    discord = render_discord.result_message(RESULT_CASES[case])
    assert_slack_ok(slack)
    assert_discord_ok(discord)
    check_golden(f"{case}.slack.json", slack)
    check_golden(f"{case}.discord.json", discord)


@pytest.mark.parametrize("case", PROGRESS_CASES)
def test_progress_golden(case: str) -> None:
    command, target, steps = PROGRESS_CASES[case]
    slack = render_slack.progress_blocks(command, target, steps)
    discord = render_discord.progress_message(command, target, steps)
    assert_slack_ok(slack)
    assert_discord_ok(discord)
    check_golden(f"{case}.slack.json", slack)
    check_golden(f"{case}.discord.json", discord)


@pytest.mark.parametrize("case", ALERT_CASES)
def test_alert_golden(case: str) -> None:
    alert = ALERT_CASES[case]
    slack = render_slack.alert_blocks(alert)
    reply = render_slack.alert_thread_reply(alert)
    discord = render_discord.alert_message(alert)
    assert_slack_ok(slack)
    assert_slack_ok(reply)
    assert_discord_ok(discord)
    check_golden(f"{case}.slack.json", slack)
    check_golden(f"{case}_reply.slack.json", reply)
    check_golden(f"{case}.discord.json", discord)


# --- behaviour the goldens only imply ---------------------------------------------------------


def test_headline_is_first_line_on_both_platforms() -> None:
    slack = render_slack.result_blocks(SYNC_CHANGED)
    discord = render_discord.result_message(SYNC_CHANGED)
    assert slack["text"] == "✅ sync payments: synced to a1b2c3d"
    assert slack["blocks"][0]["text"]["text"] == "✅ *sync payments*: synced to a1b2c3d"
    assert discord["content"] == "✅ sync payments: synced to a1b2c3d"
    assert discord["embeds"][0]["color"] == rc.STATUS_STYLE[Status.CHANGED].colour
    assert discord["embeds"][0]["description"].splitlines()[0] == "**revision:** 9f8e7d6 → a1b2c3d"


def test_failed_buttons_route_commands_and_confirm_destructive_ones() -> None:
    slack = render_slack.result_blocks(SYNC_FAILED)
    (row,) = [b for b in slack["blocks"] if b["type"] == "actions"]
    retry, rollback, argo = row["elements"]
    assert (retry["action_id"], retry["value"], retry["style"]) == (
        "chatops:0",
        "sync payments",
        "primary",
    )
    assert (rollback["action_id"], rollback["value"], rollback["style"]) == (
        "chatops:1",
        "rollback payments",
        "danger",
    )
    assert rollback["confirm"]["text"]["text"] == "Revert a1b2c3d on main and sync payments?"
    assert "confirm" not in retry
    assert argo["url"] == ARGO and "value" not in argo

    discord = render_discord.result_message(SYNC_FAILED)
    buttons = discord["components"][0]["components"]
    assert [(b["style"], b.get("custom_id"), b.get("url")) for b in buttons] == [
        (1, "chatops:cmd:sync payments", None),
        (4, "chatops:cmd:rollback payments", None),
        (5, None, ARGO),
    ]


def test_oversize_keeps_the_headline_and_caps_buttons() -> None:
    result = RESULT_CASES["oversize_result"]
    slack = render_slack.result_blocks(result)
    assert slack["blocks"][0]["text"]["text"].startswith("❌ *sync " + "x" * 253 + "*: Lorem")
    assert slack["blocks"][0]["text"]["text"].endswith("…")
    assert "… and " in slack["blocks"][1]["text"]["text"]  # facts that did not fit are counted
    buttons = [e for b in slack["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert len(buttons) == rc.MAX_BUTTON_ROWS * rc.BUTTONS_PER_ROW
    discord = render_discord.result_message(result)
    assert sum(len(r["components"]) for r in discord["components"]) == 25
    assert discord["content"].endswith("…")


def test_oversize_alert_stays_within_every_limit_and_counts_what_it_hides() -> None:
    alert = ALERT_CASES["oversize_alert"]
    discord = render_discord.alert_message(alert)
    assert render_discord.embed_total(discord["embeds"][0]) <= rc.DISCORD_EMBED_TOTAL
    slack = render_slack.alert_blocks(alert)
    resources = next(b for b in slack["blocks"] if "*Resources* (500)" in b["text"]["text"])
    assert resources["text"]["text"].endswith("more")


def test_too_many_blocks_are_folded_but_buttons_survive() -> None:
    blocks = [render_slack._section(f"line {i}") for i in range(70)]
    blocks += render_slack._buttons([Action("Go", "status a")], [])
    msg = render_slack._finish("x", blocks)
    assert len(msg["blocks"]) == rc.SLACK_MAX_BLOCKS
    assert msg["blocks"][-1]["type"] == "actions"
    assert msg["blocks"][-2]["elements"][0]["text"] == "… 22 more sections not shown"


def test_outside_text_cannot_inject_markup_or_mentions() -> None:
    result = Result("status", "payments", Status.NOOP, "<!channel> *bold* & @everyone `x`")
    slack = render_slack.result_blocks(result)
    assert "&lt;!channel&gt;" in slack["text"] and "<!channel>" not in json.dumps(slack)
    assert "&amp;" in slack["blocks"][0]["text"]["text"]
    discord = render_discord.result_message(result)
    assert discord["content"] == "☑️ status payments: <!channel> \\*bold\\* & @everyone \\`x\\`"
    assert discord["allowed_mentions"] == {"parse": []}
    assert render_discord.escape("# head\n- item\n> quote") == "\\# head\n\\- item\n\\> quote"


def test_command_too_long_for_a_button_fails_loudly() -> None:
    too_long = "rollback " + "a" * 63 + " --commit " + "f" * 40
    with pytest.raises(rc.RenderError, match="too long for a Discord button"):
        render_discord.result_message(
            Result("x", "y", Status.FAILED, "s", actions=(Action("Rollback", too_long),))
        )
    fits = "c" * (rc.DISCORD_CUSTOM_ID - len(rc.DISCORD_CUSTOM_ID_PREFIX))
    assert render_discord.custom_id(fits) == rc.DISCORD_CUSTOM_ID_PREFIX + fits
    with pytest.raises(rc.RenderError):
        render_slack.result_blocks(
            Result("x", "y", Status.FAILED, "s", actions=(Action("Go", "z" * 2001),))
        )


def test_duplicate_commands_make_one_discord_button() -> None:
    actions = (Action("Sync", "sync a"), Action("Sync again", "sync a"))
    msg = render_discord.result_message(Result("x", "y", Status.FAILED, "s", actions=actions))
    assert [b["label"] for b in msg["components"][0]["components"]] == ["Sync"]


def test_alert_time_renders_in_reader_timezone_with_utc_fallback() -> None:
    cet = ALERT_DEGRADED.occurred_at.astimezone(timezone(timedelta(hours=2)))
    alert = Alert.from_json({**ALERT_DEGRADED.to_json(), "occurred_at": cet.isoformat()})
    context = render_slack.alert_blocks(alert)["blocks"][-2]["elements"][0]["text"]
    assert context.startswith(
        f"<!date^{int(AT.timestamp())}^{{date_short_pretty}} {{time}}|2024-05-01 12:03 UTC>"
    )
    assert render_discord.alert_message(alert)["embeds"][0]["timestamp"] == AT.isoformat()


# --- clipping ---------------------------------------------------------------------------------


def test_clip_counts_utf16_and_never_splits_a_character() -> None:
    assert rc.measure("a👍") == 3
    assert rc.clip("abcdef", 6) == "abcdef"
    assert rc.clip("abcdef", 4) == "abc…"
    assert rc.clip("ab👍🏽cd", 5) == "ab…"  # the thumb and its skin tone stay together or go
    assert rc.clip("e\u0301\u0301x", 3) == "…"
    assert rc.clip("👨\u200d👩\u200d👧", 4) == "👨…"
    assert rc.clip("abc", 0) == ""


def test_clip_slack_keeps_links_and_entities_whole() -> None:
    assert rc.clip_slack("see <https://example.com|the docs> now", 20) == "see…"
    assert rc.clip_slack("a &amp; b &lt; c", 9) == "a &amp;…"
    assert rc.clip_slack("a &amp; b", 5) == "a…"


def test_fit_lines_counts_hidden_lines() -> None:
    lines = [f"line {i}" for i in range(10)]
    assert rc.fit_lines(lines, 1000, max_items=3) == "line 0\nline 1\nline 2\n… and 7 more"
    text = rc.fit_lines(lines, 30)
    assert text == "line 0\nline 1\n… and 8 more" and len(text) <= 30
    assert rc.fit_lines(["x" * 50, "y" * 50], 20) == "x" * 6 + "…\n… and 1 more"
    assert rc.fit_lines(["x" * 50, "y"], 20) == "x" * 6 + "…\ny"  # room kept for the tail is used


# --- properties: arbitrary input never breaks a limit ----------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=5000)
commands = st.text(alphabet="abcdefghijklmnopqrstuvwxyz -", min_size=1, max_size=80)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    summary=texts,
    names=st.lists(texts, max_size=40),
    labels=st.lists(st.tuples(texts.filter(bool), commands), max_size=40),
    steps=st.lists(st.tuples(texts, st.sampled_from(list(StepState)), texts), max_size=20),
    status=st.sampled_from(list(Status)),
)
def test_any_result_fits(
    summary: str,
    names: list[str],
    labels: list[tuple[str, str]],
    steps: list[tuple[str, StepState, str]],
    status: Status,
) -> None:
    result = Result(
        command="sync",
        target="payments",
        status=status,
        summary=summary,
        facts=tuple(Fact(n or "n", n) for n in names),
        actions=tuple(Action(lab, cmd, confirm=lab) for lab, cmd in labels),
        steps=tuple(Step(n, s, d) for n, s, d in steps),
    )
    assert_slack_ok(render_slack.result_blocks(result))
    assert_discord_ok(render_discord.result_message(result))
    assert_slack_ok(render_slack.progress_blocks("sync", summary or "x", result.steps))
    assert_discord_ok(render_discord.progress_message("sync", summary or "x", result.steps))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=texts.filter(bool), summary=texts, messages=st.lists(texts, max_size=60))
def test_any_alert_fits(title: str, summary: str, messages: list[str]) -> None:
    alert = Alert(
        key="k",
        app="a",
        kind="degraded",
        severity=Severity.WARNING,
        title=title,
        summary=summary,
        occurred_at=AT,
        resources=tuple(ResourceProblem("Pod", m or "p", "ns", m, m) for m in messages),
        events=tuple(EventCount(m or "r", "Pod/x", m, 3) for m in messages),
    )
    for render in (render_slack.alert_blocks, render_slack.alert_thread_reply):
        assert_slack_ok(render(alert))
    assert_discord_ok(render_discord.alert_message(alert))


# --- the Alert model ------------------------------------------------------------------------


@pytest.mark.parametrize("alert", [ALERT_DEGRADED, ALERT_RECOVERED], ids=["degraded", "recovered"])
def test_alert_json_round_trip(alert: Alert) -> None:
    data = json.loads(json.dumps(alert.to_json()))
    assert Alert.from_json(data) == alert


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "exploded"}, "unknown alert kind"),
        ({"occurred_at": datetime(2024, 5, 1, 12, 0)}, "timezone-aware"),
    ],
)
def test_alert_rejects_bad_values(change: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "key": "k",
        "app": "a",
        "kind": "degraded",
        "severity": Severity.INFO,
        "title": "t",
        "summary": "s",
        "occurred_at": AT,
    }
    with pytest.raises(ValueError, match=message):
        Alert(**{**fields, **change})


def test_acknowledged_shows_on_both_platforms() -> None:
    alert = ALERT_DEGRADED.acknowledged("bob")
    reply = render_slack.alert_thread_reply(alert)
    context = [b for b in reply["blocks"] if b["type"] == "context"][-1]
    assert "👀 acknowledged by bob" in context["elements"][0]["text"]
    footer = render_discord.alert_message(alert)["embeds"][0]["footer"]["text"]
    assert footer == "prod-cluster/payments:degraded · 👀 acknowledged by bob"


RENDERERS: list[Callable[..., dict[str, Any]]] = [
    render_slack.result_blocks,
    render_discord.result_message,
]


def test_renderers_are_pure() -> None:
    for render in RENDERERS:
        assert render(SYNC_FAILED) == render(SYNC_FAILED)
