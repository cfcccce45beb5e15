"""One reconnecting list-then-watch loop for every Kubernetes watch the project holds.

The command-side waits (pods gone, StatefulSet Ready: ``commands.kube.ops``) and the bot's
Warning-event watch (``bot.alerts.event_watch``) need the same thing from the API server, so
they share this loop rather than each keeping its own:

1. list (in pages when asked) and remember every object's resourceVersion;
2. watch from the list's resourceVersion with bookmarks (``allowWatchBookmarks``), so a quiet
   watch still moves its version forward; each HTTP watch lasts at most ``max_timeout`` s (the
   server ends it at ``timeoutSeconds``) and the next one resumes from the last version seen;
3. on 410 Gone (the version was compacted away: every 5 minutes by default) list again and
   yield only what differs from what was already yielded - new objects as ADDED, changed ones
   as MODIFIED, vanished ones as DELETED (with their last-seen metadata) - never the rest again;
4. on a disconnect (API server restart, load balancer timeout, network blip) wait a capped,
   jittered backoff (``commands.reconnect.Backoff``) and resume from the last version seen.

After every complete (re-)list the stream yields ``(SYNCED, {})``: what came before it is the
whole current state. Failures become ``commands.errors`` errors through
``commands.kube.client.map_error``. A wait bounded by ``deadline`` retries disconnects until the
deadline and raises anything else (a 403 names the missing right). A persistent watch (the
bot's, given ``on_error``) reports every failure there - a 403 included - and retries it with
backoff, forever.

The official client is synchronous: each HTTP watch runs in its own daemon thread
(``WatchThread``) feeding an ``asyncio.Queue``, and lists run in worker threads, so the event
loop (and with it every chat ack) never waits on the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from commands import errors
from commands.kube.client import UNREACHABLE, RawObject, call_raw, map_error
from commands.reconnect import Backoff

log = logging.getLogger(__name__)

SYNCED = "SYNCED"
CHANGES = ("ADDED", "MODIFIED", "DELETED")
_Watch: Any = k8s_watch.Watch  # the client's watch helper carries no annotations


@dataclass
class Stats:
    """How often the loop listed and opened a watch (tests and the benchmark read these)."""

    lists: int = 0
    watches: int = 0


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


class _Expired(Exception):
    """410 Gone: the watch's resourceVersion was compacted away; list again."""


async def list_and_watch(
    list_fn: Callable[..., Any],
    *args: Any,
    resource: str,
    namespace: str = "",
    deadline: float | None = None,
    max_timeout: int = 300,
    page_size: int | None = None,
    backoff: Backoff | None = None,
    on_error: Callable[[errors.CommandError], None] | None = None,
    stats: Stats | None = None,
    **kw: Any,
) -> AsyncGenerator[tuple[str, RawObject], None]:
    """``(type, raw object)`` for ADDED/MODIFIED/DELETED, and ``(SYNCED, {})`` after each
    complete (re-)list, until the caller stops (``contextlib.aclosing``) or is cancelled.

    ``list_fn(*args, **kw)`` is the official client's list call (also used, with
    ``watch=True``, to watch); ``resource`` and ``namespace`` name it in error messages.
    ``deadline`` (a loop time) bounds each watch and the retries; ``on_error`` makes the watch
    persistent (see the module docstring)."""
    loop = asyncio.get_running_loop()
    backoff = backoff or Backoff(0.1, 5.0)
    stats = stats if stats is not None else Stats()
    known: dict[str, RawObject] = {}  # uid -> metadata as last yielded
    rv = ""  # "" = list (again) before watching
    listed_once = False
    while True:
        try:
            if not rv:
                stats.lists += 1
                items, rv = await _list(list_fn, args, kw, resource, namespace, page_size)
                for change in _diff(known, items):
                    yield change
                listed_once = True
                backoff.reset()
                yield SYNCED, {}
            stats.watches += 1
            async for kind, obj in _watch_once(
                list_fn, args, kw, rv, _watch_timeout(loop, deadline, max_timeout)
            ):
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                backoff.reset()
                if kind in CHANGES:
                    _remember(known, kind, obj)
                    yield kind, obj
        except _Expired:
            log.info("kubernetes watch on %s: resourceVersion expired (410); re-listing", resource)
            rv = ""
        except (k8s.ApiException, *UNREACHABLE) as e:
            mapped = map_error(e, "watch", resource, namespace)
            await _retry_or_raise(mapped, e, loop, deadline, backoff, on_error, listed_once)
        except errors.CommandError as e:  # from a list
            await _retry_or_raise(e, e, loop, deadline, backoff, on_error, listed_once)


