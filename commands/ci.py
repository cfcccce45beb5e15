"""``ci sync --changed-since REV``: which apps a push touched, then the same sync as everywhere.

An app is touched when a changed file lies under its source path (a Helm chart directory, a
Kustomize overlay) or is one of its value files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from commands.argocd.app import Application
from commands.context import Caller, Services
from commands.results import Fact, Progress, Result, Status, no_progress
from commands.sync import SyncOptions, sync


def touched_apps(apps: Iterable[Application], changed: Iterable[str]) -> list[Application]:
    paths = [c.strip().lstrip("./") for c in changed if c.strip()]
    out = []
    for app in apps:
        root = app.source_path.strip("/")
        if not root or root == ".":
            continue
        values = [
            f"{root}/{v}".replace("//", "/")
            for v in (app.source.get("helm") or {}).get("valueFiles") or []
        ]
        if any(p == root or p.startswith(root + "/") or p in values for p in paths):
            out.append(app)
    return sorted(out, key=lambda a: a.name)


async def ci_sync(
    svc: Services,
    changed: list[str],
    opts: SyncOptions = SyncOptions(),
    *,
    caller: Caller = Caller("ci", "ci"),
    progress: Progress = no_progress,
    concurrency: int = 4,
) -> tuple[Result, list[Result]]:
    each = svc.everywhere()  # one GitOps repository may feed every Argo CD instance
    listed = await asyncio.gather(*(s.argocd.list_apps() for s in each))
    apps = [
        (s, app)
        for s, some in zip(each, listed, strict=True)
        for app in touched_apps(some, changed)
    ]
    if not apps:
        return Result("ci-sync", "changed apps", Status.NOOP, "No application's files changed."), []
    gate = asyncio.Semaphore(concurrency)

    async def one(s: Services, app: Application) -> Result:
        async with gate:
            name = s.label(s.qualified(app))
            return await sync(s, name, opts, caller=caller, progress=progress)

    results = list(await asyncio.gather(*(one(s, a) for s, a in apps)))
    failed = [r.target for r in results if not r.ok]
    facts = tuple(Fact(r.target, r.summary) for r in results)
    if failed:
        return Result(
            "ci-sync",
            "changed apps",
            Status.FAILED,
            f"{len(failed)} of {len(results)} apps failed to sync: {', '.join(failed)}.",
            facts=facts,
        ), results
    return Result(
        "ci-sync",
        "changed apps",
        Status.CHANGED,
        f"Synced {len(results)} apps: {', '.join(r.target for r in results)}.",
        facts=facts,
    ), results
