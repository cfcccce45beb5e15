"""``verify-rootless APP`` and ``hook presync|postsync``: the Kubernetes half of a sync, alone.

The hook Jobs run these inside the cluster; they may pass ``--namespace`` so they need no Argo CD
access at all, otherwise the app's destination namespace is read from Argo CD.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from commands import errors, validation
from commands.argocd.client import ArgoCD
from commands.context import Services
from commands.kube import hooks
from commands.results import Fact, Progress, Result, Status, StepLog, no_progress
from commands.sync import fail_running

if TYPE_CHECKING:
    from commands.kube.ops import KubeOps


def _need_kube(kube: KubeOps | None) -> KubeOps:
    if kube is None:
        raise errors.Unavailable(
            "No Kubernetes access is configured.",
            hint="Run in the cluster, or set KUBECONFIG.",
        )
    return kube


async def verify(svc: Services, app_name: str) -> Result:
    validation.app_name(app_name)
    kube = _need_kube(svc.kube)
    app = await svc.argocd.get(app_name)
    return await hooks.verify_rootless(kube, app.dest_namespace, app_name)


async def hook(
    kube: KubeOps,
    phase: Literal["presync", "postsync"],
    app_name: str,
    *,
    namespace: str | None = None,
    argocd: ArgoCD | None = None,
    timeout: float,
    progress: Progress = no_progress,
) -> Result:
    validation.app_name(app_name)
    if namespace is None:
        if argocd is None:
            raise errors.BadInput("Give --namespace, or configure Argo CD access.")
        namespace = (await argocd.get(app_name)).dest_namespace
    validation.namespace(namespace)
    step = StepLog(progress)
    try:
        if phase == "presync":
            facts = await hooks.presync(kube, namespace, app_name, timeout=timeout, step=step)
        else:
            facts = await hooks.postsync(kube, namespace, app_name, timeout=timeout, step=step)
    except errors.CommandError as e:
        await fail_running(step, e)
        return Result(
            phase,
            app_name,
            Status.FAILED,
            e.user_message,
            facts=(Fact("hint", e.hint),) if e.hint else (),
            steps=tuple(step.steps),
        )
    what = "scaled down" if phase == "presync" else "ready and non-root"
    return Result(
        phase,
        app_name,
        Status.CHANGED if phase == "presync" else Status.NOOP,
        f"{phase} for {app_name} done: StatefulSets {what}.",
        facts=tuple(facts),
        steps=tuple(step.steps),
    )
