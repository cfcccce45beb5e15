"""The bot's own watches, against the fake Argo CD (application stream) and the fake Kubernetes
API server (Warning events with resourceVersions, bookmarks and 410 after compaction)."""

from __future__ import annotations

import asyncio

import pytest

from bot.alerts import app_watch
from bot.alerts import event_watch as ew
from commands.argocd.client import ArgoCD
from commands.reconnect import Backoff
from notifiers.incidents.model import Signal
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.kube_api import FakeKube, api_client
from tests.fakes.recording import until_async

FAST = Backoff(0.05, 0.2)


@pytest.fixture
def kube():
    fake = FakeKube(bookmark_interval=0.2).start()
    yield fake
    fake.stop()


class Sink:
    def __init__(self) -> None:
        self.signals: list[Signal] = []

    async def __call__(self, signals: list[Signal]) -> None:
        self.signals += signals

    def kinds(self, app: str | None = None) -> list[str]:
        return [s.kind for s in self.signals if app is None or s.app == app]


async def watch_apps(argo: FakeArgoCD, sink: Sink) -> tuple[app_watch.AppWatch, ArgoCD]:
    client = ArgoCD(argo.url, argo.token)
    w = app_watch.AppWatch(client, sink, ui_url="https://argocd.example", backoff=FAST)
    w.start()
    await asyncio.wait_for(w.connected.wait(), 5)
    return w, client


async def test_app_watch_reports_a_failed_sync_once_retries_are_exhausted(argo):
    argo.add_app(make_app("payments", retry_limit=2))
    sink = Sink()
    w, client = await watch_apps(argo, sink)
    try:
        await until_async(lambda: sink.kinds("payments"))
        assert sink.kinds("payments") == ["sync_ok", "healthy"]  # the initial ADDED
        argo.script("payments", "retry_then_fail")
        assert argo.start_auto_sync("payments")
        await argo.await_app("payments", lambda a: a["status"]["operationState"]["phase"]
                             == "Failed" and not a.get("operation"))  # fmt: skip
        await until_async(lambda: "sync_failed" in sink.kinds("payments"))
        [failed] = [s for s in sink.signals if s.kind == "sync_failed"]
        assert failed.message.endswith("(retried 2 times).")
        assert failed.operation and failed.resources
        assert failed.resources[0].status in ("SyncFailed", "Failed")
        assert failed.url == "https://argocd.example/applications/payments"
        # while it retried (phase Running, .operation set) nothing was reported as failed
        assert sink.kinds("payments").count("sync_failed") == 1
    finally:
        await w.close()
        await client.aclose()


async def test_app_watch_reconnects_without_repeating_itself(argo):
    argo.add_app(make_app("web"))
    sink = Sink()
    w, client = await watch_apps(argo, sink)
    try:
        argo.set_health("web", "Degraded", "Back-off pulling image")
        await until_async(lambda: "degraded" in sink.kinds("web"))
        [deg] = [s for s in sink.signals if s.kind == "degraded"]
        assert deg.resources and deg.resources[0].message == "Back-off pulling image"
        before = len(sink.signals)
        argo.pause()  # the stream breaks; the server is unreachable for a moment
        await until_async(lambda: not w.connected.is_set())
        argo.resume()
        await until_async(lambda: w.connected.is_set() and w.connects >= 2, timeout=5)
        argo.add_app(make_app("other"))  # proves the new stream delivers
        await until_async(lambda: sink.kinds("other"))
        assert [s.kind for s in sink.signals[before:] if s.app == "web"] == []
        argo.set_health("web", "Healthy")
        await until_async(lambda: sink.kinds("web")[-1] == "healthy")
        argo.remove_app("web")
        await until_async(lambda: sink.kinds("web")[-1] == "deleted")
        assert not w.knows("web")
    finally:
        await w.close()
        await client.aclose()


class Emitted:
    def __init__(self) -> None:
        self.signals: list[Signal] = []

    def __call__(self, signals: list[Signal]) -> None:
        self.signals += signals

    def counts(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for s in self.signals:
            assert s.event is not None
            key = (s.app, s.event.reason)
            out[key] = out.get(key, 0) + s.event.count
        return out


def _pod(name: str, labels: dict[str, str] | None = None, owner: dict | None = None) -> dict:
    meta: dict = {"name": name, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [owner]
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "image": "x"}]}}


