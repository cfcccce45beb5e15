"""Kubernetes operations behind the hooks and commands: list, scale, wait, check UIDs.

Everything goes through the official ``kubernetes`` client via ``commands.kube.client`` (calls
in worker threads, one error mapping). Waiting is done with the one list-then-watch loop of
``commands.kube.watch`` (resumes from the last seen resourceVersion, re-lists on 410 Gone,
reconnects with backoff), never with fixed sleeps.

An object belongs to an Argo CD app when it carries ``app.kubernetes.io/instance=<app>`` or an
``argocd.argoproj.io/tracking-id`` annotation starting with ``<app>:``; a pod also belongs to it
through its owning StatefulSet.

Whether a container runs as root is answered in ``commands.kube.uids`` (kubelet report, then
``id -u`` over pods/exec, then the declared securityContext); ``KubeOps.container_uids`` feeds
it the app's pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from commands import errors
from commands.kube import client as kc
from commands.kube import uids as kube_uids
from commands.kube import watch as kube_watch
from commands.kube.uids import ContainerUid
from commands.validation import human

__all__ = [
    "INSTANCE_LABEL",
    "MERGE_PATCH",
    "TRACKING_ANNOTATION",
    "KubeOps",
    "RawObject",
    "StatefulSetInfo",
    "belongs_to",
    "statefulset_info",
]

INSTANCE_LABEL = "app.kubernetes.io/instance"
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
RawObject = kc.RawObject
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class StatefulSetInfo:
    namespace: str
    name: str
    replicas: int  # spec.replicas
    ready_replicas: int
    current_revision: str
    update_revision: str
    generation: int
    observed_generation: int
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ready(self) -> bool:
        return (
            self.ready_replicas == self.replicas
            and self.update_revision == self.current_revision
            and self.observed_generation >= self.generation
        )


def belongs_to(obj: RawObject, app: str) -> bool:
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(INSTANCE_LABEL) == app:
        return True
    tracking = (meta.get("annotations") or {}).get(TRACKING_ANNOTATION) or ""
    return bool(tracking.startswith(f"{app}:"))


def statefulset_info(obj: RawObject) -> StatefulSetInfo:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    replicas = spec.get("replicas")
    return StatefulSetInfo(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        replicas=1 if replicas is None else int(replicas),  # the API server's default
        ready_replicas=int(status.get("readyReplicas") or 0),  # omitted when zero
        current_revision=str(status.get("currentRevision") or ""),
        update_revision=str(status.get("updateRevision") or ""),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        annotations=dict(meta.get("annotations") or {}),
    )


class KubeOps:
    def __init__(
        self,
        api_client: Any,
        *,
        exec_enabled: bool = True,
        watch_timeout: int = 300,
        exec_timeout: float = 20.0,
    ) -> None:
        self.api_client = api_client
        self.exec_enabled = exec_enabled
        self.watch_timeout = watch_timeout
        self.exec_timeout = exec_timeout
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.authz = k8s.AuthorizationV1Api(api_client)

    # -- plumbing ---------------------------------------------------------------------------------

    def _watch(
        self,
        resource: str,
        namespace: str,
        fn: Callable[..., Any],
        deadline: float,
        **kw: Any,
    ) -> AsyncGenerator[tuple[str, RawObject], None]:
        """List then watch ``resource`` in ``namespace`` until ``deadline`` (``kube.watch``)."""
        return kube_watch.list_and_watch(
            fn,
            namespace,
            resource=resource,
            namespace=namespace,
            deadline=deadline,
            max_timeout=self.watch_timeout,
            **kw,
        )

    # -- reads ------------------------------------------------------------------------------------

    async def statefulsets(self, namespace: str, app: str) -> list[StatefulSetInfo]:
        listing = await kc.list_all(
            "list", "statefulsets", namespace, self.apps.list_namespaced_stateful_set, namespace
        )
        items = [i for i in listing.get("items", []) if belongs_to(i, app)]
        return sorted((statefulset_info(i) for i in items), key=lambda s: s.name)

    async def pods(self, namespace: str, app: str) -> list[RawObject]:
        """Every pod of the app (raw dicts, ``status.phase`` included), by name."""
        owners = {s.name for s in await self.statefulsets(namespace, app)}
        listing = await kc.list_all(
            "list", "pods", namespace, self.core.list_namespaced_pod, namespace
        )
        pods = []
        for pod in listing.get("items", []):
            refs = (pod.get("metadata") or {}).get("ownerReferences") or []
            owned = any(r.get("kind") == "StatefulSet" and r.get("name") in owners for r in refs)
            if owned or belongs_to(pod, app):
                pods.append(pod)
        return sorted(pods, key=lambda p: str(p["metadata"].get("name")))

    # -- writes -----------------------------------------------------------------------------------

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        await kc.call_raw(
            "patch",
            "statefulsets/scale",
            namespace,
            self.apps.patch_namespaced_stateful_set_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
            _content_type=MERGE_PATCH,
        )

    async def annotate_statefulset(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        """Set annotations; a None value removes the key (JSON merge patch)."""
        await kc.call_raw(
            "patch",
            "statefulsets",
            namespace,
            self.apps.patch_namespaced_stateful_set,
            name,
            namespace,
            {"metadata": {"annotations": annotations}},
            _content_type=MERGE_PATCH,
        )

    # -- waits ------------------------------------------------------------------------------------

    async def wait_pods_gone(self, namespace: str, sts_name: str, timeout: float) -> None:
        """Return once no pod of the StatefulSet exists (terminating ones count as present)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pattern = re.compile(rf"^{re.escape(sts_name)}-\d+$")

        def owned(pod: RawObject) -> bool:
            meta = pod.get("metadata") or {}
            refs = meta.get("ownerReferences") or []
            by_owner = any(
                r.get("kind") == "StatefulSet" and r.get("name") == sts_name for r in refs
            )
            return by_owner or (not refs and bool(pattern.match(str(meta.get("name", "")))))

        remaining: set[str] = set()
        try:
            async with asyncio.timeout_at(deadline):
                events = self._watch("pods", namespace, self.core.list_namespaced_pod, deadline)
                async with contextlib.aclosing(events):
                    synced = False
                    async for kind, pod in events:
                        if kind == kube_watch.SYNCED:
                            synced = True
                        elif owned(pod):
                            name = str(pod["metadata"]["name"])
                            if kind == "DELETED":
                                remaining.discard(name)
                            else:
                                remaining.add(name)
                        if synced and not remaining:
                            return
        except TimeoutError:
            left = ", ".join(sorted(remaining))
            raise errors.Timeout(
                f"Pods of StatefulSet {namespace}/{sts_name} were still there after "
                f"{_span(timeout)}: {left}.",
                hint="Check for stuck finalizers or a long terminationGracePeriodSeconds.",
            ) from None

    async def wait_ready(self, namespace: str, name: str, timeout: float) -> StatefulSetInfo:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        selector = f"metadata.name={name}"
        info: StatefulSetInfo | None = None
        list_fn = self.apps.list_namespaced_stateful_set
        try:
            async with asyncio.timeout_at(deadline):
                events = self._watch(
                    "statefulsets", namespace, list_fn, deadline, field_selector=selector
                )
                async with contextlib.aclosing(events):
                    synced = False
                    async for kind, obj in events:
                        if kind == kube_watch.SYNCED:
                            synced = True
                            if info is None:
                                raise errors.NotFound(f"StatefulSet {namespace}/{name} not found.")
                        elif kind == "DELETED":
                            raise errors.NotFound(f"StatefulSet {namespace}/{name} was deleted.")
                        else:
                            info = statefulset_info(obj)
                        if synced and info is not None and info.ready:
                            return info
                raise AssertionError("list_and_watch never ends")  # pragma: no cover
        except TimeoutError:
            raise errors.Timeout(
                f"StatefulSet {namespace}/{name} was not Ready after {_span(timeout)}: "
                + _not_ready_reason(info),
                hint="Look at its pods' events (kubectl describe pod) for failing probes or "
                "scheduling problems.",
            ) from None

    # -- who runs as root -------------------------------------------------------------------------

    async def container_uids(self, namespace: str, app: str) -> list[ContainerUid]:
        """The effective UID of every running container of the app (``commands.kube.uids``)."""
        return await kube_uids.container_uids(
            self.core,
            namespace,
            await self.pods(namespace, app),
            exec_enabled=self.exec_enabled,
            exec_timeout=self.exec_timeout,
        )

    # -- permissions ------------------------------------------------------------------------------

    async def check_access(self, namespace: str | None = None) -> list[str]:
        """What the bot's RBAC lacks of ``RIGHTS`` (and, with exec on, ``pods/exec``), as
        "verb resource where" (empty: all good). In one app namespace of ``watch_namespaces``,
        or, without one, at cluster scope: what watching and acting in every namespace needs."""
        needed = list(RIGHTS)
        if self.exec_enabled:
            needed.append(("create", "", "pods", "exec"))
        return await self._missing(needed, namespace or "")

    async def _missing(self, needed: list[tuple[str, str, str, str]], namespace: str) -> list[str]:
        """Ask the API server (SelfSubjectAccessReview) about each right; the ones denied."""
        where = f"in namespace {namespace}" if namespace else "at cluster scope"
        missing = []
        for verb, group, resource, sub in needed:
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        "subresource": sub,
                    }
                },
            }
            answer = await kc.call_raw(
                "create",
                "selfsubjectaccessreviews",
                "",
                self.authz.create_self_subject_access_review,
                review,
            )
            if not (answer.get("status") or {}).get("allowed"):
                what = f"{resource}/{sub}" if sub else resource
                missing.append(f"{verb} {what} {where}")
        return missing


