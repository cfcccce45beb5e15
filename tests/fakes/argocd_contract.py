"""Argo CD's own contract files, turned into validators the fake and the tests share.

The fake must not drift from the real API, so it checks request bodies against the upstream
swagger and its tests check every Application it produces against the upstream CRD schema.
Both files describe the wire imperfectly, so the adjustments are made here, once, and named:

- Go's encoding/json accepts JSON numbers for int64 fields (the swagger's ``format: int64``);
  grpc-gateway's own form is a decimal string. Both are accepted.
- A hook strategy travels as ``{"hook": {"force": false}}`` (an embedded Go struct), although
  the swagger nests it as ``{"hook": {"syncStrategyApply": {...}}}``.
- ``null`` for any field is accepted, as Go leaves the zero value.
- Unknown fields: the real server silently ignores them. The fake rejects them (as Go's
  ``DisallowUnknownFields`` would word it), because a field the server ignores is a client bug
  that would otherwise pass every test. ``strict=False`` restores the lenient behaviour.
- The CRD is a Kubernetes structural schema: unknown fields are pruned by the API server, so an
  object carrying one could never come back from it. The validator rejects them, except under
  ``x-kubernetes-preserve-unknown-fields``.

Contract files are read from ``$ARGOCD_CONTRACTS``, else ``tests/contracts/argocd`` in the
repository if present, else the shared copy in ``/work/shared/contracts/argocd``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

_REPO_COPY = Path(__file__).resolve().parents[1] / "contracts" / "argocd"
_SHARED_COPY = Path("/work/shared/contracts/argocd")

# Values the note (shared/notes/argocd.md) and the controller source allow; the CRD types them
# only as strings, so these are checked on top of it.
SYNC_STATUSES = ("Synced", "OutOfSync", "Unknown")
HEALTH_STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
PHASES = ("Running", "Terminating", "Failed", "Error", "Succeeded")
RESULT_STATUSES = ("Synced", "SyncFailed", "Pruned", "PruneSkipped")
HOOK_TYPES = ("PreSync", "Sync", "PostSync", "SyncFail", "PostDelete", "Skip")
HOOK_PHASES = ("Running", "Terminating", "Failed", "Error", "Succeeded")

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
_INT64_STRING = r"^-?[0-9]+$"


def contracts_dir() -> Path:
    env = os.environ.get("ARGOCD_CONTRACTS")
    if env:
        return Path(env)
    return _REPO_COPY if _REPO_COPY.is_dir() else _SHARED_COPY


@functools.cache
def swagger() -> dict[str, Any]:
    with (contracts_dir() / "swagger.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


@functools.cache
def crd_schema() -> dict[str, Any]:
    with (contracts_dir() / "application-crd.yaml").open() as f:
        crd = yaml.safe_load(f)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value))


def _is_int64(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return True
    try:
        return -(2**63) <= int(value) < 2**63
    except ValueError:
        return False


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_is_date_time)
    checker.checks("int64")(_is_int64)
    return checker


# -- swagger: request bodies ----------------------------------------------------------------


def _wire_form(node: Any, *, strict: bool) -> Any:
    """Rewrite a swagger schema node to what argocd-server's JSON decoder really accepts."""
    if isinstance(node, list):
        return [_wire_form(x, strict=strict) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _wire_form(v, strict=strict) for k, v in node.items()}
    if out.get("format") == "int64" and out.get("type") in ("integer", "string"):
        return {
            "anyOf": [{"type": "integer"}, {"type": "string", "pattern": _INT64_STRING}],
            "format": "int64",
        }
    if strict and out.get("type") == "object" and "properties" in out and "allOf" not in out:
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def _swagger_definitions(strict: bool) -> dict[str, Any]:
    defs = _wire_form(copy.deepcopy(swagger()["definitions"]), strict=strict)
    hook = defs["v1alpha1SyncStrategyHook"]
    hook["properties"]["force"] = {"type": "boolean"}
    if strict:
        # The swagger's nesting is not the wire form: Go would silently ignore it.
        del hook["properties"]["syncStrategyApply"]
    return dict(defs)


@functools.cache
def _request_validator(definition: str, strict: bool) -> jsonschema.Draft4Validator:
    schema = {
        "$ref": f"#/definitions/{definition}",
        "definitions": _swagger_definitions(strict),
    }
    return jsonschema.Draft4Validator(schema, format_checker=_format_checker())


