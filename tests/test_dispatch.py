"""The neutral dispatcher: parsing, confirmation, the per-app lock, progress throttling, errors,
audit and drain, with the real command core against FakeArgoCD and a recording Reply."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.chat.dispatch import Dispatcher
from bot.chat.invocation import Invocation
from bot.config.models import Authorization, Grant
from bot.server import wiring
from bot.state.store import Store
from commands.results import Result, Status
from commands.selfheal import TIMER_KIND
from tests.chat_fixtures import (
    CHANNEL,
    OPERATOR,
    OPERATOR_NAME,
    TEAM,
    VIEWER,
    VIEWER_NAME,
    RecordingReply,
    argo,  # noqa: F401 - fixture
    chat_settings,
)
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.recording import until_async

SHA = "0123456789abcdef0123456789abcdef01234567"


def inv(text: str, *, user: str = OPERATOR, name: str = OPERATOR_NAME, **kw: Any) -> Invocation:
    kw.setdefault("team_id", TEAM)
    return Invocation("slack", user, name, CHANNEL, text, **kw)


async def make(tmp_path: Path, fake: FakeArgoCD, **overrides: Any) -> Dispatcher:
    settings = chat_settings(tmp_path, fake, **overrides)
    store = Store(settings.state_db)
    services = wiring.services(settings, store=store, with_kube=False)
    d = Dispatcher(settings, services, store)
    d.authz.slack_home_team = TEAM
    return d


async def close(d: Dispatcher) -> None:
    await d.drain(timeout=1.0)
    assert d.services is not None
    await d.services.argocd.aclose()
    d.store.close()


@pytest.fixture
async def d(tmp_path: Path, argo: FakeArgoCD) -> AsyncIterator[Dispatcher]:  # noqa: F811
    dispatcher = await make(tmp_path, argo)
    try:
        yield dispatcher
    finally:
        await close(dispatcher)


@pytest.fixture
def slow() -> Any:
    fake = FakeArgoCD(step_delay=0.15).start()
    for app in ("payments", "orders"):
        fake.add_app(make_app(app))
    yield fake
    fake.stop()


def sync_requests(fake: FakeArgoCD, app: str) -> list[Any]:
    return [
        r
        for r in fake.requests
        if r.method == "POST" and r.path == f"/api/v1/applications/{app}/sync"
    ]


@pytest.mark.parametrize(
    ("text", "says", "usage"),
    [
        ("sync", "Missing APP.", "Usage: /sync APP [prune]"),
        ("sync Payments!", "'Payments!' is not a valid application name.", "/sync APP"),
        ("sync payments now", "Unexpected 'now'.", "/sync APP [prune]"),
        ("selfheal payments", "'payments' is not on or off.", "/selfheal off|on APP"),
        ("selfheal on payments 30m", "A duration only makes sense with 'off'.", "/selfheal"),
        ("selfheal off payments 10x", "'10x' is not a self-heal pause.", "/selfheal"),
        ("selfheal off payments 10s", "A self-heal pause of 10s is out of range.", "/selfheal"),
        ("rollback payments zzz", "'zzz' is not a commit SHA.", "/rollback APP [COMMIT]"),
        ("status payments now", "Unexpected 'now'.", "Usage: /status [APP]"),
        ("verify-rootless", "Missing APP.", "Usage: /verify-rootless APP"),
        ("help nope", "There is no command 'nope'.", "Usage: /help [COMMAND]"),
        ("deploy payments", "There is no command 'deploy'. Try /help.", ""),
    ],
)
async def test_mistakes_get_a_clear_message_and_the_usage_line(
    d: Dispatcher,
    argo: FakeArgoCD,  # noqa: F811
    text: str,
    says: str,
    usage: str,
) -> None:
    reply = RecordingReply()
    assert await d.handle(inv(text), reply) is None
    [error] = reply.errors
    assert says in error and usage in error
    assert reply.results == [] and reply.confirms == []
    assert [r.path for r in argo.requests] == []
    [row] = d.store.audit_list()
    assert row["outcome"] == "bad_input" and row["ended_at"] is not None


async def test_help_lists_every_command_and_registered_extras(d: Dispatcher) -> None:
    async def ack(_inv: Invocation, args: list[str]) -> Result:
        return Result("ack", args[0], Status.CHANGED, "acknowledged")

    d.register("ack", ack, mutating=True, usage="KEY", about="acknowledge an alert")
    text = d.usage()
    for line in (
        "/sync APP [prune] — ",
        "/rollback APP [COMMIT] — ",
        "/selfheal off|on APP [DURATION] — ",
        "/verify-rootless APP — ",
        "/status [APP] — ",
        "/help [COMMAND] — ",
        "/ack KEY — acknowledge an alert",
    ):
        assert line in text
    reply = RecordingReply()
    result = await d.handle(inv("help"), reply)
    assert result is not None and reply.results == [result]
    assert result.status is Status.NOOP
    assert [f.name for f in result.facts][:2] == ["/sync APP [prune]", "/rollback APP [COMMIT]"]
    one = await d.handle(inv("help selfheal"), RecordingReply())
    assert one is not None and [f.name for f in one.facts] == ["/selfheal off|on APP [DURATION]"]


async def test_sync_with_prune_is_confirmed_first_then_prunes(
    d: Dispatcher,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    reply = RecordingReply()
    assert await d.handle(inv("sync payments prune"), reply) is None
    [(prompt, command)] = reply.confirms
    assert command == "sync payments prune"
    assert "deleted from the cluster" in prompt
    assert sync_requests(argo, "payments") == []

    confirmed = RecordingReply()
    result = await d.handle(inv(command, confirmed=True, source="button"), confirmed)
    assert result is not None and result.status is Status.CHANGED
    [req] = sync_requests(argo, "payments")
    assert req.json["prune"] is True
    outcomes = [r["outcome"] for r in d.store.audit_list()]
    assert outcomes == ["changed", "confirm"]  # newest first


async def test_plain_sync_does_not_prune_and_shows_the_result_after_progress(
    d: Dispatcher,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    reply = RecordingReply()
    result = await d.handle(inv("sync payments"), reply)
    assert result is not None and result.ok
    assert result.summary.startswith("payments is synced to")
    assert not sync_requests(argo, "payments")[0].json.get("prune")
    assert reply.order[0] == "progress" and reply.order[-1] == "result"
    assert reply.results == [result]


async def test_progress_edits_are_throttled_and_never_land_after_the_result(
    tmp_path: Path,
    slow: FakeArgoCD,
) -> None:
    d = await make(tmp_path, slow)
    try:
        d.progress_interval = 0.4
        reply = RecordingReply(progress_delay=0.05)  # a chat API that takes its time
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await d.handle(inv("sync payments"), reply)
        took = loop.time() - started
        assert result is not None and result.ok
        steps_reported = {s.name for _c, _t, steps in reply.edits for s in steps}
        assert {"refresh", "sync", "wait"} <= steps_reported
        # at most one edit per interval (plus the first one), however many steps came in
        assert 1 <= len(reply.edits) <= int(took / d.progress_interval) + 2
        assert reply.order[-1] == "result"
    finally:
        await close(d)


async def test_one_operation_per_app_and_other_apps_run_alongside(
    tmp_path: Path,
    slow: FakeArgoCD,
) -> None:
    d = await make(tmp_path, slow)
    try:
        first = RecordingReply()
        running = asyncio.create_task(d.handle(inv("sync payments"), first))
        await until_async(lambda: sync_requests(slow, "payments"))

        second = RecordingReply()
        denied = await d.handle(inv("selfheal on payments", user=VIEWER, name="vic"), second)
        # a viewer is denied before the lock is even looked at
        assert denied is not None and denied.status is Status.DENIED
        assert "operator role" in second.errors[0]

        busy = RecordingReply()
        assert await d.handle(inv("status payments"), busy) is None
        assert re.fullmatch(
            rf"payments is busy: {OPERATOR_NAME} \(slack\) started `sync payments` at "
            r"\d\d:\d\d:\d\d UTC \(\d+s ago\)\. Try again when it has finished\.",
            busy.errors[0],
        )
        other = RecordingReply()
        orders = await d.handle(inv("status orders"), other)
        assert orders is not None and not running.done()

        done = await running
        assert done is not None and done.ok
        again = await d.handle(inv("status payments"), RecordingReply())
        assert again is not None  # the lock was released
        outcomes = sorted(r["outcome"] for r in d.store.audit_list())
        assert outcomes == ["busy", "changed", "denied", "noop", "noop"]
    finally:
        await close(d)


async def test_argocd_errors_become_a_failed_result_with_suggestions(d: Dispatcher) -> None:
    reply = RecordingReply()
    result = await d.handle(inv("status paymnts"), reply)
    assert result is not None and result.status is Status.FAILED
    assert "paymnts" in result.summary
    facts = {f.name: f.value for f in result.facts}
    assert "payments" in facts.get("did you mean", "")
    assert reply.results == [result]
    [row] = d.store.audit_list()
    assert row["outcome"] == "not_found"


async def test_unexpected_errors_show_only_a_reference(
    d: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(_inv: Invocation, _args: list[str]) -> Result:
        raise RuntimeError("boom with token=xoxb-super-secret")

    d.register("explode", broken, mutating=False)
    reply = RecordingReply()
    with caplog.at_level(logging.ERROR, logger="bot.chat.dispatch"):
        result = await d.handle(inv("explode"), reply)
    assert result is not None and result.status is Status.FAILED
    m = re.fullmatch(r"Internal error \(ref ([0-9a-f]{4})\)\.", result.summary)
    assert m, result.summary
    shown = repr(reply.results) + repr(reply.errors)
    assert "secret" not in shown and "RuntimeError" not in shown
    [record] = [r for r in caplog.records if m.group(1) in r.getMessage()]
    assert record.exc_info is not None  # the traceback is in the log, not in the chat
    assert d.store.audit_list()[0]["outcome"] == "error"


async def test_registered_commands_are_authorized_locked_and_audited(d: Dispatcher) -> None:
    seen: list[list[str]] = []
    gate = asyncio.Event()

    async def pause(invocation: Invocation, args: list[str]) -> Result:
        seen.append(args)
        await gate.wait()
        return Result(
            "pause", args[0], Status.CHANGED, f"{args[0]} paused by {invocation.user_name}"
        )

    d.register("pause", pause, mutating=True, usage="APP", about="pause", app_arg=0)
    denied = RecordingReply()
    await d.handle(inv("pause payments", user=VIEWER, name=VIEWER_NAME), denied)
    assert "You need the operator role to run pause payments" in denied.errors[0]

    task = asyncio.create_task(d.handle(inv("pause payments"), RecordingReply()))
    await until_async(lambda: seen)
    busy = RecordingReply()
    await d.handle(inv("sync payments"), busy)
    assert "started `pause payments`" in busy.errors[0]
    gate.set()
    result = await task
    assert result is not None and result.summary == f"payments paused by {OPERATOR_NAME}"
    assert seen == [["payments"]]


async def test_rollback_with_a_pinned_commit_is_confirmed_first(d: Dispatcher) -> None:
    reply = RecordingReply()
    assert await d.handle(inv(f"rollback payments {SHA}"), reply) is None
    assert reply.confirms == [
        ("Revert commit 0123456 of payments in Git and sync?", f"rollback payments {SHA}")
    ]
    # without a SHA the core only previews the commit: no confirmation needed for that
    preview = RecordingReply()
    result = await d.handle(inv("rollback payments"), preview)
    assert preview.confirms == [] and result is not None
    assert "no Git host" in result.summary


async def test_timed_selfheal_pause_writes_a_durable_timer(d: Dispatcher) -> None:
    assert d.services is not None
    d.services.now = lambda: 1_000_000.0
    result = await d.handle(inv("selfheal off payments 1h30m", confirmed=True), RecordingReply())
    assert result is not None and result.status is Status.CHANGED
    [timer] = d.store.timers(TIMER_KIND)
    assert (timer["key"], timer["due_at"]) == ("payments", 1_000_000.0 + 5400)
    assert timer["created_by"] == f"{OPERATOR_NAME} via slack"


async def test_drain_waits_for_running_commands(
    tmp_path: Path,
    slow: FakeArgoCD,
) -> None:
    d = await make(tmp_path, slow)
    try:
        reply = RecordingReply()
        task = asyncio.create_task(d.handle(inv("sync payments"), reply))
        await until_async(lambda: d.in_flight == 1)
        await d.drain(timeout=10)
        assert task.done() and reply.results[-1].ok
        assert d.store.audit_list()[0]["outcome"] == "changed"
        refused = RecordingReply()
        assert await d.handle(inv("status payments"), refused) is None
        assert refused.errors == ["The bot is restarting; try again in a minute."]
    finally:
        await close(d)


async def test_drain_records_unfinished_commands_as_interrupted(
    d: Dispatcher,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    argo.script("payments", "hang")
    reply = RecordingReply()
    task = asyncio.create_task(d.handle(inv("sync payments"), reply))
    await until_async(lambda: sync_requests(argo, "payments"))
    await d.drain(timeout=0.1)
    assert task.cancelled()
    [row] = d.store.audit_list()
    assert row["outcome"] == "interrupted" and row["ended_at"] is not None
    assert reply.results[-1].summary == "The bot restarted before sync payments finished."


async def test_status_without_an_app_lists_those_needing_attention(
    d: Dispatcher,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    argo.set_health("orders", "Degraded", "Back-off restarting failed container")
    reply = RecordingReply()
    result = await d.handle(inv("status"), reply)
    assert result is not None and reply.results == [result]
    assert result.status is Status.FAILED
    assert result.summary.endswith("applications need attention.")
    assert result.facts[0].name == "orders" and "Degraded" in result.facts[0].value
    assert result.actions[0].command == "status orders"


# -- Acknowledge needs the operator role for the incident's app --------------------------------


def register_ack(d: Dispatcher, acked: list[tuple[str, list[str]]]) -> None:
    """``ack`` exactly as the alerts runner registers it (bot/alerts/runner.py: mutating=False)."""

    async def ack(invocation: Invocation, args: list[str]) -> Result:
        acked.append((invocation.user_name, args))
        return Result("ack", args[0], Status.CHANGED, f"Acknowledged {args[0]}.")

    d.register("ack", ack, mutating=False, usage="INCIDENT", about="Acknowledge an alert")


async def test_a_viewer_cannot_acknowledge_and_the_denial_is_audited(d: Dispatcher) -> None:
    acked: list[tuple[str, list[str]]] = []
    register_ack(d, acked)
    reply = RecordingReply()
    viewer = inv("ack payments:degraded", user=VIEWER, name=VIEWER_NAME, source="button")
    result = await d.handle(viewer, reply)
    assert result is not None and result.status is Status.DENIED
    assert reply.errors[0].startswith(
        "You need the operator role to run ack payments; you have the viewer role."
    )
    assert acked == []  # before: any viewer silenced any incident
    [row] = d.store.audit_list()
    assert (row["command"], row["outcome"], row["user_id"]) == ("ack", "denied", VIEWER)

    done = await d.handle(inv("ack payments:degraded"), RecordingReply())
    assert done is not None and done.status is Status.CHANGED
    assert acked == [(OPERATOR_NAME, ["payments:degraded"])]


async def test_ack_is_scoped_to_the_incidents_app(tmp_path: Path, argo: FakeArgoCD) -> None:  # noqa: F811
    auth = Authorization(grants=[Grant(role="operator", slack_users=[OPERATOR], apps=["pay*"])])
    d = await make(tmp_path, argo, authorization=auth)
    try:
        acked: list[tuple[str, list[str]]] = []
        register_ack(d, acked)
        ok = await d.handle(inv("ack payments:sync_failed"), RecordingReply())
        assert ok is not None and ok.status is Status.CHANGED
        other = RecordingReply()
        await d.handle(inv("ack orders:degraded"), other)
        assert "You need the operator role to run ack orders" in other.errors[0]
        # a #number names no app before the lookup: only grants for every app may use it
        by_id = RecordingReply()
        await d.handle(inv("ack #7"), by_id)
        assert "You need the operator role to run ack;" in by_id.errors[0]
        assert acked == [(OPERATOR_NAME, ["payments:sync_failed"])]
    finally:
        await close(d)


async def test_ack_role_viewer_restores_acknowledging_for_everyone(
    tmp_path: Path,
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    d = await make(tmp_path, argo, authorization=Authorization(ack_role="viewer"))
    try:
        acked: list[tuple[str, list[str]]] = []
        register_ack(d, acked)
        viewer = inv("ack payments:degraded", user=VIEWER, name=VIEWER_NAME)
        result = await d.handle(viewer, RecordingReply())
        assert result is not None and result.status is Status.CHANGED
        assert acked == [(VIEWER_NAME, ["payments:degraded"])]
    finally:
        await close(d)


async def test_ack_takes_no_app_lock_while_a_sync_of_the_app_runs(
    tmp_path: Path,
    slow: FakeArgoCD,
) -> None:
    d = await make(tmp_path, slow)
    try:
        acked: list[tuple[str, list[str]]] = []
        register_ack(d, acked)
        running = asyncio.create_task(d.handle(inv("sync payments"), RecordingReply()))
        await until_async(lambda: sync_requests(slow, "payments"))
        reply = RecordingReply()
        result = await d.handle(inv("ack payments:degraded"), reply)
        assert reply.errors == [] and result is not None and result.status is Status.CHANGED
        assert not running.done()
        await running
    finally:
        await close(d)


# -- bounded parsing: huge numbers are usage errors, audited, never a crash --------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("selfheal off payments " + "9" * 400, "is too long for a self-heal pause."),
        ("selfheal off payments " + "9" * 4301, "is too long for a self-heal pause."),
        ("selfheal off payments " + "9" * 4301 + "m", "is too long for a self-heal pause."),
        ("ack #" + "9" * 5000, "is not an incident number."),
        ("ack " + "9" * 4301, "is not an incident number."),
    ],
)
async def test_huge_numbers_get_the_usage_line_and_are_audited_as_usage_errors(
    d: Dispatcher,
    argo: FakeArgoCD,  # noqa: F811
    text: str,
    says: str,
) -> None:
    acked: list[tuple[str, list[str]]] = []
    register_ack(d, acked)
    reply = RecordingReply()
    # before: OverflowError (400 digits) or ValueError (4,301 digits) out of the parser
    assert await d.handle(inv(text), reply) is None
    [error] = reply.errors
    assert says in error and "Usage: /" in error
    assert len(error) < 500
    [row] = d.store.audit_list()
    assert row["outcome"] == "bad_input" and says in row["detail"]
    assert [r.path for r in argo.requests] == [] and acked == []
