"""Composition: settings -> clients -> ``commands.context.Services``.

The only place that turns configuration into live clients, so the CLI, the hook Jobs, CI and
``chatops serve`` all run the same command core against the same connections.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.settings import ConfigError, Settings, git_credential_problems
from bot.state.store import Store, StoreTimers
from commands.argocd.client import ArgoCD
from commands.context import Services

if TYPE_CHECKING:
    from commands.githost.github.app_auth import GitHubAppAuth
    from commands.githost.port import GitHost
    from commands.kube.ops import KubeOps

log = logging.getLogger(__name__)


def argocd(settings: Settings) -> ArgoCD:
    settings.require("argocd_url", "argocd_token", why="talking to Argo CD")
    assert settings.argocd_url and settings.argocd_token
    verify: bool | str = True
    if settings.argocd_ca_bundle:
        if not os.path.exists(settings.argocd_ca_bundle):
            raise ConfigError(
                [f"CHATOPS_ARGOCD_CA_BUNDLE: {settings.argocd_ca_bundle} does not exist."]
            )
        verify = settings.argocd_ca_bundle
    elif settings.argocd_insecure:
        verify = False
    return ArgoCD(settings.argocd_url, settings.argocd_token.get_secret_value(), verify=verify)


def kube_api_client() -> Any | None:
    """In-cluster config, else KUBECONFIG / ~/.kube/config; None when neither exists."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            # KUBECONFIG as it is now: the client reads it once, when first imported
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)  # type: ignore[no-untyped-call]
        except (config.ConfigException, FileNotFoundError, TypeError):
            return None
    return client.ApiClient()


def kube(settings: Settings, api_client: Any | None = None) -> KubeOps | None:
    api = api_client if api_client is not None else kube_api_client()
    if api is None:
        return None
    from commands.kube.ops import KubeOps

    return KubeOps(api, exec_enabled=settings.kube_exec)


def git(settings: Settings) -> GitHost | None:
    """The Git host of /rollback, authenticated by CHATOPS_GIT_TOKEN or as a GitHub App."""
    if not settings.git_repo:
        return None
    from commands.githost import factory

    token: str | Callable[[], Awaitable[str]]
    if settings.git_token:
        token = settings.git_token.get_secret_value()
    elif settings.uses_git_app:
        token = git_app_auth(settings)
    else:
        return None
    return factory.connect(
        settings.git_provider, settings.git_api_base, token, settings.git_repo, settings.git_branch
    )


def git_app_auth(settings: Settings) -> GitHubAppAuth:
    """Installation tokens for the GitHub App of CHATOPS_GIT_APP_*; ConfigError if its key
    cannot be read or is not an RSA private key (the key itself is never shown)."""
    from commands import errors
    from commands.githost.github.app_auth import GitHubAppAuth

    app_id, installation = settings.git_app_id, settings.git_app_installation_id
    if not (app_id and installation and settings.git_app_key_given):
        raise ConfigError(git_credential_problems(settings) or ["GitHub App is not configured."])
    if settings.git_app_private_key:
        pem, source = settings.git_app_private_key.get_secret_value(), "CHATOPS_GIT_APP_PRIVATE_KEY"
    else:
        path = settings.git_app_private_key_file or ""
        source = "CHATOPS_GIT_APP_PRIVATE_KEY_FILE"
        try:
            pem = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or type(e).__name__
            raise ConfigError([f"{source}: {path} cannot be read ({reason})."]) from None
    try:
        return GitHubAppAuth(settings.git_api_base, app_id, installation, pem)
    except errors.BadInput as e:
        raise ConfigError([f"{source}: {e.user_message}"]) from None


def services(
    settings: Settings,
    *,
    store: Store | None = None,
    with_kube: bool = True,
    kube_client: Any | None = None,
) -> Services:
    return Services(
        argocd=argocd(settings),
        kube=kube(settings, kube_client) if with_kube else None,
        timers=StoreTimers(store) if store is not None else None,
        git=git(settings),
        ui_url=settings.ui_url,
    )
