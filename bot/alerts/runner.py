"""Alerts, composed: sources -> incident engine -> durable outbox -> chat.

``start()`` is what ``chatops serve`` calls. It builds the incident engine from the settings
(grace period, re-announce interval, routes), loads open incidents and pending outbox rows from
the store (so alerts accepted before a crash go out now, once), starts the delivery worker, the
Argo CD application watch and the Kubernetes Warning-event watch when those are configured, a
timer loop for grace periods and recovery holds, and an apscheduler job that re-announces
unacknowledged incidents. It registers ``ack`` (``bot.alerts.ack``) on the dispatcher it is given
(with a Lease, ``bot.server.leadership`` registers it for every replica instead). It knows
nothing of the webhook endpoint: the server wiring hands the runner to it
(``WebhookEndpoint.attach``), since both live as long as the server.

Every source ends in ``AlertRunner.ingest``: webhook requests one by one (awaiting the commit),
watch signals through a queue drained in batches (one commit per batch, whatever the storm).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot.alerts import ack, incident_metrics, sync_metrics, watches
from bot.alerts import sinks as sink_factory
from bot.alerts.ack import CommandRegistry
from bot.alerts.alert_metrics import AlertMetrics
from bot.metrics import Registry
from bot.settings import Settings
from bot.state.acks import AckOutcome
from bot.state.alerts import AlertStore
from bot.state.store import Store
from commands.argocd.app import tree_problems
from commands.context import Services, resolve
from commands.results import Result
from notifiers.alert import CommitRef, ResourceProblem
from notifiers.delivery import ChatSink, Clock, Deliverer, DeliveryPolicy, OutboxItem
from notifiers.incidents.engine import Engine
from notifiers.incidents.model import Policy, Signal
from notifiers.routing import Router

log = logging.getLogger(__name__)

SIGNAL_BATCH = 1000
GAUGE_EVERY = 10.0


@dataclass(frozen=True)
class AlertOptions:
    """What the settings do not cover (tests and benchmarks tune these)."""

    policy: Policy | None = None  # default: from settings (grace, re-announce)
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)  # horizon: from settings
    clock: Clock | None = None  # delivery's clock (tests run hours of backoff in seconds)
    engine_clock: Callable[[], float] = time.time  # the incidents' now (tests script their timing)
    watch_argocd: bool = True
    watch_events: bool = True
    reannounce_every: float | None = None  # how often to look; default min(60, interval / 4)
    kube_client: Any = None  # default: services.kube.api_client


class AlertRunner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        services: Services | None,
        sinks: Mapping[str, ChatSink],
        metrics: Registry | None,
        options: AlertOptions,
    ) -> None:
        self.settings = settings
        self.store = store
        self.services = services
        self.sinks = dict(sinks)
        self.options = options
        policy = options.policy or Policy(
            degraded_grace=settings.degraded_grace,
            reannounce_interval=settings.reannounce_interval,
        )
        defaults = {
            "slack": settings.slack_alert_channel,
            "discord": settings.discord_alert_channel,
        }
        router = Router(settings.routes, defaults, platforms=tuple(self.sinks))
        reg = metrics or Registry()
        self.engine: Engine = incident_metrics.MeasuredEngine(
            policy, router, ui_url=settings.ui_url, metrics=incident_metrics.IncidentMetrics(reg)
        )
        self.sync_metrics = sync_metrics.OperationMetrics(reg)
        self.alert_store: AlertStore | None = None
        self.deliverer: Deliverer | None = None
        self.app_watch: Any = None  # the default instance's (it correlates Warning events)
        self.app_watches: list[Any] = []  # one per Argo CD instance
        self.event_watch: Any = None  # the first cluster's (the default one without clusters)
        self.event_watches: list[Any] = []  # one per watched cluster
        self.autorollback: Any = None  # bot.alerts.autorollback.AutoRollback, with the watch
        self.registry = reg
        self._signals: asyncio.Queue[Signal] = asyncio.Queue(maxsize=100_000)
        self._wake = asyncio.Event()
        self._sleep_until: float | None = None  # None: until woken
        self._sleeping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._enriched: dict[int, None] = {}  # incident ids already looked up (ordered, bounded)
        self._scheduler: Any = None
        self.metrics = AlertMetrics(reg)

    def _observe(self, item: OutboxItem, outcome: str, age: float) -> None:
        self.metrics.outcome(item, outcome, age)
        self._delivery_gauges()

    def _delivery_gauges(self) -> None:
        if self.deliverer is not None:
            self.metrics.delivery(self.deliverer, self.sinks)

    async def _gauge_loop(self) -> None:
        """Waiting ages grow between delivery outcomes: refresh the gauges meanwhile."""
        while True:
            await asyncio.sleep(GAUGE_EVERY)
            self._delivery_gauges()

    def delivery_health(self) -> dict[str, Any]:
        """For /readyz detail: "ok", or "waiting" and which chat channels keep failing."""
        if self.deliverer is None:
            return {"state": "not started"}
        return self.deliverer.health()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, dispatcher: CommandRegistry | None = None) -> None:
        self.alert_store = await asyncio.to_thread(
            lambda: AlertStore(self.store, self.engine, clock=self.options.engine_clock)
        )
        pending, refs = await asyncio.to_thread(
            lambda: (self.alert_store.pending_items(), self.alert_store.thread_refs())  # type: ignore[union-attr]
        )
        delivery = self.options.delivery
        if delivery.horizon is None:
            delivery = replace(delivery, horizon=self.settings.delivery_horizon)
        self.deliverer = Deliverer(
            self.sinks,
            self.alert_store,
            delivery,
            refs=refs,
            observe=self._observe,
            clock=self.options.clock,
        )
        if pending:
            log.info("alerts: %d message(s) from before the restart are pending", len(pending))
        self.deliverer.enqueue(pending)
        self._delivery_gauges()
        loop = asyncio.get_running_loop()
        self._tasks += [
            loop.create_task(self._timer_loop(), name="alert-timers"),
            loop.create_task(self._signal_loop(), name="alert-signals"),
            loop.create_task(self._gauge_loop(), name="alert-delivery-gauges"),
        ]
        self._start_scheduler()
        if dispatcher is not None:
            ack.register(dispatcher, self.ack_command)
        self.app_watches, self.app_watch, self.event_watches = watches.start(
            self.settings,
            self.services,
            self.signal,
            self._put_nowait,
            watch_argocd=self.options.watch_argocd,
            watch_events=self.options.watch_events,
            kube_client=self.options.kube_client,
            operations=self._operations,
        )
        self.event_watch = self.event_watches[0] if self.event_watches else None
        if self.app_watches and self.services is not None:
            # before the watches' first event (no await since they started): the policy sees all
            self._start_autorollback(self.services)  # it follows every instance

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        every = self.options.reannounce_every or min(
            60.0, self.engine.policy.reannounce_interval / 4
        )
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_job(
            self.reannounce, "interval", seconds=every, id="alerts-reannounce", coalesce=True
        )
        self._scheduler.add_job(self.purge, "interval", hours=1, id="alerts-purge", coalesce=True)
        self._scheduler.start()

    def _operations(self, instance: str) -> sync_metrics.OperationMetrics:
        """The sync-duration metrics of one Argo CD instance's watch (they share the series)."""
        if instance in ("", sync_metrics.DEFAULT_INSTANCE):
            return self.sync_metrics
        return sync_metrics.OperationMetrics(self.registry, instance=instance)

    def _start_autorollback(self, services: Services) -> None:
        from bot.alerts import autorollback as ar

        threads = ar.IncidentThreads(lambda: self.alert_store, self._after)
        self.autorollback = ar.AutoRollback(
            self.settings, self.store, services, threads, self.registry
        )
        for watch in self.app_watches:
            watch.observers.append(self.autorollback.observer(services.on(watch.instance)))

    async def close(self) -> None:
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.shutdown(wait=False)
        for watch in self.app_watches:
            await watch.close()
        if self.autorollback is not None:
            await self.autorollback.close()
        for event_watch in self.event_watches:
            await event_watch.close()
        for t in [*self._tasks, *self._background]:
            t.cancel()
        for t in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.deliverer is not None:
            await self.deliverer.close()
        if self.alert_store is not None:
            await asyncio.to_thread(self.alert_store.close)
        await sink_factory.close(self.sinks)

    # -- input ----------------------------------------------------------------------------
    async def ingest(self, signals: Iterable[Signal], dedup_key: str | None = None) -> str:
        """Store what the signals cause; returns "accepted" or "duplicate" once committed."""
        assert self.alert_store is not None, "AlertRunner.start() first"
        signals = list(signals)
        for s in signals:
            self.metrics.signals.inc(source=s.source)
        result = await self.alert_store.ingest(signals, dedup_key)
        self._after(result.items)
        return result.status

    async def signal(self, signals: list[Signal]) -> None:
        """From a watch on the event loop: queued, stored in batches."""
        for s in signals:
            await self._signals.put(s)

    def _put_nowait(self, signals: list[Signal]) -> None:
        for s in signals:
            try:
                self._signals.put_nowait(s)
            except asyncio.QueueFull:
                log.error("alert signal queue is full; dropping a %s signal", s.kind)

    async def _signal_loop(self) -> None:
        while True:
            batch = [await self._signals.get()]
            while len(batch) < SIGNAL_BATCH and not self._signals.empty():
                batch.append(self._signals.get_nowait())
            try:
                await self.ingest(batch)
            except Exception:
                log.exception("storing %d watch signal(s) failed", len(batch))

    def _after(self, items: list[OutboxItem]) -> None:
        for item in items:
            if item.op == "post" and item.incident_id not in self._enriched:
                self._enriched[item.incident_id] = None
                while len(self._enriched) > 10_000:
                    del self._enriched[next(iter(self._enriched))]
                task = asyncio.get_running_loop().create_task(self._enrich(item))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        if items and self.deliverer is not None:
            self.deliverer.enqueue(items)
            self.metrics.pending.set(self.deliverer.pending())
        self.metrics.open.set(len(self.engine.incidents))
        try:
            due = self.engine.next_deadline()
        except IndexError:  # the heap changed under us on the writer thread
            due = None
        if (
            due is not None
            and self._sleeping
            and (self._sleep_until is None or due < self._sleep_until)
        ):
            self._wake.set()

    async def _enrich(self, item: OutboxItem) -> None:
        """Details worth a lookup once an incident is announced: which resources are Degraded
        and why (the resource tree), and who wrote the deployed commit (the Git host). They
        arrive as an edit, or inside the post if it has not gone out yet."""
        services, alert = self.services, item.alert
        if services is None:
            return
        resources: tuple[ResourceProblem, ...] = ()
        commit = None
        if alert.kind == "degraded":
            try:
                svc, qualified = await resolve(services, alert.app)
                nodes = await asyncio.wait_for(svc.argocd.resource_tree(qualified), 20)
                resources = tuple(
                    ResourceProblem(p.kind, p.name, p.namespace, p.status, p.message)
                    for p in tree_problems(nodes)
                )[:200]
            except Exception as e:
                log.info("alerts: no resource tree for %s (%s)", alert.app, type(e).__name__)
        if services.git is not None and alert.revision and alert.commit is None:
            try:
                info = await asyncio.wait_for(services.git.commit(alert.revision), 20)
                commit = CommitRef(info.sha, info.author, info.subject)
            except Exception as e:
                log.info("alerts: no commit details for %s (%s)", alert.app, type(e).__name__)
        if resources or commit is not None:
            await self.ingest(
                [
                    Signal(
                        kind="info",
                        app=alert.app,
                        instance=alert.instance,
                        source="enrich",
                        resources=resources,
                        commit=commit,
                    )
                ]
            )

    # -- time -----------------------------------------------------------------------------
    async def _timer_loop(self) -> None:
        assert self.alert_store is not None
        while True:
            try:
                due = await self.alert_store.next_deadline()
                self._sleep_until = due
                timeout = None if due is None else max(0.0, due - self.options.engine_clock())
                self._sleeping = True
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                finally:
                    self._sleeping = False
                self._wake.clear()
                self._after(await self.alert_store.tick())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert timers failed; retrying in 5 s")
                await asyncio.sleep(5)

    async def reannounce(self) -> None:
        if self.alert_store is not None:
            self._after(await self.alert_store.reannounce())

    async def purge(self) -> None:
        if self.alert_store is not None:
            await self.alert_store.purge()

    # -- the "ack" command (bot.alerts.ack) ----------------------------------------------------
    async def ack_command(self, inv: Any, args: list[str]) -> Result:
        return ack.result(await self.apply_ack(ack.incident_ref(args), ack.who(inv)))

    async def apply_ack(self, ref: str, by: str) -> AckOutcome:
        """Acknowledge ``ref`` in this runner's engine (the leader's: ``ack`` from any replica
        ends here, directly or through the store's queue)."""
        assert self.alert_store is not None, "AlertRunner.start() first"
        return await ack.apply(self.alert_store, self._after, ref, by)


async def start(
    settings: Settings,
    store: Store,
    services: Services | None,
    sinks: Mapping[str, Any] | None = None,
    metrics: Registry | None = None,
    dispatcher: CommandRegistry | None = None,
    *,
    options: AlertOptions | None = None,
) -> AlertRunner:
    """Start alerting; ``await runner.close()`` stops it. ``sinks`` values that are not
    ChatSinks (or are None) are replaced by sinks built from the settings."""
    runner = AlertRunner(
        settings,
        store,
        services,
        sink_factory.choose(settings, sinks),
        metrics,
        options or AlertOptions(),
    )
    await runner.start(dispatcher)
    log.info(
        "alerts: sinks %s; watching %s; %d incident(s) active",
        ", ".join(sorted(runner.sinks)) or "NONE (alerts are stored, not sent)",
        watches.describe(runner.app_watches, runner.event_watches),
        len(runner.engine.incidents),
    )
    return runner
