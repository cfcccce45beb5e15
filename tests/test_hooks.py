"""PreSync / PostSync / verify-rootless end to end against the fake API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from commands import errors
from commands.kube import hooks
from commands.kube.hooks import REPLICAS_ANNOTATION
from commands.kube.ops import KubeOps
from commands.results import Status, Step, StepLog, StepState
from tests.fakes.kube_api import FakeKube, api_client

NS = "db"
APP = "postgresql"
NONROOT = {"runAsUser": 1001, "runAsNonRoot": True}


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    f = FakeKube(pod_delay=0.01).start()
    yield f
    f.stop()


@pytest.fixture
def clients(fake: FakeKube) -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture
def kube(fake: FakeKube, clients: list[Any]) -> KubeOps:
    return new_process(fake, clients)


def new_process(fake: FakeKube, clients: list[Any]) -> KubeOps:
    """A fresh client, as in a separate hook Job: nothing carried over in memory."""
    clients.append(api_client(fake))
    return KubeOps(clients[-1])


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Step] = []
        self.log = StepLog(self.sink)

    async def sink(self, step: Step) -> None:
        self.seen.append(step)

    def states(self, name: str) -> list[StepState]:
        return [s.state for s in self.seen if s.name == name]


def two_statefulsets(fake: FakeKube) -> None:
    containers = [{"name": "postgresql", "image": "bitnami/postgresql", "securityContext": NONROOT}]
    fake.add_statefulset(NS, "pg", app=APP, replicas=3, containers=containers)
    fake.add_statefulset(
        NS,
        "pg-metrics",
        app=APP,
        replicas=1,
        tracking="annotation",
        containers=[{"name": "exporter", "image": "bitnami/postgres-exporter"}],
        pod_security_context={"runAsUser": 1001},
    )
    fake.add_statefulset(NS, "redis", app="redis", replicas=1)


def annotation(fake: FakeKube, name: str) -> str | None:
    sts = fake.get("apps", "statefulsets", NS, name)
    assert sts is not None
    return (sts["metadata"].get("annotations") or {}).get(REPLICAS_ANNOTATION)


async def test_presync_then_postsync_in_separate_processes(
    fake: FakeKube, kube: KubeOps, clients: list[Any]
) -> None:
    two_statefulsets(fake)
    rec = Recorder()
    facts = await hooks.presync(kube, NS, APP, step=rec.log)
    assert fake.pod_names(NS) == ["redis-0"]  # the other app is untouched
    assert annotation(fake, "pg") == "3" and annotation(fake, "pg-metrics") == "1"
    assert {f.name: f.value for f in facts} == {
        "pg": "3 → 0 replicas",
        "pg-metrics": "1 → 0 replicas",
    }
    assert rec.states("presync") == [StepState.RUNNING, StepState.DONE]

    # a retried PreSync must not overwrite the remembered count with 0
    again = await hooks.presync(kube, NS, APP)
    assert annotation(fake, "pg") == "3"
    assert dict((f.name, f.value) for f in again)["pg"] == "already at 0 replicas, 3 to restore"

    fake.exec_uid("postgresql", 1001)
    rec = Recorder()
    facts = await hooks.postsync(new_process(fake, clients), NS, APP, step=rec.log)
    assert fake.pod_names(NS) == ["pg-0", "pg-1", "pg-2", "pg-metrics-0", "redis-0"]
    assert annotation(fake, "pg") is None and annotation(fake, "pg-metrics") is None
    values = {f.name: f.value for f in facts}
    assert values["pg"] == "Ready 3/3" and values["pg-metrics"] == "Ready 1/1"
    assert values["pg-0/postgresql"] == "UID 1001 (id -u in the container)"
    assert values["pg-metrics-0/exporter"] == "UID 1001 (id -u in the container)"
    assert rec.states("postsync") == [StepState.RUNNING, StepState.RUNNING, StepState.DONE]
    assert rec.log.steps[-1].detail == "2 StatefulSets Ready, 4 containers non-root"


async def test_presync_without_statefulsets_is_skipped(fake: FakeKube, kube: KubeOps) -> None:
    rec = Recorder()
    facts = await hooks.presync(kube, NS, APP, step=rec.log)
    assert rec.states("presync") == [StepState.RUNNING, StepState.SKIPPED]
    assert facts[0].value == f"{APP} has no StatefulSets in {NS}"


async def test_presync_denied_reports_the_missing_permission(fake: FakeKube, kube: KubeOps) -> None:
    two_statefulsets(fake)
    fake.forbid("patch", "statefulsets/scale")
    rec = Recorder()
    with pytest.raises(errors.Denied) as e:
        await hooks.presync(kube, NS, APP, step=rec.log)
    assert "patch statefulsets/scale in namespace db" in e.value.user_message
    assert rec.seen[-1] == Step("presync", StepState.FAILED, e.value.user_message)
    assert len(fake.pod_names(NS)) == 5  # nothing was scaled


async def test_postsync_statefulset_never_ready(fake: FakeKube, kube: KubeOps) -> None:
    fake.add_statefulset(
        NS,
        "pg",
        app=APP,
        replicas=2,
        containers=[{"name": "postgresql", "image": "x", "securityContext": NONROOT}],
    )
    await hooks.presync(kube, NS, APP)
    fake.never_ready("pg")
    rec = Recorder()
    with pytest.raises(errors.Timeout) as e:
        await hooks.postsync(kube, NS, APP, timeout=0.5, step=rec.log)
    assert "StatefulSet db/pg was not Ready" in e.value.user_message
    assert "readyReplicas 0/2" in e.value.user_message
    assert rec.seen[-1].state == StepState.FAILED
    assert annotation(fake, "pg") == "2"  # kept: nothing proved the restore worked


async def test_postsync_fails_on_a_root_container(fake: FakeKube, kube: KubeOps) -> None:
    fake.add_statefulset(
        NS,
        "pg",
        app=APP,
        containers=[
            {"name": "postgresql", "image": "x", "securityContext": NONROOT},
            {"name": "backup", "image": "alpine"},
        ],
    )
    with pytest.raises(hooks.NotRootless) as e:
        await hooks.postsync(kube, NS, APP)
    assert e.value.user_message == (
        "Container backup in pod pg-0 of postgresql runs as UID 0 (root), according to "
        "id -u run in the container."
    )
    assert [u.container for u in e.value.containers] == ["backup"]
    assert isinstance(e.value, errors.CommandError)


async def test_postsync_root_reported_by_the_kubelet(fake: FakeKube, kube: KubeOps) -> None:
    fake.add_statefulset(NS, "pg", app=APP, containers=[{"name": "postgresql", "image": "x"}])
    fake.report_uid("pg", "postgresql", 0)
    fake.exec_uid("postgresql", 1001)  # would say otherwise, but the kubelet's report wins
    pod = fake.get("", "pods", NS, "pg-0")
    assert pod is not None and "user" in pod["status"]["containerStatuses"][0]
    with pytest.raises(hooks.NotRootless) as e:
        await hooks.postsync(kube, NS, APP)
    assert "according to the kubelet's status report" in e.value.user_message
    assert fake.execs == []


async def test_postsync_fails_when_a_container_cannot_be_checked(
    fake: FakeKube, kube: KubeOps
) -> None:
    fake.add_statefulset(NS, "pg", app=APP, containers=[{"name": "postgresql", "image": "x"}])
    fake.forbid("create", "pods/exec")
    with pytest.raises(hooks.NotRootless) as e:
        await hooks.postsync(kube, NS, APP)
    assert e.value.user_message.startswith(
        "Could not check the user of container postgresql in pod pg-0 of postgresql: "
        "exec not allowed"
    )
    assert e.value.containers[0].source == "unknown"


async def test_verify_rootless_results(fake: FakeKube, kube: KubeOps) -> None:
    empty = await hooks.verify_rootless(kube, NS, APP)
    assert (
        empty.status == Status.NOOP
        and empty.summary == f"{APP} has no running containers to check."
    )

    fake.add_statefulset(
        NS,
        "pg",
        app=APP,
        replicas=2,
        containers=[{"name": "postgresql", "image": "x", "securityContext": {"runAsUser": 1001}}],
    )
    fake.exec_fails("postgresql")
    ok = await hooks.verify_rootless(kube, NS, APP)
    assert ok.command == "verify-rootless" and ok.target == APP and ok.ok
    assert ok.status == Status.NOOP
    assert ok.summary == f"All 2 containers of {APP} run as non-root."
    assert {f.name: f.value for f in ok.facts} == {
        "pg-0/postgresql": "UID 1001 (declared, not verified)",
        "pg-1/postgresql": "UID 1001 (declared, not verified)",
    }

    fake.exec_uid("postgresql", 0)
    fake.exec_works("postgresql")
    root = await hooks.verify_rootless(kube, NS, APP)
    assert root.status == Status.FAILED and not root.ok
    assert (
        root.summary == f"2 of 2 containers of {APP} run as root: pg-0/postgresql, pg-1/postgresql."
    )
    assert root.facts[0].value == "UID 0, root (id -u in the container)"


async def test_verify_rootless_unknown_is_a_failure(fake: FakeKube) -> None:
    fake.add_statefulset(NS, "pg", app=APP, containers=[{"name": "postgresql", "image": "x"}])
    client = api_client(fake)
    try:
        result = await hooks.verify_rootless(KubeOps(client, exec_enabled=False), NS, APP)
    finally:
        client.close()
    assert result.status == Status.FAILED
    assert (
        result.summary
        == f"Could not check the user of 1 of 1 containers of {APP}: pg-0/postgresql."
    )
    assert result.facts[0].value.startswith("unknown (exec check disabled;")
