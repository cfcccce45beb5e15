"""Two replicas, one voice: two ``Bot``s in one test on one real PostgreSQL store, electing a
leader on a Lease of the Kubernetes fake (timings scaled down: lease 1 s), with Argo CD and Slack
fakes. Only the leader watches, alerts and schedules; every replica serves HTTP and commands.
(tests/test_ha_failover.py kills a leader process with -9.)"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.chat.invocation import Invocation
from bot.server.serve import Bot
from bot.settings import ConfigError, Settings
from bot.state.inbox import Inbox
from bot.state.leader import Timings
from tests.alert_fixtures import TOKEN, body_for, degraded_app
from tests.chat_fixtures import (
    ALERTS,
    CHANNEL,
    OPERATOR,
    OPERATOR_NAME,
    TEAM,
    RecordingReply,
    chat_settings,
    slack,  # noqa: F401 - fixture
)
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.kube_api import FakeKube, api_client
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack

FAST = Timings(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
NS = "chatops"


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    fake = FakeArgoCD(step_delay=0.1).start()  # slow enough to see a sync running
    for name in ("payments", "orders"):
        fake.add_app(make_app(name))
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    fake = FakeKube(bookmark_interval=0.2).start()
    fake.create("", "namespaces", "", {"metadata": {"name": NS}})
    try:
        yield fake
    finally:
        fake.stop()


class Pair:
    """Replicas on one store; ``start(name)`` runs one, ``leader``/``follower`` find them."""

    def __init__(
        self, tmp_path: Path, url: str, argo: FakeArgoCD, chat: FakeSlack, kube: FakeKube
    ) -> None:
        self.tmp_path, self.url = tmp_path, url
        self.argo, self.slack, self.kube = argo, chat, kube
        self.bots: dict[str, Bot] = {}
        self.now = [time.time()]

    def settings(self, name: str) -> Settings:
        return chat_settings(
            self.tmp_path,
            self.argo,
            self.slack,
            state_db=self.url,
            lease_namespace=NS,
            instance_id=name,
            webhook_token=TOKEN,
            degraded_grace=0.2,
        )

    async def start(self, name: str, clock: Callable[[], float] = time.time) -> Bot:
        bot = Bot(
            self.settings(name),
            host="127.0.0.1",
            port=0,
            kube_client=api_client(self.kube),
            lease_timings=FAST,
            clock=clock,
        )
        self.bots[name] = bot
        try:
            await bot.start()
        except BaseException:
            await bot.stop()
            raise
        assert bot.dispatcher is not None
        bot.dispatcher.authz.slack_home_team = TEAM
        return bot

    def leaders(self) -> list[Bot]:
        return [b for b in self.bots.values() if b.leadership and b.leadership.is_leader]

    async def leader(self) -> Bot:
        """The one replica leading, once its singletons are up."""
        await until_async(
            lambda: len(self.leaders()) == 1 and self.leaders()[0].leadership.active  # type: ignore[union-attr]
        )
        return self.leaders()[0]

    async def stop(self) -> None:
        for bot in self.bots.values():
            await bot.stop()


@pytest.fixture
async def pair(
    tmp_path: Path,
    pg_server: Any,
    argo: FakeArgoCD,
    slack: FakeSlack,  # noqa: F811
    kube: FakeKube,
) -> AsyncIterator[Pair]:
    p = Pair(tmp_path, pg_server.create_database(), argo, slack, kube)
    try:
        yield p
    finally:
        await p.stop()


async def post_webhook(bot: Bot, body: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(bot.url + "/webhooks/argocd", data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def scrape(bot: Bot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as s, s.get(bot.url + "/metrics") as r:
        text = await r.text()
    return {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for family in text_string_to_metric_families(text)
        for x in family.samples
    }


async def readyz(bot: Bot) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(bot.url + "/readyz") as r:
        return r.status, json.loads(await r.text())


def posts_about(chat: FakeSlack, app: str) -> list[dict[str, Any]]:
    return [m for m in chat.messages_in(ALERTS) if m["text"].split(":")[0].endswith(app)]


def invocation(text: str, name: str = OPERATOR_NAME, **kw: Any) -> Invocation:
    return Invocation("slack", OPERATOR, name, CHANNEL, text, TEAM, **kw)


async def test_one_failure_is_one_alert_and_the_follower_only_serves(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chatops.serve"):
        a = await pair.start("pod-a")
        b = await pair.start("pod-b")
    assert "leader election on Lease chatops/argocd-chatops as pod-a" in caplog.text
    assert "leader election on Lease chatops/argocd-chatops as pod-b" in caplog.text
    leader = await pair.leader()
    follower = b if leader is a else a
    assert leader.alerts is not None and leader.scheduler is not None
    assert leader.scheduler.running and not follower.scheduler.running  # type: ignore[union-attr]
    assert follower.alerts is None
    assert isinstance(follower.webhook.runner, Inbox)  # type: ignore[union-attr]
    assert leader.webhook.runner is leader.alerts  # type: ignore[union-attr]
    await until_async(lambda: leader.alerts.app_watch.knows("payments"))  # type: ignore[union-attr]

    pair.argo.set_health("payments", "Degraded", "Back-off pulling image payments:2")
    await until_async(lambda: posts_about(pair.slack, "payments"), timeout=5)
    # Argo CD Notifications reports the same outage through the follower: one incident still
    status, answer = await post_webhook(follower, body_for("health-degraded", degraded_app(
        pair.argo.app("payments"))))  # fmt: skip
    assert (status, answer) == (202, {"status": "accepted"})
    store = leader.store
    assert store is not None
    await until_async(lambda: store.query("SELECT COUNT(*) FROM webhook_inbox")[0][0] == 0)
    # the leader has ingested it (the inbox row goes after): every message it caused is in the
    # outbox, and there is one root post among them, the one Slack already has
    assert store.query("SELECT COUNT(*) FROM outbox WHERE op='post'")[0][0] == 1
    assert len(posts_about(pair.slack, "payments")) == 1
    assert len(pair.slack.calls_to("chat.postMessage")) == 1

    # both serve and are ready; /metrics and /readyz say who leads
    for bot in (leader, follower):
        code, body = await readyz(bot)
        assert code == 200, body
        assert body["detail"]["leadership"]["leader"] == leader.leadership.identity  # type: ignore[union-attr]
    assert (await readyz(follower))[1]["detail"]["leadership"]["role"] == "follower"
    lead_id = leader.leadership.identity  # type: ignore[union-attr]
    follow_id = follower.leadership.identity  # type: ignore[union-attr]
    assert (await scrape(leader))[("chatops_leader", (("instance", lead_id),))] == 1.0
    assert (await scrape(follower))[("chatops_leader", (("instance", follow_id),))] == 0.0
    assert (await scrape(leader))[("chatops_leader_transitions_total", ())] == 1.0


async def test_a_sync_on_one_replica_makes_the_other_refuse_with_who_started_it(
    pair: Pair,
) -> None:
    a = await pair.start("pod-a")
    b = await pair.start("pod-b")
    assert a.dispatcher is not None and b.dispatcher is not None
    first = RecordingReply()
    running = asyncio.create_task(a.dispatcher.handle(invocation("sync payments"), first))
    await until_async(lambda: any(r.path.endswith("/payments/sync") for r in pair.argo.requests))
    busy = RecordingReply()
    assert await b.dispatcher.handle(invocation("sync payments", "bob"), busy) is None
    assert busy.errors[0].startswith(
        f"payments is busy: {OPERATOR_NAME} (slack) started `sync payments` at "
    )
    assert busy.errors[0].endswith("Try again when it has finished.")
    done = await running
    assert done is not None and done.ok
    # released: the other replica may go now
    again = await b.dispatcher.handle(invocation("status payments", "bob"), RecordingReply())
    assert again is not None
    assert b.store is not None
    assert b.store.query("SELECT COUNT(*) FROM op_locks")[0][0] == 0


async def test_a_timer_set_on_a_follower_fires_once_after_the_other_hands_over(
    pair: Pair,
) -> None:
    pair.argo.add_app(make_app("web", self_heal=True))
    clock = lambda: pair.now[0]  # noqa: E731
    a = await pair.start("pod-a", clock)
    assert (await pair.leader()) is a
    b = await pair.start("pod-b", clock)
    assert b.dispatcher is not None and a.scheduler is not None
    reply = RecordingReply()
    result = await b.dispatcher.handle(invocation("selfheal off web 30m", confirmed=True), reply)
    assert result is not None and result.ok, reply
    assert not pair.argo.app("web")["spec"]["syncPolicy"]["automated"]["selfHeal"]
    pair.now[0] += 30 * 60 - 0.5  # half a second of the pause left
    await a.scheduler.reload()  # the leader's periodic rescan finds the follower's timer
    assert a.scheduler._jobs  # both replicas could fire it: only one may

    await a.stop()  # SIGTERM: the Lease is released, b takes over at once
    assert (await pair.leader()) is b
    said = "Self-heal is back on for web"

    def announced() -> list[dict[str, Any]]:
        return [m for m in pair.slack.messages_in(ALERTS) if m["text"].startswith(said)]

    await until_async(lambda: announced(), timeout=5)
    assert b.store is not None
    await until_async(lambda: b.store.timers() == [])  # type: ignore[union-attr]
    assert pair.argo.app("web")["spec"]["syncPolicy"]["automated"]["selfHeal"]
    assert len(announced()) == 1
    runs = [r for r in b.store.audit_list() if r["platform"] == "scheduler"]
    assert len(runs) == 1 and runs[0]["outcome"] == "changed"


async def test_without_a_lease_namespace_outside_a_cluster_start_up_says_what_to_set(
    tmp_path: Path, pg_server: Any, kube: FakeKube
) -> None:
    settings = Settings(state_db=pg_server.create_database(), listen="127.0.0.1:0")
    bot = Bot(settings, port=0, kube_client=api_client(kube))
    with pytest.raises(ConfigError) as e:
        await bot.start()
    await bot.stop()
    assert "CHATOPS_LEASE_NAMESPACE" in e.value.render()


async def test_without_kubernetes_access_start_up_says_so(
    tmp_path: Path, pg_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = Settings(state_db=pg_server.create_database(), lease_namespace=NS)
    bot = Bot(settings, port=0)
    with pytest.raises(ConfigError) as e:
        await bot.start()
    await bot.stop()
    assert "needs Kubernetes access" in e.value.render()


async def test_a_single_replica_says_so_and_leads(
    tmp_path: Path,
    argo: FakeArgoCD,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="chatops.serve"):
        bot = Bot(chat_settings(tmp_path, argo, instance_id="solo"), host="127.0.0.1", port=0)
        try:
            await bot.start()
            assert bot.leadership is None and bot.alerts is not None
            assert (await scrape(bot))[("chatops_leader", (("instance", "solo"),))] == 1.0
        finally:
            await bot.stop()
    assert "single replica (SQLite)" in caplog.text
