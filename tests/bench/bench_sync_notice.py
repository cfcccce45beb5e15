"""How soon `sync` notices that the app became Synced and Healthy (target: within 200 ms).

The fake Argo CD answers at once (step_delay 0). The moment its controller commits the state
that ends the operation (no operation, phase Succeeded, Synced + Healthy) is taken from the
fake's change hook; the moment `sync` notices is its "wait: done" progress event.

Run: .venv/bin/python tests/bench/bench_sync_notice.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from commands.argocd.client import ArgoCD
from commands.context import Services
from commands.results import Status, Step, StepState
from commands.sync import SyncOptions, sync
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.argocd_fixtures import make_app

RUNS = 30


async def main() -> None:
    argo = FakeArgoCD(step_delay=0.0).start()
    marks: dict[str, float] = {}
    original = argo.state.on_change

    def on_change() -> None:
        app = argo.state.apps.get("bench")
        if app is not None and "done" not in marks:
            st = app.get("status", {})
            if (
                app.get("operation") is None
                and st.get("operationState", {}).get("phase") == "Succeeded"
                and st.get("sync", {}).get("status") == "Synced"
                and st.get("health", {}).get("status") == "Healthy"
                and marks.get("armed")
            ):
                marks["done"] = time.perf_counter()
        original()

    argo.state.on_change = on_change
    argo.add_app(make_app("bench"))
    lat: list[float] = []
    async with ArgoCD(argo.url, argo.token) as client:
        svc = Services(argocd=client)
        for _ in range(RUNS):
            marks.clear()
            noticed: dict[str, float] = {}

            async def progress(step: Step, noticed: dict[str, float] = noticed) -> None:
                if step.name == "sync" and step.state is StepState.RUNNING:
                    marks["armed"] = 1.0
                if step.name == "wait" and step.state is StepState.DONE:
                    noticed["t"] = time.perf_counter()

            r = await sync(svc, "bench", SyncOptions(hooks=False, timeout=30), progress=progress)
            assert r.status is Status.CHANGED, r
            lat.append((noticed["t"] - marks["done"]) * 1000)
    argo.stop()
    lat.sort()
    print(
        f"sync noticed Healthy after the transition over {RUNS} runs: median "
        f"{statistics.median(lat):.1f} ms, p95 {lat[int(len(lat) * 0.95) - 1]:.1f} ms, "
        f"max {lat[-1]:.1f} ms (target < 200 ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
