"""The small standards argocd-server leans on, done by hand to keep the fake dependency-free:
RFC 7386 JSON merge patch, RFC 6902 JSON patch, and Kubernetes label selectors.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes.argocd_state import INVALID_ARGUMENT, ApiError


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(INVALID_ARGUMENT, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 with the operations clients use: add, remove, replace, test."""
    if not isinstance(ops, list):
        raise ApiError(INVALID_ARGUMENT, "json patch must be an array of operations")
    for op in ops:
        kind, parts = op.get("op"), _pointer(str(op.get("path", "")))
        try:
            if not parts:
                if kind in ("add", "replace"):
                    doc = copy.deepcopy(op["value"])
                    continue
                raise ApiError(INVALID_ARGUMENT, f"unsupported json patch on root: {kind}")
            parent, last = _parent(doc, parts), parts[-1]
            if kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != op.get("value"):
                    raise ApiError(INVALID_ARGUMENT, f"testing value {op['path']} failed")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind in ("add", "replace"):
                value = copy.deepcopy(op["value"])
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(last)
                    if kind == "add":
                        parent.insert(index, value)
                    else:
                        parent[index] = value
                else:
                    if kind == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = value
            else:
                raise ApiError(INVALID_ARGUMENT, f"unsupported json patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as e:
            message = f"error applying json patch at {op.get('path')}: {e}"
            raise ApiError(INVALID_ARGUMENT, message) from e
    return doc


_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    values: frozenset[str] | None  # None: only existence matters
    negate: bool

    def __call__(self, labels: Mapping[str, str]) -> bool:
        if self.values is None:
            held = self.key in labels
        else:
            held = self.key in labels and labels[self.key] in self.values
        return held != self.negate


def parse_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """A Kubernetes label selector: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``,
    ``k in (a,b)``, ``k notin (a,b)``, comma-separated (all must hold)."""
    terms: list[Requirement] = []
    for raw in re.split(r",(?![^(]*\))", selector):
        if not raw.strip():
            continue
        if m := _SET.match(raw):
            values = frozenset(v.strip() for v in m.group(3).split(","))
            terms.append(Requirement(m.group(1), values, m.group(2) == "notin"))
        elif m := _EQ.match(raw):
            key, op, value = m.groups()
            terms.append(Requirement(key, frozenset([value]), op == "!="))
        elif m := _EXISTS.match(raw):
            terms.append(Requirement(m.group(2), None, m.group(1) == "!"))
        else:
            raise ValueError(f"unable to parse requirement: {raw.strip()!r}")
    return lambda labels: all(term(labels) for term in terms)
