"""PreSync and PostSync: what the Argo CD hook Jobs, ``chatops hook``, the CLI and /sync run.

A StatefulSet does not restart its pods on every spec change the team cares about, and some
workloads must not run old and new pods side by side; so before a sync every StatefulSet of
the app is scaled to 0 and the hook waits until its pods are gone, and after the sync each is
scaled back, must become Ready, and every running container must be proven non-root.

PreSync and PostSync run in separate processes (two hook Jobs), so the replica count to
restore is remembered on the StatefulSet itself, in ``REPLICAS_ANNOTATION``. Both hooks are
idempotent: a retried PreSync on a StatefulSet already at 0 keeps the remembered count, and
PostSync only scales up what is at 0 with a remembered count.

Each takes the app twice: ``app``, the name Argo CD tracks its resources by (their
``app.kubernetes.io/instance`` label and tracking-id: ``team-a_shop`` for an app outside Argo
CD's own namespace), used only to find them; and ``shown``, the name people address it by
(``team-a/shop``, ``web@homelab``), used in every message and result (default: ``app``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from commands import errors
from commands.kube.ops import KubeOps, StatefulSetInfo
from commands.kube.uids import ContainerUid
from commands.results import Fact, Result, Status, StepLog, StepState

REPLICAS_ANNOTATION = "chatops.argocd-chatops.io/replicas-before-presync"
T = TypeVar("T")

_SOURCE = {
    "status": "reported by the kubelet",
    "exec": "id -u in the container",
    "securityContext": "declared, not verified",
    "unknown": "unknown",
}


class NotRootless(errors.CommandError):
    """A container of the app runs as root, or its user could not be established."""

    kind = "not_rootless"

    def __init__(
        self,
        user_message: str,
        *,
        hint: str | None = None,
        containers: tuple[ContainerUid, ...] = (),
    ) -> None:
        super().__init__(user_message, hint=hint)
        self.containers = containers


async def presync(
    kube: KubeOps,
    namespace: str,
    app: str,
    *,
    timeout: float = 120.0,
    step: StepLog | None = None,
    shown: str = "",
) -> tuple[Fact, ...]:
    """Remember each StatefulSet's replicas, scale it to 0, wait until its pods are gone."""
    step = step if step is not None else StepLog()
    name = shown or app
    await step("presync", StepState.RUNNING, f"Scaling the StatefulSets of {name} to 0")
    try:
        sets = await kube.statefulsets(namespace, app)
        if not sets:
            await step("presync", StepState.SKIPPED, "No StatefulSets to scale down")
            return (Fact("presync", f"{name} has no StatefulSets in {namespace}"),)
        facts = []
        for s in sets:
            if s.replicas > 0:
                await kube.annotate_statefulset(
                    namespace, s.name, {REPLICAS_ANNOTATION: str(s.replicas)}
                )
                await kube.scale(namespace, s.name, 0)
                facts.append(Fact(s.name, f"{s.replicas} → 0 replicas"))
            else:
                kept = _remembered(s)
                note = f", {kept} to restore" if kept else ""
                facts.append(Fact(s.name, f"already at 0 replicas{note}"))
        await _all(kube.wait_pods_gone(namespace, s.name, timeout) for s in sets)
    except errors.CommandError as e:
        await step("presync", StepState.FAILED, e.user_message)
        raise
    await step("presync", StepState.DONE, f"{_count(len(sets), 'StatefulSet')} at 0, pods gone")
    return tuple(facts)


