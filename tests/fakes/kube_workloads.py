"""The workload side of the fake Kubernetes API server: a StatefulSet controller and kubelet.

The PreSync/PostSync hooks depend on what the real controller does after a scale: pods go away
one at a time from the highest ordinal, come back in order (OrderedReady: the next pod only once
the previous is Ready), and ``status`` (replicas, readyReplicas, current/updateRevision,
observedGeneration) lags the spec until the controller has caught up. This module reproduces
that on the fake's store, with knobs for a readiness probe that never passes and for the UIDs
the kubelet reports in ``status.containerStatuses[].user.linux``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import uuid

from tests.fakes import kube_store as ks
from tests.fakes.kube_store import Obj

PODS = ks.resource("", "pods")
EVENTS = ks.resource("", "events")
STATEFULSETS = ks.resource("apps", "statefulsets")
INSTANCE_LABEL = "app.kubernetes.io/instance"
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"


def statefulset(
    namespace: str,
    name: str,
    *,
    app: str | None = None,
    replicas: int = 1,
    tracking: str = "label",
    containers: list[Obj] | None = None,
    pod_security_context: Obj | None = None,
    template_labels: dict[str, str] | None = None,
    template_annotations: dict[str, str] | None = None,
) -> Obj:
    """A realistic StatefulSet owned by Argo CD app ``app`` (``tracking``: label, annotation
    or both, as Argo CD's application.resourceTrackingMethod)."""
    app = app or name
    labels = {"app.kubernetes.io/name": name}
    meta: Obj = {"name": name, "namespace": namespace, "labels": dict(labels)}
    tpl_labels = dict(labels)
    if tracking in ("label", "both"):
        meta["labels"][INSTANCE_LABEL] = app
        tpl_labels[INSTANCE_LABEL] = app
    if tracking in ("annotation", "both"):
        tid = f"{app}:apps/StatefulSet:{namespace}/{name}"
        meta["annotations"] = {TRACKING_ANNOTATION: tid}
    tpl_labels.update(template_labels or {})
    pod_spec: Obj = {
        "containers": containers
        or [{"name": name, "image": f"docker.io/bitnami/{name}:1.0.0", "ports": []}],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
    }
    if pod_security_context is not None:
        pod_spec["securityContext"] = pod_security_context
    sts: Obj = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": dict(labels)},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {"labels": tpl_labels, "annotations": template_annotations or {}},
                "spec": pod_spec,
            },
        },
    }
    return sts


