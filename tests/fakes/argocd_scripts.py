"""What a sync does in the fake, one scripted outcome per function.

Each function plays one sync of one app on the fake's loop, as the real controller would
write it: ``st.step`` waits ``step_delay`` (and raises if the operation was terminated
meanwhile), ``st.running`` publishes an in-progress state, ``st.finish`` the final phase with
``.operation`` cleared. Tests pick the outcome with ``FakeArgoCD.script(name, *phases)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tests.fakes import argocd_fixtures as fx

if TYPE_CHECKING:
    from tests.fakes.argocd_state import ArgoState, Step


def kitchen(t: datetime) -> str:
    """Go's time.Kitchen ("3:04PM"), used in the controller's retry message."""
    return f"{t.hour % 12 or 12}:{t.minute:02d}{'AM' if t.hour < 12 else 'PM'}"


def failure_reason(kind: str, name: str) -> str:
    if kind == "StatefulSet":
        return (
            f'StatefulSet.apps "{name}" is invalid: spec: Forbidden: updates to statefulset spec '
            "for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
            "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        )
    return (
        f'{kind}.{fx.group_version(kind)[0] or "core"} "{name}" is invalid: '
        "spec.template.spec.containers[0].image: Required value"
    )


def degraded_message(kind: str, name: str) -> str:
    if kind == "Deployment":
        return f'Deployment "{name}" exceeded its progress deadline'
    return f"back-off 5m0s restarting failed container={name} pod={name}-0"


def _hooks(st: ArgoState, name: str, op: dict[str, Any]) -> set[str]:
    partial = bool((op.get("sync") or {}).get("resources"))
    return set() if partial else st.hooks.get(name, set())


def _hook(name: str, ns: str, hook_type: str, phase: str) -> dict[str, Any]:
    job = f"{name}-{hook_type.lower()}"
    return fx.sync_result(
        "Job",
        job,
        ns,
        message=f"job.batch/{job} created",
        hook_type=hook_type,
        hook_phase=phase,
        sync_phase=hook_type,
    )


async def _apply(st: ArgoState, name: str, op: dict[str, Any]) -> list[dict[str, Any]]:
    """PreSync hook (if any), then the Sync phase: resources applied, app Synced and
    Progressing. Returns the sync results so far."""
    await st.step(name)
    app = st.apps[name]
    ns = app["spec"]["destination"].get("namespace", "")
    hooks = _hooks(st, name, op)
    results: list[dict[str, Any]] = []
    if "PreSync" in hooks:
        results.append(_hook(name, ns, "PreSync", "Running"))
        st.running(name, f"waiting for completion of hook batch/Job/{name}-presync", results)
        await st.step(name)
        results[-1].update(
            hookPhase="Succeeded", message="Reached expected number of succeeded pods"
        )
    results += [fx.sync_result(k, n, rns) for k, n, rns in st.targets(name, op)]
    if not (op.get("sync") or {}).get("dryRun"):
        revision = st.sync_result(app, results)["revision"]
        sync = app["status"].setdefault("sync", {})
        sync.update(status="Synced", revision=revision)
        for r in app["status"].get("resources") or []:
            r["status"] = "Synced"
        st.set_workload_health(name, "Progressing")
    st.running(name, f"waiting for healthy state of apps/Deployment/{name}", results)
    return results


async def succeed(st: ArgoState, name: str, op: dict[str, Any], step: Step) -> None:
    results = await _apply(st, name, op)
    if "PostSync" in _hooks(st, name, op):
        await st.step(name)
        st.set_workload_health(name, "Healthy")
        ns = st.apps[name]["spec"]["destination"].get("namespace", "")
        results.append(_hook(name, ns, "PostSync", "Running"))
        st.running(name, f"waiting for completion of hook batch/Job/{name}-postsync", results)
        await st.step(name)
        results[-1].update(
            hookPhase="Succeeded", message="Reached expected number of succeeded pods"
        )
        st.finish(name, "Succeeded", step.message or "successfully synced (all tasks run)", results)
        return
    await st.step(name)
    st.finish(name, "Succeeded", step.message or "successfully synced (all tasks run)", results)
    await st.step(name, interruptible=False)
    st.set_workload_health(name, "Healthy")
    st.commit(name)


async def degrade(st: ArgoState, name: str, op: dict[str, Any], step: Step) -> None:
    results = await _apply(st, name, op)
    await st.step(name)
    st.finish(name, "Succeeded", "successfully synced (all tasks run)", results)
    await st.step(name, interruptible=False)
    st.set_workload_health(name, "Degraded", step.message)
    st.commit(name)


def _failed_apply(
    st: ArgoState, name: str, op: dict[str, Any], step: Step
) -> tuple[str, list[Any]]:
    targets = st.targets(name, op)
    victim = next((t for t in targets if t[0] == "StatefulSet"), None)
    victim = victim or next((t for t in targets if t[0] in fx.WORKLOADS), None)
    if victim is None:
        victim = (
            "StatefulSet",
            name,
            st.apps[name]["spec"]["destination"].get("namespace", ""),
        )
        targets.append(victim)
    reason = step.message or failure_reason(victim[0], victim[1])
    results = [
        fx.sync_result(k, n, ns, status="SyncFailed", message=reason, hook_phase="Failed")
        if (k, n, ns) == victim
        else fx.sync_result(k, n, ns)
        for k, n, ns in targets
    ]
    return f"one or more objects failed to apply, reason: {reason}", results


async def fail(st: ArgoState, name: str, op: dict[str, Any], step: Step) -> None:
    await st.step(name)
    message, results = _failed_apply(st, name, op, step)
    st.finish(name, "Failed", message, results)


async def retry_then_fail(st: ArgoState, name: str, op: dict[str, Any], step: Step) -> None:
    retry = op.get("retry") or {}
    limit = int(retry.get("limit") or 0) or 2
    base = fx.parse_duration(str((retry.get("backoff") or {}).get("duration") or "5s"))
    factor = int((retry.get("backoff") or {}).get("factor") or 2)
    message, results = _failed_apply(st, name, op, step)
    for attempt in range(1, limit + 1):
        await st.step(name)
        state = st.op_state(st.apps[name])
        at = datetime.now(UTC) + timedelta(seconds=base * factor ** (attempt - 1))
        state.update(retryCount=attempt, finishedAt=fx.now())
        st.running(name, f"{message}. Retrying attempt #{attempt} at {kitchen(at)}.", results)
    await st.step(name)
    st.finish(name, "Failed", f"{message} (retried {limit} times).", results)


async def error(st: ArgoState, name: str, op: dict[str, Any], step: Step) -> None:
    await st.step(name)
    path = (st.apps[name]["spec"].get("source") or {}).get("path", ".")
    message = step.message or (
        "ComparisonError: Failed to load target state: failed to generate manifest for "
        f"source 1 of 1: rpc error: code = Unknown desc = {path}: app path does not exist"
    )
    st.finish(name, "Error", message)


async def hang(st: ArgoState, name: str, op: dict[str, Any], step: Step) -> None:
    await st.step(name)
    message = step.message or f"waiting for healthy state of apps/Deployment/{name}"
    st.running(name, message, None)
    while True:
        await st.step(name)


async def hook_fail(st: ArgoState, name: str, op: dict[str, Any], step: Step) -> None:
    await st.step(name)
    ns = st.apps[name]["spec"]["destination"].get("namespace", "")
    results = [_hook(name, ns, "PreSync", "Running")]
    st.running(name, f"waiting for completion of hook batch/Job/{name}-presync", results)
    await st.step(name)
    results[0].update(
        hookPhase="Failed",
        message=step.message or "Job has reached the specified backoff limit",
    )
    st.finish(name, "Failed", "one or more synchronization tasks completed unsuccessfully", results)


Play = Callable[["ArgoState", str, dict[str, Any], "Step"], Awaitable[None]]
PLAYS: dict[str, Play] = {
    "succeed": succeed,
    "fail": fail,
    "retry_then_fail": retry_then_fail,
    "error": error,
    "degrade": degrade,
    "hang": hang,
    "hook_fail": hook_fail,
}