async def postsync(
    kube: KubeOps,
    namespace: str,
    app: str,
    *,
    timeout: float = 300.0,
    step: StepLog | None = None,
    shown: str = "",
) -> tuple[Fact, ...]:
    """Scale back what PreSync scaled down, wait until Ready, then require non-root."""
    step = step if step is not None else StepLog()
    name = shown or app
    await step("postsync", StepState.RUNNING, f"Waiting for the StatefulSets of {name} to be Ready")
    try:
        sets = await kube.statefulsets(namespace, app)
        facts = []
        for s in sets:
            wanted = _remembered(s)
            if s.replicas == 0 and wanted:
                await kube.scale(namespace, s.name, wanted)
                facts.append(Fact(s.name, f"0 → {wanted} replicas"))
        infos = await _all(kube.wait_ready(namespace, s.name, timeout) for s in sets)
        for s, info in zip(sets, infos, strict=True):
            if REPLICAS_ANNOTATION in s.annotations:
                await kube.annotate_statefulset(namespace, s.name, {REPLICAS_ANNOTATION: None})
            facts.append(Fact(s.name, f"Ready {info.ready_replicas}/{info.replicas}"))
        await step("postsync", StepState.RUNNING, "Checking that every container runs as non-root")
        uids = await kube.container_uids(namespace, app)
        require_rootless(name, uids)
    except errors.CommandError as e:
        await step("postsync", StepState.FAILED, e.user_message)
        raise
    facts.extend(Fact(f"{u.pod}/{u.container}", describe(u)) for u in uids)
    detail = f"{_count(len(sets), 'StatefulSet')} Ready, {_count(len(uids), 'container')} non-root"
    await step("postsync", StepState.DONE, detail)
    return tuple(facts)


async def verify_rootless(kube: KubeOps, namespace: str, app: str, *, shown: str = "") -> Result:
    """The ``verify-rootless`` command: every running container, its UID and how we know."""
    uids = await kube.container_uids(namespace, app)
    name = shown or app
    facts = tuple(Fact(f"{u.pod}/{u.container}", describe(u)) for u in uids)
    root = [u for u in uids if u.root]
    unknown = [u for u in uids if u.source == "unknown"]
    n = len(uids)
    if not uids:
        status, summary = Status.NOOP, f"{name} has no running containers to check."
    elif root:
        names = ", ".join(f"{u.pod}/{u.container}" for u in root)
        status = Status.FAILED
        summary = f"{len(root)} of {_count(n, 'container')} of {name} run as root: {names}."
    elif unknown:
        names = ", ".join(f"{u.pod}/{u.container}" for u in unknown)
        status = Status.FAILED
        summary = (
            f"Could not check the user of {len(unknown)} of {n} containers of {name}: {names}."
        )
    else:
        status, summary = Status.NOOP, f"All {_count(n, 'container')} of {name} run as non-root."
    return Result("verify-rootless", name, status, summary, facts)


def require_rootless(app: str, uids: list[ContainerUid]) -> None:
    """Raise ``NotRootless`` naming the first offenders; return when all are non-root."""
    hint = (
        "Set runAsNonRoot: true and a non-zero runAsUser in the securityContext, "
        "or let the bot verify it (create on pods/exec)."
    )
    root = tuple(u for u in uids if u.root)
    if root:
        first = root[0]
        more = f" ({len(root) - 1} more)" if len(root) > 1 else ""
        raise NotRootless(
            f"Container {first.container} in pod {first.pod} of {app} runs as UID 0 (root), "
            f"according to {_according(first)}{more}.",
            hint="Set a non-zero runAsUser and runAsNonRoot: true in its securityContext.",
            containers=root,
        )
    unknown = tuple(u for u in uids if u.source == "unknown")
    if unknown:
        first = unknown[0]
        more = f" ({len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise NotRootless(
            f"Could not check the user of container {first.container} in pod {first.pod} "
            f"of {app}: {first.detail}{more}.",
            hint=hint,
            containers=unknown,
        )


def describe(u: ContainerUid) -> str:
    """One fact value: ``UID 1001 (id -u in the container)``."""
    if u.uid is None and u.source == "securityContext":
        return "non-root (runAsNonRoot declared, UID not verified)"
    if u.uid is None:
        return f"unknown ({u.detail})"
    who = "UID 0, root" if u.root else f"UID {u.uid}"
    return f"{who} ({_SOURCE[u.source]})"


def _according(u: ContainerUid) -> str:
    return {
        "status": "the kubelet's status report",
        "exec": "id -u run in the container",
        "securityContext": "its declared securityContext",
    }.get(u.source, u.detail)


def _remembered(s: StatefulSetInfo) -> int:
    raw = s.annotations.get(REPLICAS_ANNOTATION, "")
    return int(raw) if raw.isdigit() else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


async def _all(waits: Iterable[Awaitable[T]]) -> list[T]:
    """Run waits concurrently (each gets the full timeout from now); raise the first failure
    once all have finished, so no wait is left running behind the caller."""
    results = await asyncio.gather(*waits, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if not isinstance(r, BaseException)]
