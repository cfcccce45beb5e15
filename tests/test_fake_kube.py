"""The fake Kubernetes API server answers the official client the way a real one does.

Other tests trust this fake for resourceVersions, watches, 410 Expired, the scale subresource,
RBAC denials and the exec channel protocol, so each of those is pinned here through the
official ``kubernetes`` client (nothing calls the fake's internals to check the wire).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes import watch
from kubernetes.client import ApiException
from kubernetes.stream import stream

from tests.fakes.kube_api import FakeKube, api_client


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    f = FakeKube(bookmark_interval=0.05).start()
    yield f
    f.stop()


@pytest.fixture
def api(fake: FakeKube) -> Iterator[Any]:
    client = api_client(fake)
    yield client
    client.close()


def core(api: Any) -> Any:
    return kubernetes.client.CoreV1Api(api)


def apps(api: Any) -> Any:
    return kubernetes.client.AppsV1Api(api)


def status_of(e: ApiException) -> dict[str, Any]:
    body = json.loads(e.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == e.status
    return body


def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_crud_versions_and_errors(fake: FakeKube, api: Any) -> None:
    fake.add_namespace("bots")
    leases = kubernetes.client.CoordinationV1Api(api)
    body = {"metadata": {"name": "chatops-leader"}, "spec": {"holderIdentity": "a"}}
    created = leases.create_namespaced_lease("bots", body)
    rv1 = int(created.metadata.resource_version)
    assert created.metadata.uid and created.spec.holder_identity == "a"

    with pytest.raises(ApiException) as dup:
        leases.create_namespaced_lease("bots", body)
    assert dup.value.status == 409 and status_of(dup.value)["reason"] == "AlreadyExists"

    stale = {"metadata": {"name": "chatops-leader", "resourceVersion": str(rv1)}}
    leases.patch_namespaced_lease(
        "chatops-leader",
        "bots",
        {"spec": {"holderIdentity": "b"}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException) as conflict:
        leases.replace_namespaced_lease(
            "chatops-leader", "bots", {**stale, "spec": {"holderIdentity": "c"}}
        )
    assert conflict.value.status == 409 and status_of(conflict.value)["reason"] == "Conflict"

    current = leases.read_namespaced_lease("chatops-leader", "bots")
    assert current.spec.holder_identity == "b" and int(current.metadata.resource_version) > rv1
    replaced = leases.replace_namespaced_lease(
        "chatops-leader",
        "bots",
        {
            "metadata": {
                "name": "chatops-leader",
                "resourceVersion": current.metadata.resource_version,
            },
            "spec": {"holderIdentity": "c", "leaseDurationSeconds": 15},
        },
    )
    assert replaced.spec.holder_identity == "c"
    patched = leases.patch_namespaced_lease(
        "chatops-leader",
        "bots",
        [{"op": "replace", "path": "/spec/leaseDurationSeconds", "value": 30}],
        _content_type="application/json-patch+json",
    )
    assert patched.spec.lease_duration_seconds == 30

    listed = leases.list_namespaced_lease("bots")
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)
    leases.delete_namespaced_lease("chatops-leader", "bots")
    with pytest.raises(ApiException) as gone:
        leases.read_namespaced_lease("chatops-leader", "bots")
    assert gone.value.status == 404 and status_of(gone.value)["reason"] == "NotFound"
    assert [r.method for r in fake.requests_to("PATCH", "/leases/chatops-leader")] == ["PATCH"] * 2


def test_custom_objects_and_namespaces(fake: FakeKube, api: Any) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "postgresql"},
        "spec": {"project": "default"},
        "status": {"health": {"status": "Healthy"}},
    }
    # NamespaceLifecycle admission: nothing is created into a namespace that does not exist
    with pytest.raises(ApiException) as missing:
        custom.create_namespaced_custom_object(
            "argoproj.io", "v1alpha1", "argocd", "applications", app
        )
    body = status_of(missing.value)
    assert (missing.value.status, body["reason"]) == (404, "NotFound")
    assert body["message"] == 'namespaces "argocd" not found'
    assert body["details"] == {"name": "argocd", "group": "", "kind": "namespaces"}
    core(api).create_namespace({"metadata": {"name": "argocd"}})
    custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications", app)
    custom.patch_namespaced_custom_object(
        "argoproj.io",
        "v1alpha1",
        "argocd",
        "applications",
        "postgresql",
        {"status": {"health": {"status": "Degraded"}}},
    )
    got = custom.list_cluster_custom_object("argoproj.io", "v1alpha1", "applications")
    assert [i["status"]["health"]["status"] for i in got["items"]] == ["Degraded"]
    assert got["items"][0]["kind"] == "Application"  # custom list items keep their kind
    names = [n.metadata.name for n in core(api).list_namespace().items]
    assert names == ["argocd"]


def test_selectors(fake: FakeKube, api: Any) -> None:
    for name, labels in (("a", {"tier": "db", "x": "1"}), ("b", {"tier": "web"}), ("c", {})):
        fake.add_pod(
            "ns",
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        )

    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in core(api).list_namespaced_pod("ns", **kw).items]

    assert names(label_selector="tier=db") == ["a"]
    assert names(label_selector="tier!=db") == ["b", "c"]
    assert names(label_selector="tier in (db, web)") == ["a", "b"]
    assert names(label_selector="tier notin (db)") == ["b", "c"]
    assert names(label_selector="tier,!x") == ["b"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b,status.phase=Running") == ["a", "c"]
    all_ns = core(api).list_pod_for_all_namespaces(field_selector="metadata.namespace=ns")
    assert len(all_ns.items) == 3
    with pytest.raises(ApiException) as bad:
        core(api).list_namespaced_pod("ns", field_selector="spec.image=x")
    assert (
        bad.value.status == 400 and "field label not supported" in status_of(bad.value)["message"]
    )


def _pod(name: str, containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": containers or [{"name": "main", "image": "busybox"}]},
    }


def test_lists_page_with_limit_and_continue_from_one_snapshot() -> None:
    fake = FakeKube(max_page=2).start()  # the server pages at 2, even when asked for more
    api = api_client(fake)
    try:
        for i in range(5):
            fake.add_pod("p", _pod(f"pod-{i}"))
        v1 = core(api)
        assert len(v1.list_namespaced_pod("p").items) == 5  # no limit: one response, no paging
        first = v1.list_namespaced_pod("p", limit=500)
        assert [p.metadata.name for p in first.items] == ["pod-0", "pod-1"]
        assert first.metadata._continue and first.metadata.remaining_item_count == 3
        fake.add_pod("p", _pod("pod-9"))  # written between pages: not in this list
        second = v1.list_namespaced_pod("p", limit=500, _continue=first.metadata._continue)
        third = v1.list_namespaced_pod("p", limit=500, _continue=second.metadata._continue)
        assert [p.metadata.name for p in second.items + third.items] == ["pod-2", "pod-3", "pod-4"]
        assert third.metadata._continue is None
        # every page carries the first page's resourceVersion: a watch from it misses nothing
        assert {second.metadata.resource_version, third.metadata.resource_version} == {
            first.metadata.resource_version
        }
        # a token only works for the query it came from
        again = v1.list_namespaced_pod("p", limit=1)
        with pytest.raises(ApiException) as other:
            v1.list_namespaced_pod(
                "p", limit=1, label_selector="app=x", _continue=again.metadata._continue
            )
        assert other.value.status == 400
    finally:
        api.close()
        fake.stop()


def test_an_expired_continue_token_is_410_with_a_token_for_the_rest(
    fake: FakeKube, api: Any
) -> None:
    for i in range(3):
        fake.add_pod("p", _pod(f"pod-{i}"))
    v1 = core(api)
    first = v1.list_namespaced_pod("p", limit=1)
    fake.add_pod("p", _pod("pod-3"))
    fake.expire_continue_tokens()  # etcd compacted the first page's revision
    with pytest.raises(ApiException) as gone:
        v1.list_namespaced_pod("p", limit=1, _continue=first.metadata._continue)
    body = status_of(gone.value)
    assert (gone.value.status, body["reason"]) == (410, "Expired")
    assert "too old to display a consistent list result" in body["message"]
    # the token in the 410 continues from the next key in the latest snapshot (inconsistent)
    rest = v1.list_namespaced_pod("p", _continue=body["metadata"]["continue"])
    assert [p.metadata.name for p in rest.items] == ["pod-1", "pod-2", "pod-3"]
    # a compaction expires open tokens the same way
    first = v1.list_namespaced_pod("p", limit=1)
    fake.add_pod("p", _pod("pod-4"))
    fake.compact()
    with pytest.raises(ApiException) as compacted:
        v1.list_namespaced_pod("p", limit=1, _continue=first.metadata._continue)
    assert compacted.value.status == 410


def test_patches_follow_their_content_type(fake: FakeKube, api: Any) -> None:
    two = [{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "proxy:1"}]
    pod = _pod("web-0", two)
    pod["metadata"]["finalizers"] = ["a.example/x"]
    fake.add_pod("p", pod)
    v1 = core(api)
    # strategic merge: containers merge by name, finalizers are a set
    smp = {
        "metadata": {"finalizers": ["b.example/y"]},
        "spec": {"containers": [{"name": "sidecar", "image": "proxy:2"}]},
    }
    v1.patch_namespaced_pod(
        "web-0", "p", smp, _content_type="application/strategic-merge-patch+json"
    )
    got = fake.get("", "pods", "p", "web-0")
    assert got is not None
    assert [(c["name"], c["image"]) for c in got["spec"]["containers"]] == [
        ("app", "app:1"),
        ("sidecar", "proxy:2"),
    ]
    assert got["metadata"]["finalizers"] == ["a.example/x", "b.example/y"]
    # $patch: delete removes one element by its merge key
    delete = {"spec": {"containers": [{"name": "app", "$patch": "delete"}]}}
    v1.patch_namespaced_pod(
        "web-0", "p", delete, _content_type="application/strategic-merge-patch+json"
    )
    got = fake.get("", "pods", "p", "web-0")
    assert got is not None and [c["name"] for c in got["spec"]["containers"]] == ["sidecar"]
    # JSON merge patch (RFC 7386): the same list is replaced as a whole
    merge = {"spec": {"containers": [{"name": "other", "image": "o:1"}]}}
    v1.patch_namespaced_pod("web-0", "p", merge, _content_type="application/merge-patch+json")
    got = fake.get("", "pods", "p", "web-0")
    assert got is not None and got["spec"]["containers"] == [{"name": "other", "image": "o:1"}]

    # custom resources have no strategic merge (no Go struct tags): 415
    fake.add_namespace("argocd")
    custom = kubernetes.client.CustomObjectsApi(api)
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
           "metadata": {"name": "web"}, "spec": {"project": "default"}}  # fmt: skip
    custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications", app)
    for ctype in ("application/strategic-merge-patch+json",):
        with pytest.raises(ApiException) as refused:
            custom.patch_namespaced_custom_object(
                "argoproj.io", "v1alpha1", "argocd", "applications", "web",
                {"spec": {"project": "x"}}, _content_type=ctype,
            )  # fmt: skip
        assert refused.value.status == 415
        assert status_of(refused.value)["reason"] == "UnsupportedMediaType"


def test_watch_events_with_official_watch_and_bookmarks(fake: FakeKube, api: Any) -> None:
    fake.add_event("apps", involved={"kind": "Pod", "name": "old"}, reason="BackOff", message="m")
    listed = core(api).list_namespaced_event("apps")
    rv = listed.metadata.resource_version
    first = fake.add_event(
        "apps", involved={"kind": "Pod", "name": "web-0"}, reason="FailedMount", message="no vol"
    )
    fake.add_event(
        "apps",
        involved={"kind": "Pod", "name": "web-0"},
        reason="Pulled",
        message="ok",
        type="Normal",
    )
    fake.repeat_event("apps", first["metadata"]["name"])
    seen: list[tuple[str, str, int]] = []
    bookmarks = 0
    w = watch.Watch()
    for ev in w.stream(
        core(api).list_namespaced_event,
        "apps",
        resource_version=rv,
        field_selector="type=Warning",
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ):
        if ev["type"] == "BOOKMARK":
            bookmarks += 1
            assert int(ev["raw_object"]["metadata"]["resourceVersion"]) >= int(rv)
            w.stop()
            continue
        seen.append((ev["type"], ev["object"].reason, ev["object"].count))
    assert seen == [("ADDED", "FailedMount", 1), ("MODIFIED", "FailedMount", 2)]
    assert bookmarks == 1
    assert w.resource_version == str(fake.resource_version)


def test_watch_timeout_ends_stream_and_synthetic_adds(fake: FakeKube, api: Any) -> None:
    fake.add_statefulset("db", "pg", replicas=1)
    started = time.monotonic()
    events = list(
        watch.Watch().stream(apps(api).list_namespaced_stateful_set, "db", timeout_seconds=1)
    )
    assert 0.9 <= time.monotonic() - started < 4
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "pg")]


def test_watch_after_compaction_is_410_expired(fake: FakeKube, api: Any) -> None:
    fake.add_pod("ns", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})
    rv = core(api).list_namespaced_pod("ns").metadata.resource_version
    fake.update("", "pods", "ns", "p", lambda p: p["metadata"].update(labels={"a": "b"}))
    fake.compact()
    with pytest.raises(ApiException) as expired:
        list(
            watch.Watch().stream(
                core(api).list_namespaced_pod, "ns", resource_version=rv, timeout_seconds=1
            )
        )
    assert expired.value.status == 410 and "Expired" in expired.value.reason
    # a fresh list gives a resourceVersion the server can still serve
    fresh = core(api).list_namespaced_pod("ns").metadata.resource_version
    fake.update("", "pods", "ns", "p", lambda p: p["metadata"].update(labels={"a": "c"}))
    w = watch.Watch()
    got = []
    for ev in w.stream(
        core(api).list_namespaced_pod, "ns", resource_version=fresh, timeout_seconds=2
    ):
        got.append((ev["type"], ev["object"].metadata.labels))
        w.stop()
    assert got == [("MODIFIED", {"a": "c"})]


def test_leaving_a_selector_is_reported_as_deleted(fake: FakeKube, api: Any) -> None:
    fake.add_pod(
        "ns",
        {
            "metadata": {"name": "p", "labels": {"keep": "yes"}},
            "spec": {"containers": [{"name": "c"}]},
        },
    )
    rv = core(api).list_namespaced_pod("ns").metadata.resource_version
    fake.update("", "pods", "ns", "p", lambda p: p["metadata"].update(labels={"keep": "no"}))
    w = watch.Watch()
    for ev in w.stream(
        core(api).list_namespaced_pod,
        "ns",
        resource_version=rv,
        label_selector="keep=yes",
        timeout_seconds=2,
    ):
        assert ev["type"] == "DELETED"
        w.stop()


def test_scale_subresource_drives_pods(fake: FakeKube, api: Any) -> None:
    fake.add_statefulset("db", "pg", replicas=3, app="postgresql")
    assert fake.pod_names("db") == ["pg-0", "pg-1", "pg-2"]
    rv = core(api).list_namespaced_pod("db").metadata.resource_version
    scale = apps(api).patch_namespaced_stateful_set_scale("pg", "db", {"spec": {"replicas": 0}})
    assert scale.kind == "Scale" and scale.spec.replicas == 0
    deleted: list[str] = []
    w = watch.Watch()
    for ev in w.stream(core(api).list_namespaced_pod, "db", resource_version=rv, timeout_seconds=5):
        if ev["type"] == "DELETED":
            deleted.append(ev["object"].metadata.name)
            if len(deleted) == 3:
                w.stop()
    assert deleted == ["pg-2", "pg-1", "pg-0"]  # highest ordinal first
    sts = apps(api).read_namespaced_stateful_set("pg", "db")
    wait_for(lambda: apps(api).read_namespaced_stateful_set("pg", "db").status.replicas == 0)
    assert sts.metadata.generation == 2

    apps(api).patch_namespaced_stateful_set_scale("pg", "db", {"spec": {"replicas": 2}})

    def ready() -> bool:
        s = apps(api).read_namespaced_stateful_set("pg", "db")
        return (s.status.ready_replicas or 0) == 2 and s.status.observed_generation == 3

    wait_for(ready)
    pods = core(api).list_namespaced_pod("db").items
    assert [p.metadata.name for p in pods] == ["pg-0", "pg-1"]
    assert pods[0].metadata.labels["app.kubernetes.io/instance"] == "postgresql"
    assert pods[0].metadata.owner_references[0].kind == "StatefulSet"


def test_scale_to_negative_is_422_invalid(fake: FakeKube, api: Any) -> None:
    fake.add_statefulset("db", "pg")
    with pytest.raises(ApiException) as e:
        apps(api).patch_namespaced_stateful_set_scale("pg", "db", {"spec": {"replicas": -1}})
    body = status_of(e.value)
    assert e.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.replicas"
    assert apps(api).read_namespaced_stateful_set("pg", "db").spec.replicas == 1


def test_never_ready_and_template_rollout(fake: FakeKube, api: Any) -> None:
    fake.never_ready("web")
    fake.add_statefulset("apps", "web", replicas=2)
    sts = apps(api).read_namespaced_stateful_set("web", "apps")
    assert sts.status.replicas == 1 and not sts.status.ready_replicas  # OrderedReady: stuck
    warnings = core(api).list_namespaced_event("apps", field_selector="reason=Unhealthy").items
    assert warnings and warnings[0].involved_object.name == "web-0"
    fake.make_ready("web")
    wait_for(
        lambda: (
            (apps(api).read_namespaced_stateful_set("web", "apps").status.ready_replicas or 0) == 2
        )
    )
    before = apps(api).read_namespaced_stateful_set("web", "apps").status.current_revision
    apps(api).patch_namespaced_stateful_set(
        "web",
        "apps",
        {"spec": {"template": {"metadata": {"annotations": {"restartedAt": "now"}}}}},
    )

    def rolled() -> bool:
        s = apps(api).read_namespaced_stateful_set("web", "apps").status
        return s.current_revision == s.update_revision != before and s.ready_replicas == 2

    wait_for(rolled)


def test_forbidden_is_403_status(fake: FakeKube, api: Any) -> None:
    fake.add_statefulset("db", "pg")
    fake.forbid("patch", "statefulsets/scale")
    with pytest.raises(ApiException) as e:
        apps(api).patch_namespaced_stateful_set_scale("pg", "db", {"spec": {"replicas": 0}})
    body = status_of(e.value)
    assert e.value.status == 403 and body["reason"] == "Forbidden"
    assert 'cannot patch resource "statefulsets/scale" in API group "apps"' in body["message"]
    review = kubernetes.client.AuthorizationV1Api(api).create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {
                    "namespace": "db",
                    "verb": "patch",
                    "group": "apps",
                    "resource": "statefulsets",
                    "subresource": "scale",
                }
            }
        }
    )
    assert review.status.allowed is False
    fake.allow("patch", "statefulsets/scale")
    assert (
        apps(api)
        .patch_namespaced_stateful_set_scale("pg", "db", {"spec": {"replicas": 0}})
        .spec.replicas
        == 0
    )


def exec_id(api: Any, pod: str, container: str) -> Any:
    client = stream(
        core(api).connect_get_namespaced_pod_exec,
        pod,
        "db",
        command=["id", "-u"],
        container=container,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    client.run_forever(timeout=5)
    return client


def test_exec_channel_protocol(fake: FakeKube, api: Any) -> None:
    fake.add_statefulset(
        "db",
        "pg",
        containers=[
            {"name": "pg", "image": "bitnami/postgresql", "securityContext": {"runAsUser": 1001}},
            {"name": "metrics", "image": "distroless"},
        ],
    )
    ok = exec_id(api, "pg-0", "pg")
    assert ok.read_channel(1) == "1001\n" and ok.returncode == 0
    root = exec_id(api, "pg-0", "metrics")  # nothing declared: the image runs as root
    assert root.read_channel(1) == "0\n"
    fake.exec_fails("metrics")
    failed = exec_id(api, "pg-0", "metrics")
    assert failed.returncode == 126 and "executable file not found" in failed.read_channel(2)
    assert fake.execs[0].command == ("id", "-u") and fake.execs[0].protocol == "v4.channel.k8s.io"
    # the plain (preloaded) call returns stdout as a string
    out = stream(
        core(api).connect_get_namespaced_pod_exec,
        "pg-0",
        "db",
        command=["id", "-u"],
        container="pg",
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert out == "1001\n"
    fake.forbid("create", "pods/exec")
    with pytest.raises(ApiException) as e:
        exec_id(api, "pg-0", "pg")
    assert "Handshake status 403" in str(e.value.reason)


def test_unreachable_while_paused(fake: FakeKube, api: Any) -> None:
    fake.add_statefulset("db", "pg")
    with fake.server.paused(), pytest.raises(Exception) as e:
        apps(api).read_namespaced_stateful_set("pg", "db", _request_timeout=2)
    assert "refused" in repr(e.value).lower() or "max retries" in repr(e.value).lower()
    assert apps(api).read_namespaced_stateful_set("pg", "db").spec.replicas == 1
