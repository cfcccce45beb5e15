"""``chatops doctor`` checks the Kubernetes rights the bot needs in each watched namespace,
asking the (fake) API server with SelfSubjectAccessReviews; and the setting that names them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli.doctor import doctor
from bot.settings import Settings
from tests.fakes.kube_access import AllowList, Rule
from tests.fakes.kube_api import FakeKube

APP_NS = "ai-services"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    fake = FakeKube().start()
    yield fake
    fake.stop()


@pytest.fixture
def kubeconfig(kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{kube.url}"}}}}]
users: [{{name: bot, user: {{token: t}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: bot}}}}]
current-context: fake
"""
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def granted(namespace: str, *, exec_: bool = True, scale: bool = True) -> list[Rule]:
    """What a RoleBinding (deploy/access/) to the bot's ClusterRole grants in ``namespace``;
    tests/test_deploy_rbac.py checks the shipped one against the real ClusterRole."""
    rules = [Rule(v, r, "", namespace) for v in ("get", "list", "watch")
             for r in ("events", "pods", "statefulsets")]  # fmt: skip
    rules += [Rule("get", r, "", namespace)
              for r in ("replicasets", "deployments", "daemonsets", "jobs", "cronjobs")]  # fmt: skip
    rules.append(Rule("patch", "statefulsets", "", namespace))
    if scale:
        rules.append(Rule("patch", "statefulsets", "scale", namespace))
    if exec_:
        rules.append(Rule("create", "pods", "exec", namespace))
    return rules


async def kube_fact(tmp_path: Path, **settings: object) -> str:
    result = await doctor(Settings(state_db=str(tmp_path / "s.db"), **settings))  # type: ignore[arg-type]
    return next(f.value for f in result.facts if f.name == "kubernetes")


async def test_doctor_names_each_missing_right_per_namespace(
    kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    kube.allowed = AllowList([*granted(APP_NS), *granted("team-b", exec_=False, scale=False)])
    fact = await kube_fact(tmp_path, watch_namespaces=[APP_NS, "team-b"])
    assert fact == (
        "✗ missing RBAC: patch statefulsets/scale in namespace team-b, "
        "create pods/exec in namespace team-b "
        "Bind the bot's ClusterRole in each namespace of CHATOPS_WATCH_NAMESPACES with a "
        "RoleBinding (see deploy/access/)."
    )
    reviews = [r.body for r in kube.requests_to("POST", "/selfsubjectaccessreviews")]
    asked = {(a["verb"], a["resource"], a["subresource"], a["namespace"])
             for a in (r["spec"]["resourceAttributes"] for r in reviews)}  # fmt: skip
    assert ("watch", "events", "", APP_NS) in asked and ("list", "events", "", "team-b") in asked
    assert all(ns in (APP_NS, "team-b") for *_, ns in asked)  # nothing asked cluster-wide


async def test_doctor_passes_with_the_namespaced_rights_and_skips_exec_when_off(
    kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    kube.allowed = AllowList(granted(APP_NS, exec_=False))
    fact = await kube_fact(tmp_path, watch_namespaces=[APP_NS], kube_exec=False)
    assert fact == f"✓ reachable, RBAC sufficient in namespace(s) {APP_NS}"
    fact = await kube_fact(tmp_path, watch_namespaces=[APP_NS], kube_exec=True)
    assert fact.startswith("✗") and f"create pods/exec in namespace {APP_NS}" in fact


def test_watch_namespaces_from_env_and_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATOPS_WATCH_NAMESPACES", "ai-services, web,ai-services")
    assert Settings().namespaces_watched == ("ai-services", "web")
    monkeypatch.delenv("CHATOPS_WATCH_NAMESPACES")
    assert Settings(watch_namespaces=["web"]).namespaces_watched == ("web",)
    assert Settings().namespaces_watched == ()  # empty: every namespace, as before
    with pytest.raises(ValueError, match="not a Kubernetes namespace name"):
        Settings(watch_namespaces=["Team_B"])
