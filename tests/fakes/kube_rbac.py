"""Kubernetes RBAC, evaluated the way the API server's RBAC authorizer does, over a set of
rendered objects (``kubectl kustomize deploy/``): which requests a ServiceAccount may make.

Plug it into the fake API server (its ``allowed`` hook, ``tests.fakes.kube_access.Allowed``)
so a test runs the bot with exactly the rights it ships with::

    rbac = Rbac(rendered_objects)
    fake.allowed = rbac.authorizer("argocd-chatops", "argocd-chatops")

Semantics followed (kubernetes.io/docs/reference/access-authn-authz/rbac/ and
pkg/registry/rbac/validation/rule.go, ``RuleAllows``):
- A ClusterRoleBinding grants its ClusterRole's rules everywhere, cluster scope included.
- A RoleBinding grants its Role's, or a referenced ClusterRole's, rules ONLY in the binding's
  own namespace; never at cluster scope (a list across all namespaces is a cluster-scope request).
- A rule matches when its verbs, apiGroups and resources each contain the request's value or
  ``*``. A subresource request is "resource/subresource" and matches "pods/exec", "*/exec" or
  ``*``, never plain "pods". ``resourceNames`` restricts a rule to named requests.
- Subjects: the ServiceAccount itself, the User ``system:serviceaccount:NS:NAME``, and the
  groups every ServiceAccount belongs to (``system:serviceaccounts``,
  ``system:serviceaccounts:NS``, ``system:authenticated``).
- Allow-only: RBAC has no deny rules; nothing granted means forbidden. Aggregated ClusterRoles
  are not expanded (they are refused, so a test cannot silently pass on them).

Built-in cluster roles are not included: the bot must not depend on the cluster's defaults
beyond discovery and SelfSubjectAccessReview, which the fake serves without authorization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes.kube_access import Allowed

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Rule:
        if raw.get("nonResourceURLs"):
            return cls(frozenset(), frozenset(), frozenset(), frozenset())
        return cls(
            frozenset(raw.get("verbs") or ()),
            frozenset(raw.get("apiGroups") or ()),
            frozenset(raw.get("resources") or ()),
            frozenset(raw.get("resourceNames") or ()),
        )

    def allows(self, verb: str, group: str, resource: str, sub: str, name: str) -> bool:
        if not ({verb, "*"} & self.verbs and {group, "*"} & self.api_groups):
            return False
        if sub:
            wanted = {f"{resource}/{sub}", f"*/{sub}", "*"}
        else:
            wanted = {resource, "*"}
        if not wanted & self.resources:
            return False
        return not self.resource_names or name in self.resource_names


@dataclass(frozen=True)
class Grant:
    """Rules granted to some subjects, in one namespace ("" for everywhere)."""

    namespace: str
    subjects: tuple[tuple[str, str, str], ...]  # (kind, name, namespace)
    rules: tuple[Rule, ...]
    via: str  # "RoleBinding ai-services/argocd-chatops", for messages


class Rbac:
    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        objs = [o for o in objects if isinstance(o, Mapping)]
        roles: dict[tuple[str, str, str], tuple[Rule, ...]] = {}
        for o in objs:
            if _api_group(o) != RBAC_GROUP or o.get("kind") not in ("Role", "ClusterRole"):
                continue
            if o.get("aggregationRule"):
                raise ValueError(f"aggregated ClusterRole {_name(o)} is not supported here")
            ns = "" if o["kind"] == "ClusterRole" else _namespace(o)
            roles[(o["kind"], ns, _name(o))] = tuple(Rule.parse(r) for r in o.get("rules") or ())
        self.grants: list[Grant] = []
        for o in objs:
            kind = o.get("kind")
            if _api_group(o) != RBAC_GROUP or kind not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            ref = o.get("roleRef") or {}
            ns = _namespace(o) if kind == "RoleBinding" else ""
            if kind == "ClusterRoleBinding" and ref.get("kind") != "ClusterRole":
                raise ValueError(f"ClusterRoleBinding {_name(o)} must refer to a ClusterRole")
            role_ns = ns if ref.get("kind") == "Role" else ""
            rules = roles.get((str(ref.get("kind")), role_ns, str(ref.get("name"))))
            if rules is None:  # a binding to a missing role grants nothing (as in a cluster)
                continue
            subjects = tuple(
                (str(s.get("kind")), str(s.get("name")), str(s.get("namespace") or ""))
                for s in o.get("subjects") or ()
            )
            via = f"{kind} {ns + '/' if ns else ''}{_name(o)}"
            self.grants.append(Grant(ns, subjects, rules, via))

    def allowed(
        self,
        sa: tuple[str, str],
        verb: str,
        group: str,
        resource: str,
        subresource: str = "",
        namespace: str = "",
        name: str = "",
    ) -> bool:
        """May ServiceAccount ``sa`` = (namespace, name) make this request? ``namespace`` ""
        is a cluster-scope request (including lists across all namespaces)."""
        return bool(self.why(sa, verb, group, resource, subresource, namespace, name))

    def why(
        self,
        sa: tuple[str, str],
        verb: str,
        group: str,
        resource: str,
        subresource: str = "",
        namespace: str = "",
        name: str = "",
    ) -> list[str]:
        """The bindings that allow the request (empty: forbidden)."""
        found = []
        for grant in self.grants:
            if grant.namespace and grant.namespace != namespace:
                continue
            if not any(_is(sa, subject) for subject in grant.subjects):
                continue
            if any(r.allows(verb, group, resource, subresource, name) for r in grant.rules):
                found.append(grant.via)
        return found

    def authorizer(self, sa_namespace: str, sa_name: str) -> Allowed:
        """``FakeKube.allowed`` for this ServiceAccount (namespace None or "": cluster scope)."""
        sa = (sa_namespace, sa_name)

        def allowed(
            verb: str, group: str, resource: str, subresource: str, namespace: str | None
        ) -> bool:
            return self.allowed(sa, verb, group, resource, subresource, namespace or "")

        return allowed


def _is(sa: tuple[str, str], subject: tuple[str, str, str]) -> bool:
    ns, name = sa
    kind, sname, sns = subject
    if kind == "ServiceAccount":
        return (sns, sname) == (ns, name)
    if kind == "User":
        return sname == f"system:serviceaccount:{ns}:{name}"
    if kind == "Group":
        return sname in (
            "system:serviceaccounts",
            f"system:serviceaccounts:{ns}",
            "system:authenticated",
        )
    return False


def _api_group(obj: Mapping[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")
