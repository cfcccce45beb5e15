"""Leader election on a Lease, against the Kubernetes fake over real HTTP (real resourceVersion
conflicts). Timings are scaled down (lease 1 s) so handovers take about a second; every wait is
on a condition with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.state.leader import LeaderElector, Timings
from tests.fakes.kube_api import FakeKube, api_client
from tests.fakes.recording import until_async

FAST = Timings(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
NS = "argocd-chatops"


class Replica:
    def __init__(self, fake: FakeKube, identity: str, timings: Timings = FAST) -> None:
        self.log: list[str] = []
        self.elector = LeaderElector(
            api_client(fake),
            name="argocd-chatops",
            namespace=NS,
            identity=identity,
            timings=timings,
            on_start=self._started,
            on_stop=self._stopped,
        )

    async def _started(self) -> None:
        self.log.append("start")

    async def _stopped(self) -> None:
        self.log.append("stop")


@pytest.fixture
async def replicas(kube_fake: FakeKube) -> AsyncIterator[list[Replica]]:
    kube_fake.create("", "namespaces", "", {"metadata": {"name": NS}})
    made: list[Replica] = []

    def make(identity: str) -> Replica:
        r = Replica(kube_fake, identity)
        made.append(r)
        return r

    yield make  # type: ignore[misc]
    for r in made:
        await r.elector.stop()


def lease(fake: FakeKube) -> dict[str, Any]:
    obj = fake.get("coordination.k8s.io", "leases", NS, "argocd-chatops")
    assert obj is not None
    return obj


def test_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        Timings(lease_duration=10, renew_deadline=10, retry_period=2).check()


async def test_one_of_two_leads_and_the_lease_names_it(kube_fake: FakeKube, replicas: Any) -> None:
    a, b = replicas("pod-a"), replicas("pod-b")
    a.elector.start()
    await until_async(lambda: a.elector.is_leader)
    b.elector.start()
    # b keeps reading a renewed Lease for several lease durations and never leads
    first_rv = lease(kube_fake)["metadata"]["resourceVersion"]
    await until_async(
        lambda: int(lease(kube_fake)["metadata"]["resourceVersion"]) > int(first_rv) + 10,
        timeout=10,
    )
    assert a.elector.is_leader and not b.elector.is_leader
    assert b.log == [] and a.log == ["start"]
    spec = lease(kube_fake)["spec"]
    assert spec["holderIdentity"] == "pod-a"
    assert spec["leaseDurationSeconds"] == 1
    assert b.elector.holder == "pod-a"


async def test_release_on_stop_hands_over_without_waiting_out_the_lease(
    kube_fake: FakeKube, replicas: Any
) -> None:
    a, b = replicas("pod-a"), replicas("pod-b")
    a.elector.start()
    await until_async(lambda: a.elector.is_leader)
    b.elector.start()
    await until_async(lambda: b.elector.holder == "pod-a")
    await a.elector.stop()
    assert a.log == ["start", "stop"]
    # released: an empty holder, so b takes it on its next try instead of after expiry
    await until_async(lambda: b.elector.is_leader, timeout=0.9)
    spec = lease(kube_fake)["spec"]
    assert spec["holderIdentity"] == "pod-b"
    assert spec["leaseTransitions"] >= 1


async def test_a_dead_leader_is_replaced_after_the_lease_expires(
    kube_fake: FakeKube, replicas: Any
) -> None:
    a, b = replicas("pod-a"), replicas("pod-b")
    a.elector.start()
    await until_async(lambda: a.elector.is_leader)
    b.elector.start()
    await until_async(lambda: b.elector.holder == "pod-a")
    # kill -9: the task dies without releasing or stepping down
    assert a.elector._task is not None
    a.elector._task.cancel()
    loop = asyncio.get_running_loop()
    died = loop.time()
    await until_async(lambda: b.elector.is_leader, timeout=5)
    took = loop.time() - died
    # not before a full lease duration of unchanged record has been observed
    assert took >= FAST.lease_duration * 0.9
    assert lease(kube_fake)["spec"]["holderIdentity"] == "pod-b"


async def test_a_leader_that_cannot_renew_steps_down_before_the_lease_expires(
    kube_fake: FakeKube, replicas: Any
) -> None:
    a = replicas("pod-a")
    a.elector.start()
    await until_async(lambda: a.elector.is_leader)
    loop = asyncio.get_running_loop()
    kube_fake.server.pause()  # API server unreachable
    try:
        cut = loop.time()
        await until_async(lambda: not a.elector.is_leader, timeout=5)
        # stepped down within the renew deadline (plus one retry), before anyone could take over
        assert loop.time() - cut < FAST.lease_duration + FAST.retry_period
        assert a.log == ["start", "stop"]
        assert a.elector.last_error is not None
    finally:
        kube_fake.server.resume()
    await until_async(lambda: a.elector.is_leader, timeout=5)  # and campaigns again
    assert a.log == ["start", "stop", "start"]


async def test_racing_replicas_never_lead_together(kube_fake: FakeKube, replicas: Any) -> None:
    group = [replicas(f"pod-{i}") for i in range(4)]
    for r in group:
        r.elector.start()
    await until_async(lambda: any(r.elector.is_leader for r in group), timeout=5)
    for _ in range(30):  # sampled over ~3 s of campaigning
        assert sum(r.elector.is_leader for r in group) <= 1
        await asyncio.sleep(0.1)
    leader = next(r for r in group if r.elector.is_leader)
    assert lease(kube_fake)["spec"]["holderIdentity"] == leader.elector.identity
    # the fake refused some of the writes with 409: the CAS did the arbitration
    puts = kube_fake.requests_to("PUT", "/leases/argocd-chatops")
    assert puts


async def test_a_failing_start_steps_down_and_releases(kube_fake: FakeKube) -> None:
    kube_fake.create("", "namespaces", "", {"metadata": {"name": NS}})
    calls: list[str] = []

    async def broken() -> None:
        calls.append("start")
        raise RuntimeError("gateway refused")

    async def stopped() -> None:
        calls.append("stop")

    e = LeaderElector(
        api_client(kube_fake),
        name="argocd-chatops",
        namespace=NS,
        identity="pod-a",
        timings=FAST,
        on_start=broken,
        on_stop=stopped,
    )
    e.start()
    try:
        await until_async(lambda: calls[:2] == ["start", "stop"])
        await until_async(lambda: lease(kube_fake)["spec"]["holderIdentity"] in ("", "pod-a"))
    finally:
        await e.stop()
