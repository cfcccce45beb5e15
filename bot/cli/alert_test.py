"""``chatops alert test``: send one sample alert the way ``serve`` sends real ones.

The same parts, not a shortcut: the routes of the settings pick the channels (``Router``), the
message is stored in the outbox of ``CHATOPS_STATE_DB`` (``AlertStore.enqueue``), and the
outbox ``Deliverer`` sends it through the sinks ``serve`` builds (``bot.alerts.sinks``), rendered
by the same renderers. So a wrong token, a channel the bot is not in or a route that sends the
app nowhere shows up here, with the platform's own error, before a real incident needs it.

Exit 0 when every target accepted the message, 1 when any did not (each target's outcome is a
fact of the result), 2 when nothing could be tried (no chat platform, no channel).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
from datetime import UTC, datetime

from bot.alerts import sinks as sink_factory
from bot.settings import ConfigError, Settings
from bot.state.alerts import TEST_INCIDENT, AlertStore
from bot.state.store import Store
from commands import errors, validation
from commands.results import Fact, Result, Status
from notifiers.alert import Alert, Severity
from notifiers.delivery import ChatSink, Deliverer, DeliveryPolicy, OutboxItem
from notifiers.incidents.engine import Engine
from notifiers.incidents.model import Effect, Policy
from notifiers.routing import Router, Target

TIMEOUT = 45.0  # the whole delivery, retries included
# a test fails fast: retries of a 5xx or a 429 for half a minute, not the outbox's 24 hours
POLICY = DeliveryPolicy(backoff_base=0.5, backoff_cap=5.0, probe_interval=5.0, horizon=30.0)
TOKEN_SETTING = {"slack": "CHATOPS_SLACK_BOT_TOKEN", "discord": "CHATOPS_DISCORD_TOKEN"}


def _sinks(settings: Settings, platform: str | None) -> dict[str, ChatSink]:
    sinks = sink_factory.build(settings)
    if platform is not None:
        if platform not in sinks:
            raise ConfigError([f"{TOKEN_SETTING[platform]} is not set ({platform} alerts)."])
        sinks = {platform: sinks[platform]}
    if not sinks:
        raise ConfigError(
            [
                "No chat platform is configured: set CHATOPS_SLACK_BOT_TOKEN or CHATOPS_DISCORD_TOKEN."
            ]
        )
    return sinks


def _targets(
    settings: Settings, args: argparse.Namespace, router: Router, platforms: list[str]
) -> tuple[Target, ...]:
    if args.channel:
        if len(platforms) > 1:
            raise errors.BadInput(
                "Both Slack and Discord are configured: say which one --channel is on.",
                hint="Add --platform slack or --platform discord.",
            )
        return (Target(platforms[0], args.channel),)
    targets = router(args.app, args.project, args.namespace)
    if not targets:
        raise ConfigError(
            [
                f"No alert channel for {args.app} (project {args.project}): set "
                "CHATOPS_SLACK_ALERT_CHANNEL or CHATOPS_DISCORD_ALERT_CHANNEL, add a matching "
                "route, or pass --channel."
            ]
        )
    return targets


def sample_alert(app: str, settings: Settings) -> Alert:
    try:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        who = "an operator"
    return Alert(
        key=f"{app}:alert-test",
        app=app,
        kind="warning_events",
        severity=Severity.INFO,
        title=f"{app}: test alert",
        summary=(
            f"A test of the alert wiring, sent by `chatops alert test` ({who}). If you can read "
            f"this, alerts about {app} reach this channel. Nothing needs doing."
        ),
        occurred_at=datetime.now(UTC),
        url=f"{settings.ui_url}/applications/{app}" if settings.ui_url else None,
    )


async def alert_test(settings: Settings, args: argparse.Namespace, store: Store) -> Result:
    validation.app_name(args.app)
    sinks = _sinks(settings, args.platform)
    defaults = {"slack": settings.slack_alert_channel, "discord": settings.discord_alert_channel}
    router = Router(settings.routes, defaults, platforms=tuple(sinks))
    targets = _targets(settings, args, router, list(sinks))
    alerts = await asyncio.to_thread(
        AlertStore, store, Engine(Policy(), router, ui_url=settings.ui_url)
    )
    try:
        items = await alerts.enqueue(
            [Effect(TEST_INCIDENT, targets, "post", sample_alert(args.app, settings))]
        )
        outcomes = await _deliver(sinks, alerts, items)
    finally:
        await asyncio.to_thread(alerts.close)
        await sink_factory.close(sinks)
    facts = tuple(
        Fact(f"{t.platform} {t.channel}", "✓ delivered" if error is None else f"✗ {error}")
        for t, error in outcomes
    )
    failed = [t for t, error in outcomes if error is not None]
    where = ", ".join(f"{t.platform} {t.channel}" for t in targets)
    if failed:
        return Result(
            "alert test",
            args.app,
            Status.FAILED,
            f"The sample alert did not reach {len(failed)} of {len(targets)} channels.",
            facts=facts,
        )
    return Result(
        "alert test", args.app, Status.CHANGED, f"Sample alert delivered to {where}.", facts=facts
    )


async def _deliver(
    sinks: dict[str, ChatSink], alerts: AlertStore, items: list[OutboxItem]
) -> list[tuple[Target, str | None]]:
    """Send through the outbox Deliverer; each target with None (sent) or the error."""
    deliverer = Deliverer(sinks, alerts, POLICY)
    deliverer.enqueue(items)
    finished = await deliverer.wait_idle(TIMEOUT)
    await deliverer.close()
    ids = [item.id for item in items]
    rows = {
        int(r["id"]): r
        for r in alerts.store.query(
            f"SELECT id, status, error FROM outbox WHERE id IN ({','.join('?' * len(ids))})",  # noqa: S608 - placeholders only
            ids,
        )
    }
    out: list[tuple[Target, str | None]] = []
    for item in items:
        row = rows.get(item.id)
        status = str(row["status"]) if row is not None else "missing"
        if status == "sent":
            out.append((Target(item.platform, item.channel), None))
            continue
        if status == "pending":
            # leave nothing behind for `serve` to send later: the test is over
            await alerts.failed(item, f"chatops alert test gave up after {TIMEOUT:.0f}s")
        error = (row["error"] if row is not None else None) or (
            f"not delivered within {TIMEOUT:.0f}s" if not finished else status
        )
        out.append((Target(item.platform, item.channel), str(error)))
    return out
