"""The auto-rollback rules without a watch or a store: triggers read from Applications in the
real wire shape (the fake's fixtures), and the order of the decision's guard rails."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from commands.argocd.app import AUTO_ROLLBACK_ANNOTATION, Application
from commands.autorollback import (
    TRAILER,
    PolicyConfig,
    Reason,
    Situation,
    decide,
    degraded_after_sync,
    failed_sync,
    health_mark,
    mode_for,
)
from commands.githost.port import CommitInfo
from tests.alert_fixtures import failed_app
from tests.fakes.argocd_fixtures import make_app, sha

GOOD, BAD = sha("good"), sha("bad")


def commit(sha_: str = BAD, message: str = "Bump payments to 1.1\n") -> CommitInfo:
    return CommitInfo(
        sha_, sha_[:7], "Bob", message.splitlines()[0], message,
        datetime(2024, 5, 1, tzinfo=UTC), (GOOD,), ("apps/payments/values.yaml",),
        f"https://github.com/acme/deploy/commit/{sha_}",
    )  # fmt: skip


def failed(**kw: Any) -> Application:
    raw = failed_app(make_app("payments", revision=GOOD, **kw))
    state = raw["status"]["operationState"]
    state["operation"] = {"initiatedBy": {"automated": True}, "sync": {"revision": BAD}}
    state["syncResult"]["revision"] = BAD
    return Application(raw)


def situation(**kw: Any) -> Situation:
    values: dict[str, Any] = {
        "mode": "on",
        "previous_good": True,
        "paused_until": None,
        "self_heal": True,
        "commit": commit(),
        "previous_commit": GOOD,
        "now": 1000.0,
    }
    return Situation(**(values | kw))


def test_a_failed_automated_sync_to_a_new_revision_is_a_trigger() -> None:
    trigger = failed_sync(failed())
    assert trigger is not None
    assert (trigger.kind, trigger.revision, trigger.previous) == ("sync_failed", BAD, GOOD)
    assert "retried 3 times" in trigger.message
    assert [p.name for p in trigger.problems] == ["migrate"]
    # still retrying (.operation set), or started by a person: not a trigger
    running = Application({**failed().raw, "operation": {"sync": {}}})
    assert failed_sync(running) is None
    by_hand = copy.deepcopy(failed().raw)
    by_hand["status"]["operationState"]["operation"]["initiatedBy"] = {"username": "alice"}
    assert failed_sync(Application(by_hand)) is None


def test_a_failed_postsync_hook_is_the_verification_failing() -> None:
    raw = copy.deepcopy(failed().raw)
    raw["status"]["operationState"]["syncResult"]["resources"][0]["hookType"] = "PostSync"
    trigger = failed_sync(Application(raw))
    assert trigger is not None and trigger.kind == "postsync_failed"
    assert "PostSync verification" in trigger.why()


def test_degraded_after_a_sync_names_the_revision_before() -> None:
    raw = make_app("payments", revision=GOOD, health="Degraded")
    assert degraded_after_sync(Application(raw)) is None  # the first deployment: nothing before
    raw["status"]["history"].append({**raw["status"]["history"][0], "id": 1, "revision": BAD})
    raw["status"]["operationState"]["syncResult"]["revision"] = BAD
    trigger = degraded_after_sync(Application(raw))
    assert trigger is not None and (trigger.revision, trigger.previous) == (BAD, GOOD)


def test_health_marks_only_a_settled_app() -> None:
    assert health_mark(Application(make_app("a", revision=GOOD))) == (GOOD, True)
    assert health_mark(Application(make_app("a", revision=GOOD, health="Degraded"))) == (
        GOOD,
        False,
    )
    assert health_mark(Application(make_app("a", revision=GOOD, sync="OutOfSync"))) is None
    assert health_mark(Application(make_app("a", revision=GOOD, health="Progressing"))) is None


@pytest.mark.parametrize(
    ("annotation", "config", "expected"),
    [
        (None, PolicyConfig(), ("off", "not opted in")),
        ("on", PolicyConfig(), ("on", "annotation")),
        ("Propose", PolicyConfig(), ("propose", "annotation")),
        ("off", PolicyConfig(apps=("pay*",)), ("off", "annotation")),
        (None, PolicyConfig(projects=("default",), mode="propose"), ("propose", "configuration")),
        ("yes", PolicyConfig(), ("off", "annotation value 'yes' is not on, propose or off")),
    ],
)
def test_opt_in(annotation: str | None, config: PolicyConfig, expected: tuple[str, str]) -> None:
    notes = {AUTO_ROLLBACK_ANNOTATION: annotation} if annotation is not None else None
    assert mode_for(Application(make_app("payments", annotations=notes)), config) == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, Reason.ACTED),
        ({"previous_good": None}, Reason.NOT_CULPRIT),
        ({"previous_good": False}, Reason.NOT_CULPRIT),
        ({"paused_until": 2000.0}, Reason.PAUSED),
        ({"paused_until": 999.0}, Reason.ACTED),  # a pause that is over
        ({"self_heal": False}, Reason.SELFHEAL_OFF),
        ({"commit": None, "commit_error": "no Git host"}, Reason.NO_COMMIT),
        ({"previous_commit": BAD}, Reason.NO_CHANGE),
        ({"commit": commit(message=f'Revert "x"\n\n{TRAILER}\n')}, Reason.POLICY_REVERT),
        ({"policy_reverts": frozenset({BAD})}, Reason.POLICY_REVERT),
        (
            {
                "commit": commit(message=f'Revert "Revert"\n\nThis reverts commit {GOOD}.\n'),
                "policy_reverts": frozenset({GOOD}),
            },
            Reason.UNDONE,
        ),
        ({"acted_app": 2}, Reason.RATE_LIMITED_APP),
        ({"acted_all": 10}, Reason.RATE_LIMITED_GLOBAL),
        ({"mode": "propose", "acted_app": 2}, Reason.PROPOSED),  # a person decides
    ],
)
def test_decision_order(change: dict[str, Any], reason: Reason) -> None:
    trigger = failed_sync(failed())
    assert trigger is not None
    decision = decide(trigger, replace(situation(), **change), PolicyConfig())
    assert decision.reason is reason, decision
    assert decision.action == {"acted": "act", "proposed": "propose"}.get(reason, "skip")


def test_dry_run_is_limited_like_a_revert_and_writes_nothing() -> None:
    trigger = failed_sync(failed())
    assert trigger is not None
    dry = PolicyConfig(dry_run=True)
    decision = decide(trigger, situation(), dry)
    assert (decision.action, decision.reason) == ("skip", Reason.DRY_RUN)
    assert (
        decision.detail
        == f'Dry run: would revert {BAD[:7]} "Bump payments to 1.1"; nothing written.'
    )
    limited = decide(trigger, situation(acted_app=2), dry)
    assert limited.reason is Reason.RATE_LIMITED_APP


def test_cli_pauses_resumes_and_shows(argo: Any, tmp_path: Any) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    argo.add_app(make_app("payments", annotations={AUTO_ROLLBACK_ANNOTATION: "propose"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPS_")}
    env |= {"CHATOPS_ARGOCD_URL": argo.url, "CHATOPS_ARGOCD_TOKEN": argo.token,
            "CHATOPS_STATE_DB": str(tmp_path / "s.db")}  # fmt: skip
    chatops = str(Path(sys.executable).parent / "chatops")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [chatops, "autorollback", *args], capture_output=True, text=True, env=env, timeout=60
        )

    paused = run("off", "payments", "--for", "2h", "--json")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["summary"].startswith("Auto-rollback is paused for payments")
    shown = json.loads(run("status", "payments", "--json").stdout)
    assert shown["facts"]["mode"] == "propose (annotation)"
    assert shown["facts"]["paused"].startswith("until ")
    assert json.loads(run("status", "--json").stdout)["facts"]["payments"].startswith(
        "propose (annotation), paused until "
    )
    assert json.loads(run("on", "payments", "--json").stdout)["status"] == "changed"
    assert json.loads(run("on", "payments", "--json").stdout)["status"] == "noop"
    bad = run("off", "payments", "--for", "90d")
    assert bad.returncode == 2 and "auto-rollback pause" in bad.stderr
    assert run("off").returncode == 2  # no APP