async def event_watch(kube: FakeKube, emitted: Emitted, **kw) -> ew.EventWatch:
    client = api_client(kube)
    apps = kw.pop("apps", {})
    correlator = ew.Correlator(client, apps_in=lambda ns: frozenset(apps.get(ns, ())), knows=None)
    w = ew.EventWatch(client, correlator, emitted, timeout_seconds=2, backoff=FAST, **kw)
    w.start()
    await until_async(w.ready.is_set)
    return w


async def test_event_watch_correlates_and_counts_only_new_occurrences(kube):
    kube.add_pod("prod", _pod("web-1", {"app.kubernetes.io/instance": "web"}))
    old = kube.add_event("prod", involved={"kind": "Pod", "name": "web-1"}, reason="BackOff",
                         message="Back-off restarting failed container", count=7)  # fmt: skip
    sts = kube.add_statefulset("prod", "db", app="db", tracking="annotation")
    db_pod = "db-0"
    assert db_pod in kube.pod_names("prod")
    kube.add_pod("solo", _pod("lonely"))
    emitted = Emitted()
    w = await event_watch(kube, emitted, apps={"solo": {"only-app"}})
    try:
        assert emitted.signals == []  # what happened before the start is not re-alerted
        kube.repeat_event("prod", old["metadata"]["name"])  # count 7 -> 8: one new occurrence
        kube.add_event("prod", involved={"kind": "Pod", "name": db_pod}, reason="Unhealthy",
                       message="Readiness probe failed")  # fmt: skip
        kube.add_event("solo", involved={"kind": "Pod", "name": "lonely"}, reason="FailedMount",
                       message="MountVolume.SetUp failed")  # fmt: skip
        kube.add_event("prod", involved={"kind": "Pod", "name": "web-1"}, reason="Pulled",
                       message="not a reason to alert on")  # fmt: skip
        await until_async(lambda: len(emitted.signals) >= 3)
        assert emitted.counts() == {
            ("web", "BackOff"): 1,
            ("db", "Unhealthy"): 1,
            ("only-app", "FailedMount"): 1,
        }
        assert sts["metadata"]["annotations"]  # the app came from the tracking annotation
        lookups = w.correlator.lookups
        for _ in range(5):
            kube.repeat_event("prod", old["metadata"]["name"])
        await until_async(lambda: emitted.counts()[("web", "BackOff")] == 6)
        assert w.correlator.lookups == lookups  # cached by the involved object's uid
    finally:
        await w.close()


async def test_event_watch_names_a_namespaced_app_as_people_address_it(kube):
    # Argo CD labels and annotates what team-a/shop and team-a/web deploy as team-a_NAME
    kube.add_pod("prod", _pod("web-1", {"app.kubernetes.io/instance": "team-a_web"}))
    shop = _pod("shop-1")
    shop["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": "team-a_shop:/Pod:prod/shop-1"
    }
    kube.add_pod("prod", shop)
    emitted = Emitted()
    w = await event_watch(kube, emitted)
    try:
        for pod in ("web-1", "shop-1"):
            kube.add_event("prod", involved={"kind": "Pod", "name": pod}, reason="BackOff",
                           message="Back-off restarting failed container")  # fmt: skip
        await until_async(lambda: len(emitted.signals) >= 2)
        assert emitted.counts() == {("team-a/web", "BackOff"): 1, ("team-a/shop", "BackOff"): 1}
    finally:
        await w.close()


async def test_event_watch_410_relists_without_realerting(kube):
    kube.add_pod("prod", _pod("web-1", {"app.kubernetes.io/instance": "web"}))
    involved = {"kind": "Pod", "name": "web-1"}
    first = kube.add_event("prod", involved=involved, reason="BackOff", message="m")
    emitted = Emitted()
    w = await event_watch(kube, emitted)
    try:
        seen = kube.add_event("prod", involved=involved, reason="OOMKilling", message="oom")
        await until_async(lambda: emitted.counts().get(("web", "OOMKilling")) == 1)
        watches, lists = w.watches, w.lists
        kube.server.pause()  # the connection drops
        # meanwhile: one event repeats, one is new; then the history is compacted away
        kube.repeat_event("prod", first["metadata"]["name"])
        kube.add_event("prod", involved=involved, reason="FailedMount", message="mount")
        kube.compact()
        kube.server.resume()
        await until_async(lambda: w.lists > lists and w.watches > watches + 1, timeout=10)
        await until_async(lambda: emitted.counts().get(("web", "FailedMount")) == 1)
        assert emitted.counts() == {
            ("web", "OOMKilling"): 1,  # seen before the 410: not counted again
            ("web", "BackOff"): 1,  # the increase during the gap, not its 1 + 1
            ("web", "FailedMount"): 1,  # new during the gap
        }
        assert seen["metadata"]["uid"] in w.seen
    finally:
        await w.close()


