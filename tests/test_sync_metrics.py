"""Sync-operation and incident metrics on ``/metrics``, from scripted runs of the fakes.

The fake Argo CD's controller plays auto-syncs that report known durations (``script(...,
took=N)``: finishedAt = startedAt + N), the alert runner watches it as ``chatops serve`` does,
and the figures are read back from a real ``GET /metrics`` with prometheus_client's own text
parser: exact counts, sums and buckets, across a stream that breaks, an outage and a restart.
Incident recovery runs on the runner's engine clock, so "754 s later" takes no time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bot.alerts import runner as alerting
from bot.alerts.sync_metrics import SYNC_BUCKETS
from bot.metrics import Registry
from bot.server.http import HttpServer, Probes, build_app
from bot.state.store import Store
from commands.argocd.client import ArgoCD
from commands.context import Services
from notifiers.incidents.model import Policy, Signal
from tests.alert_fixtures import settings
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.recording import until_async

DURATION = "chatops_argocd_sync_duration_seconds"
OPERATIONS = "chatops_argocd_sync_operations_total"
RECOVERY = "chatops_incident_recovery_seconds"
OPENED = "chatops_incidents_opened_total"
INF = float("inf")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Bot:
    """The alert runner and the HTTP server's /metrics, sharing one registry, on 127.0.0.1."""

    def __init__(self, runner: alerting.AlertRunner, registry: Registry, url: str) -> None:
        self.runner, self.registry, self.url = runner, registry, url

    async def scrape(self) -> Samples:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def operations(self, app: str, phase: str) -> float:
        m = self.runner.sync_metrics.operations
        return float(
            m.value(app=app, project=_project(app), argocd_instance="default", phase=phase)
        )


def _project(app: str) -> str:
    return "shop" if app == "web" else "default"


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path, argo: FakeArgoCD | None, **options: Any
) -> AsyncIterator[Bot]:
    registry = Registry()
    extra = {"argocd_url": argo.url, "argocd_token": argo.token} if argo else {}
    s = settings(tmp_path, **extra)
    store = Store(s.state_db)
    client = ArgoCD(argo.url, argo.token) if argo else None
    http = HttpServer(build_app(registry, Probes()), "127.0.0.1", 0)
    await http.start()
    runner = await alerting.start(
        s,
        store,
        Services(argocd=client) if client else None,
        None,
        registry,
        options=alerting.AlertOptions(watch_events=False, **options),
    )
    try:
        yield Bot(runner, registry, http.url)
    finally:
        await runner.close()
        await http.stop()
        if client is not None:
            await client.aclose()
        store.close()


def histogram(samples: Samples, name: str, **labels: str) -> tuple[float, float, list[float]]:
    """(_count, _sum, cumulative bucket counts in bucket order ending with +Inf)."""
    base = frozenset(labels.items())
    count = samples[(name + "_count", base)]
    total = samples[(name + "_sum", base)]
    buckets = sorted(
        (float(dict(key[1])["le"]), value)
        for key, value in samples.items()
        if key[0] == name + "_bucket" and key[1] - {("le", dict(key[1])["le"])} == base
    )
    return count, total, [v for _, v in buckets]


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def sync_labels(app: str, phase: str) -> dict[str, str]:
    return {"app": app, "project": _project(app), "argocd_instance": "default", "phase": phase}


