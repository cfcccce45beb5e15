"""Composition: settings -> clients -> ``commands.context.Services``.

The only place that turns configuration into live clients, so the CLI, the hook Jobs, CI and
``chatops serve`` all run the same command core against the same connections.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from bot.settings import ConfigError, Settings
from bot.store import Store, StoreTimers
from commands.argocd import ArgoCD
from commands.context import Services

if TYPE_CHECKING:
    from commands.githost import GitHost
    from commands.kube import KubeOps

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
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, FileNotFoundError, TypeError):
            return None
    return client.ApiClient()


def kube(settings: Settings, api_client: Any | None = None) -> KubeOps | None:
    api = api_client if api_client is not None else kube_api_client()
    if api is None:
        return None
    from commands.kube import KubeOps

    return KubeOps(api, exec_enabled=settings.kube_exec)


def git(settings: Settings) -> GitHost | None:
    if not (settings.git_repo and settings.git_token):
        return None
    from commands import githost

    return githost.connect(
        settings.git_provider,
        settings.git_api_base,
        settings.git_token.get_secret_value(),
        settings.git_repo,
        settings.git_branch,
    )


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
