"""The singletons: Discord, the alert pipeline and the self-heal timers, which exactly one
replica runs at a time.

Alone on SQLite that replica is the only one and they start with the server; with a shared
PostgreSQL store (``Settings.shared_state``) they start and stop with the Lease
(``bot.server.leadership`` calls ``start_singletons``/``stop_singletons``). Their readiness
checks apply only while this replica runs them. ``bot.server.serve.Bot`` builds one of these
after the HTTP server and Slack are up, and reads ``discord`` and ``alerts`` from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.alerts import runner as alert_runner
from bot.alerts import webhooks
from bot.chat.discord_supervisor import DiscordSupervisor
from bot.chat.dispatch import Dispatcher
from bot.chat.slack import SlackAdapter
from bot.metrics import Registry
from bot.server.http import Probes
from bot.settings import Settings
from bot.state.replay import ReplayGuard
from bot.state.scheduler import SelfHealScheduler
from bot.state.store import Store
from commands.context import Services

log = logging.getLogger("chatops.serve")


class Singletons:
    """Starts and stops the singletons and says, in ``enabled`` (the server's start-up lines),
    how each went. ``gated``: they run only while this replica holds the Lease."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        services: Services | None,
        dispatcher: Dispatcher,
        scheduler: SelfHealScheduler | None,
        slack: SlackAdapter | None,
        webhook: webhooks.WebhookEndpoint | None,
        replays: ReplayGuard | None,
        metrics: Registry,
        probes: Probes,
        enabled: dict[str, str],
        gated: bool,
    ) -> None:
        self.settings = settings
        self.store = store
        self.services = services
        self.dispatcher = dispatcher
        self.scheduler = scheduler
        self.slack = slack
        self.webhook = webhook
        self.replays = replays
        self.metrics = metrics
        self.probes = probes
        self.enabled = enabled
        self.gated = gated
        self._leads = not gated  # runs the singletons (always, alone)
        self.discord: DiscordSupervisor | None = None
        self.alerts: alert_runner.AlertRunner | None = None
        self._alerts_problem: str | None = None

    def add_probes(self) -> None:
        def leading(check: Callable[[], str | None]) -> Callable[[], str | None]:
            return lambda: check() if self._leads else None

        if self.settings.discord_token is not None:
            self.probes.add(
                "discord",
                leading(lambda: self.discord.problem() if self.discord else "not started yet"),
            )
        self.probes.add("alerts", leading(lambda: self._alerts_problem))
        self.probes.add("watches", leading(self._watch_problem))

    async def start_singletons(self) -> alert_runner.AlertRunner | None:
        """Discord, alerts, the self-heal timers; returns where webhooks go (the runner)."""
        self._leads = True
        await self._start_discord()
        await self._start_alerts()
        if self.scheduler is not None:
            pending = await self.scheduler.start()
            self.enabled["timers"] = f"self-heal timers: {pending} pending"
        else:
            self.enabled["timers"] = "self-heal timers: off (needs Argo CD)"
        if self.gated:
            for feature in ("discord", "alerts", "timers"):
                log.info("%s: %s", feature, self.enabled[feature])
        return self.alerts

    async def stop_singletons(self) -> None:
        """At once (a replica that lost the Lease must fall silent before another takes it)."""
        self._leads = False
        for name, part in (("scheduler", self.scheduler), ("alerts", self.alerts)):
            if part is None:
                continue
            try:
                await part.close()
            except Exception:
                log.exception("closing %s failed", name)
        discord, self.discord = self.discord, None
        self.alerts = None
        self._alerts_problem = None
        if discord is not None:
            try:
                await discord.close()
            except Exception:
                log.exception("closing discord failed")

    async def _start_discord(self) -> None:
        if self.settings.discord_token is None:
            self.enabled["discord"] = "off (CHATOPS_DISCORD_TOKEN is not set)"
            return
        self.discord = DiscordSupervisor.for_settings(
            self.settings, self.dispatcher, replays=self.replays
        )
        if await self.discord.start():
            self.enabled["discord"] = "gateway connecting" + (
                f", commands synced to guild {self.settings.discord_guild_id}"
                if self.settings.discord_guild_id
                else ""
            )
        else:
            self.enabled["discord"] = f"FAILED to start ({self.discord.error}); retrying"

    async def _start_alerts(self) -> None:
        sinks = {"slack": self.slack, "discord": self.discord}
        try:
            # with a Lease, ``ack`` is registered once, routed to whichever runner leads
            commands = None if self.gated else self.dispatcher
            self.alerts = await alert_runner.start(
                self.settings, self.store, self.services, sinks, self.metrics, commands
            )
            if self.webhook is not None and not self.gated:
                self.webhook.attach(self.alerts)
            self.enabled["alerts"] = "on"
            if hasattr(self.alerts, "delivery_health"):
                self.probes.add_detail("alert_delivery", self.alerts.delivery_health)
        except Exception as e:
            log.exception("alerts did not start")
            self._alerts_problem = f"failed to start ({type(e).__name__})"
            self.enabled["alerts"] = f"FAILED to start ({type(e).__name__})"

    def _watch_problem(self) -> str | None:
        """A watch that lost its stream and has not delivered since (it keeps reconnecting)."""
        app_watches = list(getattr(self.alerts, "app_watches", None) or [])  # one per instance
        several = len(app_watches) > 1
        watches = [(f"app_watch {w.instance}" if several else "app_watch", w) for w in app_watches]
        for w in getattr(self.alerts, "event_watches", None) or []:  # one per cluster
            watches.append((f"event_watch {w.cluster}" if w.cluster else "event_watch", w))
        failing = [
            f"{name}: {problem}"
            for name, watch in watches
            if (problem := getattr(watch, "failing", None))
        ]
        return "; ".join(failing) or None
