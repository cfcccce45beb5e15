"""Builders for Argo CD Application objects and resource-tree nodes, in the real wire shape.

Tests should start from objects that a real cluster could return (they validate against the
upstream CRD, see ``argocd_contract``), not from hand-trimmed dicts that only carry the fields
the code under test happens to read today. Upstream's own fixtures are loadable too.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tests.fakes.argocd_contract import contracts_dir

IN_CLUSTER = "https://kubernetes.default.svc"
ARGOCD_NAMESPACE = "argocd"
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"

# kind -> (group, version); core kinds have an empty group, which Argo CD omits on the wire.
KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("apps", "v1"),
    "StatefulSet": ("apps", "v1"),
    "DaemonSet": ("apps", "v1"),
    "ReplicaSet": ("apps", "v1"),
    "Service": ("", "v1"),
    "Pod": ("", "v1"),
    "ConfigMap": ("", "v1"),
    "Secret": ("", "v1"),
    "PersistentVolumeClaim": ("", "v1"),
    "Job": ("batch", "v1"),
    "CronJob": ("batch", "v1"),
    "Ingress": ("networking.k8s.io", "v1"),
}


def now() -> str:
    """A metav1.Time as Argo CD writes it: RFC 3339, second precision, UTC."""
    return stamp(datetime.now(UTC))


def stamp(t: datetime) -> str:
    """``t`` (timezone-aware) as a metav1.Time."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: str) -> float:
    """Seconds in an Argo CD backoff duration: "5s", "3m", "1h30m", or bare seconds "10"."""
    if text.strip().isdigit():
        return float(text)
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for ch in text.strip():
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total, number = total + float(number) * units[ch], ""
        else:
            raise ValueError(f"bad duration {text!r}")
    if number:
        raise ValueError(f"bad duration {text!r}")
    return total


