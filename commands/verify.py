"""``verify-rootless APP`` and ``hook presync|postsync``: the Kubernetes half of a sync, alone.

The hook Jobs run these inside the cluster; they may pass ``--namespace`` so they need no Argo CD
access at all, otherwise the app's destination namespace is read from Argo CD.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from commands import errors, targets, validation
from commands.argocd.client import ArgoCD
from commands.context import Services, resolve
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
    """On the app's destination cluster; the result names it when several can be meant."""
    svc, qualified = await resolve(svc, app_name)
    if svc.clusters is None:
        _need_kube(svc.kube)
    app = await svc.argocd.get(qualified)
    place = svc.placement(app)
    if place.kube is None:
        raise errors.Unavailable(
            f"Cannot check {svc.label(qualified)}: {place.reason}.",
            hint="Map the destination in the clusters setting, or run where it can be reached.",
        )
    result = await hooks.verify_rootless(
        place.kube, app.dest_namespace, svc.tracked(app), shown=svc.label(qualified)
    )
    if svc.clusters is None and not svc.several:
        return result
    return replace(
        result, target=svc.label(qualified), facts=(Fact("cluster", place.cluster), *result.facts)
    )


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
    ref = targets.parse(app_name)
    tracked = f"{ref.namespace}_{ref.name}" if ref.namespace else ref.name
    shown = str(ref)  # as the caller named it: NAMESPACE/APP[@INSTANCE]
    if namespace is None:
        if argocd is None:
            raise errors.BadInput("Give --namespace, or configure Argo CD access.")
        ref = ref.at_home(argocd.namespace)
        app = await argocd.get(ref.qualified)
        namespace, tracked, shown = app.dest_namespace, app.tracked_name(argocd.namespace), str(ref)
    validation.namespace(namespace)
    step = StepLog(progress)
    try:
        if phase == "presync":
            facts = await hooks.presync(
                kube, namespace, tracked, timeout=timeout, step=step, shown=shown
            )
        else:
            facts = await hooks.postsync(
                kube, namespace, tracked, timeout=timeout, step=step, shown=shown
            )
    except errors.CommandError as e:
        await fail_running(step, e)
        return Result(
            phase,
            shown,
            Status.FAILED,
            e.user_message,
            facts=(Fact("hint", e.hint),) if e.hint else (),
            steps=tuple(step.steps),
        )
    what = "scaled down" if phase == "presync" else "ready and non-root"
    return Result(
        phase,
        shown,
        Status.CHANGED if phase == "presync" else Status.NOOP,
        f"{phase} for {shown} done: StatefulSets {what}.",
        facts=tuple(facts),
        steps=tuple(step.steps),
    )
