"""A thin, typed view over a raw Argo CD Application (argoproj.io/v1alpha1).

The raw JSON stays as Argo CD sent it (``raw``); properties read the fields the bot relies on,
tolerating anything missing, since an app mid-creation or from an older Argo CD may lack them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TERMINAL_PHASES = ("Succeeded", "Failed", "Error")
FAILED_PHASES = ("Failed", "Error")
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
# opt-in to the auto-rollback policy (commands/autorollback.py): "on" | "propose" | "off"
AUTO_ROLLBACK_ANNOTATION = "chatops.argocd-chatops.io/auto-rollback"
INSTANCE_LABEL = "app.kubernetes.io/instance"


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(key)
        if obj is None:
            return default
    return obj


@dataclass(frozen=True)
class Problem:
    """A resource that failed to sync or is not healthy, with Argo CD's own message."""

    kind: str
    name: str
    namespace: str
    status: str
    message: str

    def line(self) -> str:
        where = f"{self.kind}/{self.name}"
        return f"{where} {self.status}" + (f": {self.message}" if self.message else "")


def _problem(resource: dict[str, Any], status: Any, message: Any) -> Problem:
    """A Problem naming ``resource`` (an entry of status.resources, a sync result or a tree
    node: all carry kind, name and namespace) with the status and message that flag it."""
    return Problem(
        kind=str(resource.get("kind", "")),
        name=str(resource.get("name", "")),
        namespace=str(resource.get("namespace", "")),
        status=str(status),
        message=str(message),
    )


