"""The bot with EXACTLY the Kubernetes rights deploy/ ships: the rendered ClusterRole and
RoleBindings are evaluated as the API server's RBAC authorizer would (tests/fakes/kube_rbac.py)
and enforced by the fake API server. In the app namespace `ai-services` the bot's ServiceAccount
can run sync (pre-sync scale, post-sync Ready and `id -u`), verify-rootless and a Warning-event
watch; in `argocd` and `kube-system` it can neither scale nor exec, and nothing reads across all
namespaces.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.alerts import event_watch as ew
from commands import errors
from commands.context import Caller, Services
from commands.kube import client as kc
from commands.kube.ops import KubeOps
from commands.reconnect import Backoff
from commands.results import Status, StepState
from commands.sync import SyncOptions, sync
from commands.verify import verify
from notifiers.incidents.model import Signal
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app, sha
from tests.fakes.kube_api import FakeKube, api_client
from tests.fakes.kube_rbac import Rbac
from tests.fakes.recording import until_async

ROOT = Path(__file__).resolve().parents[1]
BOT = ("argocd-chatops", "argocd-chatops")  # (namespace, name) of the bot's ServiceAccount
APP_NS = "ai-services"
FAST = SyncOptions(timeout=10, presync_timeout=10, postsync_timeout=10)
NONROOT = {"runAsUser": 10001, "runAsNonRoot": True}

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not installed: cannot render deploy/"
)


@cache
def shipped_rbac() -> Rbac:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return Rbac(yaml.safe_load_all(out))


@pytest.fixture
def kube_fake() -> Iterator[FakeKube]:
    """The conftest fake, enforcing the shipped RBAC for the bot's ServiceAccount."""
    fake = FakeKube(pod_delay=0.01, bookmark_interval=0.2).start()
    fake.allowed = shipped_rbac().authorizer(*BOT)
    yield fake
    fake.stop()


@pytest.fixture
def ops(kube_fake: FakeKube) -> Iterator[KubeOps]:
    client = api_client(kube_fake)
    yield KubeOps(client)
    client.close()


def database(kube: FakeKube, namespace: str, app: str, replicas: int = 2) -> None:
    """A StatefulSet of the app ``app``, named like it, running as non-root."""
    kube.add_statefulset(
        namespace,
        app,
        app=app,
        replicas=replicas,
        containers=[{"name": "db", "image": "db:1", "securityContext": NONROOT}],
    )


# -- the evaluator on the shipped objects ---------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "group", "resource", "sub"),
    [
        ("patch", "apps", "statefulsets", "scale"),
        ("patch", "apps", "statefulsets", ""),
        ("watch", "apps", "statefulsets", ""),
        ("list", "", "pods", ""),
        ("create", "", "pods", "exec"),
        ("get", "", "pods", "exec"),
        ("watch", "", "events", ""),
        ("get", "apps", "replicasets", ""),
        ("get", "batch", "jobs", ""),
    ],
)
def test_the_bot_holds_its_rights_in_the_app_namespace_only(
    verb: str, group: str, resource: str, sub: str
) -> None:
    rbac = shipped_rbac()
    assert rbac.why(BOT, verb, group, resource, sub, APP_NS) == [
        f"RoleBinding {APP_NS}/argocd-chatops"
    ]
    for elsewhere in ("argocd", "kube-system", "argocd-chatops", "default", ""):
        assert not rbac.allowed(BOT, verb, group, resource, sub, elsewhere), elsewhere


@pytest.mark.parametrize(
    ("verb", "group", "resource", "sub"),
    [
        ("get", "argoproj.io", "applications", ""),  # the bot uses Argo CD's API, not the CRD
        ("update", "coordination.k8s.io", "leases", ""),  # no leader election to hold
        ("delete", "", "pods", ""),
        ("update", "apps", "statefulsets", ""),
        ("create", "", "pods", "attach"),
        ("get", "", "secrets", ""),
        ("create", "", "pods", ""),
    ],
)
def test_rights_nothing_uses_are_not_granted_anywhere(
    verb: str, group: str, resource: str, sub: str
) -> None:
    rbac = shipped_rbac()
    for namespace in (APP_NS, "argocd", "kube-system", ""):
        assert not rbac.allowed(BOT, verb, group, resource, sub, namespace)


