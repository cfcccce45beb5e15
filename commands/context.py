"""What a command runs against: the clients, the durable timers, the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from commands.argocd import links
from commands.argocd.client import ArgoCD
from commands.ports import Timers

if TYPE_CHECKING:
    from commands.githost.port import GitHost
    from commands.kube.ops import KubeOps


@dataclass
class Services:
    argocd: ArgoCD
    kube: KubeOps | None = None
    timers: Timers | None = None
    git: GitHost | None = None
    ui_url: str = ""
    now: Callable[[], float] = field(default=time.time)

    def app_link(self, app: str) -> str:
        return links.app_link(links.ui_base(self.ui_url, self.argocd.base_url), app) or ""


@dataclass(frozen=True)
class Caller:
    """Who asked, for Argo CD's ``infos``, commit trailers and the audit log."""

    name: str = "cli"
    via: str = "cli"  # cli | slack | discord | ci | hook

    def label(self) -> str:
        return self.name if self.via == "cli" else f"{self.name} via {self.via}"
