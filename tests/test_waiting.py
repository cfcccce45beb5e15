"""The one judgement behind the sync wait and the rollback wait (``commands.waiting.verdict``),
state by state, as Argo CD reports an Application while an operation runs and ends."""

from __future__ import annotations

from typing import Any

from commands.argocd.app import Application
from commands.argocd.client import REQUEST_ID_INFO
from commands.waiting import Ours, Verdict, verdict

OLD, REVERT = "a" * 40, "b" * 40


def app(
    *,
    sync: str = "Synced",
    health: str = "Healthy",
    target: str = REVERT,
    phase: str = "Succeeded",
    op_revision: str = REVERT,
    request_id: str | None = None,
    running: bool = False,
) -> Application:
    info = [{"name": REQUEST_ID_INFO, "value": request_id}] if request_id else []
    raw: dict[str, Any] = {
        "metadata": {"name": "payments"},
        "status": {
            "sync": {"status": sync, "revision": target},
            "health": {"status": health},
            "operationState": {
                "phase": phase,
                "message": "",
                "operation": {"sync": {}, "info": info},
                "syncResult": {"revision": op_revision},
            },
        },
    }
    if running:
        raw["operation"] = {"sync": {}}
    return Application(raw)


def test_a_sync_is_judged_by_its_request_id() -> None:
    mine = Ours(request_id="r1")
    assert verdict(app(request_id="r1"), mine) is Verdict.DONE
    assert verdict(app(request_id="r1", running=True, phase="Running"), mine) is Verdict.RUNNING
    assert verdict(app(request_id="r0"), mine) is Verdict.RUNNING  # an earlier operation
    assert verdict(app(request_id="r0", phase="Failed"), mine) is Verdict.RUNNING
    assert verdict(app(request_id="r1", phase="Failed"), mine) is Verdict.FAILED
    assert verdict(app(request_id="r1", health="Degraded"), mine) is Verdict.DEGRADED
    assert verdict(app(request_id="r1", health="Progressing"), mine) is Verdict.RUNNING
    # Argo CD retrying: the phase goes back to Running with the operation still set
    retrying = app(request_id="r1", phase="Running", running=True)
    assert verdict(retrying, mine) is Verdict.RUNNING


def test_a_rollback_is_judged_by_the_revision_auto_sync_deploys() -> None:
    mine = Ours(revision=REVERT)
    assert verdict(app(), mine) is Verdict.DONE
    assert verdict(app(phase="Error"), mine) is Verdict.FAILED
    assert verdict(app(health="Degraded"), mine) is Verdict.DEGRADED
    assert verdict(app(running=True, phase="Running"), mine) is Verdict.RUNNING


def test_the_failure_being_rolled_back_is_not_the_rollbacks_failure() -> None:
    """The refresh moved the target to the revert while the last operation is the failed sync
    of the bad commit, and the app is still Degraded from it: keep waiting for auto-sync."""
    mine = Ours(revision=REVERT)
    before_auto_sync = app(sync="OutOfSync", health="Degraded", phase="Failed", op_revision=OLD)
    assert verdict(before_auto_sync, mine) is Verdict.RUNNING


def test_a_revert_that_needs_no_operation_is_done_when_synced_at_it() -> None:
    """The failed sync never applied anything, so the revert's manifests already run."""
    mine = Ours(revision=REVERT)
    assert verdict(app(phase="Failed", op_revision=OLD), mine) is Verdict.DONE
    assert verdict(app(sync="OutOfSync", phase="Succeeded", op_revision=OLD), mine) is (
        Verdict.RUNNING
    )
