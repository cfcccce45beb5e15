"""``ci sync --changed-since REV``: which apps a push touched, then the same sync as everywhere.

The changed files are the difference between the trees of REV and HEAD (``git diff REV HEAD``,
two dots), not what HEAD added since their merge base (``REV...HEAD``): after a force push that
dropped commits, REV is the old tip, and the files only the dropped commits changed differ
between the two trees too, so the apps they belong to are synced back to what HEAD says.

An app is touched when a changed file lies under its source path (a Helm chart directory, a
Kustomize overlay) or is one of its value files. Several apps sync at once; their steps reach
``progress`` named ``APP: step`` so a CI log can tell them apart.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterable

from commands import errors
from commands.argocd.app import Application
from commands.context import Caller, Services
from commands.results import Fact, Progress, Result, Status, Step, StepState, no_progress
from commands.sync import SyncOptions, sync


def changed_files(repo_dir: str, rev: str) -> list[str]:
    """The paths that differ between the trees of ``rev`` and HEAD in ``repo_dir``."""
    if not rev or rev.startswith("-"):
        raise errors.BadInput(f"'{rev}' is not a Git revision.")
    try:
        out = subprocess.run(
            ["git", "-C", repo_dir, "diff", "--name-only", "--no-renames", rev, "HEAD", "--"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except FileNotFoundError:
        raise errors.BadInput("git is not installed here; ci sync needs it.") from None
    if out.returncode != 0:
        raise errors.BadInput(
            f"Cannot diff {rev} with HEAD in {repo_dir}: {out.stderr.strip()[:200]}",
            hint="Fetch enough history in CI (actions/checkout with fetch-depth: 0).",
        )
    return [line for line in out.stdout.splitlines() if line.strip()]


def _labelled(progress: Progress, app: str) -> Progress:
    async def forward(step: Step) -> None:
        await progress(Step(f"{app}: {step.name}", step.state, step.detail))

    return forward


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
    names = ", ".join(s.label(s.qualified(a)) for s, a in apps) or "none"
    await progress(Step("changed apps", StepState.DONE, f"{names} ({len(changed)} files changed)"))
    if not apps:
        return Result("ci-sync", "changed apps", Status.NOOP, "No application's files changed."), []
    gate = asyncio.Semaphore(concurrency)

    async def one(s: Services, app: Application) -> Result:
        async with gate:
            name = s.label(s.qualified(app))
            return await sync(s, name, opts, caller=caller, progress=_labelled(progress, name))

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
