"""The CLI subcommands, one coroutine each: settings and parsed arguments in, a ``Result`` out.

Each checks its arguments, wires the clients it needs (``bot.server.wiring``) and calls the
command core; ``bot.cli.runner`` turns whatever it returns or raises into output and an exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bot.cli import output
from bot.settings import ConfigError, Settings
from commands import errors, targets, validation
from commands.results import Result

NO_KUBE = "No Kubernetes configuration found (not in a cluster, no KUBECONFIG)."


def _progress() -> Any:
    """Steps as they happen, on stderr: with ``--json`` too, so a CI log shows the progress
    while stdout carries only the JSON result (``chatops ci sync --json > result.json``)."""

    async def progress(step: Any) -> None:
        output.print_step(step)

    return progress


def _store(settings: Settings) -> Any:
    from bot.cli.state import open_store

    return open_store(settings)


async def _with_services(
    settings: Settings,
    fn: Callable[[Any], Coroutine[Any, Any, Result]],
    *,
    store: bool = False,
    kube: bool = True,
    only: str | None = None,
) -> Result:
    """Run ``fn`` with the services of every instance (``only``: of that one alone)."""
    from dataclasses import replace

    from bot.server import wiring

    st = _store(settings) if store else None
    svc = wiring.services(settings, store=st, with_kube=kube, instance=only)
    try:
        return await fn(replace(svc, instances={}) if only else svc)
    finally:
        await wiring.close(svc)
        if st is not None:
            st.close()


def _app(args: argparse.Namespace) -> str:
    """The APP argument with ``--instance`` folded in as ``APP@INSTANCE`` (both: must agree)."""
    ref = targets.parse(args.app)
    given = getattr(args, "instance", None)
    if given:
        targets.instance_name(given)
        if ref.instance and ref.instance != given:
            raise errors.BadInput(
                f"'{args.app}' names instance {ref.instance}, but --instance says {given}."
            )
        ref = targets.AppRef(ref.name, ref.namespace, given)
    return str(ref)


async def do_sync(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.sync import SyncOptions, sync

    opts = SyncOptions(
        prune=not args.no_prune,
        hooks=not args.no_hooks,
        timeout=args.timeout if args.timeout is not None else settings.sync_timeout,
        retry_limit=args.retry_limit if args.retry_limit is not None else settings.retry_limit,
        presync_timeout=settings.presync_timeout,
        postsync_timeout=settings.postsync_timeout,
    ).validate()
    app = _app(args)
    return await _with_services(
        settings,
        lambda svc: sync(svc, app, opts, caller=_caller(), progress=_progress()),
        kube=not args.no_hooks,
    )


async def do_selfheal(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.selfheal import MAX_PAUSE, MIN_PAUSE, selfheal

    app = _app(args)
    duration = None
    if args.duration:
        duration = validation.duration(
            args.duration, minimum=MIN_PAUSE, maximum=MAX_PAUSE, what="self-heal pause"
        )
    return await _with_services(
        settings,
        lambda svc: selfheal(svc, args.mode, app, duration=duration, caller=_caller()),
        store=True,
        kube=False,
    )


async def do_autorollback(settings: Settings, args: argparse.Namespace) -> Result:
    from bot.state.autorollback import StoreLedger
    from commands.autorollback_cmd import MAX_PAUSE, MIN_PAUSE, autorollback

    if args.app is not None:
        targets.parse(args.app)  # APP, NAMESPACE/APP or APP@INSTANCE
    elif args.mode != "status":
        raise errors.BadInput(f"autorollback {args.mode} needs an APP.")
    duration = None
    if args.duration:
        if args.mode != "off":
            raise errors.BadInput("--for only makes sense with off.")
        duration = validation.duration(
            args.duration, minimum=MIN_PAUSE, maximum=MAX_PAUSE, what="auto-rollback pause"
        )
    st = _store(settings)
    try:
        return await _with_services(
            settings,
            lambda svc: autorollback(
                svc,
                StoreLedger(st),
                settings.auto_rollback_policy(),
                args.mode,
                args.app,
                duration=duration,
                caller=_caller(),
            ),
            kube=False,
        )
    finally:
        st.close()


async def do_status(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.status import overview, status

    if args.app is None:
        if args.instance:
            targets.instance_name(args.instance)
        return await _with_services(settings, overview, kube=False, only=args.instance)
    app = _app(args)
    return await _with_services(settings, lambda svc: status(svc, app), store=True, kube=False)


async def do_verify(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.verify import verify

    app = _app(args)

    async def go(svc: Any) -> Result:
        if svc.kube is None and svc.clusters is None:
            raise ConfigError([NO_KUBE + " verify-rootless needs it."])
        return await verify(svc, app)

    return await _with_services(settings, go)


async def do_hook(settings: Settings, args: argparse.Namespace) -> Result:
    from bot.server import wiring
    from commands.verify import hook

    ref = targets.parse(_app(args))
    if args.namespace:
        validation.namespace(args.namespace)
    kube = wiring.kube(settings)
    if kube is None:
        raise ConfigError([NO_KUBE])
    argocd = wiring.argocd(settings, ref.instance or None) if not args.namespace else None
    timeout = args.timeout
    try:
        return await hook(
            kube,
            args.phase,
            ref.qualified,
            namespace=args.namespace,
            argocd=argocd,
            timeout=timeout
            if timeout is not None
            else (
                settings.presync_timeout if args.phase == "presync" else settings.postsync_timeout
            ),
            progress=_progress(),
        )
    finally:
        if argocd is not None:
            await argocd.aclose()


async def do_ci(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.ci import changed_files, ci_sync
    from commands.sync import SyncOptions

    changed = changed_files(args.repo_dir, args.changed_since)
    opts = SyncOptions(
        timeout=settings.sync_timeout,
        retry_limit=settings.retry_limit,
        presync_timeout=settings.presync_timeout,
        postsync_timeout=settings.postsync_timeout,
    )

    async def go(svc: Any) -> Result:
        summary, _ = await ci_sync(svc, changed, opts, progress=_progress())
        return summary

    return await _with_services(settings, go)


async def do_rollback(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.rollback import rollback_cli

    app = _app(args)
    if not settings.git_repo or not (settings.git_token or settings.uses_git_app):
        raise ConfigError(
            [
                "Rollback is not configured: set CHATOPS_GIT_REPO and CHATOPS_GIT_TOKEN (or a "
                "GitHub App: CHATOPS_GIT_APP_ID, CHATOPS_GIT_APP_INSTALLATION_ID and its key)."
            ]
        )
    return await _with_services(
        settings,
        lambda svc: rollback_cli(
            svc,
            app,
            commit=args.commit,
            sync_after=not args.no_sync,
            assume_yes=args.yes,
            interactive=sys.stdin.isatty() and sys.stdout.isatty(),
            ask=_ask,
            caller=_caller(),
            progress=_progress(),
        ),
        kube=not args.no_sync,
    )


def _ask(question: str) -> bool:
    print(question, file=sys.stderr)
    try:
        answer = input("Proceed? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


async def do_doctor(settings: Settings, args: argparse.Namespace) -> Result:
    from bot.cli.doctor import doctor

    return await doctor(settings)


async def do_audit(settings: Settings, args: argparse.Namespace) -> Result | None:
    from commands.results import Fact, Status

    since = None
    if args.since:
        since = _since(args.since)
    if args.app:
        targets.parse(args.app)
    st = _store(settings)
    try:
        rows = st.audit_list(app=args.app, since=since, limit=args.limit)
    finally:
        st.close()
    facts = tuple(
        Fact(
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started_at"])),
            f"{r['platform']} {r['user_name'] or r['user_id']} in {r['channel']}: "
            f"{r['command']} {r['args']} → {r['outcome'] or 'running'}",
        )
        for r in rows
    )
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return None
    return Result(
        "audit", args.app or "all apps", Status.NOOP, f"{len(rows)} entries.", facts=facts
    )


async def do_alert(settings: Settings, args: argparse.Namespace) -> Result:
    from bot.cli.alert_test import alert_test

    store = _store(settings)
    try:
        return await alert_test(settings, args, store)
    finally:
        store.close()


def _since(text: str) -> float:
    import datetime as dt

    try:
        return time.time() - validation.duration(
            text, minimum=1, maximum=3650 * 86400, what="time span"
        )
    except errors.BadInput:
        pass
    try:
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        raise errors.BadInput(
            f"'{text[:60]}' is neither a time span nor a date.",
            hint="Use e.g. 24h, 7d or 2026-11-01.",
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.timestamp()


def _caller() -> Any:
    import getpass

    from commands.context import Caller

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "cli"
    return Caller(user, "cli")


Handler = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, Result | None]]
HANDLERS: dict[str, Handler] = {
    "sync": do_sync,
    "selfheal": do_selfheal,
    "autorollback": do_autorollback,
    "status": do_status,
    "verify-rootless": do_verify,
    "hook": do_hook,
    "ci": do_ci,
    "rollback": do_rollback,
    "doctor": do_doctor,
    "audit": do_audit,
    "alert": do_alert,
}
