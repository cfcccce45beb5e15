"""``chatops doctor``: check every configured connection and permission, say what is wrong.

Each check is independent and bounded in time; a failing one names the setting or permission to
fix. Nothing here prints a secret: tokens are only ever used, never shown.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from bot.server import wiring
from bot.settings import ConfigError, Settings
from commands import errors
from commands.results import Fact, Result, Status

CHECK_TIMEOUT = 15.0


Check = Callable[[Settings], Awaitable[str]]


async def _argocd(settings: Settings, instance: str | None = None) -> str:
    client = wiring.argocd(settings, instance)
    try:
        apps = await client.list_apps()
    finally:
        await client.aclose()
    return f"reachable, token accepted, {len(apps)} applications visible"


def _argocd_of(instance: str) -> Check:
    return lambda settings: _argocd(settings, instance)


async def _kube(settings: Settings) -> str:
    ops = await asyncio.to_thread(wiring.kube, settings)
    if ops is None:
        raise errors.Unavailable(
            "no Kubernetes configuration (not in a cluster, no KUBECONFIG)",
            hint="Set KUBECONFIG or run in the cluster.",
        )
    try:
        return await _rights(settings, ops)
    finally:
        ops.api_client.close()


def _context(context: str, kubeconfig: str) -> Check:
    """A mapped cluster's context: loadable, reachable, the same rights as the default one."""

    async def check(settings: Settings) -> str:
        api = await asyncio.to_thread(wiring.context_api_client, context, kubeconfig)
        if api is None:
            raise errors.Unavailable(
                f"kubeconfig context {context} cannot be loaded",
                hint="Check KUBECONFIG (or the cluster's kubeconfig) and the context's name.",
            )
        ops = wiring.kube(settings, api)
        assert ops is not None
        try:
            return await _rights(settings, ops)
        finally:
            api.close()

    return check


async def _rights(settings: Settings, ops: Any) -> str:
    namespaces = settings.namespaces_watched
    if not namespaces:
        missing = await ops.check_access()
        if missing:
            raise errors.Denied(
                "missing RBAC: " + ", ".join(missing),
                hint="Without CHATOPS_WATCH_NAMESPACES the bot watches and acts in every "
                "namespace, which its RoleBindings (deploy/access/) do not grant: list the "
                "namespaces it is bound in.",
            )
        return "reachable, RBAC sufficient (Warning events watched in all namespaces)"
    missing = []
    for namespace in namespaces:  # the rights the bot needs where it watches and acts
        missing += await ops.check_access(namespace)
    if missing:
        raise errors.Denied(
            "missing RBAC: " + ", ".join(missing),
            hint="Bind the bot's ClusterRole in each namespace of CHATOPS_WATCH_NAMESPACES "
            "with a RoleBinding (see deploy/access/).",
        )
    return f"reachable, RBAC sufficient in namespace(s) {', '.join(namespaces)}"


async def _store(settings: Settings) -> str:
    from bot.cli.state import open_store

    st = await asyncio.to_thread(open_store, settings)  # a ConfigError names the problem
    version = st.version
    st.close()
    return f"{settings.state_db} writable, schema v{version}"


async def _slack(settings: Settings) -> str:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    assert settings.slack_bot_token is not None
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as e:
        raise errors.Unauthorized(
            f"Slack rejected the bot token: {e.response.get('error')}",
            hint="Check CHATOPS_SLACK_BOT_TOKEN.",
        ) from None
    except OSError as e:
        raise errors.Unavailable(f"Slack API unreachable ({type(e).__name__})") from None
    if not settings.slack_signing_secret and not settings.slack_app_token:
        raise errors.BadInput(
            "neither CHATOPS_SLACK_SIGNING_SECRET (HTTP mode) nor CHATOPS_SLACK_APP_TOKEN "
            "(Socket Mode) is set"
        )
    return f"token accepted for team {auth.get('team')} as {auth.get('user')}"


