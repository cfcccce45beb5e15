"""What a command runs against: the clients, the durable timers, the clock — and which ones.

One bot may talk to several Argo CD instances and several clusters. ``Services`` is bound to
one instance (``argocd``, ``ui_url``, ``instance``) and knows the others (``instances``);
``resolve`` turns what a person typed (``APP``, ``NAMESPACE/APP``, ``APP@INSTANCE``) into the
Services of the instance that has the app and the app's qualified name, and refuses a name that
several instances have, listing them. ``placement`` picks the Kubernetes client of the app's
destination cluster (``clusters``); without a ``clusters`` setting it is the one ``kube``.
With a single instance and no ``clusters``, nothing here does any I/O or changes a name.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from commands import errors, targets
from commands.argocd import links
from commands.argocd.app import Application
from commands.argocd.client import ArgoCD
from commands.kube.clusters import Placement
from commands.ports import Timers

if TYPE_CHECKING:
    from commands.githost.port import GitHost
    from commands.kube.clusters import ClusterMap
    from commands.kube.ops import KubeOps

NO_KUBE = "no Kubernetes access configured"


@dataclass(frozen=True)
class Instance:
    """One configured Argo CD: its name (``APP@NAME``), client and web UI address."""

    name: str
    argocd: ArgoCD
    ui_url: str = ""


@dataclass
class Services:
    argocd: ArgoCD
    kube: KubeOps | None = None
    timers: Timers | None = None
    git: GitHost | None = None
    ui_url: str = ""
    now: Callable[[], float] = field(default=time.time)
    instance: str = targets.DEFAULT_INSTANCE
    # every configured Argo CD instance by name (this one included); empty: only this one
    instances: Mapping[str, Instance] = field(default_factory=dict)
    clusters: ClusterMap | None = None  # destination -> kubeconfig context; None: ``kube``

    @property
    def several(self) -> bool:
        return len(self.instances) > 1

    def on(self, name: str) -> Services:
        """The same services bound to Argo CD instance ``name``."""
        if name == self.instance:
            return self
        inst = self.instances.get(name)
        if inst is None:
            known = ", ".join(self.instances) or self.instance
            raise errors.BadInput(
                f"There is no Argo CD instance '{name}'.", hint=f"Configured: {known}."
            )
        return replace(self, argocd=inst.argocd, ui_url=inst.ui_url, instance=name)

    def everywhere(self) -> list[Services]:
        """These services bound to each instance in turn (just itself with one instance)."""
        return [self.on(n) for n in self.instances] if self.instances else [self]

    def label(self, app: str) -> str:
        """How chat and buttons name ``app`` (qualified): with ``@INSTANCE`` when several."""
        return targets.label(app, self.instance, several=self.several)

    def app_link(self, app: str) -> str:
        name, namespace = targets.split(app.partition("@")[0])
        base = links.ui_base(self.ui_url, self.argocd.base_url)
        return links.app_link(base, name, namespace or None) or ""

    def qualified(self, app: Application) -> str:
        return app.qualified(self.argocd.namespace)

    def shown(self, app: Application) -> str:
        """How people address ``app`` and how messages name it: ``NAMESPACE/APP`` outside Argo
        CD's own namespace, with ``@INSTANCE`` when several."""
        return self.label(self.qualified(app))

    def tracked(self, app: Application) -> str:
        """The name the app's Kubernetes resources carry (``commands.argocd.app``): for finding
        them by label or tracking-id only, never for a message (that is ``shown``)."""
        return app.tracked_name(self.argocd.namespace)

    def placement(self, app: Application) -> Placement:
        """Where ``app``'s Kubernetes steps run; ``errors.Unavailable`` when the destination is
        not mapped and ``strict_clusters`` is on."""
        if self.clusters is None:
            return Placement(app.dest_cluster, self.kube, "" if self.kube else NO_KUBE)
        return self.clusters.place(app.dest_name, app.dest_server, self.instance)


async def resolve(svc: Services, text: str) -> tuple[Services, str]:
    """``text`` as typed -> (the Services of its instance, its qualified name).

    ``BadInput`` for a malformed reference, an unknown instance or a name several instances
    have; ``NotFound`` (with close matches from every instance) when none has it."""
    ref = targets.parse(text)
    if ref.instance:
        chosen = svc.on(ref.instance)
    elif not svc.several:
        chosen = svc
    else:
        chosen = await _find(svc, ref)
    return chosen, ref.at_home(chosen.argocd.namespace).qualified


async def _find(svc: Services, ref: targets.AppRef) -> Services:
    each = svc.everywhere()

    async def has(s: Services) -> bool:
        wanted = ref.at_home(s.argocd.namespace).qualified
        apps = await s.argocd.list_apps(name=wanted)
        return any(s.qualified(a) == wanted for a in apps)

    answers = await asyncio.gather(*(has(s) for s in each), return_exceptions=True)
    hits = [s for s, found in zip(each, answers, strict=True) if found is True]
    if len(hits) == 1:
        return hits[0]
    if hits:
        candidates = [s.label(ref.at_home(s.argocd.namespace).qualified) for s in hits]
        raise errors.BadInput(
            f"'{ref}' exists in several Argo CD instances: {', '.join(candidates)}.",
            hint=f"Say which, e.g. {candidates[0]}.",
        )
    failed = [a for a in answers if isinstance(a, errors.CommandError)]
    if failed:
        raise failed[0]
    for a in answers:
        if isinstance(a, BaseException):
            raise a
    by_name: dict[str, list[str]] = {}  # "web" -> ["web@homelab", "web@akula-prime"]
    for label in await app_labels(svc):
        by_name.setdefault(label.partition("@")[0], []).append(label)
    close = difflib.get_close_matches(ref.qualified, by_name, n=3)
    suggestions = tuple(label for name in close for label in by_name[name])[:5]
    hint = f"Did you mean '{suggestions[0]}'?" if suggestions else "Check the name with /status."
    raise errors.NotFound(
        f"No application '{ref}' in any Argo CD instance ({', '.join(svc.instances)}).",
        hint=hint,
        suggestions=suggestions,
    )


async def app_labels(svc: Services) -> list[str]:
    """Every app of every reachable instance, as people address it (autocomplete, did you
    mean). An instance that cannot be listed is left out; when none can, its error is raised."""
    each = svc.everywhere()
    answers = await asyncio.gather(*(s.argocd.names() for s in each), return_exceptions=True)
    out: list[str] = []
    for s, names in zip(each, answers, strict=True):
        if isinstance(names, list):
            out += [s.label(n) for n in names]
    if not out and isinstance(answers[0], BaseException):
        raise answers[0]
    return out


@dataclass(frozen=True)
class Caller:
    """Who asked, for Argo CD's ``infos``, commit trailers and the audit log."""

    name: str = "cli"
    via: str = "cli"  # cli | slack | discord | ci | hook

    def label(self) -> str:
        return self.name if self.via == "cli" else f"{self.name} via {self.via}"
