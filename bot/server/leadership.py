"""Two replicas, one voice: who runs the singletons when replicas share a PostgreSQL store.

Every replica serves HTTP (Slack events and interactions, Argo CD webhooks, health, metrics) and
runs Slack. Only the holder of the ``coordination.k8s.io/v1`` Lease (``bot.state.leader``) runs
what must exist once: the alert runner (Application and Event watches, incident engine, outbox
delivery, re-announcements), the self-heal scheduler, the Discord gateway session (two sessions
of one token would both receive each interaction) and the drains of the webhook inbox and of
the ack queue.

Webhooks: a follower (and a leader between terms) hands ``POST /webhooks/argocd`` to the
``Inbox``, which answers 202 once the signals are committed to the shared store; the leader's
drain feeds them to its engine under the same de-duplication key. On ``on_start`` the endpoint is
attached to the runner, on ``on_stop`` back to the inbox BEFORE the runner closes, so no request
finds a closed runner.

Acks: ``ack`` works on every replica. The leader applies it to its engine at once; a follower
queues it in the store (``bot.state.acks``), which the leader drains, and answers with the
leader's words once applied, or says it is queued if no leader applied it within a few seconds.

Delivery is the leader's alone, not claimed row by row with ``FOR UPDATE SKIP LOCKED``: the
deliverer keeps per-channel state in memory (rate buckets, coalesced edits, thread roots, the
probe of a failing channel), which two deliverers would each get wrong. Sent once across a
handover because the old leader stops its deliverer when it steps down, which the elector does
within the renew deadline, before the Lease can expire for anyone else (renew deadline < lease
duration); on SIGTERM the Lease is released only after the singletons have stopped. Only a chat
call in flight at a kill -9 can be repeated (the chat APIs take no idempotency key).

Without ``shared_state`` (SQLite) nothing here runs: the singletons start directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bot.alerts import ack
from bot.alerts.runner import AlertRunner
from bot.alerts.webhooks import WebhookEndpoint
from bot.metrics import Registry
from bot.settings import ConfigError, Settings
from bot.state.acks import AckQueue, Apply
from bot.state.inbox import Inbox
from bot.state.leader import LeaderElector, Timings, identity
from bot.state.store import Store

log = logging.getLogger("chatops.serve")

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RESCAN_INTERVAL = 10.0  # the leader's look at timers other replicas wrote (vs 60 s alone)


class Singletons(Protocol):
    """What the leader runs (``bot.server.singletons``): ``start`` returns where webhooks go."""

    async def start_singletons(self) -> AlertRunner | None: ...

    async def stop_singletons(self) -> None: ...


def lease_namespace(settings: Settings, sa_file: Path = SA_NAMESPACE) -> str:
    """``CHATOPS_LEASE_NAMESPACE``, else the pod's own namespace; required outside a cluster."""
    if settings.lease_namespace:
        return settings.lease_namespace
    try:
        namespace = sa_file.read_text().strip()
    except OSError:
        namespace = ""
    if not namespace:
        raise ConfigError(
            [
                "CHATOPS_LEASE_NAMESPACE: leader election (on with a PostgreSQL store) needs the "
                "namespace of its Lease; set it when running outside a Kubernetes pod."
            ]
        )
    return namespace


class Leadership:
    """The Lease, the singletons it gates, the inbox, and ``chatops_leader`` in /metrics."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Registry,
        *,
        api_client: Any,
        singletons: Singletons,
        webhook: WebhookEndpoint | None,
        timings: Timings | None = None,
        inbox_poll: float = 0.5,
    ) -> None:
        if api_client is None:
            raise ConfigError(
                [
                    "Leader election (on with a PostgreSQL store) needs Kubernetes access: run in "
                    "a pod with a service account, or set KUBECONFIG."
                ]
            )
        self.identity = identity(settings.instance_id)
        self.namespace = lease_namespace(settings)
        self.name = settings.lease_name
        self.singletons = singletons
        self.webhook = webhook
        self.inbox = Inbox(store)
        self.inbox_poll = inbox_poll
        self.acks = AckQueue(store)
        self.ack = ack.AnyReplica(self.acks, self._local_ack, lambda: self.elector.holder or None)
        self.elector = LeaderElector(
            api_client,
            name=self.name,
            namespace=self.namespace,
            identity=self.identity,
            timings=timings
            or Timings(
                settings.lease_duration, settings.lease_renew_deadline, settings.lease_retry_period
            ),
            on_start=self._on_start,
            on_stop=self._on_stop,
        )
        self._drains: list[asyncio.Task[None]] = []
        self._runner: AlertRunner | None = None
        self.active = False  # this replica's singletons are up (set after they started)
        self._m_leader = metrics.gauge(
            "chatops_leader", "1 on the replica that holds the Lease, 0 on others", ("instance",)
        )
        self._m_terms = metrics.counter(
            "chatops_leader_transitions_total", "Times this replica became the leader"
        )
        self._m_leader.set(0, instance=self.identity)

    def describe(self) -> str:
        return f"leader election on Lease {self.namespace}/{self.name} as {self.identity}"

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader

    def state(self) -> dict[str, object]:
        """For /readyz detail: this replica's role and who leads."""
        return {
            "role": "leader" if self.is_leader else "follower",
            "instance": self.identity,
            "leader": self.elector.holder,
        }

    def leader_only(self, check: Callable[[], str | None]) -> Callable[[], str | None]:
        """A readiness check of a singleton: a follower serves HTTP and is ready without it."""
        return lambda: check() if self.is_leader else None

    def register_ack(self, commands: ack.CommandRegistry | None) -> None:
        """``ack`` once, for every term, on every replica: applied here while this replica
        leads, else queued in the store for the leader (``bot.alerts.ack``)."""
        if commands is not None:
            ack.register(commands, self.ack)

    def _local_ack(self) -> Apply | None:
        runner = self._runner
        return runner.apply_ack if runner is not None and self.is_leader else None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.webhook is not None:
            self.webhook.attach(self.inbox)
        self.elector.start()

    async def stop(self) -> None:
        """Step down (singletons stop) and release the Lease: the other replica takes over at
        once instead of after the lease duration."""
        await self.elector.stop()
        await self._stop_drain()

    async def _on_start(self) -> None:
        self._m_leader.set(1, instance=self.identity)
        self._m_terms.inc()
        runner = await self.singletons.start_singletons()
        if runner is not None:
            self._runner = runner
            if self.webhook is not None:
                self.webhook.attach(runner)
            self._drains = [
                asyncio.create_task(
                    self.inbox.run(runner.ingest, self.inbox_poll), name="webhook-inbox"
                ),
                asyncio.create_task(self.acks.run(runner.apply_ack), name="ack-queue"),
            ]
        self.active = True

    async def _on_stop(self) -> None:
        self.active = False
        self._m_leader.set(0, instance=self.identity)
        if self.webhook is not None:
            self.webhook.attach(self.inbox)  # before the runner closes: no request finds it closed
        self._runner = None
        await self._stop_drain()
        await self.singletons.stop_singletons()

    async def _stop_drain(self) -> None:
        tasks, self._drains = self._drains, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
