"""KubeOps against the fake API server through the official client: what the hooks rely on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from commands import errors
from commands.kube.ops import KubeOps
from tests.fakes.kube_api import FakeKube, api_client

NS = "db"


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    f = FakeKube(pod_delay=0.01, bookmark_interval=0.2).start()
    yield f
    f.stop()


@pytest.fixture
def api(fake: FakeKube) -> Iterator[Any]:
    client = api_client(fake)
    yield client
    client.close()


@pytest.fixture
def ops(api: Any) -> KubeOps:
    return KubeOps(api)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def lists(fake: FakeKube, plural: str) -> int:
    return sum(1 for r in fake.requests_to("GET", f"/{plural}") if r.param("watch") is None)


async def test_membership_by_label_annotation_and_owner(fake: FakeKube, ops: KubeOps) -> None:
    fake.add_statefulset(NS, "pg", app="postgresql", replicas=2)
    fake.add_statefulset(NS, "pg-metrics", app="postgresql", tracking="annotation")
    fake.add_statefulset(NS, "redis", app="redis")
    fake.add_pod(
        NS,
        {
            "metadata": {"name": "job-1", "labels": {"app.kubernetes.io/instance": "postgresql"}},
            "spec": {"containers": [{"name": "c"}]},
        },
    )

    stss = await ops.statefulsets(NS, "postgresql")
    assert [(s.name, s.replicas, s.ready_replicas, s.ready) for s in stss] == [
        ("pg", 2, 2, True),
        ("pg-metrics", 1, 1, True),
    ]
    pods = await ops.pods(NS, "postgresql")
    # pg-metrics pods have no instance label: they belong through their owning StatefulSet
    assert [p["metadata"]["name"] for p in pods] == ["job-1", "pg-0", "pg-1", "pg-metrics-0"]
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert await ops.statefulsets("other", "postgresql") == []


async def test_lists_are_read_page_by_page_and_restart_when_a_token_expires() -> None:
    fake = FakeKube(pod_delay=0.01, max_page=2).start()  # the server pages at 2 items
    api = api_client(fake)
    try:
        ops = KubeOps(api)
        for name in ("a", "b", "c"):
            fake.add_statefulset(NS, name, app="postgresql", replicas=2)
        names = [f"{s}-{i}" for s in ("a", "b", "c") for i in (0, 1)]
        pods = await ops.pods(NS, "postgresql")
        assert [p["metadata"]["name"] for p in pods] == names  # all six, not the first page
        listed = [r for r in fake.requests_to("GET", "/pods") if r.param("watch") is None]
        assert [r.param("limit") for r in listed] == ["500"] * 3
        assert [bool(r.param("continue")) for r in listed] == [False, True, True]

        # etcd compacts between two pages: 410 on the continued page; the bot lists again from
        # the start (a consistent list, so a watch from its resourceVersion misses nothing)
        fake.expire_continue_tokens()
        before = len(fake.requests)
        pods = await ops.pods(NS, "postgresql")
        assert [p["metadata"]["name"] for p in pods] == names
        again = [
            (r.path.rsplit("/", 1)[1], bool(r.param("continue"))) for r in fake.requests[before:]
        ]
        sts, pod = "statefulsets", "pods"
        expected = [(sts, False), (sts, True), (sts, False), (sts, True)]
        assert again == [*expected, (pod, False), (pod, True), (pod, True)]
        await ops.scale(NS, "a", 0)
        await ops.wait_pods_gone(NS, "a", timeout=10)  # the wait lists page by page too
        assert fake.pod_names(NS) == ["b-0", "b-1", "c-0", "c-1"]
    finally:
        api.close()
        fake.stop()


async def test_scale_down_waits_for_pods_then_back_up_until_ready(
    fake: FakeKube, ops: KubeOps
) -> None:
    fake.add_statefulset(NS, "pg", replicas=3)
    await ops.scale(NS, "pg", 0)
    await ops.wait_pods_gone(NS, "pg", timeout=10)
    assert fake.pod_names(NS) == []
    scale = fake.requests_to("PATCH", "/statefulsets/pg/scale")[-1]
    assert scale.body == {"spec": {"replicas": 0}}
    assert scale.content_type == "application/merge-patch+json"
    # waiting watched from the list's resourceVersion instead of polling
    watches = [r for r in fake.requests_to("GET", "/pods") if r.param("watch")]
    assert (
        watches and watches[0].param("resourceVersion") and watches[0].param("allowWatchBookmarks")
    )

    await ops.scale(NS, "pg", 2)
    info = await ops.wait_ready(NS, "pg", timeout=10)
    assert info.ready and info.replicas == 2 and info.ready_replicas == 2
    assert info.observed_generation >= info.generation == 3
    assert fake.pod_names(NS) == ["pg-0", "pg-1"]


async def test_wait_ready_relists_after_410(fake: FakeKube, api: Any) -> None:
    fake.bookmark_interval = 100  # no bookmark refreshes the watch's resourceVersion
    ops = KubeOps(api, watch_timeout=1)  # the server ends each watch after 1 s
    fake.never_ready("web")
    fake.add_statefulset(NS, "web", replicas=1)
    waiting = asyncio.create_task(ops.wait_ready(NS, "web", timeout=10))
    await until(lambda: any(r.param("watch") for r in fake.requests_to("GET", "/statefulsets")))
    await asyncio.to_thread(
        fake.add_event, "elsewhere", involved={"kind": "Pod", "name": "x"}, reason="R", message="m"
    )
    await asyncio.to_thread(fake.compact)  # the reconnect from the old version gets 410
    await until(lambda: lists(fake, "statefulsets") >= 2)
    assert not waiting.done()
    await asyncio.to_thread(fake.make_ready, "web")
    info = await asyncio.wait_for(waiting, 10)
    assert info.ready and info.name == "web"


async def test_wait_survives_an_api_outage(fake: FakeKube, ops: KubeOps) -> None:
    fake.add_statefulset(NS, "pg", replicas=2)
    waiting = asyncio.create_task(ops.wait_pods_gone(NS, "pg", timeout=10))
    await until(lambda: any(r.param("watch") for r in fake.requests_to("GET", "/pods")))
    await asyncio.to_thread(fake.server.pause)  # open watches end, reconnects are refused
    await asyncio.to_thread(
        fake.update, "apps", "statefulsets", NS, "pg", lambda o: o["spec"].update(replicas=0)
    )
    await asyncio.sleep(0.3)  # the outage lasts a moment
    assert not waiting.done()
    await asyncio.to_thread(fake.server.resume)
    await asyncio.wait_for(waiting, 10)
    assert fake.pod_names(NS) == []
    watches = [r for r in fake.requests_to("GET", "/pods") if r.param("watch")]
    assert len(watches) >= 2  # it resumed from where it was rather than giving up


async def test_wait_ready_times_out_with_counts(fake: FakeKube, ops: KubeOps) -> None:
    fake.never_ready("web")
    fake.add_statefulset(NS, "web", replicas=2)
    with pytest.raises(errors.Timeout) as e:
        await ops.wait_ready(NS, "web", timeout=0.5)
    assert "StatefulSet db/web was not Ready" in e.value.user_message
    assert "readyReplicas 0/2" in e.value.user_message


async def test_wait_pods_gone_times_out_naming_pods(fake: FakeKube, ops: KubeOps) -> None:
    fake.add_statefulset(NS, "pg", replicas=2)
    with pytest.raises(errors.Timeout) as e:
        await ops.wait_pods_gone(NS, "pg", timeout=0.3)
    assert "pg-0, pg-1" in e.value.user_message


async def test_event_loop_keeps_running_while_waiting(fake: FakeKube, ops: KubeOps) -> None:
    fake.never_ready("web")
    fake.add_statefulset(NS, "web")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    with pytest.raises(errors.Timeout):
        await ops.wait_ready(NS, "web", timeout=0.5)
    t.cancel()
    assert ticks >= 10


async def test_error_mapping(fake: FakeKube, ops: KubeOps) -> None:
    fake.add_statefulset(NS, "pg", replicas=1)
    with pytest.raises(errors.BadInput) as bad:
        await ops.scale(NS, "pg", -1)
    assert "must be greater than or equal to 0" in bad.value.user_message
    assert (await ops.statefulsets(NS, "pg"))[0].replicas == 1

    with pytest.raises(errors.NotFound):
        await ops.scale(NS, "nope", 1)

    fake.forbid("patch", "statefulsets/scale")
    with pytest.raises(errors.Denied) as denied:
        await ops.scale(NS, "pg", 0)
    assert denied.value.user_message == (
        "The bot is not allowed to patch statefulsets/scale in namespace db."
    )

    with fake.server.paused(), pytest.raises(errors.Unavailable) as down:
        await ops.statefulsets(NS, "pg")
    assert down.value.user_message == "Kubernetes API unreachable."


async def test_annotate_sets_and_removes(fake: FakeKube, ops: KubeOps) -> None:
    fake.add_statefulset(NS, "pg")
    await ops.annotate_statefulset(NS, "pg", {"example.com/a": "3"})
    assert (await ops.statefulsets(NS, "pg"))[0].annotations["example.com/a"] == "3"
    await ops.annotate_statefulset(NS, "pg", {"example.com/a": None})
    assert "example.com/a" not in (await ops.statefulsets(NS, "pg"))[0].annotations


async def test_check_access_names_missing_permissions(fake: FakeKube, ops: KubeOps) -> None:
    assert await ops.check_access(NS) == []
    fake.forbid("create", "pods/exec")
    fake.forbid("patch", "statefulsets/scale", NS)
    assert await ops.check_access(NS) == [
        "patch statefulsets/scale in namespace db",
        "create pods/exec in namespace db",
    ]
    fake.forbid("watch", "events")
    missing = await ops.check_access()
    assert missing == ["watch events at cluster scope", "create pods/exec at cluster scope"]
    asked = [r.body["spec"]["resourceAttributes"] for r in fake.requests_to("POST", "/selfsubjectaccessreviews")]  # fmt: skip
    # what the bot uses, not Argo CD Applications (it reads those through Argo CD's API)
    assert {a["group"] for a in asked} == {"", "apps", "batch"}


# -- container UIDs -------------------------------------------------------------------------------

APP = "searxng"


def sts_with(fake: FakeKube, containers: list[dict[str, Any]], **kw: Any) -> None:
    fake.add_statefulset(NS, APP, containers=containers, **kw)


def by_container(uids: list[Any]) -> dict[str, tuple[int | None, str, str]]:
    return {u.container: (u.uid, u.source, u.detail) for u in uids}


async def test_uid_sources_in_order_of_trust(fake: FakeKube, ops: KubeOps) -> None:
    sts_with(
        fake,
        [
            {"name": "web", "image": "searxng/searxng"},
            {"name": "metrics", "image": "distroless/static:nonroot"},
            {"name": "sidecar", "image": "busybox", "securityContext": {"runAsUser": 977}},
        ],
        pod_security_context={"runAsUser": 1000},
    )
    fake.report_uid(APP, "web", 977)  # the kubelet reports it
    fake.exec_uid("metrics", 65532)
    fake.exec_fails("sidecar")  # no `id` in the image: fall back to the declaration
    await until(lambda: "user" in str(fake.get("", "pods", NS, f"{APP}-0")))
    uids = by_container(await ops.container_uids(NS, APP))
    assert uids["web"][:2] == (977, "status")
    assert uids["metrics"][:2] == (65532, "exec")
    assert uids["sidecar"][:2] == (977, "securityContext")
    assert "container securityContext" in uids["sidecar"][2]
    # the kubelet's answer was trusted without exec-ing into that container
    assert {e.container for e in fake.execs} == {"metrics", "sidecar"}


async def test_root_from_each_source(fake: FakeKube, ops: KubeOps, api: Any) -> None:
    sts_with(
        fake,
        [
            {"name": "a", "image": "x"},
            {"name": "b", "image": "x"},
            {"name": "c", "image": "x", "securityContext": {"runAsUser": 0}},
        ],
    )
    fake.report_uid(APP, "a", 0)
    fake.exec_fails("c")
    await until(lambda: "user" in str(fake.get("", "pods", NS, f"{APP}-0")))
    uids = await ops.container_uids(NS, APP)
    assert [(u.container, u.source, u.root) for u in uids] == [
        ("a", "status", True),
        ("b", "exec", True),  # nothing declared, the image's user is root
        ("c", "securityContext", True),
    ]


async def test_exec_forbidden_falls_back_to_security_context(fake: FakeKube, ops: KubeOps) -> None:
    sts_with(
        fake,
        [
            {"name": "web", "image": "x"},
            {"name": "proxy", "image": "y", "securityContext": {"runAsNonRoot": True}},
            {"name": "helper", "image": "z", "securityContext": {"runAsUser": 1001}},
        ],
    )
    fake.forbid("create", "pods/exec")
    uids = by_container(await ops.container_uids(NS, APP))
    assert uids["helper"][:2] == (1001, "securityContext")
    assert uids["proxy"] == (None, "securityContext", "runAsNonRoot declared")
    assert uids["web"][:2] == (None, "unknown")
    assert "exec not allowed" in uids["web"][2]
    # denied once, not asked again for every container
    assert len(fake.requests_to("GET", "/exec")) == 1


async def test_exec_disabled_never_execs(fake: FakeKube, api: Any) -> None:
    ops = KubeOps(api, exec_enabled=False)
    sts_with(fake, [{"name": "web", "image": "x"}], pod_security_context={"runAsUser": 1001})
    uids = await ops.container_uids(NS, APP)
    assert [(u.uid, u.source) for u in uids] == [(1001, "securityContext")]
    assert "pod securityContext" in uids[0].detail
    assert fake.execs == []


async def test_only_running_containers_are_checked(fake: FakeKube, ops: KubeOps) -> None:
    sts_with(fake, [{"name": "web", "image": "x", "securityContext": {"runAsUser": 5}}])
    labels = {"app.kubernetes.io/instance": APP}
    fake.create(
        "",
        "pods",
        NS,
        {
            "metadata": {"name": "pending", "labels": labels},
            "spec": {"containers": [{"name": "web", "image": "x"}]},
            "status": {"phase": "Pending"},
        },
    )
    uids = await ops.container_uids(NS, APP)
    assert [(u.pod, u.uid) for u in uids] == [(f"{APP}-0", 5)]