async def test_event_watch_limited_to_granted_namespaces_uses_namespaced_calls(kube):
    for ns, app in (("ai-services", "searxng"), ("elsewhere", "other")):
        kube.add_pod(ns, _pod("p-0", {"app.kubernetes.io/instance": app}))
    emitted = Emitted()
    w = await event_watch(kube, emitted, namespaces=("ai-services",))
    try:
        for ns in ("elsewhere", "ai-services"):
            kube.add_event(ns, involved={"kind": "Pod", "name": "p-0"}, reason="BackOff",
                           message="Back-off restarting failed container")  # fmt: skip
        await until_async(lambda: emitted.signals)
        assert emitted.counts() == {("searxng", "BackOff"): 1}
        # the other namespace's event cannot arrive: nothing asked for it
        event_calls = [r for r in kube.requests if r.path.endswith("/events")]
        assert event_calls and {r.path for r in event_calls} == {
            "/api/v1/namespaces/ai-services/events"
        }
        assert any(r.param("watch") for r in event_calls)
    finally:
        await w.close()


async def test_a_forbidden_namespace_is_named_once_and_retried_until_granted(kube, caplog):
    kube.add_pod("team-b", _pod("p-0", {"app.kubernetes.io/instance": "web"}))
    kube.forbid("list", "events", "team-b")
    kube.forbid("watch", "events", "team-b")
    emitted = Emitted()
    client = api_client(kube)
    correlator = ew.Correlator(client)
    w = ew.EventWatch(client, correlator, emitted, namespaces=("ai-services", "team-b"),
                      timeout_seconds=2, backoff=FAST)  # fmt: skip
    caplog.set_level("DEBUG", logger="bot.alerts.event_watch")
    w.start()
    try:
        team_b = "/namespaces/team-b/events"
        await until_async(lambda: len(kube.requests_to("GET", team_b)) >= 4)  # retried
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warnings == [
            "Kubernetes Warning events in namespace team-b: The bot is not allowed to list "
            "events in namespace team-b. Bind the bot's ClusterRole in that namespace with a "
            "RoleBinding (see deploy/access/) or ask a cluster admin. Retrying with backoff."
        ]
        assert not w.ready.is_set()
        kube.allow("list", "events", "team-b")
        kube.allow("watch", "events", "team-b")
        await until_async(w.ready.is_set)
        kube.add_event("team-b", involved={"kind": "Pod", "name": "p-0"}, reason="OOMKilling",
                       message="oom")  # fmt: skip
        await until_async(lambda: emitted.counts() == {("web", "OOMKilling"): 1})
        assert any("team-b: watching again" in r.getMessage() for r in caplog.records)
    finally:
        await w.close()


async def test_app_watch_reads_a_stream_error_frame_as_a_disconnect_and_says_why(argo, caplog):
    argo.add_app(make_app("web"))
    sink = Sink()
    w, client = await watch_apps(argo, sink)
    try:
        await until_async(lambda: sink.kinds("web"))
        caplog.set_level("WARNING", logger="bot.alerts.app_watch")
        # grpc-gateway ends a failed stream with {"error": {grpc_code, http_code, message, ...}}
        argo.break_streams(14, "error reading from server: EOF")
        await until_async(lambda: w.connects >= 2 and w.connected.is_set())
        warned = [r.getMessage() for r in caplog.records if r.name == "bot.alerts.app_watch"]
        assert warned == [
            "Argo CD application stream: Argo CD's application stream failed: "
            "error reading from server: EOF."
        ]
        argo.set_health("web", "Degraded", "Back-off pulling image")  # still watching
        await until_async(lambda: "degraded" in sink.kinds("web"))
    finally:
        await w.close()
        await client.aclose()
