"""``rollback APP [COMMIT]``: revert the app's last change in Git, then sync and verify.

Argo CD's own history rollback is refused while auto-sync is on, and it leaves Git saying
something else than the cluster. A ``git revert`` through the Git host's API keeps Git the truth:
auto-sync picks the revert up (or we sync when auto-sync is off), and the same wait and post-sync
verification as ``sync`` follow. Nothing is written before the person has seen the commit: short
SHA, author, subject, age and files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from commands import errors, validation, waiting
from commands.argocd.app import Application, short
from commands.context import Caller, Services, resolve
from commands.githost import port as githost
from commands.results import (
    Action,
    Fact,
    Link,
    Progress,
    Result,
    Status,
    StepLog,
    StepState,
    no_progress,
)
from commands.sync import (
    SyncFailed,
    SyncOptions,
    degraded_problems,
    fail_running,
    failed_result,
    problem_facts,
    run_postsync,
    sync_and_wait,
)

MAX_FILES_SHOWN = 5


def _git(svc: Services) -> githost.GitHost:
    if svc.git is None:
        raise errors.Unavailable(
            "Rollback is not configured: no Git host.",
            hint="Set CHATOPS_GIT_REPO and CHATOPS_GIT_TOKEN (and CHATOPS_GIT_PROVIDER).",
        )
    return svc.git


async def plan(
    svc: Services, app_name: str, commit: str | None
) -> tuple[Application, githost.CommitInfo]:
    """The app and the commit a rollback would revert, checked to apply (nothing written)."""
    svc, qualified = await resolve(svc, app_name)
    app_name = svc.label(qualified)
    git = _git(svc)
    app = await svc.argocd.get(qualified)
    if commit:
        info = await git.preview(githost.check_sha(commit))
    else:
        if not app.revision:
            raise errors.Conflict(
                f"{app_name} has no synced revision yet, so there is nothing to roll back.",
                hint="Give the commit to revert explicitly.",
            )
        found = await git.find_commit_for_path(
            githost.normalize_path(app.source_path), app.revision
        )
        info = await git.preview(found.sha)
    return app, info


def commit_facts(info: githost.CommitInfo) -> tuple[Fact, ...]:
    files = ", ".join(info.files[:MAX_FILES_SHOWN])
    if len(info.files) > MAX_FILES_SHOWN:
        files += f" and {len(info.files) - MAX_FILES_SHOWN} more"
    facts = [
        Fact(
            "commit",
            info.short_sha
            + (" (merge: reverted against its first parent)" if info.is_merge else ""),
        ),
        Fact("subject", info.subject),
        Fact("author", info.author),
        Fact("age", githost.age(info.authored_at)),
    ]
    if files:
        facts.append(Fact("files", files))
    return tuple(facts)


def confirm_text(app: str, info: githost.CommitInfo) -> str:
    return (
        f'Revert {info.short_sha} "{info.subject}" by {info.author} '
        f"({githost.age(info.authored_at)}) and sync {app}?"
    )


async def preview(svc: Services, app_name: str, commit: str | None = None) -> Result:
    """What the chat shows before anything is written: the commit, and a confirm button that
    pins the full SHA so the revert is exactly of what was shown."""
    try:
        svc, qualified = await resolve(svc, app_name)
        app_name = svc.label(qualified)
        _app, info = await plan(svc, app_name, commit)
    except errors.CommandError as e:
        return failed_result("rollback", app_name, e, link=svc.app_link(app_name))
    return Result(
        "rollback",
        app_name,
        Status.NOOP,
        f'Roll back {app_name} by reverting {info.short_sha} "{info.subject}"?',
        facts=commit_facts(info),
        links=(Link("Commit", info.url), Link("Argo CD", svc.app_link(app_name))),
        actions=(
            Action(
                f"Revert {info.short_sha}",
                f"rollback {app_name} {info.sha}",
                style="danger",
                confirm=confirm_text(app_name, info),
            ),
        ),
    )


async def rollback(
    svc: Services,
    app_name: str,
    *,
    commit: str | None = None,
    sync_after: bool = True,
    opts: SyncOptions = SyncOptions(),
    caller: Caller = Caller(),
    progress: Progress = no_progress,
    requested_by: str | None = None,
    on_revert: Callable[[githost.RevertOutcome], Awaitable[None]] | None = None,
) -> Result:
    """Revert (the confirmation already happened) and, unless ``sync_after`` is off, sync.

    ``requested_by`` replaces the caller in the commit's ``Requested-by:`` trailer (the
    auto-rollback policy signs its reverts so it never reverts them); ``on_revert`` hears of the
    revert once it is written, before the wait for Synced and Healthy."""
    svc, qualified = await resolve(svc, app_name)
    app_name = svc.label(qualified)
    step = StepLog(progress)
    link = svc.app_link(qualified)
    try:
        await step("revert", StepState.RUNNING, "reading the commit")
        app, info = await plan(svc, app_name, commit)
        git = _git(svc)
        await step("revert", StepState.RUNNING, f"reverting {info.short_sha}")
        outcome = await git.revert(info.sha, requested_by=requested_by or caller.label())
    except errors.CommandError as e:
        await fail_running(step, e)
        return failed_result("rollback", app_name, e, step, link=link)
    base_facts = (
        Fact("reverted", f"{info.short_sha} {info.subject}"),
        Fact("revert commit", f"{short(outcome.sha)} on {outcome.branch}"),
    )
    links = (
        Link("Revert" if outcome.kind == "committed" else "Pull request", outcome.url),
        Link("Argo CD", link),
    )
    if on_revert is not None:
        await on_revert(outcome)
    if outcome.kind == "pull_request":
        await step("revert", StepState.DONE, f"{outcome.branch} is protected: pull request opened")
        return Result(
            "rollback",
            app_name,
            Status.CHANGED,
            f"The branch is protected: opened a pull request to revert {info.short_sha}; "
            f"{app_name} rolls back when it is merged.",
            facts=base_facts,
            links=links,
            actions=(Action("Check again", f"status {app_name}"),),
            steps=tuple(step.steps),
        )
    await step("revert", StepState.DONE, f"committed {short(outcome.sha)}")
    if not sync_after:
        return Result(
            "rollback",
            app_name,
            Status.CHANGED,
            f"Reverted {info.short_sha} in Git; {app_name} was not synced (--no-sync).",
            facts=base_facts,
            links=links,
            steps=tuple(step.steps),
        )
    try:
        final = await _deploy(svc, app, outcome.sha, opts, caller=caller, step=step)
        await run_postsync(svc, final, opts, step)
    except SyncFailed as e:
        return Result(
            "rollback",
            app_name,
            Status.FAILED,
            f"Reverted {info.short_sha} in Git, but the sync failed: {e.user_message}",
            facts=(*base_facts, *problem_facts(e.problems)),
            links=links,
            actions=(Action("Retry sync", f"sync {app_name}", style="primary"),),
            steps=tuple(step.steps),
        )
    except errors.CommandError as e:
        await fail_running(step, e)
        return Result(
            "rollback",
            app_name,
            Status.FAILED,
            f"Reverted {info.short_sha} in Git, but: {e.user_message}",
            facts=base_facts + ((Fact("hint", e.hint),) if e.hint else ()),
            links=links,
            actions=(Action("Retry sync", f"sync {app_name}", style="primary"),),
            steps=tuple(step.steps),
        )
    return Result(
        "rollback",
        app_name,
        Status.CHANGED,
        f"Rolled back {app_name}: reverted {info.short_sha}, now synced to "
        f"{short(final.revision)} and healthy.",
        facts=base_facts,
        links=links,
        steps=tuple(step.steps),
    )


async def _deploy(
    svc: Services,
    before: Application,
    new_sha: str,
    opts: SyncOptions,
    *,
    caller: Caller,
    step: StepLog,
) -> Application:
    """Refresh; with auto-sync on, let Argo CD take the revert; else sync it ourselves."""
    await step("refresh", StepState.RUNNING, "asking Argo CD to see the revert")
    app = await svc.argocd.get(svc.qualified(before), refresh="normal")
    await step("refresh", StepState.DONE, f"{app.sync_status} at {short(app.revision)}")
    if not app.auto_sync:
        return await sync_and_wait(svc, app, opts, caller=caller, step=step)
    await step("sync", StepState.SKIPPED, "auto-sync takes it")
    await step("wait", StepState.RUNNING, f"waiting for auto-sync to {short(new_sha)}")
    try:
        async with asyncio.timeout(opts.timeout):
            final = await _wait_revision(svc, svc.qualified(app), new_sha, step)
    except TimeoutError:
        latest = await svc.argocd.get(svc.qualified(app))
        raise errors.Timeout(
            f"{svc.label(svc.qualified(app))} did not reach {short(new_sha)} Synced and Healthy within "
            f"{validation.human(opts.timeout)}: it is {latest.sync_status}/{latest.health_status} "
            f"at {short(latest.revision)}.",
            hint="Check /status; auto-sync may be paused by a sync window.",
        ) from None
    await step("wait", StepState.DONE, f"Synced and Healthy at {short(final.revision)}")
    return final


async def _wait_revision(svc: Services, name: str, sha: str, step: StepLog) -> Application:
    """Until Argo CD's own operation deployed ``sha`` (judged as ``sync`` judges its own)."""
    found, app = await waiting.wait_for(svc, name, waiting.Ours(revision=sha))
    if found is waiting.Verdict.FAILED:
        raise SyncFailed(
            f"Sync of {name} to {short(sha)} failed: {app.operation_message or app.phase}",
            app.sync_problems(),
            revision=sha,
        )
    if found is waiting.Verdict.DEGRADED:
        raise SyncFailed(
            f"{name} is Degraded after the rollback.",
            await degraded_problems(svc, app),
            revision=sha,
        )
    return app


