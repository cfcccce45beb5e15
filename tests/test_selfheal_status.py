"""`selfheal` and `status` against the fake Argo CD and the real SQLite timers."""

from __future__ import annotations

import json

import pytest

from bot.state.store import Store
from commands import errors
from commands.context import Services
from commands.results import Status
from commands.selfheal import TIMER_KIND, selfheal
from commands.status import status
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app


def patches(argo: FakeArgoCD) -> list[dict]:
    out = []
    for r in argo.requests:
        if r.method == "PATCH":
            assert isinstance(r.json["patch"], str), "the merge patch travels as a JSON string"
            out.append(json.loads(r.json["patch"]))
    return out


async def test_off_then_on_flips_only_selfheal(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    result = await selfheal(svc, "off", "payments")
    assert result.status is Status.CHANGED
    assert result.summary == "Self-heal is now off for payments."
    assert patches(argo) == [{"spec": {"syncPolicy": {"automated": {"selfHeal": False}}}}]
    automated = argo.app("payments")["spec"]["syncPolicy"]["automated"]
    assert automated == {"prune": True, "selfHeal": False}  # prune and auto-sync untouched
    assert [a.command for a in result.actions] == ["selfheal on payments"]

    again = await selfheal(svc, "off", "payments")
    assert again.status is Status.NOOP and "already off" in again.summary
    assert len(patches(argo)) == 1

    on = await selfheal(svc, "on", "payments")
    assert on.status is Status.CHANGED
    assert argo.app("payments")["spec"]["syncPolicy"]["automated"]["selfHeal"] is True


async def test_off_without_automated_block_never_enables_autosync(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("manual", automated=False))
    result = await selfheal(svc, "off", "manual")
    assert result.status is Status.NOOP
    assert "auto-sync is not enabled" in result.summary
    assert patches(argo) == []
    assert "automated" not in argo.app("manual")["spec"].get("syncPolicy", {})
    with pytest.raises(errors.Conflict, match="auto-sync off"):
        await selfheal(svc, "on", "manual")
    assert patches(argo) == []


async def test_timed_pause_is_stored_and_on_cancels_it(
    argo: FakeArgoCD, svc: Services, store: Store
):
    argo.add_app(make_app("payments"))
    svc.now = lambda: 1_000_000.0
    result = await selfheal(svc, "off", "payments", duration=1800)
    assert result.status is Status.CHANGED
    assert ("back on", "in 30m (at 14:16 UTC)") in [(f.name, f.value) for f in result.facts]
    timers = store.timers(TIMER_KIND)
    assert [(t["key"], t["due_at"]) for t in timers] == [("payments", 1_001_800.0)]

    st = await status(svc, "payments")
    assert ("self-heal back on", "14:16 UTC") in [(f.name, f.value) for f in st.facts]

    on = await selfheal(svc, "on", "payments")
    assert ("timer", "the pending re-enable was cancelled") in [(f.name, f.value) for f in on.facts]
    assert store.timers(TIMER_KIND) == []


async def test_bad_selfheal_input(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    with pytest.raises(errors.BadInput, match="out of range"):
        await selfheal(svc, "off", "payments", duration=10)
    with pytest.raises(errors.BadInput, match="only makes sense with 'off'"):
        await selfheal(svc, "on", "payments", duration=600)
    assert argo.requests == []  # refused before any API call


async def test_parent_app_warning(argo: FakeArgoCD, svc: Services):
    app = make_app("child", labels={"argocd.argoproj.io/instance": "root"})
    argo.add_app(app)
    result = await selfheal(svc, "off", "child")
    assert any(f.name == "warning" and "parent app" in f.value for f in result.facts)


async def test_status_healthy_and_degraded(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    ok = await status(svc, "payments")
    assert ok.status is Status.NOOP
    assert ok.summary.startswith("payments is Synced and Healthy at ")
    facts = dict((f.name, f.value) for f in ok.facts)
    assert facts["auto-sync"] == "on, self-heal on, prune on"

    argo.set_health("payments", "Degraded", "Readiness probe failed")
    bad = await status(svc, "payments")
    assert bad.status is Status.FAILED
    assert "Degraded" in bad.summary and "Deployment/payments" in bad.summary
    assert [a.command for a in bad.actions][:2] == ["sync payments", "rollback payments"]


async def test_status_after_a_failed_sync_says_so(argo: FakeArgoCD, svc: Services):
    from commands.sync import SyncOptions, sync

    argo.add_app(make_app("billing"))
    argo.script("billing", "fail", message="StatefulSet billing-db is invalid")
    failed = await sync(svc, "billing", SyncOptions(hooks=False, timeout=10))
    assert failed.status is Status.FAILED
    st = await status(svc, "billing")
    assert st.status is Status.FAILED
    assert "but its last sync failed" in st.summary and "billing-db is invalid" in st.summary
    assert any(f.value.startswith("SyncFailed") for f in st.facts)
    assert [a.command for a in st.actions][:2] == ["sync billing", "rollback billing"]


async def test_overview_lists_apps_needing_attention_worst_first(argo: FakeArgoCD, svc: Services):
    from commands.status import overview

    for name in ("alpha", "beta", "gamma"):
        argo.add_app(make_app(name))
    calm = await overview(svc)
    assert calm.status is Status.NOOP
    assert calm.summary == "All 3 applications are Synced and Healthy."

    argo.add_app(make_app("delta", sync="OutOfSync"))
    argo.set_health("gamma", "Degraded", "CrashLoopBackOff")
    busy = await overview(svc)
    assert busy.status is Status.FAILED
    assert busy.summary == "2 of 4 applications need attention."
    assert [f.name for f in busy.facts] == ["gamma", "delta"]  # Degraded before OutOfSync
    assert [a.command for a in busy.actions] == ["status gamma", "status delta"]
