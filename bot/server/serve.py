"""``chatops serve``: one asyncio process composing everything that is configured.

Order matters in both directions. Start: store -> Argo CD/Kubernetes/Git clients -> dispatcher
-> HTTP server (probes, Slack events, Argo CD webhooks) -> Slack (auth.test; HTTP or Socket Mode)
-> Discord -> alerts -> self-heal timers. Stop (SIGTERM/SIGINT): stop accepting (close the
listener and the Socket Mode connection, refuse new commands), let running commands finish or
record them as interrupted, then close the chat clients, the scheduler and the store.

What is missing is not fatal: the bot starts with what it has and says at start-up, one line per
feature, what is enabled and what is not (never a secret). ``/readyz`` is 503, naming the
integration, while the store is closed, Argo CD is not configured, or an enabled integration is
down: Slack's auth.test has not succeeded (retried in the background), the Discord gateway is
not connected (its start is retried with capped backoff), the alert pipeline failed to start, or
a watch is failing.

With a PostgreSQL store (``Settings.shared_state``) several replicas run side by side: every one
serves HTTP and Slack, and only the holder of the Lease runs the singletons (alerts, self-heal
timers, Discord, the webhook inbox drain): ``bot.server.leadership``. Their readiness checks then
apply on the leader only. With SQLite the singletons start directly, as one replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bot import logs
from bot.alerts import runner as alert_runner
from bot.alerts import webhooks
from bot.chat.discord_supervisor import DiscordSupervisor
from bot.chat.dispatch import Dispatcher
from bot.chat.slack import SlackAdapter
from bot.chat.slack_web import group_resolver, make_client
from bot.metrics import Registry
from bot.server import leadership, wiring
from bot.server.http import HttpServer, Probes, build_app
from bot.server.singletons import Singletons
from bot.settings import ConfigError, Settings
from bot.state.leader import Timings, identity
from bot.state.locks import OperationLocks
from bot.state.replay import ReplayGuard
from bot.state.scheduler import RESCAN_INTERVAL, SelfHealScheduler
from bot.state.store import Store, StoreError, open_store
from commands.context import Services

log = logging.getLogger("chatops.serve")

DRAIN_TIMEOUT = 25.0  # Kubernetes' default grace period is 30 s


class Bot:
    """Everything ``chatops serve`` runs. ``host``/``port`` override ``CHATOPS_LISTEN`` (tests
    and the benchmark listen on port 0); ``kube_client`` replaces in-cluster/KUBECONFIG;
    ``lease_timings`` replaces the settings' (tests hand over in about a second)."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        kube_client: Any | None = None,
        clock: Callable[[], float] = time.time,
        drain_timeout: float = DRAIN_TIMEOUT,
        lease_timings: Timings | None = None,
    ) -> None:
        self.settings = settings
        self.host = host if host is not None else settings.listen_host
        self.port = port if port is not None else settings.listen_port
        self.kube_client = kube_client
        self.clock = clock
        self.drain_timeout = drain_timeout
        self.lease_timings = lease_timings
        self.leadership: leadership.Leadership | None = None
        self.metrics = Registry()
        self.probes = Probes()
        self.store: Store | None = None
        self.services: Services | None = None
        self.dispatcher: Dispatcher | None = None
        self.http: HttpServer | None = None
        self.slack: SlackAdapter | None = None
        self.scheduler: SelfHealScheduler | None = None
        self.singletons: Singletons | None = None  # Discord, alerts: after HTTP and Slack
        self.webhook: webhooks.WebhookEndpoint | None = None
        self.replays: ReplayGuard | None = None
        self._session: aiohttp.ClientSession | None = None
        self._store_open = False
        self.enabled: dict[str, str] = {}  # feature -> one line, for the start-up log

    @property
    def discord(self) -> DiscordSupervisor | None:
        return self.singletons.discord if self.singletons is not None else None

    @property
    def alerts(self) -> alert_runner.AlertRunner | None:
        return self.singletons.alerts if self.singletons is not None else None

    @property
    def url(self) -> str:
        assert self.http is not None
        return self.http.url

    # -- start ---------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        try:
            self.store = await asyncio.to_thread(open_store, s)
        except StoreError as e:
            raise ConfigError([str(e)]) from None
        except OSError as e:
            raise ConfigError(
                [f"CHATOPS_STATE_DB: cannot open {s.state_db} ({e.strerror or e})."]
            ) from None
        self._store_open = True
        self.enabled["state"] = f"{s.state_db}"
        self.probes.add("store", lambda: None if self._store_open else "the store is closed")
        self.probes.add(
            "argocd",
            lambda: (
                None
                if self.services is not None
                else "Argo CD is not configured (CHATOPS_ARGOCD_URL, CHATOPS_ARGOCD_TOKEN)"
            ),
        )
        self._build_services()
        self.replays = ReplayGuard(self.store, metrics=self.metrics)

        slack_client = None
        if s.slack_bot_token is not None:
            self._session = aiohttp.ClientSession()
            slack_client = make_client(s, self._session)
        locks = OperationLocks(self.store, identity(s.instance_id))
        if not s.shared_state:
            # alone on its SQLite file: a lock row left by a killed process is nobody's
            await asyncio.to_thread(self.store.execute, "DELETE FROM op_locks")
        self.dispatcher = Dispatcher(
            s,
            self.services,
            self.store,
            slack_groups=group_resolver(slack_client) if slack_client is not None else None,
            metrics=self.metrics,
            clock=self.clock,
            locks=locks,
        )
        if self.services is not None:
            self.scheduler = SelfHealScheduler(
                self.store,
                self.services,
                announce=self.announce,
                clock=self.clock,
                rescan_interval=(leadership.RESCAN_INTERVAL if s.shared_state else RESCAN_INTERVAL),
            )
            self.services.timers = self.scheduler.timers()

        app = build_app(self.metrics, self.probes, wiring.http_limits(s))
        if slack_client is not None:
            self._setup_slack(slack_client)
            if self.slack is not None and not self.slack.socket_mode:
                self.slack.mount(app)
        else:
            self.enabled["slack"] = "off (CHATOPS_SLACK_BOT_TOKEN is not set)"
        self._mount_webhooks(app)
        self.http = HttpServer(app, self.host, self.port)
        await self.http.start()
        where = ", ".join(self.http.bound) or self.http.url
        self.enabled["http"] = f"listening on {where} (/healthz /readyz /metrics)"

        await self._start_slack()
        self.singletons = Singletons(
            s,
            store=self.store,
            services=self.services,
            dispatcher=self.dispatcher,
            scheduler=self.scheduler,
            slack=self.slack,
            webhook=self.webhook,
            replays=self.replays,
            metrics=self.metrics,
            probes=self.probes,
            enabled=self.enabled,
            gated=s.shared_state,
        )
        self.singletons.add_probes()
        if s.shared_state:
            self.leadership = leadership.Leadership(
                s,
                self.store,
                self.metrics,
                api_client=self._lease_client(),
                singletons=self.singletons,
                webhook=self.webhook,
                timings=self.lease_timings,
            )
            self.probes.add_detail("leadership", self.leadership.state)
            self.leadership.register_ack(self.dispatcher)
            log.info("%s", self.leadership.describe())
            for feature in ("discord", "alerts", "timers"):
                self.enabled.setdefault(feature, "on the leader only")
        else:
            log.info("single replica (SQLite)")
            self.metrics.gauge(
                "chatops_leader",
                "1 on the replica that holds the Lease, 0 on others",
                ("instance",),
            ).set(1, instance=identity(s.instance_id))
            await self.singletons.start_singletons()
        for feature, line in self.enabled.items():
            log.info("%s: %s", feature, line)
        if self.leadership is not None:
            self.leadership.start()
        # Everything imported and built so far lives as long as the process. Without this, a
        # full (generation 2) collection walks all of it, a ~40 ms pause that lands in the
        # middle of a burst of commands and delays every ack queued behind it.
        gc.collect()
        gc.freeze()

    def _build_services(self) -> None:
        s = self.settings
        if not s.argo_instances:
            self.enabled["argocd"] = (
                "MISSING (set CHATOPS_ARGOCD_URL and CHATOPS_ARGOCD_TOKEN); "
                "commands answer that Argo CD is not configured"
            )
            return
        assert self.store is not None
        try:
            self.services = wiring.services(s, store=self.store, kube_client=self.kube_client)
        except ConfigError as e:
            self.enabled["argocd"] = f"MISSING ({'; '.join(e.problems)})"
            return
        self.services.now = self.clock
        self.enabled["argocd"] = ", ".join(
            f"{i.name} {wiring.safe_url(i.url)}"
            if len(s.argo_instances) > 1
            else wiring.safe_url(i.url)
            for i in s.argo_instances
        )
        self.enabled["kubernetes"] = (
            "configured" + ("" if s.kube_exec else " (exec off)")
            if self.services.kube is not None
            else "not configured (hooks and verify-rootless are unavailable)"
        )
        self.enabled["git"] = (
            f"{s.git_provider} {s.git_repo} (rollback enabled)"
            if self.services.git is not None
            else "not configured (rollback unavailable: set CHATOPS_GIT_REPO, CHATOPS_GIT_TOKEN)"
        )

    def _setup_slack(self, client: Any) -> None:
        s = self.settings
        assert self.dispatcher is not None
        if s.slack_app_token is None and s.slack_signing_secret is None:
            self.enabled["slack"] = (
                "off (HTTP mode needs CHATOPS_SLACK_SIGNING_SECRET; "
                "or set CHATOPS_SLACK_APP_TOKEN for Socket Mode)"
            )
            return
        self.slack = SlackAdapter(s, self.dispatcher, client, replays=self.replays)
        self.probes.add("slack", self.slack.auth_problem)

    async def _start_slack(self) -> None:
        slack = self.slack
        if slack is None:
            return
        try:
            me = await slack.start()
            who = f"as {me.get('user', '?')} in {me.get('team_id', '?')}"
        except Exception as e:
            # auth.test is retried on the first request; until then Slack users are refused
            who = f"auth.test failed ({type(e).__name__}), retried on the first request"
        if slack.socket_mode:
            try:
                await slack.start_socket_mode()
                self.enabled["slack"] = f"Socket Mode (connecting in the background), {who}"
            except Exception as e:
                self.enabled["slack"] = f"Socket Mode FAILED to connect ({type(e).__name__})"
        else:
            self.enabled["slack"] = f"HTTP mode at POST /slack/events, {who}"
        if not self.settings.slack_alert_channel:
            self.enabled["slack"] += "; no CHATOPS_SLACK_ALERT_CHANNEL (no announcements)"

    def _mount_webhooks(self, app: Any) -> None:
        """The route goes on the app now (before it starts); the endpoint answers 503 until
        ``_start_alerts`` attaches the runner to it."""
        try:
            self.webhook = webhooks.register(app, self.settings, metrics=self.metrics)
            self.enabled["webhooks"] = (
                "POST /webhooks/argocd"
                if self.webhook is not None
                else "off (CHATOPS_WEBHOOK_TOKEN is not set)"
            )
        except Exception as e:
            log.exception("webhooks could not be mounted")
            self.enabled["webhooks"] = f"FAILED ({type(e).__name__})"

    def _lease_client(self) -> Any:
        if self.kube_client is not None:
            return self.kube_client
        if self.services is not None and self.services.kube is not None:
            return self.services.kube.api_client
        return wiring.kube_api_client()

    # -- announcements (the scheduler's "self-heal is back on") -----------------------------------
    async def announce(self, text: str) -> None:
        sent = False
        channel = self.settings.slack_alert_channel
        if self.slack is not None and channel:
            await self.slack.say(channel, text)
            sent = True
        if self.discord is not None and await self.discord.announce(text):
            sent = True
        if not sent:
            log.info("announcement (no alert channel configured): %s", text)

    # -- stop ------------------------------------------------------------------------------------
    async def stop(self) -> None:
        log.info("shutting down: no new requests; waiting for running commands")
        if self.http is not None:
            await self.http.stop()  # stop accepting; requests being handled finish
        if self.leadership is not None:
            await self.leadership.stop()  # singletons stop, the Lease is released: hand over now
        if self.slack is not None and self.slack.socket_mode:
            await self.slack.close()
        if self.dispatcher is not None:
            await self.dispatcher.drain(self.drain_timeout)
        if self.slack is not None:
            await self.slack.drain(5.0)
        if self.singletons is not None:
            await self.singletons.stop_singletons()
        if self.slack is not None:
            try:
                await self.slack.close()
            except Exception:
                log.exception("closing slack failed")
        if self._session is not None:
            await self._session.close()
        if self.services is not None:
            await wiring.close(self.services)
            if self.services.kube is not None and self.kube_client is None:
                with contextlib.suppress(Exception):
                    self.services.kube.api_client.close()
        if self.store is not None:
            self._store_open = False
            self.store.close()
        log.info("stopped")


async def run(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    bot = Bot(settings)
    try:
        try:
            await bot.start()
        except BaseException:
            await bot.stop()
            raise
        try:
            await stop.wait()
            log.info("signal received")
        finally:
            await bot.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0


def main(settings: Settings) -> int:
    logs.setup(settings)
    try:
        return asyncio.run(run(settings))
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the listen port is taken
        log.error("cannot serve: %s", e)
        return 1
