"""How people name an app: ``APP``, ``NAMESPACE/APP``, ``APP@INSTANCE``, ``NAMESPACE/APP@INSTANCE``.

``NAMESPACE/APP`` is how the argocd CLI names an app outside Argo CD's own namespace ("apps in
any namespace"); ``@INSTANCE`` picks one of several configured Argo CD instances. Parsing is
pure and bounded (the whole reference is length-checked before it is split), so chat, the CLI,
webhooks and buttons share one check and one error. Which instance an unqualified name means,
and which cluster an app's Kubernetes steps run on, is decided in ``commands.context``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from commands import errors, validation

MAX_REF = 253 + 1 + 63 + 1 + 63  # NAMESPACE/ + APP + @INSTANCE at their limits
_INSTANCE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_INSTANCE = "default"
HOME_NAMESPACE = "argocd"  # Argo CD's own namespace, unless configured otherwise


@dataclass(frozen=True)
class AppRef:
    name: str
    namespace: str = ""  # the Application's own namespace; "" = Argo CD's own
    instance: str = ""  # the Argo CD instance; "" = whichever has the app

    @property
    def qualified(self) -> str:
        """The name the argocd CLI and our Argo CD client take: ``NAMESPACE/APP`` or ``APP``."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def __str__(self) -> str:
        return self.qualified + (f"@{self.instance}" if self.instance else "")

    def at_home(self, home: str) -> AppRef:
        """Without the namespace when it is Argo CD's own (``argocd/web`` is ``web``)."""
        if self.namespace and self.namespace == home:
            return AppRef(self.name, "", self.instance)
        return self


def instance_name(text: str) -> str:
    if not text or len(text) > 63 or not _INSTANCE.match(text):
        raise errors.BadInput(
            f"'{_clip(text)}' is not a valid Argo CD instance name.",
            hint="Instance names are lowercase letters, digits and '-' (at most 63 characters).",
        )
    return text


def parse(text: str) -> AppRef:
    """``[NAMESPACE/]APP[@INSTANCE]``, each part checked; ``errors.BadInput`` otherwise."""
    raw = text.strip() if isinstance(text, str) else ""
    if len(raw) > MAX_REF:
        raise errors.BadInput(
            f"'{_clip(raw)}' is too long for an application.",
            hint="Write APP, NAMESPACE/APP or APP@INSTANCE.",
        )
    qualified, at, instance = raw.partition("@")
    if at:
        instance_name(instance)
    namespace, slash, name = qualified.rpartition("/")
    if slash:
        validation.namespace(namespace)
    validation.app_name(name)
    return AppRef(name, namespace, instance)


def split(qualified: str) -> tuple[str, str]:
    """``NAMESPACE/APP`` -> ``(APP, NAMESPACE)``; ``APP`` -> ``(APP, "")``."""
    namespace, _, name = qualified.rpartition("/")
    return name, namespace


def label(qualified: str, instance: str, *, several: bool) -> str:
    """How an app is shown and how buttons name it: with ``@INSTANCE`` when there are several."""
    return f"{qualified}@{instance}" if several and instance else qualified


def _clip(text: str) -> str:
    return text if len(text) <= 60 else text[:60] + "…"
