"""Talking to the Kubernetes API through the official client from asyncio code.

The official client is synchronous. So that the event loop (and with it every chat ack) never
waits on the cluster, each call runs in a worker thread (watches: ``commands.kube.watch``, each
in its own daemon thread feeding an ``asyncio.Queue``). Responses are read as raw JSON (``_preload_content=False``): the
bot needs a handful of fields and must not fail on a model the client cannot deserialize.

``map_error`` is the one place a client failure becomes a ``commands.errors`` error: 401
``Unauthorized``, 403 ``Denied`` naming the verb and resource the bot's RBAC lacks, 404
``NotFound``, 409 ``Conflict``, 400/422 ``BadInput`` with the API server's one-line message, and
anything that cannot reach the API ``Unavailable("Kubernetes API unreachable.")``.

``list_all`` reads a list page by page (``limit``/``continue``) and starts over when the continue
token expired (410) between pages.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, cast

import urllib3
from kubernetes import client as k8s

from commands import errors

log = logging.getLogger(__name__)

RawObject = dict[str, Any]
# the shipped RBAC (deploy/rbac.yaml's ClusterRole) grants nothing by itself: a RoleBinding per
# app namespace (deploy/access/) grants it there, and nothing is granted cluster-wide
RBAC_HINT = (
    "Bind the bot's ClusterRole in that namespace with a RoleBinding (see deploy/access/) "
    "or ask a cluster admin."
)
CLUSTER_RBAC_HINT = (
    "The bot is granted rights per namespace (RoleBindings, see deploy/access/): list its app "
    "namespaces in CHATOPS_WATCH_NAMESPACES, or ask a cluster admin."
)


def _status_message(body: Any) -> str:
    try:
        message = json.loads(body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return ""
    text = str(message)
    return text if len(text) <= 300 else text[:300] + "…"


def map_error(exc: BaseException, verb: str, resource: str, namespace: str) -> errors.CommandError:
    """The one place an official-client failure becomes an error a person can read."""
    where = f" in namespace {namespace}" if namespace else ""
    if isinstance(exc, k8s.ApiException):
        code = exc.status or 0
        message = _status_message(exc.body)
        if code == 401:
            return errors.Unauthorized(
                "Kubernetes rejected the bot's credentials.",
                hint="Check the service account token or kubeconfig the bot runs with.",
            )
        if code == 403:
            return errors.Denied(
                f"The bot is not allowed to {verb} {resource}{where}.",
                hint=RBAC_HINT if namespace else CLUSTER_RBAC_HINT,
            )
        if code == 404:
            return errors.NotFound(message or f"{resource} not found{where}.")
        if code in (409, 410):
            return errors.Conflict(message or f"{resource} changed meanwhile; try again.")
        if code in (400, 422):
            return errors.BadInput(message or f"Kubernetes refused to {verb} {resource}.")
        if code == 0:
            return errors.Unavailable(
                "Kubernetes API unreachable.", hint="Check the cluster address and network."
            )
        return errors.Unavailable(f"Kubernetes API answered {code} to {verb} {resource}{where}.")
    return errors.Unavailable(
        "Kubernetes API unreachable.", hint="Check the cluster address and network."
    )


UNREACHABLE = (urllib3.exceptions.HTTPError, OSError)


async def call_raw(
    verb: str, resource: str, namespace: str, fn: Callable[..., Any], *args: Any, **kw: Any
) -> RawObject:
    """``fn(*args, **kw)`` in a worker thread; the JSON body, or a mapped error."""

    def call() -> RawObject:
        resp = fn(*args, _preload_content=False, **kw)
        try:
            return cast(RawObject, json.loads(resp.data))
        finally:
            resp.release_conn()

    try:
        return await asyncio.to_thread(call)
    except (k8s.ApiException, *UNREACHABLE) as e:
        raise map_error(e, verb, resource, namespace) from e


LIST_PAGE = 500  # items per list request; the API server may return fewer
LIST_RESTARTS = 3


async def list_all(
    verb: str, resource: str, namespace: str, fn: Callable[..., Any], *args: Any, **kw: Any
) -> RawObject:
    """A list read page by page (``limit``/``continue``), merged into one list whose
    ``metadata.resourceVersion`` is the first page's (what a watch resumes from). An expired
    continue token (410) restarts the list: the pages must come from one snapshot."""
    for _ in range(LIST_RESTARTS):
        first: RawObject | None = None
        items: list[Any] = []
        token = ""
        try:
            while True:
                extra = {"_continue": token} if token else {}
                page = await call_raw(
                    verb, resource, namespace, fn, *args, limit=LIST_PAGE, **kw, **extra
                )
                first = first or page
                items.extend(page.get("items") or [])
                token = str((page.get("metadata") or {}).get("continue") or "")
                if not token:
                    return {**first, "items": items}
        except errors.Conflict as e:  # 410 on a continued page: start over
            cause = e.__cause__
            if not (token and isinstance(cause, k8s.ApiException) and cause.status == 410):
                raise
            log.info("kubernetes list of %s expired between pages; listing again", resource)
    raise errors.Unavailable(
        f"Kubernetes kept expiring the list of {resource} before it was read to the end.",
        hint="The cluster compacts faster than the bot reads; try again.",
    )