class Application:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"Application({self.name!r}, {self.sync_status}/{self.health_status})"

    @property
    def name(self) -> str:
        return str(dig(self.raw, "metadata", "name", default=""))

    @property
    def resource_version(self) -> str:
        return str(dig(self.raw, "metadata", "resourceVersion", default=""))

    @property
    def labels(self) -> dict[str, str]:
        return dict(dig(self.raw, "metadata", "labels", default={}) or {})

    @property
    def annotations(self) -> dict[str, str]:
        return dict(dig(self.raw, "metadata", "annotations", default={}) or {})

    @property
    def auto_rollback(self) -> str | None:
        """The auto-rollback annotation as written (lower-cased), None when absent."""
        value = self.annotations.get(AUTO_ROLLBACK_ANNOTATION)
        return None if value is None else str(value).strip().lower()

    @property
    def owner_kinds(self) -> list[str]:
        refs = dig(self.raw, "metadata", "ownerReferences", default=[]) or []
        return [str(r.get("kind", "")) for r in refs if isinstance(r, dict)]

    @property
    def project(self) -> str:
        return str(dig(self.raw, "spec", "project", default="default"))

    @property
    def dest_namespace(self) -> str:
        return str(dig(self.raw, "spec", "destination", "namespace", default=""))

    @property
    def dest_cluster(self) -> str:
        d = dig(self.raw, "spec", "destination", default={}) or {}
        return str(d.get("name") or d.get("server") or "in-cluster")

    @property
    def dest_name(self) -> str:
        return str(dig(self.raw, "spec", "destination", "name", default=""))

    @property
    def dest_server(self) -> str:
        return str(dig(self.raw, "spec", "destination", "server", default=""))

    @property
    def app_namespace(self) -> str:
        """The namespace the Application itself lives in (not where it deploys)."""
        return str(dig(self.raw, "metadata", "namespace", default=""))

    def qualified(self, home: str) -> str:
        """``NAMESPACE/NAME`` outside Argo CD's own namespace ``home``, else ``NAME``."""
        ns = self.app_namespace
        return f"{ns}/{self.name}" if ns and ns != home else self.name

    def tracked_name(self, home: str) -> str:
        """The name Argo CD tracks the app's resources by (instance label, tracking-id): an
        app outside Argo CD's own namespace is ``NAMESPACE_NAME`` there."""
        ns = self.app_namespace
        return f"{ns}_{self.name}" if ns and ns != home else self.name

    @property
    def source(self) -> dict[str, Any]:
        src = dig(self.raw, "spec", "source")
        if isinstance(src, dict):
            return src
        sources = dig(self.raw, "spec", "sources", default=[]) or []
        return sources[0] if sources and isinstance(sources[0], dict) else {}

    @property
    def source_path(self) -> str:
        return str(self.source.get("path") or "")

    @property
    def automated(self) -> dict[str, Any] | None:
        a = dig(self.raw, "spec", "syncPolicy", "automated")
        return a if isinstance(a, dict) else None

    @property
    def auto_sync(self) -> bool:
        a = self.automated
        # a present automated block with enabled unset counts as enabled
        return a is not None and a.get("enabled", True) is not False

    @property
    def self_heal(self) -> bool:
        a = self.automated
        return bool(a and self.auto_sync and a.get("selfHeal"))

    @property
    def sync_status(self) -> str:
        return str(dig(self.raw, "status", "sync", "status", default="Unknown"))

    @property
    def revision(self) -> str:
        return str(dig(self.raw, "status", "sync", "revision", default=""))

    @property
    def deployed_revision(self) -> str:
        """What runs now: the last deployment in history (``status.sync.revision`` is what Git
        has after the last comparison, which a refresh moves ahead of the deployment)."""
        history = dig(self.raw, "status", "history", default=[]) or []
        if history and isinstance(history[-1], dict) and history[-1].get("revision"):
            return str(history[-1]["revision"])
        rev = dig(self.raw, "status", "operationState", "syncResult", "revision")
        return str(rev) if rev else self.revision

    @property
    def health_status(self) -> str:
        return str(dig(self.raw, "status", "health", "status", default="Unknown"))

    @property
    def health_message(self) -> str:
        return str(dig(self.raw, "status", "health", "message", default=""))

    @property
    def operation(self) -> dict[str, Any] | None:
        op = self.raw.get("operation")
        return op if isinstance(op, dict) else None

    @property
    def operation_state(self) -> dict[str, Any]:
        return dict(dig(self.raw, "status", "operationState", default={}) or {})

    @property
    def phase(self) -> str:
        return str(self.operation_state.get("phase") or "")

    @property
    def operation_message(self) -> str:
        return str(self.operation_state.get("message") or "")

    @property
    def operation_running(self) -> bool:
        return self.operation is not None or self.phase in ("Running", "Terminating")

    @property
    def initiated_by(self) -> str:
        op = self.operation or dig(self.raw, "status", "operationState", "operation") or {}
        ib = op.get("initiatedBy") or {}
        if ib.get("automated"):
            return "auto-sync"
        return str(ib.get("username") or "someone")

    def operation_info(self, name: str) -> str | None:
        """A value from the last operation's ``info`` list (what the sync request's ``infos``
        carried)."""
        op = dig(self.raw, "status", "operationState", "operation", default={}) or {}
        for item in op.get("info") or []:
            if isinstance(item, dict) and item.get("name") == name:
                return str(item.get("value", ""))
        return None

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return list(dig(self.raw, "status", "conditions", default=[]) or [])

    @property
    def has_presync_hook(self) -> bool:
        """True when the last sync ran a PreSync hook of the app's own (then ours is skipped)."""
        for r in (
            dig(self.raw, "status", "operationState", "syncResult", "resources", default=[]) or []
        ):
            if isinstance(r, dict) and r.get("hookType") == "PreSync":
                return True
        return False

    def sync_problems(self) -> list[Problem]:
        out = []
        res = dig(self.raw, "status", "operationState", "syncResult", "resources", default=[]) or []
        for r in res:
            if not isinstance(r, dict):
                continue
            failed = r.get("status") == "SyncFailed" or r.get("hookPhase") in ("Failed", "Error")
            if failed:
                status = r.get("status") or r.get("hookPhase") or "SyncFailed"
                out.append(_problem(r, status, r.get("message", "")))
        return out

    def unhealthy_resources(self) -> list[Problem]:
        out = []
        for r in dig(self.raw, "status", "resources", default=[]) or []:
            h = (r or {}).get("health") or {}
            if h.get("status") in ("Degraded", "Missing", "Unknown", "Progressing", "Suspended"):
                out.append(_problem(r, h.get("status"), h.get("message", "")))
        return out


def tree_problems(nodes: list[dict[str, Any]]) -> list[Problem]:
    """Degraded/Missing nodes of a resource tree: the 'which resource and why' answer."""
    out = []
    for n in nodes:
        h = n.get("health") or {}
        if h.get("status") in ("Degraded", "Missing"):
            out.append(_problem(n, h.get("status"), h.get("message", "")))
    return out


def short(rev: str) -> str:
    return rev[:7] if rev else "?"