# (verb, API group, resource, subresource): what the bot uses where it watches and acts, as the
# ClusterRole in deploy/rbac.yaml grants it (tests/test_deploy_rbac.py checks it grants all of it)
RIGHTS = (
    ("list", "", "events", ""),  # the Warning-event watch
    ("watch", "", "events", ""),
    ("get", "", "pods", ""),  # pods of an app; wait until gone or Ready; event correlation
    ("list", "", "pods", ""),
    ("watch", "", "pods", ""),
    ("get", "apps", "statefulsets", ""),  # pre-/post-sync and verify-rootless
    ("list", "apps", "statefulsets", ""),
    ("watch", "apps", "statefulsets", ""),
    ("patch", "apps", "statefulsets", ""),  # pre-sync records the replicas in an annotation
    ("patch", "apps", "statefulsets", "scale"),
    ("get", "apps", "replicasets", ""),  # event correlation: a Pod's owners up to its app
    ("get", "apps", "deployments", ""),
    ("get", "apps", "daemonsets", ""),
    ("get", "batch", "jobs", ""),
    ("get", "batch", "cronjobs", ""),
)


def _span(seconds: float) -> str:
    return human(seconds) if seconds >= 1 else f"{seconds:.1f}s"


def _not_ready_reason(info: StatefulSetInfo | None) -> str:
    if info is None:
        return "its status could not be read."
    parts = [f"readyReplicas {info.ready_replicas}/{info.replicas}"]
    if info.update_revision != info.current_revision:
        parts.append(f"revision {info.update_revision or '?'} still rolling out")
    if info.observed_generation < info.generation:
        parts.append("the controller has not seen the latest spec")
    return ", ".join(parts) + "."
