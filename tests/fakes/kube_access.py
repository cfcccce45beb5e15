"""SelfSubjectAccessReview for the fake Kubernetes API server: "may I do this?".

``kubectl auth can-i`` and ``chatops doctor`` ask the API server
``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`` with
``spec.resourceAttributes`` (verb, group, resource, subresource, namespace) and read
``status.allowed`` (plus ``denied`` and ``reason``); the server answers 201 Created with the
review echoed back (kubernetes.io/docs/reference/kubernetes-api/authorization-resources/
self-subject-access-review-v1/). An empty namespace means cluster scope, and a namespaced rule
then answers "no" (a RoleBinding grants nothing cluster-wide).

The fake decides through one callable, ``Allowed(verb, group, resource, subresource,
namespace) -> bool``, which the server also consults for every real request (403 otherwise):
``allow_all`` by default, an ``AllowList`` of rules for a test, or an RBAC evaluator (Roles and
bindings) plugged in the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class Allowed(Protocol):
    def __call__(
        self, verb: str, group: str, resource: str, subresource: str, namespace: str | None
    ) -> bool: ...


def allow_all(
    verb: str, group: str, resource: str, subresource: str, namespace: str | None
) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """``verb`` on ``resource`` (``subresource``) in ``namespace`` (None: every namespace and
    cluster scope); "*" matches any verb or resource. The API group is not compared: the
    resources the bot uses have one group each."""

    verb: str
    resource: str
    subresource: str = ""
    namespace: str | None = None

    def matches(self, verb: str, resource: str, subresource: str, namespace: str | None) -> bool:
        return (
            self.verb in ("*", verb)
            and self.resource in ("*", resource)
            and self.subresource == subresource
            and (self.namespace is None or self.namespace == (namespace or ""))
        )


class AllowList:
    """Allowed exactly what one of the rules grants; ``allow``/``revoke`` change it."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: set[Rule] = set(rules)

    def allow(self, *rules: Rule) -> None:
        self.rules.update(rules)

    def revoke(self, *rules: Rule) -> None:
        self.rules.difference_update(rules)

    def __call__(
        self, verb: str, group: str, resource: str, subresource: str, namespace: str | None
    ) -> bool:
        return any(r.matches(verb, resource, subresource, namespace) for r in self.rules)


def review(body: Any, allowed: Allowed) -> dict[str, Any]:
    """The SelfSubjectAccessReview the API server returns for ``body``."""
    spec = (body or {}).get("spec") or {}
    attrs = spec.get("resourceAttributes") or {}
    verdict = allowed(
        str(attrs.get("verb") or ""),
        str(attrs.get("group") or ""),
        str(attrs.get("resource") or ""),
        str(attrs.get("subresource") or ""),
        attrs.get("namespace") or None,
    )
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {"allowed": True} if verdict else {"allowed": False, "reason": ""},
    }
