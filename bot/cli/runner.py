"""Runs one CLI subcommand: load settings, wire clients, call the core, print, exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bot.cli import main as cli
from bot.settings import ConfigError, Settings
from commands import errors, validation
from commands.results import Result

log = logging.getLogger("chatops")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = cli.load_settings(args)
        if args.cmd == "serve":
            from bot.server import serve

            return int(serve.main(settings))
        handler = HANDLERS[args.cmd]
        result: Result | None = asyncio.run(handler(settings, args))
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return cli.EXIT_USAGE
    except errors.BadInput as e:
        _print_error(args, e)
        return cli.EXIT_USAGE
    except errors.CommandError as e:
        _print_error(args, e)
        return cli.EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return cli.EXIT_FAILED
    except Exception:
        ref = errors.internal_ref()
        log.exception("internal error (ref %s)", ref)
        print(f"Internal error (ref {ref}).", file=sys.stderr)
        return cli.EXIT_FAILED
    if result is None:
        return cli.EXIT_OK
    cli.render(result, as_json=args.json)
    return cli.EXIT_OK if result.ok else cli.EXIT_FAILED


def _print_error(args: argparse.Namespace, e: errors.CommandError) -> None:
    if getattr(args, "json", False):
        import json

        out: dict[str, Any] = {"ok": False, "error": e.kind, "message": e.user_message}
        if e.hint:
            out["hint"] = e.hint
        if isinstance(e, errors.NotFound) and e.suggestions:
            out["suggestions"] = list(e.suggestions)
        print(json.dumps(out, indent=2))
    else:
        print(f"✗ {e.user_message}", file=sys.stderr)
        if e.hint:
            print(f"  {e.hint}", file=sys.stderr)


def _progress(args: argparse.Namespace) -> Any:
    async def progress(step: Any) -> None:
        if not args.json:
            cli.print_step(step)

    return progress


def _store(settings: Settings) -> Any:
    from bot.state.store import StoreError, open_store

    try:
        return open_store(settings)
    except StoreError as e:
        raise ConfigError([str(e)]) from None


async def _with_services(
    settings: Settings,
    fn: Callable[[Any], Coroutine[Any, Any, Result]],
    *,
    store: bool = False,
    kube: bool = True,
) -> Result:
    from bot.server import wiring

    st = _store(settings) if store else None
    svc = wiring.services(settings, store=st, with_kube=kube)
    try:
        return await fn(svc)
    finally:
        await svc.argocd.aclose()
        if st is not None:
            st.close()


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
    validation.app_name(args.app)
    return await _with_services(
        settings,
        lambda svc: sync(svc, args.app, opts, caller=_caller(), progress=_progress(args)),
        kube=not args.no_hooks,
    )


async def do_selfheal(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.selfheal import MAX_PAUSE, MIN_PAUSE, selfheal

    validation.app_name(args.app)
    duration = None
    if args.duration:
        duration = validation.duration(
            args.duration, minimum=MIN_PAUSE, maximum=MAX_PAUSE, what="self-heal pause"
        )
    return await _with_services(
        settings,
        lambda svc: selfheal(svc, args.mode, args.app, duration=duration, caller=_caller()),
        store=True,
        kube=False,
    )


async def do_status(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.status import overview, status

    if args.app is None:
        return await _with_services(settings, overview, kube=False)
    validation.app_name(args.app)
    return await _with_services(settings, lambda svc: status(svc, args.app), store=True, kube=False)


async def do_verify(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.verify import verify

    validation.app_name(args.app)
    return await _with_services(settings, lambda svc: verify(svc, args.app))


async def do_hook(settings: Settings, args: argparse.Namespace) -> Result:
    from bot.server import wiring
    from commands.verify import hook

    validation.app_name(args.app)
    if args.namespace:
        validation.namespace(args.namespace)
    kube = wiring.kube(settings)
    if kube is None:
        raise ConfigError(["No Kubernetes configuration found (not in a cluster, no KUBECONFIG)."])
    argocd = wiring.argocd(settings) if not args.namespace else None
    timeout = args.timeout
    try:
        return await hook(
            kube,
            args.phase,
            args.app,
            namespace=args.namespace,
            argocd=argocd,
            timeout=timeout
            if timeout is not None
            else (
                settings.presync_timeout if args.phase == "presync" else settings.postsync_timeout
            ),
            progress=_progress(args),
        )
    finally:
        if argocd is not None:
            await argocd.aclose()


async def do_ci(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.ci import ci_sync
    from commands.sync import SyncOptions

    changed = _changed_files(args.repo_dir, args.changed_since)
    opts = SyncOptions(
        timeout=settings.sync_timeout,
        retry_limit=settings.retry_limit,
        presync_timeout=settings.presync_timeout,
        postsync_timeout=settings.postsync_timeout,
    )

    async def go(svc: Any) -> Result:
        summary, _ = await ci_sync(svc, changed, opts, progress=_progress(args))
        return summary

    return await _with_services(settings, go)


def _changed_files(repo_dir: str, rev: str) -> list[str]:
    if not rev or rev.startswith("-"):
        raise errors.BadInput(f"'{rev}' is not a Git revision.")
    try:
        out = subprocess.run(
            ["git", "-C", repo_dir, "diff", "--name-only", f"{rev}...HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except FileNotFoundError:
        raise errors.BadInput("git is not installed here; ci sync needs it.") from None
    if out.returncode != 0:
        raise errors.BadInput(
            f"Cannot diff {rev}...HEAD in {repo_dir}: {out.stderr.strip()[:200]}",
            hint="Fetch enough history in CI (actions/checkout with fetch-depth: 0).",
        )
    return [line for line in out.stdout.splitlines() if line.strip()]


async def do_rollback(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.rollback import rollback_cli

    validation.app_name(args.app)
    return await _with_services(
        settings,
        lambda svc: rollback_cli(
            svc,
            args.app,
            commit=args.commit,
            sync_after=not args.no_sync,
            assume_yes=args.yes,
            interactive=sys.stdin.isatty() and sys.stdout.isatty(),
            ask=_ask,
            caller=_caller(),
            progress=_progress(args),
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


async def do_audit(settings: Settings, args: argparse.Namespace) -> Result:
    from commands.results import Fact, Status

    since = None
    if args.since:
        since = _since(args.since)
    if args.app:
        validation.app_name(args.app)
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
        return None  # type: ignore[return-value]
    return Result(
        "audit", args.app or "all apps", Status.NOOP, f"{len(rows)} entries.", facts=facts
    )


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
            f"'{text}' is neither a time span nor a date.", hint="Use e.g. 24h, 7d or 2026-11-01."
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


HANDLERS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, Result]]] = {
    "sync": do_sync,
    "selfheal": do_selfheal,
    "status": do_status,
    "verify-rootless": do_verify,
    "hook": do_hook,
    "ci": do_ci,
    "rollback": do_rollback,
    "doctor": do_doctor,
    "audit": do_audit,
}
