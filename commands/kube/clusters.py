"""Which cluster an app's Kubernetes steps run on: its Argo CD destination, mapped to a context.

Argo CD names a destination by cluster name (``spec.destination.name``) or API server URL
(``spec.destination.server``); the configuration maps either to a kubeconfig context (``""``:
in-cluster, or the current context). Argo CD's own cluster answers to both ``in-cluster`` and
``https://kubernetes.default.svc``, so either spelling matches it. A route may be limited to one
Argo CD instance: "in-cluster" of the homelab's Argo CD is not "in-cluster" of akula-prime's.

An app whose destination is not mapped gets no Kubernetes client: its Kubernetes steps are
skipped with a message naming the destination and the setting to add, or refused outright in
strict mode. Clients are built once per context, on first use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from commands import errors

if TYPE_CHECKING:
    from commands.kube.ops import KubeOps

IN_CLUSTER_NAME = "in-cluster"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
_IN_CLUSTER = {IN_CLUSTER_NAME, IN_CLUSTER_SERVER}


@dataclass(frozen=True)
class ClusterRoute:
    destination: str  # Argo CD's cluster name or server URL
    context: str = ""  # kubeconfig context; "" = in-cluster / the current context
    instance: str = ""  # only for apps of this Argo CD instance; "" = any
    kubeconfig: str = ""  # a kubeconfig file other than KUBECONFIG


@dataclass(frozen=True)
class Placement:
    """Where an app's Kubernetes steps run: ``kube`` is None when they cannot (``reason``)."""

    cluster: str  # the destination as people know it: a name, else the server URL
    kube: KubeOps | None
    reason: str = ""
    context: str = ""


def _norm(dest: str) -> str:
    d = dest.strip().rstrip("/")
    return IN_CLUSTER_SERVER if d in _IN_CLUSTER else d


def describe(name: str, server: str) -> str:
    return name or server or IN_CLUSTER_NAME


class ClusterMap:
    """The ``clusters:`` setting. ``connect(context, kubeconfig)`` builds a KubeOps (None when
    that context cannot be loaded); ``strict`` refuses an unmapped destination."""

    def __init__(
        self,
        routes: Iterable[ClusterRoute],
        connect: Callable[[str, str], KubeOps | None],
        *,
        strict: bool = False,
        shared: KubeOps | None = None,
    ) -> None:
        self.routes = tuple(routes)
        self._shared = shared  # a client someone else closes
        self.strict = strict
        self._connect = connect
        self._clients: dict[tuple[str, str], KubeOps | None] = {}

    def route(self, name: str, server: str, instance: str = "") -> ClusterRoute | None:
        wanted = {_norm(v) for v in (name, server) if v} or {IN_CLUSTER_SERVER}
        for r in self.routes:
            if r.instance and instance and r.instance != instance:
                continue
            if _norm(r.destination) in wanted:
                return r
        return None

    def client(self, context: str, kubeconfig: str = "") -> KubeOps | None:
        key = (context, kubeconfig)
        if key not in self._clients:
            self._clients[key] = self._connect(context, kubeconfig)
        return self._clients[key]

    def contexts(self) -> list[tuple[str, str]]:
        """Each distinct (context, kubeconfig) the routes name, in order."""
        return list(dict.fromkeys((r.context, r.kubeconfig) for r in self.routes))

    def place(self, name: str, server: str, instance: str = "") -> Placement:
        cluster = describe(name, server)
        r = self.route(name, server, instance)
        if r is None:
            where = f" of Argo CD instance {instance}" if instance else ""
            reason = (
                f"destination cluster {cluster}{where} is not mapped to a kubeconfig context: "
                f"add it to the clusters setting (destination: {cluster}, context: ...)"
            )
            if self.strict:
                raise errors.Unavailable(
                    f"The destination cluster {cluster} is not mapped to a kubeconfig context.",
                    hint=f"Add `- destination: {cluster}` with its `context:` to the clusters "
                    "setting, or turn strict_clusters off to skip the Kubernetes steps.",
                )
            return Placement(cluster, None, reason)
        kube = self.client(r.context, r.kubeconfig)
        context = r.context or "the current context"
        if kube is None:
            reason = f"kubeconfig context {context} for cluster {cluster} cannot be loaded"
            if self.strict:
                raise errors.Unavailable(
                    f"The kubeconfig context {context} (cluster {cluster}) cannot be loaded.",
                    hint="Check KUBECONFIG and the context's name (run chatops doctor).",
                )
            return Placement(cluster, None, reason, r.context)
        return Placement(cluster, kube, "", r.context)

    def close(self) -> None:
        for kube in self._clients.values():
            if kube is not None and kube is not self._shared:
                with contextlib.suppress(Exception):  # best effort at shutdown
                    kube.api_client.close()
        self._clients.clear()