async def test_each_finished_sync_is_observed_once_with_its_reported_duration(tmp_path, argo):
    argo.add_app(make_app("web", project="shop"))  # each has synced before the bot starts
    for name in ("api", "db", "slow"):
        argo.add_app(make_app(name))
    argo.add_app(make_app("batch", history=False))  # never synced yet
    # an auto-sync already running when the bot starts (it ends when terminated)
    argo.script("slow", "hang", took=1800)
    assert argo.start_auto_sync("slow")
    await argo.await_app("slow", lambda a: a["status"]["operationState"]["phase"] == "Running")

    async with running_bot(tmp_path, argo) as bot:
        watch = bot.runner.app_watch
        apps = ("web", "api", "db", "slow", "batch")
        await until_async(lambda: all(watch.knows(a) for a in apps))
        samples = await bot.scrape()
        # what had finished before the bot watched is a baseline, not an observation
        assert series(samples, OPERATIONS) == {}
        assert series(samples, DURATION + "_count") == {}

        for app, play, took, phase in (
            ("web", "succeed", 45, "Succeeded"),
            ("api", "fail", 400, "Failed"),
            ("db", "error", 7, "Error"),
        ):
            argo.script(app, play, took=took)
            assert argo.start_auto_sync(app)
            await until_async(lambda app=app, phase=phase: bot.operations(app, phase) == 1)

        # terminated (`argocd app terminate-op`): Argo CD ends the operation Failed
        async with httpx.AsyncClient(base_url=argo.url) as http:
            r = await http.delete(
                "/api/v1/applications/slow/operation",
                headers={
                    "Authorization": f"Bearer {argo.token}",
                    "Content-Type": "application/json",  # as the argocd CLI sends it
                },
            )
            assert r.status_code == 200, r.text
        await until_async(lambda: bot.operations("slow", "Failed") == 1)

        # the stream breaks; on reconnect Argo CD re-sends every app as it is now
        connects = watch.connects
        argo.break_streams()
        await until_async(lambda: watch.connects > connects and watch.connected.is_set())
        # then an outage during which an auto-sync runs and finishes
        argo.pause()
        await until_async(lambda: not watch.connected.is_set())
        argo.script("batch", "succeed", took=90)
        assert argo.start_auto_sync("batch")
        await argo.await_app("batch", lambda a: a["status"]["operationState"].get("finishedAt"))
        argo.resume()
        # counted once the stream is back; everything re-sent before it has been seen by then
        await until_async(lambda: bot.operations("batch", "Succeeded") == 1, timeout=10)
        assert watch.connects >= connects + 2

        samples = await bot.scrape()
        expected = {
            ("web", "Succeeded"): (45, [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]),
            ("api", "Failed"): (400, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]),
            ("db", "Error"): (7, [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
            ("slow", "Failed"): (1800, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]),
            ("batch", "Succeeded"): (90, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]),
        }
        assert series(samples, OPERATIONS) == {
            frozenset(sync_labels(app, phase).items()): 1.0 for app, phase in expected
        }
        for (app, phase), (took, buckets) in expected.items():
            assert histogram(samples, DURATION, **sync_labels(app, phase)) == (1, took, buckets)
        bounds = sorted({float(dict(k[1])["le"]) for k in samples if k[0] == DURATION + "_bucket"})
        assert bounds == [*map(float, SYNC_BUCKETS), INF]

    # a restart: the new process sees every operation above already finished -> none counted
    async with running_bot(tmp_path, argo) as bot:
        watch = bot.runner.app_watch
        await until_async(lambda: all(watch.knows(a) for a in apps))
        argo.script("api", "succeed", took=12)
        assert argo.start_auto_sync("api")
        await until_async(lambda: bot.operations("api", "Succeeded") == 1)
        samples = await bot.scrape()
        assert series(samples, OPERATIONS) == {
            frozenset(sync_labels("api", "Succeeded").items()): 1
        }
        assert histogram(samples, DURATION, **sync_labels("api", "Succeeded")) == (
            1,
            12,
            [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        )


async def test_recovery_time_is_the_time_from_first_sight_to_recovery(tmp_path):
    now = [1_700_000_000.0]
    policy = Policy(degraded_grace=60)
    async with running_bot(tmp_path, None, policy=policy, engine_clock=lambda: now[0]) as bot:
        runner = bot.runner
        assert runner.alert_store is not None

        async def at(t: float, *signals: Signal) -> None:
            now[0] = 1_700_000_000.0 + t
            await runner.ingest(signals)

        # a Degraded blip within the grace period: nobody paged, nothing opened or recovered
        await at(0, Signal("degraded", "web", project="shop", message="probe failed"))
        await at(10, Signal("healthy", "web"))
        # a real outage: seen at 100, announced when the grace period ends, healthy at 854
        await at(100, Signal("degraded", "web", project="shop", message="Back-off"))
        now[0] = 1_700_000_000.0 + 160
        await runner.alert_store.tick()
        await at(854, Signal("healthy", "web"))
        # a failed sync, recovered by a later successful one 65 s after
        await at(1000, Signal("sync_failed", "api", operation="2024-05-01T10:00:00Z"))
        await at(1065, Signal("sync_ok", "api", operation="2024-05-01T10:01:00Z"))
        # an app deleted while Degraded: its incident closes, but nothing recovered
        await at(2000, Signal("degraded", "gone", message="Back-off"))
        now[0] = 1_700_000_000.0 + 2060
        await runner.alert_store.tick()
        await at(2100, Signal("deleted", "gone"))

        samples = await bot.scrape()
        assert series(samples, OPENED) == {
            frozenset({("problem", "degraded")}): 2.0,
            frozenset({("problem", "sync_failed")}): 1.0,
        }
        assert series(samples, RECOVERY + "_count") == {
            frozenset({("problem", "degraded")}): 1.0,
            frozenset({("problem", "sync_failed")}): 1.0,
        }
        # buckets 60, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, 259200, +Inf
        assert histogram(samples, RECOVERY, problem="degraded") == (
            1,
            754,
            [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
        )
        assert histogram(samples, RECOVERY, problem="sync_failed") == (
            1,
            65,
            [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        )
