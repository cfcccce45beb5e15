"""Who a container runs as: the effective UID of each running container of an app.

PostSync and ``verify-rootless`` must show that no container runs as root, and a manifest is
only a claim (without ``runAsUser`` the image's ``USER`` decides). So the answer comes from the
most trusted source available: the UID the kubelet reports
(``status.containerStatuses[].user.linux.uid``), else ``id -u`` over pods/exec, else the
declared securityContext (a claim, reported as such), else "unknown" with the reason. Each
``ContainerUid`` says which source answered, so a reply can tell proof from claim.

Kept apart from the StatefulSet and pod operations in ``commands.kube.ops`` because it is a
different trade: reading container statuses and driving the exec WebSocket (its channels, exit
status and handshake errors), not listing, patching and waiting.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client as k8s
from kubernetes.stream import stream as k8s_stream

from commands.kube import client as kc
from commands.validation import human

_stream: Any = k8s_stream  # the client's stream helper carries no annotations

RawObject = kc.RawObject
UidSource = Literal["status", "exec", "securityContext", "unknown"]


@dataclass(frozen=True)
class ContainerUid:
    pod: str
    container: str
    uid: int | None
    source: UidSource
    detail: str

    @property
    def root(self) -> bool:
        return self.uid == 0


class _ExecUnavailable(Exception):
    def __init__(self, detail: str, *, forbidden: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.forbidden = forbidden


async def container_uids(
    core: Any, namespace: str, pods: list[RawObject], *, exec_enabled: bool, exec_timeout: float
) -> list[ContainerUid]:
    """The effective UID of every running container of ``pods``, from the most trusted source
    available: the kubelet's report, ``id -u`` through pods/exec (``core``: a CoreV1Api), the
    declared securityContext; ``unknown`` when none answers."""
    exec_note = "" if exec_enabled else "exec check disabled"
    found: list[ContainerUid] = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        if status.get("phase") != "Running" or meta.get("deletionTimestamp"):
            continue
        statuses = {cs.get("name"): cs for cs in status.get("containerStatuses") or []}
        for container in spec.get("containers") or []:
            cname = str(container.get("name"))
            cs = statuses.get(cname)
            if cs is not None and "running" not in (cs.get("state") or {}):
                continue
            pname = str(meta.get("name"))
            uid = ((((cs or {}).get("user") or {}).get("linux")) or {}).get("uid")
            if uid is not None:
                found.append(
                    ContainerUid(pname, cname, int(uid), "status", "reported by the kubelet")
                )
                continue
            note = exec_note
            if not note:
                try:
                    uid = await asyncio.to_thread(
                        _exec_id_u, core, namespace, pname, cname, exec_timeout
                    )
                except _ExecUnavailable as e:
                    note = e.detail
                    if e.forbidden:
                        exec_note = note  # no point asking again for the next containers
                else:
                    found.append(
                        ContainerUid(pname, cname, uid, "exec", "`id -u` in the container")
                    )
                    continue
            found.append(_declared_uid(pname, container, spec, note))
    return found


def _exec_id_u(core: Any, namespace: str, pod: str, container: str, timeout: float) -> int:
    """Run ``id -u`` over the exec WebSocket (channel 1 stdout, 2 stderr, 3 status)."""
    try:
        ws = _stream(
            core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=["id", "-u"],
            container=container,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
    except k8s.ApiException as e:
        reason = str(e.reason or "")
        if "Handshake status 403" in reason:
            raise _ExecUnavailable(
                "exec not allowed (the bot lacks create on pods/exec)", forbidden=True
            ) from None
        status = re.search(r"Handshake status (\d+)", reason)
        what = f"HTTP {status.group(1)}" if status else "connection failed"
        raise _ExecUnavailable(f"exec failed ({what})") from None
    try:
        try:
            ws.run_forever(timeout=timeout)
        except Exception as e:  # the WebSocket broke off mid-stream
            raise _ExecUnavailable(f"exec connection lost ({type(e).__name__})") from None
        if ws.is_open():
            raise _ExecUnavailable(f"`id -u` did not finish within {human(timeout)}")
        out, err = str(ws.read_channel(1)), str(ws.read_channel(2))
        code = _exit_code(str(ws.read_channel(3)))
    finally:
        ws.close()
    if code != 0:
        first = err.strip().splitlines()[0][:120] if err.strip() else ""
        raise _ExecUnavailable(f"`id -u` exited with {code}" + (f": {first}" if first else ""))
    text = out.strip()
    if not text.isdigit():
        raise _ExecUnavailable(f"`id -u` printed {text[:40]!r}")
    return int(text)


def _exit_code(raw_status: str) -> int:
    """Channel 3 carries a Status: Success, or NonZeroExitCode with the code as a cause."""
    try:
        status = json.loads(raw_status) if raw_status.strip() else {}
    except ValueError:
        return -1
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
            return int(cause["message"])
    return -1


def _declared_uid(pod: str, container: RawObject, spec: RawObject, exec_note: str) -> ContainerUid:
    """The securityContext claim, container-level fields over pod-level ones."""
    c_ctx = container.get("securityContext") or {}
    p_ctx = spec.get("securityContext") or {}
    name = str(container.get("name"))
    for level, ctx in (("container", c_ctx), ("pod", p_ctx)):
        if ctx.get("runAsUser") is not None:
            return ContainerUid(
                pod,
                name,
                int(ctx["runAsUser"]),
                "securityContext",
                f"declared runAsUser in the {level} securityContext (not verified)",
            )
    non_root = c_ctx.get("runAsNonRoot", p_ctx.get("runAsNonRoot"))
    if non_root:
        return ContainerUid(pod, name, None, "securityContext", "runAsNonRoot declared")
    why = [exec_note] if exec_note else []
    return ContainerUid(
        pod,
        name,
        None,
        "unknown",
        "; ".join([*why, "no UID reported by the kubelet and no runAsUser declared"]),
    )