async def _retry_or_raise(
    error: errors.CommandError,
    cause: BaseException,
    loop: asyncio.AbstractEventLoop,
    deadline: float | None,
    backoff: Backoff,
    on_error: Callable[[errors.CommandError], None] | None,
    listed_once: bool,
) -> None:
    delay = backoff.delay()
    if on_error is not None:
        on_error(error)
    else:
        late = deadline is not None and loop.time() + delay > deadline
        retry = isinstance(error, errors.Unavailable) and listed_once and not late
        if not retry:
            raise error from cause
        log.info("kubernetes watch disconnected, retrying: %s", error.user_message)
    await asyncio.sleep(delay)


def _watch_timeout(loop: asyncio.AbstractEventLoop, deadline: float | None, most: int) -> int:
    left = most if deadline is None else math.ceil(deadline - loop.time())
    return max(1, min(left, most))


async def _watch_once(
    fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any], rv: str, timeout: int
) -> AsyncGenerator[tuple[str, RawObject], None]:
    """One HTTP watch from ``rv``: every event (bookmarks included) until the server ends it."""
    stream_kw = dict(
        kw,
        resource_version=rv,
        timeout_seconds=timeout,
        allow_watch_bookmarks=True,
        _request_timeout=timeout + 15,
    )
    watcher = WatchThread(fn, args, stream_kw)
    watcher.start()
    failure: BaseException | None = None
    try:
        while (item := await watcher.queue.get()) is not WatchThread.END:
            if isinstance(item, BaseException):
                failure = item
                continue
            yield str(item["type"]), item["raw_object"]
    finally:
        watcher.stop()
    if isinstance(failure, k8s.ApiException) and failure.status == 410:
        raise _Expired()
    if failure is not None:
        raise failure  # ApiException/unreachable: mapped by the caller; anything else is a bug


async def _list(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kw: dict[str, Any],
    resource: str,
    namespace: str,
    page_size: int | None,
) -> tuple[list[RawObject], str]:
    items: list[RawObject] = []
    token: str | None = None
    rv = ""
    while True:
        page_kw = dict(kw)
        if page_size:
            page_kw["limit"] = page_size
        if token:
            page_kw["_continue"] = token
        data = await call_raw("list", resource, namespace, fn, *args, **page_kw)
        items += [i for i in data.get("items") or [] if isinstance(i, dict)]
        meta = data.get("metadata") or {}
        rv = str(meta.get("resourceVersion") or rv)
        token = meta.get("continue") or None
        if not token:
            return items, rv or "0"


def _key(obj: RawObject) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace', '')}/{meta.get('name', '')}")


def _remember(known: dict[str, RawObject], kind: str, obj: RawObject) -> None:
    if kind == "DELETED":
        known.pop(_key(obj), None)
        return
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    known[_key(obj)] = {"metadata": meta}


def _diff(known: dict[str, RawObject], items: list[RawObject]) -> list[tuple[str, RawObject]]:
    """A (re-)list as changes against what was yielded before; updates ``known``."""
    changes: list[tuple[str, RawObject]] = []
    listed: set[str] = set()
    for obj in items:
        key = _key(obj)
        listed.add(key)
        before = known.get(key)
        if before is None:
            changes.append(("ADDED", obj))
        elif _version(before) != _version(obj):
            changes.append(("MODIFIED", obj))
        else:
            continue
        _remember(known, "MODIFIED", obj)
    for key in [k for k in known if k not in listed]:
        changes.append(("DELETED", known.pop(key)))
    return changes


def _version(obj: RawObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
