"""Which Argo CD apps deploy to one cluster: what a cluster's Warning-event watch may blame.

With several clusters the bot runs one event watch per kubeconfig context
(``bot.alerts.watches``). A namespace name means nothing across clusters - ``prod`` on the
homelab is not ``prod`` on akula-prime - and an app name means nothing across Argo CD
instances. So an event seen through context C is tied only to an app whose destination (Argo CD
cluster name or server URL, per instance) the ``clusters`` setting maps to C, whichever instance
has it. The Application watches already know each app's destination, namespace and qualified
name (what its resources' tracking name reads as); ``ClusterApps`` asks them, filtering by destination, on each correlator cache miss (the
routes are a handful; the correlator caches the answer per involved object).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from bot.alerts.event_watch import Owner
from commands.kube.clusters import describe

# (kubeconfig context, kubeconfig file) of a destination, None when it is not mapped
Where = Callable[[str, str, str], tuple[str, str] | None]


class Watched(Protocol):
    """What ``bot.alerts.app_watch.AppWatch`` tells about the apps it has seen."""

    instance: str

    def apps_in(self, namespace: str) -> frozenset[str]: ...

    def named(self, qualified: str) -> str | None: ...

    def destination(self, name: str) -> tuple[str, str] | None: ...


class ClusterApps:
    """The ``event_watch.Apps`` of the cluster behind ``key``: the apps of ``watches`` (one
    per Argo CD instance) whose destination ``where`` maps to ``key``."""

    def __init__(self, watches: Sequence[Watched], key: tuple[str, str], where: Where) -> None:
        self.watches = tuple(watches)
        self.key = key
        self.where = where

    def _here(self, watch: Watched, name: str) -> Owner | None:
        dest = watch.destination(name)
        if dest is None or self.where(dest[0], dest[1], watch.instance) != self.key:
            return None
        return Owner(name, watch.instance, describe(*dest))

    def named(self, qualified: str) -> Owner | None:
        found = [
            owner
            for w in self.watches
            if (name := w.named(qualified)) is not None and (owner := self._here(w, name))
        ]
        # two instances deploying a namesake to one cluster: the tracking name cannot tell
        return found[0] if len(found) == 1 else None

    def in_namespace(self, namespace: str) -> frozenset[Owner]:
        return frozenset(
            owner
            for w in self.watches
            for name in w.apps_in(namespace)
            if (owner := self._here(w, name)) is not None
        )
