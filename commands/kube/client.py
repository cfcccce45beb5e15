"""Talking to the Kubernetes API through the official client from asyncio code.

The official client is synchronous. So that the event loop (and with it every chat ack) never
waits on the cluster, each call runs in a worker thread and each watch in its own daemon thread
feeding an ``asyncio.Queue``. Responses are read as raw JSON (``_preload_content=False``): the
bot needs a handful of fields and must not fail on a model the client cannot deserialize.

``map_error`` is the one place a client failure becomes a ``commands.errors`` error: 401
``Unauthorized``, 403 ``Denied`` naming the verb and resource the bot's RBAC lacks, 404
``NotFound``, 409 ``Conflict``, 400/422 ``BadInput`` with the API server's one-line message, and
anything that cannot reach the API ``Unavailable("Kubernetes API unreachable.")``.

``list_all`` reads a list page by page (``limit``/``continue``) and starts over when the continue
token expired (410) between pages. ``watch_events`` resumes from the last resourceVersion it saw (bookmarks keep it fresh), reconnects
with backoff after a disconnect, and raises ``Expired`` on 410 so the caller lists again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

import urllib3
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from commands import errors

log = logging.getLogger(__name__)

RawObject = dict[str, Any]
RBAC_HINT = "Grant it in the bot's Role (deploy/rbac.yaml) or ask a cluster admin."


class Expired(Exception):
    """The watch's resourceVersion was compacted away (410): list again."""


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
                f"The bot is not allowed to {verb} {resource}{where}.", hint=RBAC_HINT
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
_Watch: Any = k8s_watch.Watch  # the client's watch helper carries no annotations


class WatchThread:
    """One official-client watch in a daemon thread, handing events to the event loop."""

    END = object()

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        # return_type "object": events carry raw dicts, resourceVersions are still tracked
        self._watch: Any = _Watch(return_type="object")
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, args=(fn, args, kwargs), name="kube-watch", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._watch.stop()  # shuts the socket down, unblocking the reading thread

    def _post(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._stopped:  # stopped before it started: Watch.stream() would reset the flag
            self._post(self.END)
            return
        try:
            for event in self._watch.stream(fn, *args, **kwargs):
                if self._stopped:
                    break
                self._post(event)
        except Exception as e:  # handed to the loop, which maps or retries it
            if not self._stopped:
                self._post(e)
        finally:
            self._post(self.END)


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


async def watch_events(
    resource: str,
    namespace: str,
    fn: Callable[..., Any],
    *args: Any,
    resource_version: str,
    deadline: float | None = None,
    max_timeout: int = 300,
    **kw: Any,
) -> AsyncGenerator[tuple[str, RawObject], None]:
    """Yield ``(type, raw object)`` for ADDED/MODIFIED/DELETED after ``resource_version`` until
    the caller stops (close it: ``contextlib.aclosing``) or is cancelled. Each HTTP watch lasts
    at most ``max_timeout`` s (and not past ``deadline``, a loop time); then it resumes where it
    left off. Disconnects are retried with backoff (until ``deadline``, if any); 410 raises
    ``Expired``."""
    loop = asyncio.get_running_loop()
    rv, backoff = resource_version, 0.1
    while True:
        left = max_timeout if deadline is None else math.ceil(deadline - loop.time())
        left = max(1, min(left, max_timeout))
        stream_kw = dict(
            kw,
            resource_version=rv,
            timeout_seconds=left,
            allow_watch_bookmarks=True,
            _request_timeout=left + 15,
        )
        watcher = WatchThread(fn, args, stream_kw)
        watcher.start()
        failure: BaseException | None = None
        try:
            while (item := await watcher.queue.get()) is not WatchThread.END:
                if isinstance(item, BaseException):
                    failure = item
                    continue
                obj = item["raw_object"]
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                backoff = 0.1
                if item["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    yield item["type"], obj
        finally:
            watcher.stop()
        if isinstance(failure, k8s.ApiException) and failure.status == 410:
            raise Expired(str(failure.reason))
        if failure is not None and not isinstance(failure, (k8s.ApiException, *UNREACHABLE)):
            raise failure  # a bug, not the cluster: keep its traceback
        if failure is not None:
            mapped = map_error(failure, "watch", resource, namespace)
            late = deadline is not None and loop.time() + backoff > deadline
            if not isinstance(mapped, errors.Unavailable) or late:
                raise mapped from failure
            log.info("kubernetes watch on %s disconnected, retrying: %s", resource, mapped)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