def sha(seed: str) -> str:
    """A stable, realistic 40-hex Git commit id derived from ``seed``."""
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def uid(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


def group_version(kind: str) -> tuple[str, str]:
    return KINDS.get(kind, ("", "v1"))


def resource_ref(kind: str, name: str, namespace: str) -> dict[str, Any]:
    """The identifying fields of a resource, with ``group`` omitted for core kinds."""
    group, version = group_version(kind)
    ref: dict[str, Any] = {"kind": kind, "name": name, "namespace": namespace, "version": version}
    if group:
        ref["group"] = group
    return ref


def sync_result(
    kind: str,
    name: str,
    namespace: str,
    *,
    status: str = "Synced",
    message: str | None = None,
    hook_type: str | None = None,
    hook_phase: str = "Running",
    sync_phase: str = "Sync",
) -> dict[str, Any]:
    """One ``operationState.syncResult.resources[]`` entry. Unlike elsewhere, ``group`` is
    always present here (empty for core kinds), as Go writes it."""
    group, version = group_version(kind)
    entry: dict[str, Any] = {
        "group": group,
        "version": version,
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "status": status,
        "message": message if message is not None else f"{kind.lower()}/{name} configured",
        "hookPhase": hook_phase,
        "syncPhase": sync_phase,
    }
    if hook_type:
        entry["hookType"] = hook_type
    return entry


def resource_status(
    kind: str,
    name: str,
    namespace: str,
    *,
    sync: str = "Synced",
    health: str | None = "Healthy",
    message: str | None = None,
) -> dict[str, Any]:
    """One ``status.resources[]`` entry (health omitted for kinds Argo CD has no check for)."""
    entry = resource_ref(kind, name, namespace)
    entry["status"] = sync
    if health is not None:
        entry["health"] = {"status": health}
        if message:
            entry["health"]["message"] = message
    return entry


def tree_node(
    kind: str,
    name: str,
    namespace: str,
    *,
    health: str | None = "Healthy",
    message: str | None = None,
    parent: Mapping[str, Any] | None = None,
    images: Iterable[str] = (),
) -> dict[str, Any]:
    """One ``ResourceNode`` of ``GET .../resource-tree``."""
    node = resource_ref(kind, name, namespace)
    node["uid"] = uid(f"{namespace}/{kind}/{name}")
    node["resourceVersion"] = "1"
    node["createdAt"] = now()
    if parent is not None:
        node["parentRefs"] = [
            {k: parent[k] for k in ("group", "kind", "name", "namespace", "uid") if k in parent}
        ]
    if health is not None:
        node["health"] = {"status": health}
        if message:
            node["health"]["message"] = message
    if images:
        node["images"] = list(images)
    return node


def derived_tree(resources: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A plausible resource tree for ``status.resources``: workloads get their Pods (and a
    Deployment its ReplicaSet), all carrying the workload's health, so a Degraded workload
    shows where a person would look."""
    nodes: list[dict[str, Any]] = []
    for res in resources:
        kind, name, ns = str(res["kind"]), str(res["name"]), str(res.get("namespace", ""))
        health = res.get("health") or {}
        status, message = health.get("status"), health.get("message")
        top = tree_node(kind, name, ns, health=status, message=message)
        nodes.append(top)
        if kind == "Deployment":
            rs_name = f"{name}-{sha(name)[:10]}"
            rs = tree_node("ReplicaSet", rs_name, ns, health=status, parent=top)
            pod = tree_node("Pod", f"{rs_name}-{sha(rs_name)[:5]}", ns, health=status, parent=rs)
            nodes += [rs, pod]
        elif kind == "StatefulSet":
            nodes.append(tree_node("Pod", f"{name}-0", ns, health=status, parent=top))
    return nodes


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def _resource_health(kind: str, app_health: str) -> str | None:
    """Workloads carry the app's health; kinds without a health check carry none."""
    if kind in ("ConfigMap", "Secret"):
        return None
    return app_health if kind in WORKLOADS else "Healthy"


def make_app(
    name: str,
    namespace: str = "prod",
    project: str = "default",
    repo: str = "https://github.com/acme/deploy.git",
    path: str | None = None,
    revision: str | None = None,
    *,
    target_revision: str = "HEAD",
    automated: bool = True,
    self_heal: bool = True,
    prune: bool = True,
    sync: str = "Synced",
    health: str = "Healthy",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    resources: Iterable[tuple[str, str]] = (),
    retry_limit: int | None = None,
    history: bool = True,
) -> dict[str, Any]:
    """A complete, CRD-valid Application as argocd-server returns it.

    ``resources`` are ``(kind, name)`` pairs in the destination namespace (default: a
    Deployment and a Service named like the app). ``revision`` is the deployed commit (default:
    a stable sha derived from the name). With ``history`` the app carries one past deployment
    and its finished operation, as an app that has synced before does.
    """
    revision = revision or sha(f"{name}-1")
    source = {"repoURL": repo, "path": path or f"apps/{name}", "targetRevision": target_revision}
    destination = {"server": IN_CLUSTER, "namespace": namespace}
    created = now()
    pairs = list(resources) or [("Deployment", name), ("Service", name)]
    res_list = [
        resource_status(kind, res_name, namespace, sync=sync, health=_resource_health(kind, health))
        for kind, res_name in pairs
    ]

    sync_policy: dict[str, Any] = {"syncOptions": ["CreateNamespace=true"]}
    if automated:
        sync_policy["automated"] = {"prune": prune, "selfHeal": self_heal}
    if retry_limit is not None:
        sync_policy["retry"] = {
            "limit": retry_limit,
            "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"},
        }

    status: dict[str, Any] = {
        "sync": {
            "status": sync,
            "revision": revision,
            "comparedTo": {"source": copy.deepcopy(source), "destination": dict(destination)},
        },
        "health": {"status": health, "lastTransitionTime": created},
        "resources": res_list,
        "reconciledAt": created,
        "sourceType": "Directory",
        "summary": {"images": [f"ghcr.io/acme/{name}:1.0.0"]},
        "controllerNamespace": ARGOCD_NAMESPACE,
    }
    if history:
        status["history"] = [
            {
                "id": 0,
                "revision": revision,
                "deployStartedAt": created,
                "deployedAt": created,
                "source": copy.deepcopy(source),
                "initiatedBy": {"automated": True},
            }
        ]
        status["operationState"] = {
            "operation": {
                "initiatedBy": {"automated": True},
                "sync": {"revision": revision, "prune": prune, "syncStrategy": {"hook": {}}},
                "retry": {"limit": 5},
            },
            "phase": "Succeeded",
            "message": "successfully synced (all tasks run)",
            "startedAt": created,
            "finishedAt": created,
            "syncResult": {
                "revision": revision,
                "source": copy.deepcopy(source),
                "resources": [sync_result(k, n, namespace) for k, n in pairs],
            },
        }
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": ARGOCD_NAMESPACE,
        "uid": uid(f"app/{name}"),
        "generation": 1,
        "resourceVersion": "1",
        "creationTimestamp": created,
        "labels": dict(labels or {}),
        "finalizers": ["resources-finalizer.argocd.argoproj.io"],
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": metadata,
        "spec": {
            "project": project,
            "source": source,
            "destination": destination,
            "syncPolicy": sync_policy,
        },
        "status": status,
    }


def example_names() -> list[str]:
    """Stems of the upstream fixtures in contracts/argocd/examples/ (e.g. "01-synced-...")."""
    return sorted(p.stem for p in (contracts_dir() / "examples").glob("*.json"))


def load_example(which: str | int) -> dict[str, Any]:
    """An upstream Application fixture by stem, or by its number (``1`` -> ``01-...``).

    Upstream's fixtures 03-05 are trimmed test data (no ``operationState.operation``, no
    ``group``/``version`` on a sync result): the real CRD would not accept them as they are.
    """
    prefix = f"{which:02d}-" if isinstance(which, int) else str(which)
    matches = [n for n in example_names() if n == prefix or n.startswith(prefix)]
    if len(matches) != 1:
        raise KeyError(f"no single Argo CD example matches {which!r}: {matches}")
    with (contracts_dir() / "examples" / f"{matches[0]}.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def load_examples() -> dict[str, dict[str, Any]]:
    return {name: load_example(name) for name in example_names()}
