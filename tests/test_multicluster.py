"""One bot, two Argo CD instances and two clusters: every Argo CD call goes to the instance that
has the app (with its ``appNamespace``), every Kubernetes step to the app's destination cluster.

The clusters are two fake API servers reached through one kubeconfig with two contexts, loaded
by the official client as ``chatops`` loads it; each fake records what it was asked."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.server import wiring
from bot.settings import ConfigError, Settings
from commands import errors
from commands.context import Services
from commands.results import Status, Step, StepState
from commands.status import overview, status
from commands.sync import SyncOptions, sync
from commands.verify import hook, verify
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app, sha
from tests.fakes.kube_api import FakeKube
from tests.test_cli_e2e import BIN, chatops

NONROOT = {"runAsUser": 1001, "runAsNonRoot": True}
FAST = SyncOptions(timeout=10, presync_timeout=10, postsync_timeout=10)


@pytest.fixture
def argos() -> Iterator[tuple[FakeArgoCD, FakeArgoCD]]:
    a = FakeArgoCD(step_delay=0.02).start()
    b = FakeArgoCD(token="akula-token", step_delay=0.02).start()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def kubes() -> Iterator[tuple[FakeKube, FakeKube]]:
    a = FakeKube(pod_delay=0.01).start()
    b = FakeKube(pod_delay=0.01).start()
    yield a, b
    a.stop()
    b.stop()


def kubeconfig(tmp_path: Path, homelab: FakeKube, akula: FakeKube) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: homelab, cluster: {{server: '{homelab.url}'}}}},"
        f" {{name: akula, cluster: {{server: '{akula.url}'}}}}]\n"
        "users: [{name: u, user: {token: kube-token}}]\n"
        "contexts: [{name: homelab, context: {cluster: homelab, user: u}},"
        " {name: akula-prime, context: {cluster: akula, user: u}}]\n"
        "current-context: homelab\n"
    )
    return path


CLUSTERS = [
    {"destination": "in-cluster", "context": "homelab", "instance": "homelab"},
    {"destination": "akula-prime", "context": "akula-prime"},
]


def two_instances(a: FakeArgoCD, b: FakeArgoCD, **kw: Any) -> Settings:
    return Settings(
        instances=[
            {"name": "homelab", "url": a.url, "token": a.token},
            {"name": "akula-prime", "url": b.url, "token_env": "AKULA_ARGOCD_TOKEN"},
        ],
        clusters=kw.pop("clusters", CLUSTERS),
        **kw,
    )


@pytest.fixture
async def fleet(
    argos: tuple[FakeArgoCD, FakeArgoCD],
    kubes: tuple[FakeKube, FakeKube],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Services]:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, *kubes)))
    monkeypatch.setenv("AKULA_ARGOCD_TOKEN", argos[1].token)
    svc = wiring.services(two_instances(*argos), kube_client=None)
    yield svc
    await wiring.close(svc)


def on(app: dict[str, Any], cluster: str, app_namespace: str | None = None) -> dict[str, Any]:
    out = copy.deepcopy(app)
    out["spec"]["destination"] = {"name": cluster, "namespace": "prod"}
    if app_namespace:
        out["metadata"]["namespace"] = app_namespace
    return out


def db(kube: FakeKube, app: str, replicas: int = 2) -> None:
    kube.add_statefulset(
        "prod",
        f"{app}-db",
        app=app,
        replicas=replicas,
        containers=[{"name": "db", "image": "postgres:16", "securityContext": NONROOT}],
    )


async def test_sync_runs_the_hooks_on_the_apps_cluster_and_nothing_on_the_other(
    fleet: Services, argos: tuple[FakeArgoCD, FakeArgoCD], kubes: tuple[FakeKube, FakeKube]
):
    homelab_argo, akula_argo = argos
    homelab, akula = kubes
    akula_argo.add_app(on(make_app("vault", sync="OutOfSync"), "akula-prime"))
    akula_argo.set_git_head("vault", sha("vault-2"))
    db(akula, "vault")
    db(homelab, "vault")  # a namesake on the other cluster, which must stay untouched
    before = len(homelab.requests)

    result = await sync(fleet, "vault", FAST)

    assert result.status is Status.CHANGED, result
    assert result.target == "vault@akula-prime"
    assert all(s.state is StepState.DONE for s in result.steps), result.steps
    assert akula.requests_to("PATCH", "/scale"), "presync scales on akula-prime"
    assert any("/pods" in r.path for r in akula.requests)  # postsync checked the pods there
    assert len(homelab.requests) == before and not homelab.requests_to("PATCH", "/scale")
    assert homelab.get("apps", "statefulsets", "prod", "vault-db")["spec"]["replicas"] == 2
    assert not [r for r in homelab_argo.requests if "/vault" in r.path]  # not asked there

    checked = await verify(fleet, "vault")
    assert checked.status is Status.NOOP, checked
    assert ("cluster", "akula-prime") in [(f.name, f.value) for f in checked.facts]
    assert len(homelab.requests) == before


async def test_an_ambiguous_name_is_refused_with_the_candidates(
    fleet: Services, argos: tuple[FakeArgoCD, FakeArgoCD]
):
    homelab_argo, akula_argo = argos
    homelab_argo.add_app(make_app("web"))
    akula_argo.add_app(on(make_app("web"), "akula-prime"))
    akula_argo.add_app(on(make_app("api"), "akula-prime"))

    with pytest.raises(errors.BadInput) as refused:
        await sync(fleet, "web", FAST)
    assert "web@homelab" in refused.value.user_message
    assert "web@akula-prime" in refused.value.user_message
    assert not [r for r in homelab_argo.requests + akula_argo.requests if r.method == "POST"]

    picked = await status(fleet, "web@homelab")  # the instance named: no lookup elsewhere
    assert picked.target == "web@homelab" and picked.status is Status.NOOP
    unique = await status(fleet, "api")
    assert unique.target == "api@akula-prime"
    assert ("argo cd", "akula-prime") in [(f.name, f.value) for f in unique.facts]

    with pytest.raises(errors.NotFound) as missing:
        await status(fleet, "wbe")
    assert set(missing.value.suggestions) >= {"web@homelab", "web@akula-prime"}
    with pytest.raises(errors.BadInput, match="no Argo CD instance 'nope'"):
        await status(fleet, "web@nope")

    everything = await overview(fleet)
    assert everything.status is Status.NOOP and "All 3 applications" in everything.summary


async def test_an_unmapped_destination_is_skipped_by_name_or_fails_when_strict(
    argos: tuple[FakeArgoCD, FakeArgoCD],
    kubes: tuple[FakeKube, FakeKube],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    homelab_argo, _ = argos
    homelab, akula = kubes
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, homelab, akula)))
    homelab_argo.add_app(on(make_app("blog"), "edge-1"))
    db(homelab, "blog")
    clusters = [{"destination": "in-cluster", "context": "homelab"}]
    lenient = Settings(
        argocd_url=homelab_argo.url, argocd_token=homelab_argo.token, clusters=clusters
    )
    svc = wiring.services(lenient)
    try:
        result = await sync(svc, "blog", FAST)
    finally:
        await wiring.close(svc)
    assert result.status is Status.CHANGED, result
    skipped = {s.name: s for s in result.steps if s.state is StepState.SKIPPED}
    assert set(skipped) == {"presync", "postsync"}
    assert "destination cluster edge-1" in skipped["presync"].detail
    assert "clusters setting" in skipped["presync"].detail
    assert not homelab.requests_to("PATCH", "/scale") and not akula.requests

    strict = Settings(
        argocd_url=homelab_argo.url,
        argocd_token=homelab_argo.token,
        clusters=clusters,
        strict_clusters=True,
    )
    svc = wiring.services(strict)
    try:
        failed = await sync(svc, "blog", FAST)
    finally:
        await wiring.close(svc)
    assert failed.status is Status.FAILED
    assert "edge-1 is not mapped" in failed.summary
    assert [s.state for s in failed.steps if s.name == "presync"] == [StepState.FAILED]
    syncs = [r for r in homelab_argo.requests if r.path.endswith("/blog/sync")]
    assert len(syncs) == 1  # the lenient run only: strict refused before syncing


async def test_a_namespaced_app_travels_as_app_namespace(
    fleet: Services, argos: tuple[FakeArgoCD, FakeArgoCD], kubes: tuple[FakeKube, FakeKube]
):
    homelab_argo, _ = argos
    homelab, _ = kubes
    homelab_argo.add_app(on(make_app("shop", sync="OutOfSync"), "in-cluster", "team-a"))
    homelab_argo.set_git_head("shop", sha("shop-2"))
    db(homelab, "team-a_shop")  # Argo CD tracks it as NAMESPACE_NAME

    result = await sync(fleet, "team-a/shop", FAST)

    assert result.status is Status.CHANGED, result
    assert result.target == "team-a/shop@homelab"
    assert result.links[0].url.endswith("/applications/team-a/shop")
    calls = [r for r in homelab_argo.requests if "/shop" in r.path]
    gets = [r for r in calls if r.method == "GET" and "stream" not in r.path]
    assert gets and all(r.query.get("appNamespace") == "team-a" for r in gets)
    posts = [r for r in calls if r.method == "POST"]
    assert [r.json.get("appNamespace") for r in posts] == ["team-a"]
    assert homelab.requests_to("PATCH", "/scale")
    with pytest.raises(errors.NotFound):  # not in Argo CD's own namespace
        await status(fleet, "shop@homelab")


async def test_a_namespaced_app_is_named_as_people_address_it_not_by_its_tracking_name(
    fleet: Services, argos: tuple[FakeArgoCD, FakeArgoCD], kubes: tuple[FakeKube, FakeKube]
):
    """Argo CD labels the resources of ``team-a/shop`` as ``team-a_shop``: the hooks and
    verify-rootless find them by that name, and every message says ``team-a/shop``."""
    homelab_argo, _ = argos
    homelab, _ = kubes
    homelab_argo.add_app(on(make_app("shop", sync="OutOfSync"), "in-cluster", "team-a"))
    homelab_argo.set_git_head("shop", sha("shop-2"))
    homelab.add_statefulset(
        "prod",
        "shop-db",
        app="team-a_shop",
        replicas=2,
        containers=[{"name": "db", "image": "postgres:16", "securityContext": NONROOT}],
    )
    homelab.add_statefulset(
        "prod",
        "shop-cache",
        app="team-a_shop",
        tracking="annotation",
        containers=[{"name": "redis", "image": "redis:7", "securityContext": {"runAsUser": 0}}],
    )

    said: list[str] = []

    async def progress(step: Step) -> None:
        said.append(step.detail)

    synced = await sync(fleet, "team-a/shop", FAST, progress=progress)
    checked = await verify(fleet, "team-a/shop")
    home = fleet.on("homelab")
    kube = home.placement(await home.argocd.get("team-a/shop")).kube
    assert kube is not None
    hooked = await hook(kube, "presync", "team-a/shop", argocd=home.argocd, timeout=10)

    # found by the tracking name: both StatefulSets scaled, the root container caught
    assert homelab.get("apps", "statefulsets", "prod", "shop-db")["spec"]["replicas"] == 0
    assert homelab.get("apps", "statefulsets", "prod", "shop-cache")["spec"]["replicas"] == 0
    assert synced.status is Status.FAILED, synced
    assert "Scaling the StatefulSets of team-a/shop@homelab to 0" in said, said
    assert "Waiting for the StatefulSets of team-a/shop@homelab to be Ready" in said, said
    assert any("of team-a/shop@homelab runs as UID 0" in d for d in said), said
    assert checked.status is Status.FAILED and checked.target == "team-a/shop@homelab"
    assert "of 3 containers of team-a/shop@homelab run as root" in checked.summary, checked
    assert hooked.status is Status.CHANGED, hooked
    assert hooked.target == "team-a/shop"
    assert hooked.summary.startswith("presync for team-a/shop done"), hooked.summary
    for result in (synced, checked, hooked):
        assert "team-a_shop" not in repr(result), result
    assert not [d for d in said if "team-a_shop" in d], said


def test_instances_settings_are_checked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AKULA_ARGOCD_TOKEN", raising=False)
    settings = Settings(
        instances=[{"name": "akula-prime", "url": "https://a.example", "token_env": "AKULA_T"}]
    )
    with pytest.raises(ConfigError, match="AKULA_T"):
        wiring.services(settings)
    with pytest.raises(ValueError, match="used twice"):
        Settings(
            argocd_url="https://x.example",
            argocd_token="t",
            instances=[{"name": "default", "url": "https://y.example", "token": "u"}],
        )


async def test_cli_takes_instance_and_namespaced_apps(
    argos: tuple[FakeArgoCD, FakeArgoCD], kubes: tuple[FakeKube, FakeKube], tmp_path: Path
):
    homelab_argo, akula_argo = argos
    homelab_argo.add_app(make_app("web"))
    akula_argo.add_app(on(make_app("web", health="Degraded"), "akula-prime", "team-b"))
    config = tmp_path / "chatops.yaml"
    config.write_text(
        json.dumps(
            {
                "instances": [
                    {"name": "homelab", "url": homelab_argo.url, "token": homelab_argo.token},
                    {"name": "akula-prime", "url": akula_argo.url, "token_env": "AKULA_TOKEN"},
                ],
                "clusters": CLUSTERS,
            }
        )
    )
    env = {
        "PATH": str(Path(BIN).parent),
        "HOME": str(tmp_path),
        "CHATOPS_STATE_DB": str(tmp_path / "state.db"),
        "CHATOPS_CONFIG": str(config),
        "AKULA_TOKEN": akula_argo.token,
        "KUBECONFIG": str(kubeconfig(tmp_path, *kubes)),
    }
    p = await chatops("status", "team-b/web", "--instance", "akula-prime", "--json", env=env)
    out = json.loads(p.stdout)
    assert p.returncode == 1 and out["target"] == "team-b/web@akula-prime", p.stdout + p.stderr
    assert "Degraded" in out["summary"]
    p = await chatops("status", "web", "--json", env=env)  # only homelab has web in argocd/
    assert p.returncode == 0 and json.loads(p.stdout)["target"] == "web@homelab", p.stdout
    p = await chatops("status", "web@homelab", "--instance", "akula-prime", env=env)
    assert p.returncode == 2 and "--instance says akula-prime" in p.stderr
    p = await chatops("doctor", env=env)
    assert "argocd homelab" in p.stdout and "argocd akula-prime" in p.stdout, p.stdout
    assert "cluster akula-prime" in p.stdout