def drop_nulls(value: Any) -> Any:
    """Go's decoder leaves the zero value for a JSON null; drop nulls so the schema agrees."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


_GO_TYPES = {
    "boolean": "bool",
    "string": "string",
    "integer": "int64",
    "int64": "int64",
    "number": "float64",
    "array": "[]",
    "object": "struct",
}


def _go_message(definition: str, err: jsonschema.ValidationError) -> str:
    """Word a schema error the way Go's encoding/json words the same decoding failure."""
    struct = re.sub(r"^(application|v1alpha1)", "", definition)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return f'json: unknown field "{extra[0] if extra else "?"}"'
    field = ".".join(str(p) for p in err.absolute_path if not isinstance(p, int))
    where = f"Go struct field {struct}.{field}" if field else "Go value"
    expected = _GO_TYPES.get(str(err.schema.get("type") or err.schema.get("format")), "value")
    if err.validator in ("type", "anyOf"):
        return f"json: cannot unmarshal {_json_kind(err.instance)} into {where} of type {expected}"
    return f"json: invalid value for {where}: {err.message}"


def request_errors(definition: str, body: Any, *, strict: bool = True) -> list[str]:
    """Why argocd-server would refuse ``body`` for swagger ``definition`` (empty: accepted)."""
    validator = _request_validator(definition, strict)
    errs = sorted(validator.iter_errors(drop_nulls(body)), key=lambda e: list(e.absolute_path))
    out: dict[str, str] = {}  # one error per field, as Go stops at the first
    for e in errs:
        out.setdefault("/".join(map(str, e.absolute_path)), _go_message(definition, e))
    return list(out.values())


def sync_request_errors(body: Any, *, strict: bool = True) -> list[str]:
    return request_errors("applicationApplicationSyncRequest", body, strict=strict)


# -- CRD: Application objects -----------------------------------------------------------------


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return out
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def _app_validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(
        _structural(copy.deepcopy(crd_schema())), format_checker=_format_checker()
    )


def _enum_errors(app: dict[str, Any]) -> Iterator[str]:
    status = app.get("status") or {}

    def check(where: str, value: Any, allowed: tuple[str, ...]) -> Iterator[str]:
        if value is not None and value not in allowed:
            yield f"{where}: {value!r} is not one of {allowed}"

    yield from check("status.sync.status", (status.get("sync") or {}).get("status"), SYNC_STATUSES)
    health = (status.get("health") or {}).get("status")
    yield from check("status.health.status", health, HEALTH_STATUSES)
    for i, res in enumerate(status.get("resources") or []):
        h = (res.get("health") or {}).get("status")
        yield from check(f"status.resources[{i}].health.status", h, HEALTH_STATUSES)
        yield from check(f"status.resources[{i}].status", res.get("status"), SYNC_STATUSES)
    op_state = status.get("operationState") or {}
    yield from check("status.operationState.phase", op_state.get("phase"), PHASES)
    for i, res in enumerate((op_state.get("syncResult") or {}).get("resources") or []):
        where = f"status.operationState.syncResult.resources[{i}]"
        yield from check(f"{where}.status", res.get("status"), RESULT_STATUSES)
        yield from check(f"{where}.hookType", res.get("hookType"), HOOK_TYPES)
        yield from check(f"{where}.hookPhase", res.get("hookPhase"), HOOK_PHASES)


def _metadata_errors(meta: Any) -> Iterator[str]:
    if not isinstance(meta, dict):
        yield "metadata: not an object"
        return
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        yield "metadata.name: missing"
    rv = meta.get("resourceVersion")
    if rv is not None and not isinstance(rv, str):
        yield f"metadata.resourceVersion: must be a string, got {rv!r}"
    for key in ("labels", "annotations"):
        values = meta.get(key)
        if values is None:
            continue
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            yield f"metadata.{key}: must map strings to strings"


def application_errors(app: Any) -> list[str]:
    """Why ``app`` could not be an Application served by a real cluster (empty: it could)."""
    out = []
    for err in sorted(_app_validator().iter_errors(app), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "<root>"
        out.append(f"{where}: {err.message}")
    if isinstance(app, dict):
        if app.get("apiVersion") != "argoproj.io/v1alpha1" or app.get("kind") != "Application":
            out.append("apiVersion/kind: not argoproj.io/v1alpha1 Application")
        out.extend(_metadata_errors(app.get("metadata")))
        out.extend(_enum_errors(app))
    return out
