"""Shared fixtures: the fakes of Argo CD, Kubernetes and Slack, Services wired to them, and an
HTTP client for the tests that hand one to our API clients. A module needing a differently
configured fake defines its own fixture of the same name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bot.state.store import Store, StoreTimers
from commands.argocd.client import ArgoCD
from commands.context import Services
from commands.kube.ops import KubeOps
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.kube_api import FakeKube, api_client
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    fake = FakeArgoCD(step_delay=0.02).start()
    yield fake
    fake.stop()


@pytest.fixture
def kube_fake() -> Iterator[FakeKube]:
    fake = FakeKube(pod_delay=0.01).start()
    yield fake
    fake.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
async def svc(argo: FakeArgoCD, kube_fake: FakeKube, store: Store) -> AsyncIterator[Services]:
    client = api_client(kube_fake)
    services = Services(
        argocd=ArgoCD(argo.url, argo.token, timeout=10),
        kube=KubeOps(client),
        timers=StoreTimers(store),
        ui_url="https://argocd.example.com",
    )
    yield services
    await services.argocd.aclose()
    client.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One real PostgreSQL server for the session (tests/pg.py); each test takes a database."""
    from tests import pg

    with pg.server() as srv:
        yield srv


@pytest.fixture(params=["sqlite", "postgresql"])
def state_target(request: Any, tmp_path: Any) -> str:
    """A fresh state database on each engine: the same test runs against both stores."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return str(request.getfixturevalue("pg_server").create_database())
