"""Kubernetes Warning events with two clusters and two Argo CD instances: one event watch per
mapped kubeconfig context, each tying an event only to an app deployed to THAT cluster, from
whichever instance has it.

The clusters are two fake API servers behind one kubeconfig with two contexts (as
tests/test_multicluster.py sets them up); the apps live in two fake Argo CDs, watched by the
running alert runner."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.server import wiring
from commands.context import Services
from tests.alert_fixtures import Harness, degraded_app, settings
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.kube_api import FakeKube
from tests.fakes.recording import until_async
from tests.test_multicluster import CLUSTERS, argos, kubeconfig, kubes  # noqa: F401 - fixtures


def to(app: dict[str, Any], cluster: str) -> dict[str, Any]:
    out = copy.deepcopy(app)
    out["spec"]["destination"] = {
        "name": cluster,
        "namespace": out["spec"]["destination"]["namespace"],
    }
    return out


def pod(name: str, instance: str | None = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": instance} if instance else {}
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}  # fmt: skip


@pytest.fixture
async def fleet(
    argos: tuple[FakeArgoCD, FakeArgoCD],  # noqa: F811
    kubes: tuple[FakeKube, FakeKube],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Harness, Services]]:
    homelab_argo, akula_argo = argos
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, *kubes)))
    # the same app name in the same namespace on both: only the cluster tells them apart
    homelab_argo.add_app(degraded_app(to(make_app("web"), "in-cluster")))
    akula_argo.add_app(degraded_app(to(make_app("web"), "akula-prime")))
    # one app deploying to "cache" on each cluster: alone there, but not alone by name
    homelab_argo.add_app(degraded_app(to(make_app("memo", namespace="cache"), "in-cluster")))
    akula_argo.add_app(degraded_app(to(make_app("redis", namespace="cache"), "akula-prime")))
    s = settings(
        tmp_path,
        instances=[
            {"name": "homelab", "url": homelab_argo.url, "token": homelab_argo.token},
            {"name": "akula-prime", "url": akula_argo.url, "token": akula_argo.token},
        ],
        clusters=CLUSTERS,
        watch_namespaces=["prod", "cache", "locked"],
    )
    kubes[1].forbid("list", "events", "locked")  # a right missing on one cluster only
    svc = wiring.services(s)
    try:
        async with Harness(s, services=svc, watch=True) as h:
            yield h, svc
    finally:
        await wiring.close(svc)


async def test_a_warning_event_joins_the_incident_of_the_app_on_that_cluster(
    fleet: tuple[Harness, Services],
    kubes: tuple[FakeKube, FakeKube],  # noqa: F811
) -> None:
    h, _svc = fleet
    homelab, akula = kubes
    for kube in kubes:
        kube.add_pod("prod", pod("web-1", "web"))
        kube.add_pod("cache", pod("lonely"))
    runner = h.runner
    assert runner is not None
    watches = {w.cluster: w for w in runner.event_watches}
    assert set(watches) == {"homelab", "akula-prime"}  # each mapped context, once
    incidents = runner.engine.incidents
    keys = ("web@homelab", "web@akula-prime", "memo@homelab", "redis@akula-prime")
    await until_async(lambda: all(f"{k}:degraded" in incidents for k in keys))
    await until_async(lambda: watches["homelab"].ready.is_set())
    await until_async(lambda: {"prod", "cache"} <= watches["akula-prime"]._primed)

    akula.add_event("prod", involved={"kind": "Pod", "name": "web-1"}, reason="BackOff",
                    message="Back-off restarting failed container")  # fmt: skip
    akula.add_event("cache", involved={"kind": "Pod", "name": "lonely"}, reason="FailedMount",
                    message="MountVolume.SetUp failed")  # fmt: skip
    homelab.add_event("cache", involved={"kind": "Pod", "name": "lonely"}, reason="OOMKilling",
                      message="Memory cgroup out of memory")  # fmt: skip

    def events(key: str) -> set[str]:
        return {reason for reason, _obj in incidents[f"{key}:degraded"].events}

    await until_async(lambda: events("web@akula-prime") and events("redis@akula-prime")
                      and events("memo@homelab"))  # fmt: skip
    assert events("web@akula-prime") == {"BackOff"}  # by its instance label, on akula-prime
    assert events("web@homelab") == set()  # the namesake on the homelab: untouched
    assert events("redis@akula-prime") == {"FailedMount"}  # the only app in "cache" there
    assert events("memo@homelab") == {"OOMKilling"}
    web = incidents["web@akula-prime:degraded"]
    assert (web.instance, web.cluster) == ("akula-prime", "akula-prime")

    # /readyz and the logs name the cluster whose watch is failing
    assert watches["homelab"].failing is None
    failing = await until_async(lambda: watches["akula-prime"].failing)
    assert failing.startswith("namespace locked of cluster akula-prime: "), failing
