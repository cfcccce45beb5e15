"""deploy/ with the HA component turned on (deploy/ha/, as the README says: uncomment its line in
deploy/kustomization.yaml), rendered with `kubectl kustomize` and checked: Kubernetes schemas,
two replicas that roll without a gap, a PodDisruptionBudget, anti-affinity, the state database
from a Secret instead of a volume, the instance id and Lease namespace from the pod, Lease RBAC
in the bot's namespace only, and Pod Security `restricted` still met."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from bot.settings import Settings
from tests.fakes.kube_rbac import Rbac
from tests.test_deploy_manifests import (
    DEPLOY,
    KUBE_VERSION,
    bot_container,
    env_of,
    kustomize,
    one,
    rendered,
    restricted_violations,
)

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed: cannot render deploy/"
)

BOT = ("argocd-chatops", "argocd-chatops")  # the ServiceAccount: (namespace, name)
LEASE = ("coordination.k8s.io", "leases")


def with_ha(where: Path, namespace: str | None = None) -> list[dict[str, Any]]:
    copy = where / "deploy"
    shutil.copytree(DEPLOY, copy)
    kustomization = copy / "kustomization.yaml"
    text = kustomization.read_text()
    line = "  # - ha "
    assert line in text
    kustomization.write_text(text.replace(line, "  - ha "))
    if namespace is not None:
        wiring = copy / "wiring" / "wiring.yaml"
        text = wiring.read_text()
        assert "namespace: argocd-chatops " in text
        wiring.write_text(text.replace("namespace: argocd-chatops ", f"namespace: {namespace} "))
    return kustomize(copy)


@cache
def ha() -> tuple[dict[str, Any], ...]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return tuple(with_ha(Path(tmp)))


def test_the_ha_variant_validates_against_the_kubernetes_schemas() -> None:
    for obj in ha():
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_two_replicas_roll_one_at_a_time_and_spread_over_nodes() -> None:
    dep = one(ha(), "Deployment", "argocd-chatops")
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    labels = spec["template"]["metadata"]["labels"]
    [term] = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = one(ha(), "PodDisruptionBudget", "argocd-chatops")
    assert pdb["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # the single-replica default is untouched
    default = one(rendered(""), "Deployment", "argocd-chatops")["spec"]
    assert default["replicas"] == 1 and default["strategy"] == {"type": "Recreate"}
    assert [o for o in rendered("") if o["kind"] == "PodDisruptionBudget"] == []


def test_the_state_is_postgresql_from_a_secret_and_no_volume_is_left() -> None:
    env = env_of(bot_container(ha()))
    assert env["CHATOPS_STATE_DB"] == {
        "secretKeyRef": {"name": "argocd-chatops-state-db", "key": "uri"}
    }
    assert env["CHATOPS_STATE_DB_PASSWORD"]["secretKeyRef"]["optional"] is True
    assert env["CHATOPS_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["CHATOPS_LEASE_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert [o for o in ha() if o["kind"] == "PersistentVolumeClaim"] == []
    pod = one(ha(), "Deployment")["spec"]["template"]["spec"]
    assert "data" not in {v["name"] for v in pod["volumes"]}
    assert "/data" not in {m["mountPath"] for m in bot_container(ha())["volumeMounts"]}
    # what the Secret holds makes the settings the bot runs with: PostgreSQL, so elected
    settings = Settings(state_db="postgresql://chatops@postgres.db.svc:5432/chatops")
    assert settings.shared_state


def test_the_lease_rbac_is_one_lease_in_the_bots_namespace_only() -> None:
    rbac = Rbac(ha())
    ns = one(ha(), "Deployment")["metadata"]["namespace"]
    assert ns == BOT[0]
    for verb in ("get", "update"):
        assert rbac.allowed(BOT, verb, *LEASE, "", ns, "argocd-chatops")
        assert not rbac.allowed(BOT, verb, *LEASE, "", ns, "kube-controller-manager")
    # create cannot be limited by name: allowed in the bot's namespace, nowhere else
    assert rbac.allowed(BOT, "create", *LEASE, "", ns)
    for other in ("kube-system", "argocd", "ai-services", ""):
        for verb in ("get", "update", "create"):
            assert not rbac.allowed(BOT, verb, *LEASE, "", other, "argocd-chatops"), (verb, other)
    assert not rbac.allowed(BOT, "delete", *LEASE, "", ns, "argocd-chatops")
    assert not rbac.allowed(BOT, "list", *LEASE, "", ns)
    assert [o for o in ha() if o["kind"] == "ClusterRoleBinding"] == []
    # without the component the bot has no Lease rights at all
    assert not Rbac(rendered("")).allowed(BOT, "get", *LEASE, "", ns, "argocd-chatops")


def test_a_namespace_set_in_the_wiring_moves_the_lease_rbac_and_the_pdb(tmp_path: Path) -> None:
    objs = with_ha(tmp_path, namespace="chatops-prod")
    for kind, name in (
        ("Deployment", "argocd-chatops"),
        ("PodDisruptionBudget", "argocd-chatops"),
        ("Role", "argocd-chatops-leader"),
        ("RoleBinding", "argocd-chatops-leader"),
    ):
        assert one(objs, kind, name)["metadata"]["namespace"] == "chatops-prod", kind
    assert Rbac(objs).allowed(
        ("chatops-prod", "argocd-chatops"), "update", *LEASE, "", "chatops-prod", "argocd-chatops"
    )


def test_the_ha_pod_still_meets_pod_security_restricted() -> None:
    pod = one(ha(), "Deployment")["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    mounts = {m["mountPath"] for m in bot_container(ha())["volumeMounts"]}
    assert "/tmp" in mounts  # a writable /tmp under the read-only root
