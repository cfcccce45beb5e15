"""The three patch formats of the fake Kubernetes API server, applied as the real one applies them.

Evidence (Kubernetes docs, "Update API Objects in Place Using kubectl patch", and the
apimachinery ``strategicpatch`` package):

- ``application/json-patch+json`` is RFC 6902 (a list of operations).
- ``application/merge-patch+json`` is RFC 7386: maps merge, ``null`` deletes a key, and every
  list is REPLACED as a whole. Keys starting with ``$`` mean nothing special here.
- ``application/strategic-merge-patch+json`` merges lists that the built-in Go types tag with
  ``patchStrategy:"merge"``: a list of objects by its ``patchMergeKey`` (``containers`` by
  ``name``, ``volumeMounts`` by ``mountPath``, ``ownerReferences`` by ``uid``, ...), a list of
  strings (``finalizers``) as a set union; other lists are replaced. Directives: ``$patch:
  replace|delete|merge``, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` and
  ``$setElementOrder/<field>`` (accepted; ordering is not emulated). Custom resources have no Go
  struct tags, so the API server refuses a strategic merge patch on them with 415 (kubernetes
  PR #53558, "Fix error for strategic merge patch of custom resources"); ``refuse_strategic``
  names that case.

Failures are ``PatchError(code, reason, message)``; the store turns them into Status bodies.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
CUSTOM_RESOURCE_TYPES = f"{JSON_PATCH}, {MERGE_PATCH}, application/apply-patch+yaml"
BUILTIN_TYPES = f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}, application/apply-patch+yaml"

# patchMergeKey of the list fields tagged patchStrategy:"merge" in k8s.io/api (core, apps,
# meta); keyed by field name, which is unambiguous for the kinds this fake stores
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
_PRIMITIVE_SETS = {"finalizers"}
_ORDER, _DELETE_FROM = "$setElementOrder/", "$deleteFromPrimitiveList/"


class PatchError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def unsupported(content_type: str, accepted: str) -> PatchError:
    return PatchError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f"{accepted} (got {content_type!r})",
    )


def apply(doc: Obj, body: Any, content_type: str, *, custom: bool) -> Obj:
    """Apply ``body`` as its Content-Type says, or refuse like the API server."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        if not isinstance(body, list):
            raise PatchError(
                400,
                "BadRequest",
                "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
            )
        return json_patch(doc, body)
    if media == MERGE_PATCH:
        _need_object(body)
        return merge_patch(doc, body)  # type: ignore[no-any-return]
    if media == STRATEGIC_PATCH:
        if custom:
            raise unsupported(content_type, CUSTOM_RESOURCE_TYPES)
        _need_object(body)
        return strategic_merge_patch(doc, body)
    raise unsupported(content_type, CUSTOM_RESOURCE_TYPES if custom else BUILTIN_TYPES)


def _need_object(body: Any) -> None:
    if not isinstance(body, dict):
        raise PatchError(
            400,
            "BadRequest",
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
        )


# -- RFC 7386 --------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, null removes, anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- strategic merge patch -------------------------------------------------------------------


def strategic_merge_patch(target: Any, patch: Obj) -> Obj:
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(target: Obj, patch: Obj) -> Obj:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive not in (None, "merge"):
        raise PatchError(400, "BadRequest", f"Unknown patch type: {directive}")
    result = copy.deepcopy(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(_ORDER):
            continue
        if key.startswith(_DELETE_FROM):
            field = key[len(_DELETE_FROM) :]
            drop = set(value) if isinstance(value, list) else set()
            result[field] = [v for v in result.get(field) or [] if v not in drop]
            continue
        if key.startswith("$"):
            raise PatchError(400, "BadRequest", f"the fake does not implement the directive {key}")
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                cur = result.get(key)
                result[key] = _smp_map(cur if isinstance(cur, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" and len(p) == 1 for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    existing = list(current) if isinstance(current, list) else []
    if field in _PRIMITIVE_SETS:
        return existing + [copy.deepcopy(v) for v in patch if v not in existing]
    key = _MERGE_KEYS.get(field)
    if field == "ports":  # container ports merge by containerPort, service ports by port
        container = any(isinstance(p, dict) and "containerPort" in p for p in patch)
        key = "containerPort" if container else "port"
    if key is None:
        return copy.deepcopy(patch)  # no merge strategy: the list is replaced
    result = [copy.deepcopy(item) for item in existing]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(
                400, "BadRequest", f"map: {item!r} does not contain declared merge key: {key}"
            )
        at = next(
            (
                i
                for i, cur in enumerate(result)
                if isinstance(cur, dict) and cur.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if at is not None:
                del result[at]
        elif at is None:
            result.append(_smp_map({}, item))
        else:
            result[at] = _smp_map(result[at], item)
    return result


# -- RFC 6902 --------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(400, "BadRequest", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Obj, ops: list[Any]) -> Obj:
    """RFC 6902 add / remove / replace / test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(400, "BadRequest", "invalid JSON patch operation")
        parts = _pointer(op["path"])
        if not parts:
            raise PatchError(400, "BadRequest", "JSON patch on the document root is not supported")
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.get(p)
            if parent is None:
                raise PatchError(422, "Invalid", f"doc is missing path: {op['path']!r}")
        last, kind = parts[-1], op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op.get("value"):
                raise PatchError(422, "Invalid", f"testing value {op['path']} failed")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, op.get("value"))
                else:
                    parent[idx] = op.get("value")
            else:
                if kind == "replace" and last not in parent:
                    raise PatchError(
                        422, "Invalid", f"replace operation does not apply: {op['path']}"
                    )
                parent[last] = op.get("value")
        elif kind == "remove":
            try:
                if isinstance(parent, list):
                    del parent[int(last)]
                else:
                    del parent[last]
            except (KeyError, IndexError):
                raise PatchError(
                    422, "Invalid", f"remove operation does not apply: {op['path']}"
                ) from None
        else:
            raise PatchError(400, "BadRequest", f"unsupported JSON patch operation {kind!r}")
    return doc
