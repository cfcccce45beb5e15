"""`sync` end to end against the fake Argo CD and the fake Kubernetes API."""

from __future__ import annotations

import asyncio

import pytest

from commands import errors
from commands.argocd.client import ArgoCD
from commands.context import Caller, Services
from commands.kube.hooks import REPLICAS_ANNOTATION
from commands.results import Status, Step, StepState
from commands.sync import SyncOptions, sync
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app, sha
from tests.fakes.kube_api import FakeKube
from tests.fakes.recording import until_async

NONROOT = {"runAsUser": 1001, "runAsNonRoot": True}
FAST = SyncOptions(timeout=10, presync_timeout=10, postsync_timeout=10)


def db(kube: FakeKube, app: str = "payments", **kw) -> None:
    kube.add_statefulset(
        "prod",
        f"{app}-db",
        app=app,
        replicas=kw.pop("replicas", 2),
        containers=[{"name": "db", "image": "postgres:16", "securityContext": NONROOT}],
        **kw,
    )


async def test_happy_path_end_to_end(argo: FakeArgoCD, kube_fake: FakeKube, svc: Services):
    argo.add_app(make_app("payments", sync="OutOfSync"))
    argo.set_git_head("payments", sha("payments-2"))
    db(kube_fake)
    seen: list[Step] = []

    async def progress(step: Step) -> None:
        seen.append(step)

    result = await sync(svc, "payments", FAST, caller=Caller("alice", "slack"), progress=progress)

    assert result.status is Status.CHANGED, result
    assert result.summary == f"payments is synced to {sha('payments-2')[:7]} and healthy."
    facts = dict((f.name, f.value) for f in result.facts)
    assert facts["revision"] == f"{sha('payments-1')[:7]} → {sha('payments-2')[:7]}"
    # every step ran, in order, and ended done
    assert [s.name for s in result.steps] == ["refresh", "presync", "sync", "wait", "postsync"]
    assert all(s.state is StepState.DONE for s in result.steps), result.steps
    assert seen[0] == Step("refresh", StepState.RUNNING, "asking Argo CD to compare with Git")
    # what Argo CD saw: a refresh, then one sync with prune and a retry strategy
    posts = [r for r in argo.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/api/v1/applications/payments/sync"]
    body = posts[0].json
    assert body["prune"] is True and body["retryStrategy"]["limit"] == 3
    assert body["infos"][0] == {"name": "requested-by", "value": "alice via slack"}
    assert body["infos"][1]["name"] == "chatops-request-id"  # how we recognise our operation
    assert posts[0].headers["Content-Type"] == "application/json"
    assert any(r.query.get("refresh") == "normal" for r in argo.requests if r.method == "GET")
    # what Kubernetes saw: scaled to 0 then back; the StatefulSet is Ready with its replicas
    scales = kube_fake.requests_to("PATCH", "/scale")
    assert scales, "presync must scale through the scale subresource"
    sts = kube_fake.get("apps", "statefulsets", "prod", "payments-db")
    assert sts["spec"]["replicas"] == 2 and sts["status"]["readyReplicas"] == 2
    assert REPLICAS_ANNOTATION not in (sts["metadata"].get("annotations") or {})


async def test_sync_failed_names_resource_and_offers_actions(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    argo.script("payments", "fail", message="one or more objects failed to apply")
    result = await sync(svc, "payments", SyncOptions(hooks=False, timeout=10))
    assert result.status is Status.FAILED
    assert result.summary.startswith("Sync of payments failed: one or more objects failed")
    assert any(f.value.startswith("SyncFailed") for f in result.facts), result.facts
    assert [a.command for a in result.actions] == ["sync payments", "rollback payments"]
    assert result.actions[1].confirm  # rollback asks first
    assert result.links[0].url == "https://argocd.example.com/applications/payments"
    assert [s.name for s in result.steps] == ["refresh", "presync", "sync", "wait"]


async def test_retries_then_fails(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    argo.script("payments", "retry_then_fail")
    details: list[str] = []

    async def progress(step: Step) -> None:
        details.append(step.detail)

    result = await sync(svc, "payments", SyncOptions(hooks=False, timeout=10), progress=progress)
    assert result.status is Status.FAILED
    assert "retried" in result.summary
    assert any("retrying" in d for d in details), details


async def test_degraded_after_sync_names_the_resource(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    argo.script("payments", "degrade", message="Back-off restarting failed container")
    result = await sync(svc, "payments", SyncOptions(hooks=False, timeout=10))
    assert result.status is Status.FAILED
    assert "Degraded after the sync" in result.summary
    assert any("Degraded" in f.value and "Back-off restarting" in f.value for f in result.facts), (
        result.facts
    )


async def test_timeout_says_where_it_stands(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    argo.script("payments", "hang")
    result = await sync(svc, "payments", SyncOptions(hooks=False, timeout=0.5))
    assert result.status is Status.FAILED
    assert result.summary.startswith("payments was not Synced and Healthy after 0s")
    assert "operation Running" in result.summary
    assert result.actions[0].command == "sync payments"


async def test_operation_in_progress_says_who(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    argo.script("payments", "hang")
    async with ArgoCD(argo.url, argo.token) as other:
        await other.sync("payments", requested_by="bob")
    result = await sync(svc, "payments", SyncOptions(hooks=False, timeout=10))
    assert result.status is Status.FAILED
    assert "already has an operation running: started by" in result.summary
    # nothing else was posted: the second sync never reached Argo CD
    assert len([r for r in argo.requests if r.method == "POST"]) == 1


async def test_unreachable_unauthorized_forbidden(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    argo.fail_next(1, 403, "permission denied: applications, sync, default/payments")
    # the 403 hits the refresh GET: the app exists, so it is a denial, not "not found"
    result = await sync(svc, "payments", SyncOptions(hooks=False, timeout=10))
    assert result.status is Status.DENIED
    assert "denied the bot access" in result.summary

    async with ArgoCD(argo.url, "wrong-token") as bad:
        wrong = Services(argocd=bad)
        result = await sync(wrong, "payments", SyncOptions(hooks=False, timeout=10))
    assert result.status is Status.DENIED
    assert "rejected the bot's token" in result.summary
    assert "wrong-token" not in repr(result)

    argo.pause()
    try:
        result = await sync(svc, "payments", SyncOptions(hooks=False, timeout=10))
    finally:
        argo.resume()
    assert result.status is Status.FAILED
    assert "unreachable" in result.summary
    assert result.steps[0].state is StepState.FAILED


async def test_unknown_app_suggests_close_match(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    result = await sync(svc, "paymnets", SyncOptions(hooks=False, timeout=10))
    assert result.status is Status.FAILED
    assert result.summary == "No application 'paymnets'."
    assert ("did you mean", "payments") in [(f.name, f.value) for f in result.facts]


async def test_statefulset_never_ready_fails_postsync(
    argo: FakeArgoCD, kube_fake: FakeKube, svc: Services
):
    argo.add_app(make_app("payments"))
    db(kube_fake, replicas=1)
    kube_fake.never_ready("payments-db")
    opts = SyncOptions(timeout=10, presync_timeout=10, postsync_timeout=0.5)
    result = await sync(svc, "payments", opts)
    assert result.status is Status.FAILED
    assert "payments-db" in result.summary
    assert result.steps[-1].name == "postsync" and result.steps[-1].state is StepState.FAILED


async def test_root_container_fails_postsync(argo: FakeArgoCD, kube_fake: FakeKube, svc: Services):
    argo.add_app(make_app("payments"))
    kube_fake.add_statefulset(
        "prod",
        "payments-db",
        app="payments",
        replicas=1,
        containers=[{"name": "db", "image": "postgres:16", "securityContext": {"runAsUser": 0}}],
    )
    result = await sync(svc, "payments", FAST)
    assert result.status is Status.FAILED
    assert "root" in result.summary and "db" in result.summary


async def test_app_with_own_presync_hook_skips_ours(
    argo: FakeArgoCD, kube_fake: FakeKube, svc: Services
):
    argo.add_app(make_app("payments"))
    argo.set_hooks("payments", "PreSync")
    # a first sync records the hook in the operation's result
    await sync(svc, "payments", SyncOptions(hooks=False, timeout=10))
    db(kube_fake, replicas=1)
    result = await sync(svc, "payments", FAST)
    assert result.status is Status.CHANGED
    presync = next(s for s in result.steps if s.name == "presync")
    assert presync.state is StepState.SKIPPED and "own PreSync hook" in presync.detail
    assert kube_fake.requests_to("PATCH", "/scale") == []


async def test_concurrent_syncs_of_different_apps(argo: FakeArgoCD, svc: Services):
    for name in ("a", "b", "c"):
        argo.add_app(make_app(name))
    results = await asyncio.gather(
        *(sync(svc, n, SyncOptions(hooks=False, timeout=10)) for n in ("a", "b", "c"))
    )
    assert [r.status for r in results] == [Status.CHANGED] * 3


def test_bad_options_are_refused():
    import pytest

    with pytest.raises(errors.BadInput, match="out of range"):
        SyncOptions(timeout=5).validate()
    with pytest.raises(errors.BadInput, match="0 to 10"):
        SyncOptions(retry_limit=11).validate()


async def test_a_stream_error_frame_is_an_error_naming_the_reason(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    for code, message, kind in [
        (14, "transport is closing", errors.Unavailable),
        (7, "permission denied", errors.Denied),
    ]:
        stream = svc.argocd.watch(name="payments")
        kind_seen, app = await anext(stream)
        assert (kind_seen, app.name) == ("ADDED", "payments")
        argo.break_streams(code, message)
        with pytest.raises(kind) as e:
            await anext(stream)
        assert message in e.value.user_message
        await stream.aclose()


async def test_sync_waits_through_a_failed_stream(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments", sync="OutOfSync"))
    argo.set_git_head("payments", sha("payments-2"))
    argo.state.step_delay = 0.3  # slow enough to break the stream mid-operation
    task = asyncio.create_task(sync(svc, "payments", SyncOptions(hooks=False, timeout=20)))
    await until_async(lambda: argo.state.subscribers)  # the wait is reading the stream
    assert argo.app("payments").get("operation"), "the operation must still be running"
    argo.break_streams(13, "grpc: the client connection is closing")
    result = await task
    assert result.status is Status.CHANGED, result
    streams = [r for r in argo.requests if r.path == "/api/v1/stream/applications"]
    assert len(streams) >= 2  # it reconnected


async def test_refresh_past_argocds_deadline_is_a_clear_timeout(argo: FakeArgoCD, svc: Services):
    argo.add_app(make_app("payments"))
    argo.set_reconcile_delay(3.0)  # the controller is slow
    argo.set_refresh_deadline(0.2)  # argocd-server stops waiting first
    with pytest.raises(errors.Timeout) as e:
        await svc.argocd.get("payments", refresh="normal")
    assert (
        e.value.user_message
        == "Argo CD could not finish refreshing application 'payments' in time."
    )
    result = await sync(svc, "payments", SyncOptions(hooks=False, timeout=10))
    assert result.status is Status.FAILED
    assert "could not finish refreshing" in result.summary, result
