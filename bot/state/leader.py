"""Leader election through a ``coordination.k8s.io/v1`` Lease, the mechanism controllers use.

Several replicas serve HTTP; only one may run the singletons (the Application and Event watches,
the scheduler, the Discord gateway). Whoever holds the Lease leads. The rules follow client-go's
``leaderelection`` package, so the bot behaves like the controllers operators already know:

- A Lease held by someone else counts as expired only when this replica has seen the SAME record
  (holder and renewTime unchanged) for ``lease_duration`` by its own clock: clocks of different
  nodes are never compared.
- Every write is a compare-and-swap on ``metadata.resourceVersion``; a 409 Conflict means someone
  else wrote first, and the loop re-reads instead of overwriting.
- The leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` it steps down
  at once (the singletons stop) before anyone else can take over (``renew_deadline <
  lease_duration``), so two replicas never lead together.
- On shutdown the leader releases the Lease (empty holder, duration 1 s), so a rolling update
  hands over without waiting out the lease.

The official client is synchronous: its calls run in threads so the event loop never waits on the
API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Timings:
    """client-go's defaults: lease 15 s, renew deadline 10 s, retry 2 s."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def check(self) -> Timings:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration "
                f"(got {self.retry_period}, {self.renew_deadline}, {self.lease_duration})"
            )
        return self


@dataclass(frozen=True)
class _Record:
    holder: str
    renew_time: str
    duration: int
    transitions: int
    resource_version: str


def identity(configured: str | None) -> str:
    """This replica's name in the Lease and in lock rows: ``CHATOPS_INSTANCE_ID`` (the pod name,
    from the downward API), else the hostname (which is the pod name in Kubernetes too)."""
    return configured or socket.gethostname()


def _now_micro() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    """Takes and keeps one Lease; calls ``on_start`` when leading and ``on_stop`` when not."""

    def __init__(
        self,
        api_client: Any,
        *,
        name: str,
        namespace: str,
        identity: str,
        timings: Timings | None = None,
        on_start: Callback | None = None,
        on_stop: Callback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client

        self._api = client.CoordinationV1Api(api_client)
        self._models = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self.timings = (timings or Timings()).check()
        self._on_start, self._on_stop = on_start, on_stop
        self._clock = clock
        self.leading = asyncio.Event()
        self.holder: str | None = None  # last holder seen, for /metrics and logs
        self.transitions = 0
        self._observed: _Record | None = None
        self._observed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.name}")

    async def stop(self) -> None:
        """Stop campaigning; release the Lease if held (a rolling update hands over at once)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.leading.is_set():
            await self._step_down("shutting down")
            with contextlib.suppress(Exception):
                await self._release()

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    # -- the loop --------------------------------------------------------------------------------
    async def _run(self) -> None:
        t = self.timings
        while not self._stopping:
            if not self.leading.is_set():
                if await self._try("acquire"):
                    await self._become_leader()
                    continue
                await asyncio.sleep(t.retry_period)
                continue
            deadline = self._clock() + t.renew_deadline
            renewed = False
            while self._clock() < deadline:
                await asyncio.sleep(t.retry_period)
                if await self._try("renew"):
                    renewed = True
                    break
                if self.holder not in (None, self.identity):
                    break  # someone else holds it now: no point waiting out the deadline
            if not renewed:
                await self._step_down(f"could not renew within {t.renew_deadline:g}s")

    async def _try(self, why: str) -> bool:
        try:
            return await asyncio.to_thread(self._try_sync)
        except Exception as e:  # API unreachable, 5xx, 403: keep campaigning, say why once
            text = f"{type(e).__name__}: {_reason(e)}"
            if text != self.last_error:
                log.warning(
                    "leader election: %s of Lease %s/%s failed: %s",
                    why,
                    self.namespace,
                    self.name,
                    text,
                )
            self.last_error = text
            return False

    def _try_sync(self) -> bool:
        """One client-go ``tryAcquireOrRenew``: True when this replica holds the Lease after it."""
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            try:
                self._api.create_namespaced_lease(self.namespace, self._body(None, 0))
            except ApiException as ce:
                if ce.status == 409:  # created by someone else meanwhile
                    return False
                raise
            self._observe(_Record(self.identity, "", 0, 0, ""))
            self.last_error = None
            return True
        record = _record(lease)
        self._observe(record)
        if record.holder and record.holder != self.identity:
            expires = self._observed_at + max(record.duration, 1)
            if self._clock() < expires:
                return False
        transitions = record.transitions + (0 if record.holder == self.identity else 1)
        body = self._body(lease, transitions)
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as e:
            if e.status == 409:  # someone wrote first: re-read next time
                return False
            raise
        self.last_error = None
        return True

    def _observe(self, record: _Record) -> None:
        seen = self._observed
        if seen is None or (seen.holder, seen.renew_time) != (record.holder, record.renew_time):
            self._observed, self._observed_at = record, self._clock()
        self.holder = record.holder or None
        self.transitions = record.transitions

    def _body(self, current: Any, transitions: int) -> Any:
        m = self._models
        now = _now_micro()
        acquire = now
        if current is not None and current.spec is not None:
            if current.spec.holder_identity == self.identity and current.spec.acquire_time:
                acquire = current.spec.acquire_time
        meta = m.V1ObjectMeta(name=self.name, namespace=self.namespace)
        if current is not None:
            meta.resource_version = current.metadata.resource_version
            meta.labels = current.metadata.labels
        spec = m.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, round(self.timings.lease_duration)),
            acquire_time=acquire,
            renew_time=now,
            lease_transitions=transitions,
        )
        return m.V1Lease(metadata=meta, spec=spec)

    async def _release(self) -> None:
        def release() -> None:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = _now_micro()
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)

        await asyncio.to_thread(release)
        log.info("leader election: released Lease %s/%s", self.namespace, self.name)

    async def _become_leader(self) -> None:
        self.leading.set()
        self.holder = self.identity
        log.info(
            "leader election: %s now leads (Lease %s/%s)", self.identity, self.namespace, self.name
        )
        if self._on_start is not None:
            try:
                await self._on_start()
            except Exception:
                log.exception("starting the leader's work failed; stepping down")
                await self._step_down("start-up of the leader's work failed")
                with contextlib.suppress(Exception):
                    await self._release()

    async def _step_down(self, why: str) -> None:
        if not self.leading.is_set():
            return
        self.leading.clear()
        log.warning("leader election: %s stops leading: %s", self.identity, why)
        if self._on_stop is not None:
            try:
                await self._on_stop()
            except Exception:
                log.exception("stopping the leader's work failed")


def _record(lease: Any) -> _Record:
    spec = lease.spec
    renew = spec.renew_time if spec is not None else None
    return _Record(
        holder=(spec.holder_identity or "") if spec is not None else "",
        renew_time=renew.isoformat() if isinstance(renew, dt.datetime) else str(renew or ""),
        duration=int((spec.lease_duration_seconds or 0) if spec is not None else 0),
        transitions=int((spec.lease_transitions or 0) if spec is not None else 0),
        resource_version=str(lease.metadata.resource_version or ""),
    )


def _reason(e: Exception) -> str:
    status = getattr(e, "status", None)
    reason = getattr(e, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return str(e)[:200]