async def _git(settings: Settings) -> str:
    host = wiring.git(settings)
    if host is None:
        raise errors.BadInput(
            "/rollback needs CHATOPS_GIT_REPO and either CHATOPS_GIT_TOKEN or the GitHub App "
            "settings (CHATOPS_GIT_APP_ID, _INSTALLATION_ID, _PRIVATE_KEY)"
        )
    missing = await host.check_access() if hasattr(host, "check_access") else []
    if missing:
        raise errors.Denied("the Git token lacks: " + ", ".join(missing))
    return f"{settings.git_provider} {settings.git_repo} branch {settings.git_branch} writable"


def _argocd_checks(settings: Settings) -> list[tuple[str, Check | None, str]]:
    """One check per Argo CD instance; just "argocd" with the single-instance settings."""
    if not settings.instances:
        return [("argocd", _argocd if settings.argocd_url else None, "CHATOPS_ARGOCD_URL not set")]
    return [(f"argocd {i.name}", _argocd_of(i.name), "") for i in settings.argo_instances]


def _cluster_checks(settings: Settings) -> list[tuple[str, Check | None, str]]:
    """One check per kubeconfig context the clusters setting maps to (context "" is the
    default Kubernetes check above)."""
    seen: dict[tuple[str, str], list[str]] = {}
    for c in settings.clusters:
        if c.context or c.kubeconfig:
            seen.setdefault((c.context, c.kubeconfig), []).append(str(c.destination or c.server))
    return [
        (f"cluster {', '.join(dests)}", _context(ctx, cfg), "")
        for (ctx, cfg), dests in seen.items()
    ]


async def doctor(settings: Settings) -> Result:
    checks: list[tuple[str, Check | None, str]] = [
        ("state", _store, ""),
        *_argocd_checks(settings),
        (
            "kubernetes",
            _kube if os.environ.get("KUBECONFIG") or _in_cluster() or _home_kubeconfig() else None,
            "no KUBECONFIG and not in a cluster",
        ),
        *_cluster_checks(settings),
        ("slack", _slack if settings.slack_bot_token else None, "CHATOPS_SLACK_BOT_TOKEN not set"),
        (
            "discord",
            None if not settings.discord_token else _discord_note,
            "CHATOPS_DISCORD_TOKEN not set",
        ),
        (
            "git",
            _git if settings.git_repo or settings.git_token else None,
            "not configured (/rollback off)",
        ),
        ("webhook", _webhook, ""),
    ]
    facts: list[Fact] = []
    failed = 0

    async def run(name: str, fn: Check) -> Fact:
        try:
            return Fact(name, "✓ " + await asyncio.wait_for(fn(settings), CHECK_TIMEOUT))
        except TimeoutError:
            return Fact(name, f"✗ no answer within {CHECK_TIMEOUT:.0f}s")
        except ConfigError as e:
            return Fact(name, "✗ " + "; ".join(e.problems))
        except errors.CommandError as e:
            return Fact(name, "✗ " + str(e))

    results = await asyncio.gather(*(run(n, f) for n, f, _ in checks if f is not None))
    it = iter(results)
    for name, fn, why in checks:
        if fn is None:
            facts.append(Fact(name, f"- skipped: {why}"))
            continue
        fact = next(it)
        failed += fact.value.startswith("✗")
        facts.append(fact)
    if failed:
        return Result(
            "doctor", "configuration", Status.FAILED, f"{failed} checks failed.", facts=tuple(facts)
        )
    return Result(
        "doctor", "configuration", Status.NOOP, "Everything configured works.", facts=tuple(facts)
    )


async def _discord_note(settings: Settings) -> str:
    return "token set (checked when `chatops serve` logs in)"


async def _webhook(settings: Settings) -> str:
    if not settings.webhook_token:
        raise errors.BadInput("CHATOPS_WEBHOOK_TOKEN not set: POST /webhooks/argocd refuses all")
    return "token set"


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _home_kubeconfig() -> bool:
    return os.path.exists(os.path.expanduser("~/.kube/config"))