async def rollback_cli(
    svc: Services,
    app_name: str,
    *,
    commit: str | None,
    sync_after: bool,
    assume_yes: bool,
    interactive: bool,
    ask: Callable[[str], bool],
    caller: Caller,
    progress: Progress = no_progress,
    opts: SyncOptions = SyncOptions(),
) -> Result:
    """The CLI path: show the commit and ask on a terminal; ``--yes`` for scripts; refuse with
    neither, before anything is written."""
    svc, qualified = await resolve(svc, app_name)
    app_name = svc.label(qualified)
    if not assume_yes and not interactive:
        raise errors.BadInput(
            "Refusing to roll back without a confirmation: no terminal to ask on.",
            hint="Pass --yes to confirm in a script.",
        )
    _app, info = await plan(svc, app_name, commit)
    if not assume_yes:
        lines = [f"{f.name}: {f.value}" for f in commit_facts(info)]
        if not await asyncio.to_thread(ask, "\n".join([confirm_text(app_name, info), *lines])):
            return Result("rollback", app_name, Status.NOOP, "Rollback cancelled; nothing written.")
    return await rollback(
        svc,
        app_name,
        commit=info.sha,
        sync_after=sync_after,
        opts=opts,
        caller=caller,
        progress=progress,
    )


async def rollback_chat(
    svc: Services,
    app_name: str,
    *,
    commit: str | None = None,
    caller: Caller = Caller(),
    progress: Progress = no_progress,
    opts: SyncOptions = SyncOptions(),
) -> Result:
    """The chat path. Without a commit, or with one that was not confirmed with its full SHA,
    answer with the preview and a confirm button; the button comes back with the full SHA."""
    if commit is None or len(commit) != 40:
        return await preview(svc, app_name, commit)
    return await rollback(svc, app_name, commit=commit, opts=opts, caller=caller, progress=progress)