class StatefulSetController:
    """Reconciles every StatefulSet in the store, one pod per ``pod_delay``."""

    def __init__(self, store: ks.Store, pod_delay: float) -> None:
        self.store = store
        self.pod_delay = pod_delay
        self.never_ready: set[str] = set()
        self.status_uids: dict[tuple[str, str], int] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def kick_all(self) -> None:
        """After a knob changed: running pods and StatefulSet status reflect it at once, then
        each controller catches up (creating pods that can now become Ready, ...)."""
        for sts in self.store.list(STATEFULSETS, None):
            ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
            self._sync_pod_status(ns, name, self.pods_of(ns, name, sts))
            self._write_sts_status(ns, name)
            self.kick(ns, name)

    def kick(self, ns: str, name: str) -> None:
        task = self._tasks.get((ns, name))
        if task is not None and not task.done():
            return  # it re-reads the StatefulSet before every step
        loop = asyncio.get_running_loop()
        self._tasks[(ns, name)] = loop.create_task(self.reconcile(ns, name, self.pod_delay))

    async def reconcile(self, ns: str, name: str, delay: float) -> None:
        """One pod per step, like the real controller with OrderedReady: create the lowest
        missing ordinal once all lower ones are Ready, delete the highest extra ordinal, roll
        pods whose revision is stale from the highest down."""
        while True:
            sts = self.store.find(STATEFULSETS, ns, name)
            pods = self.pods_of(ns, name, sts)
            if sts is None:  # garbage collection of the dependents
                for pod in pods.values():
                    self.store.delete(PODS, ns, pod["metadata"]["name"])
                return
            self._sync_pod_status(ns, name, pods)
            pods = self.pods_of(ns, name, sts)
            desired = sts["spec"].get("replicas", 1)
            revision = _revision(sts)
            live = {o: p for o, p in pods.items() if "deletionTimestamp" not in p["metadata"]}
            extra = sorted(o for o in pods if o >= desired)
            missing = [o for o in range(desired) if o not in pods]
            stale = sorted(
                o
                for o, p in live.items()
                if p["metadata"]["labels"].get("controller-revision-hash") != revision
            )
            if extra:
                await self._terminate(ns, pods[extra[-1]], delay)
            elif missing and all(_ready(pods[o]) for o in range(missing[0])):
                await self._start_pod(ns, sts, missing[0], revision, delay)
            elif stale and not missing and all(_ready(p) for p in live.values()):
                await self._terminate(ns, live[stale[-1]], delay)
            else:
                self._write_sts_status(ns, name)
                return
            self._write_sts_status(ns, name)

    def pods_of(self, ns: str, name: str, sts: Obj | None) -> dict[int, Obj]:
        pods: dict[int, Obj] = {}
        for pod in self.store.list(PODS, ns):
            owners = pod["metadata"].get("ownerReferences", [])
            if any(o.get("kind") == "StatefulSet" and o.get("name") == name for o in owners):
                suffix = pod["metadata"]["name"].rsplit("-", 1)[-1]
                if suffix.isdigit():
                    pods[int(suffix)] = pod
        return pods

    async def _terminate(self, ns: str, pod: Obj, delay: float) -> None:
        pname = pod["metadata"]["name"]
        if "deletionTimestamp" not in pod["metadata"]:
            self.store.update(
                PODS, ns, pname, lambda p: p["metadata"].__setitem__("deletionTimestamp", ks.now())
            )
            await asyncio.sleep(delay)
        if self.store.find(PODS, ns, pname) is not None:
            self.store.delete(PODS, ns, pname)
        await asyncio.sleep(delay)

    async def _start_pod(
        self, ns: str, sts: Obj, ordinal: int, revision: str, delay: float
    ) -> None:
        name = sts["metadata"]["name"]
        tpl = copy.deepcopy(sts["spec"].get("template") or {})
        tmeta = tpl.get("metadata") or {}
        pname = f"{name}-{ordinal}"
        labels = dict(tmeta.get("labels") or {})
        labels.update(
            {
                "controller-revision-hash": revision,
                "statefulset.kubernetes.io/pod-name": pname,
                "apps.kubernetes.io/pod-index": str(ordinal),
            }
        )
        spec = tpl.get("spec") or {}
        spec.update(hostname=pname, nodeName="fake-node-1")
        if sts["spec"].get("serviceName"):
            spec["subdomain"] = sts["spec"]["serviceName"]
        pod: Obj = {
            "metadata": {
                "name": pname,
                "labels": labels,
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "StatefulSet",
                        "name": name,
                        "uid": sts["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "qosClass": "BestEffort",
            },
        }
        self.store.create(PODS, ns, pod)
        await asyncio.sleep(delay)
        if self.store.find(PODS, ns, pname) is None:
            return
        ready = name not in self.never_ready
        self.store.update(PODS, ns, pname, lambda p: p.update(status=self.running(p, ready)))
        if not ready:
            self.store.create(EVENTS, ns, _unhealthy_event(ns, pname))
        await asyncio.sleep(delay)

    def running(self, pod: Obj, ready: bool) -> Obj:
        """The status a kubelet writes for a running pod (keeps start times it already set)."""
        old = pod.get("status") or {}
        started = old.get("startTime") or ks.now()
        pname = pod["metadata"]["name"]
        owner = next((o["name"] for o in pod["metadata"].get("ownerReferences", [])), None)
        flag = "True" if ready else "False"
        statuses = []
        for c in pod["spec"].get("containers", []):
            digest = hashlib.sha256(str(c.get("image")).encode()).hexdigest()
            cs: Obj = {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": f"{c.get('image', '')}@sha256:{digest}",
                "containerID": "containerd://"
                + hashlib.sha256((pname + c["name"]).encode()).hexdigest(),
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }
            uid = self.status_uids.get((pname, c["name"]))
            if uid is None and owner is not None:
                uid = self.status_uids.get((owner, c["name"]))
            if uid is not None:
                cs["user"] = {"linux": {"uid": uid, "gid": uid, "supplementalGroups": [uid]}}
            statuses.append(cs)
        return {
            "phase": "Running",
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": flag},
                {"type": "ContainersReady", "status": flag},
                {"type": "PodScheduled", "status": "True"},
            ],
            "hostIP": "10.0.0.1",
            "podIP": "10.244.0." + str(sum(pname.encode()) % 250 + 2),
            "startTime": started,
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass", "BestEffort"),
        }

    def _sync_pod_status(self, ns: str, sts: str, pods: dict[int, Obj]) -> None:
        """Apply knob changes (never_ready, report_uid) to pods that already run."""
        ready = sts not in self.never_ready
        for pod in pods.values():
            if (pod.get("status") or {}).get("phase") != "Running":
                continue
            pname = pod["metadata"]["name"]
            self.store.update(PODS, ns, pname, lambda p: p.update(status=self.running(p, ready)))

    def _write_sts_status(self, ns: str, name: str) -> None:
        sts = self.store.find(STATEFULSETS, ns, name)
        if sts is None:
            return
        pods = self.pods_of(ns, name, sts)
        revision = _revision(sts)
        old = sts.get("status") or {}
        replicas = len(pods)
        ready = sum(
            1 for p in pods.values() if _ready(p) and "deletionTimestamp" not in p["metadata"]
        )
        updated = sum(
            1
            for p in pods.values()
            if p["metadata"]["labels"].get("controller-revision-hash") == revision
        )
        status: Obj = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": replicas,
            "currentRevision": old.get("currentRevision") or revision,
            "updateRevision": revision,
            "collisionCount": 0,
            "availableReplicas": ready,
        }
        if updated == replicas and ready == replicas:  # rolling update complete
            status["currentRevision"] = revision
        current = sum(
            1
            for p in pods.values()
            if p["metadata"]["labels"].get("controller-revision-hash") == status["currentRevision"]
        )
        for key, value in (
            ("readyReplicas", ready),
            ("currentReplicas", current),
            ("updatedReplicas", updated),
        ):
            if value:  # omitempty, as the API server serializes it
                status[key] = value
        self.store.update(STATEFULSETS, ns, name, lambda o: o.update(status=status))


def _revision(sts: Obj) -> str:
    tpl = json.dumps(sts["spec"].get("template") or {}, sort_keys=True)
    return f"{sts['metadata']['name']}-{hashlib.sha256(tpl.encode()).hexdigest()[:10]}"


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def _unhealthy_event(ns: str, pod: str) -> Obj:
    stamp = ks.now()
    return {
        "metadata": {"name": f"{pod}.{uuid.uuid4().hex[:16]}"},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod, "apiVersion": "v1"},
        "reason": "Unhealthy",
        "message": "Readiness probe failed: connection refused",
        "type": "Warning",
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": "kubelet", "host": "fake-node-1"},
        "reportingComponent": "kubelet",
        "reportingInstance": "fake-node-1",
    }
