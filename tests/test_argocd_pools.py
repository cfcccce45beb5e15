"""The Argo CD client's two bounded pools, seen from the fake argocd-server: how many calls and
streams it really has in flight at once, and that open streams never take a call's place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from commands import errors
from commands.argocd.app import Application
from commands.argocd.client import ArgoCD
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app
from tests.fakes.recording import until_async

Stream = AsyncGenerator[tuple[str, Application], None]


def add_apps(argo: FakeArgoCD, n: int) -> list[str]:
    names = [f"app-{i:02d}" for i in range(n)]
    for name in names:
        argo.add_app(make_app(name))
    return names


async def test_200_concurrent_calls_keep_at_most_max_calls_in_flight(argo):
    names = add_apps(argo, 20)
    argo.set_reconcile_delay(0.02)  # each refresh waits for the controller: calls overlap
    async with ArgoCD(argo.url, argo.token, max_calls=6) as client:
        apps = await asyncio.wait_for(
            asyncio.gather(*(client.get(names[i % 20], refresh="normal") for i in range(200))),
            30,
        )
    assert sorted({a.name for a in apps}) == names
    assert argo.busiest["calls"] == 6  # reached, never passed


async def test_open_streams_do_not_take_the_places_of_calls(argo):
    names = add_apps(argo, 5)
    async with ArgoCD(argo.url, argo.token, max_calls=2) as client:
        streams: list[Stream] = [client.watch(name=n) for n in names]
        try:
            for s in streams:  # every stream is open: its first ADDED arrived
                kind, _ = await asyncio.wait_for(anext(s), 5)
                assert kind == "ADDED"
            assert argo.in_flight["streams"] == 5
            got = await asyncio.wait_for(
                asyncio.gather(*(client.get(n) for n in names)), 5
            )  # more calls than call places, with more streams than that open
            assert [a.name for a in got] == names
        finally:
            for s in streams:
                await s.aclose()


async def test_streams_beyond_max_streams_wait_for_a_place(argo):
    names = add_apps(argo, 5)

    def streams_seen() -> int:
        return sum(r.path == "/api/v1/stream/applications" for r in argo.requests)

    async with ArgoCD(argo.url, argo.token, max_streams=3) as client:
        streams: list[Stream] = [client.watch(name=n) for n in names]
        firsts = [asyncio.create_task(anext(s)) for s in streams]
        try:
            await asyncio.wait_for(asyncio.gather(*firsts[:3]), 5)
            await client.get(names[0])  # one more round trip: the other two had their chance
            assert streams_seen() == 3
            assert not any(f.done() for f in firsts[3:])
            await streams[0].aclose()
            await streams[1].aclose()  # two places free: the waiting two open
            rest = await asyncio.wait_for(asyncio.gather(*firsts[3:]), 5)
            assert [app.name for _, app in rest] == names[3:]
            assert streams_seen() == 5
        finally:
            for s in streams[2:]:
                await s.aclose()


async def test_a_call_that_waits_too_long_for_its_turn_times_out_clearly(argo):
    add_apps(argo, 1)
    argo.set_reconcile_delay(1.0)  # the one call place stays taken for a second
    async with ArgoCD(argo.url, argo.token, max_calls=1, timeout=0.2) as client:
        slow = asyncio.create_task(client.get("app-00", refresh="normal"))
        await until_async(lambda: argo.in_flight["calls"] == 1)
        with pytest.raises(errors.Timeout) as caught:
            await client.get("app-00")
        assert "Argo CD is busy: GET /api/v1/applications/app-00 waited 0.2 s" in str(
            caught.value.user_message
        )
        assert (await slow).name == "app-00"
    assert argo.busiest["calls"] == 1


def test_the_bounds_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        ArgoCD("http://127.0.0.1:9", "t", max_calls=0)