def test_the_evaluator_follows_kubernetes_binding_scopes() -> None:
    """A check of the evaluator itself on hand-made objects: a ClusterRoleBinding reaches every
    namespace and cluster scope, a RoleBinding to a ClusterRole only its own namespace."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["*/exec", "pods"], "verbs": ["*"]}],
    }
    sa = {"kind": "ServiceAccount", "name": "x", "namespace": "me"}
    crb = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
        "subjects": [sa],
    }
    rb = dict(crb, kind="RoleBinding", metadata={"name": "b", "namespace": "apps"})
    wide, narrow = Rbac([role, crb]), Rbac([role, rb])
    for ns in ("apps", "kube-system", ""):
        assert wide.allowed(("me", "x"), "create", "", "pods", "exec", ns)
    assert narrow.allowed(("me", "x"), "create", "", "pods", "exec", "apps")
    assert not narrow.allowed(("me", "x"), "create", "", "pods", "exec", "kube-system")
    assert not narrow.allowed(("me", "x"), "list", "", "pods", "", "")
    assert not narrow.allowed(("other", "x"), "list", "", "pods", "", "apps")
    assert not narrow.allowed(("me", "x"), "get", "", "pods", "log", "apps")  # pods != pods/log
    by_group = dict(rb, subjects=[{"kind": "Group", "name": "system:serviceaccounts:me"}])
    assert Rbac([role, by_group]).allowed(("me", "y"), "get", "", "pods", "", "apps")


# -- the bot's own code paths, with exactly those rights ------------------------------------------


async def test_sync_runs_presync_scale_and_postsync_ready_and_exec_in_the_app_namespace(
    argo: FakeArgoCD, kube_fake: FakeKube, svc: Services
) -> None:
    argo.add_app(make_app("vector-db", namespace=APP_NS, sync="OutOfSync"))
    argo.set_git_head("vector-db", sha("vector-db-2"))
    database(kube_fake, APP_NS, "vector-db")

    result = await sync(svc, "vector-db", FAST, caller=Caller("alice", "slack"))

    assert result.status is Status.CHANGED, result
    assert [(s.name, s.state) for s in result.steps] == [
        ("refresh", StepState.DONE),
        ("presync", StepState.DONE),
        ("sync", StepState.DONE),
        ("wait", StepState.DONE),
        ("postsync", StepState.DONE),
    ]
    scales = kube_fake.requests_to("PATCH", f"/namespaces/{APP_NS}/statefulsets/vector-db/scale")
    assert [r.body["spec"]["replicas"] for r in scales] == [0, 2]  # down before, back after
    sts = kube_fake.get("apps", "statefulsets", APP_NS, "vector-db")
    assert sts["status"]["readyReplicas"] == 2
    # post-sync asked the containers themselves: `id -u` through pods/exec
    assert {(e.namespace, e.command) for e in kube_fake.execs} == {(APP_NS, ("id", "-u"))}


async def test_verify_rootless_execs_in_the_app_namespace(
    argo: FakeArgoCD, kube_fake: FakeKube, svc: Services
) -> None:
    argo.add_app(make_app("vector-db", namespace=APP_NS))
    database(kube_fake, APP_NS, "vector-db", replicas=1)
    result = await verify(svc, "vector-db")
    assert result.status is not Status.FAILED, result
    assert [f.value for f in result.facts] == ["UID 10001 (id -u in the container)"]
    assert [e.pod for e in kube_fake.execs] == ["vector-db-0"]


async def test_the_event_watch_runs_in_the_watched_namespace_not_across_the_cluster(
    kube_fake: FakeKube, ops: KubeOps
) -> None:
    client = api_client(kube_fake)
    signals: list[Signal] = []
    watch = ew.EventWatch(
        client,
        ew.Correlator(client),
        signals.extend,
        namespaces=(APP_NS,),  # watch_namespaces in deploy/config.yaml
        timeout_seconds=2,
        backoff=Backoff(0.05, 0.2),
    )
    watch.start()
    try:
        await until_async(watch.ready.is_set)
        kube_fake.add_pod(APP_NS, {"metadata": {"name": "vector-db-0", "labels": {"app.kubernetes.io/instance": "vector-db"}}, "spec": {"containers": [{"name": "db", "image": "db:1"}]}})  # fmt: skip
        kube_fake.add_event(APP_NS, involved={"kind": "Pod", "name": "vector-db-0"},
                            reason="BackOff", message="Back-off restarting failed container")  # fmt: skip
        await until_async(lambda: signals)
        assert [(s.app, s.event.reason if s.event else "") for s in signals] == [
            ("vector-db", "BackOff")
        ]
    finally:
        await watch.close()
        client.close()
    # across all namespaces would be a cluster-scope list: the shipped RBAC does not grant it
    with pytest.raises(errors.Denied, match="not allowed to list events"):
        await kc.call_raw("list", "events", "", ops.core.list_event_for_all_namespaces)


async def test_doctors_rights_check_passes_in_the_app_namespace_with_the_shipped_rbac(
    ops: KubeOps,
) -> None:
    assert await ops.check_access(APP_NS) == []
    missing = await ops.check_access("kube-system")
    assert "create pods/exec in namespace kube-system" in missing
    assert "patch statefulsets/scale in namespace kube-system" in missing
    # without watch_namespaces the bot would need it all cluster-wide: nothing is granted there
    cluster = await ops.check_access()
    assert "watch events at cluster scope" in cluster
    assert "patch statefulsets/scale at cluster scope" in cluster


@pytest.mark.parametrize("namespace", ["argocd", "kube-system"])
async def test_no_scale_and_no_exec_outside_the_app_namespaces(
    kube_fake: FakeKube, ops: KubeOps, namespace: str
) -> None:
    database(kube_fake, namespace, "core", replicas=1)

    with pytest.raises(errors.Denied, match=f"not allowed to patch statefulsets/scale in namespace {namespace}"):  # fmt: skip
        await ops.scale(namespace, "core", 0)
    with pytest.raises(errors.Denied):
        await ops.statefulsets(namespace, "core")
    assert kube_fake.get("apps", "statefulsets", namespace, "core")["spec"]["replicas"] == 1

    # exec straight at the pod: the API server refuses the upgrade with a 403 Status
    raw = await _exec_status(kube_fake, namespace, "core-0")
    assert raw["code"] == 403 and raw["reason"] == "Forbidden"
    assert raw["message"] == (
        'pods "core-0" is forbidden: User "system:serviceaccount:argocd-chatops:argocd-chatops" '
        f'cannot create resource "pods/exec" in API group "" in the namespace "{namespace}"'
    )
    assert kube_fake.execs == []


async def test_presync_of_an_app_deployed_to_argocd_fails_with_a_clear_denial(
    argo: FakeArgoCD, kube_fake: FakeKube, svc: Services
) -> None:
    argo.add_app(make_app("platform", namespace="argocd", sync="OutOfSync"))
    database(kube_fake, "argocd", "platform", replicas=1)
    result = await sync(svc, "platform", FAST)
    assert result.status is Status.DENIED
    assert "not allowed to list statefulsets in namespace argocd" in result.summary
    assert not [r for r in argo.requests if r.method == "POST"], "no sync after a failed pre-sync"
    assert kube_fake.requests_to("PATCH", "/scale") == []


async def _exec_status(fake: FakeKube, namespace: str, pod: str) -> dict[str, Any]:
    """The HTTP answer to an exec upgrade, as a raw client sees it."""
    url = f"{fake.url}/api/v1/namespaces/{namespace}/pods/{pod}/exec"
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "v4.channel.k8s.io",
    }
    params = [("command", "id"), ("command", "-u"), ("stdout", "true")]
    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.get(url, params=params, headers=headers)
    body = resp.json()
    assert resp.status_code == body["code"]
    return dict(body)
